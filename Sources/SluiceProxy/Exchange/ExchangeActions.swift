import NIOCore
import SluiceCore
import SluicePlugins
import SluiceTLS

/// What the driver of an exchange does after an event: at most one thing on each side, run
/// in this order: plugins, upstream, downstream, completion. A value with no allocation.
struct ExchangeActions {
    enum Plugins {
        case none
        /// Resume the plugin phases after `nanoseconds` (limit-req's delay), or answer `then`.
        case delay(nanoseconds: UInt64, then: PluginReply?)
        /// Resume the plugin phases with the future's decision (Redis, an auth service).
        case wait(EventLoopFuture<PluginDecision>)
    }

    enum Upstream {
        case none
        /// Take a pooled connection to `key` (unless `fresh`) or open one, then report
        /// `.upstreamAcquired` or `.upstreamConnectFailed`.
        /// `tls`: the client context, for an https upstream.
        case acquire(UpstreamKey, tls: UpstreamTLSContext?, fresh: Bool, connectTimeout: TimeAmount)
        /// Send the request head on the acquired connection, then the body bytes held so far,
        /// then the end when `end` is set.
        case send(UpstreamRequestHead, framing: BodyFraming, body: [ByteBuffer], end: Bool)
        case body(ByteBuffer)
        case end
        /// The response ended: give the connection back to the pool when `reusable` (and the
        /// connection has requests left), else close it.
        case release(reusable: Bool, pool: KeepalivePool)
        /// Close the connection (it is mid-message or broken); it reports nothing more.
        case close
    }

    enum Downstream {
        case none
        /// `100 Continue`, before the request body is read.
        case sendContinue
        case head(ResponseHead, close: Bool)
        case body(ByteBuffer)
        case end(HeaderBlock?)
        /// A complete response in one go (the gateway's own answers, rewritten bodies).
        case whole(ResponseHead, body: ByteBuffer?, close: Bool)
        /// The response cannot be completed: the client must see a broken response, so the
        /// connection is closed at once.
        case abort
    }

    enum Completion {
        case none
        /// Both messages are complete: the connection takes its next request, or closes when
        /// the exchange said `close`.
        case finished(close: Bool)
        /// The upstream switched protocols: write `head` (the 101) and join the two
        /// connections into a tunnel that closes after `idleTimeout` without traffic.
        case tunnel(ResponseHead, idleTimeout: TimeAmount)
    }

    var plugins = Plugins.none
    var upstream = Upstream.none
    var downstream = Downstream.none
    var completion = Completion.none

    static var none: ExchangeActions { ExchangeActions() }
}
