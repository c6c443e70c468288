import NIOCore
import NIOHTTP1
import SluiceBalancing
import SluiceCore
import SluicePlugins

/// One request/response exchange on a client connection, from its head to its end.
final class Exchange {
    let clientVersion: HTTPVersion
    let method: HTTPMethod
    let isIdempotent: Bool
    /// Whether the client connection stays open after this exchange.
    var keepAlive: Bool
    /// The `Upgrade` value forwarded upstream (WebSocket), or nil.
    var upgrade: String?
    let expectContinue: Bool
    let startedAt: NIODeadline

    // Proxying; nil for exchanges answered by the gateway itself (and until the plugins
    // have run).
    var upstream: CompiledUpstream?
    var balancer: Balancer?
    var timeouts: Timeouts
    var upstreamHead: HTTPRequestHead?
    var hashKey: UInt64

    // Plugins: the run (nil when the route and global rules have none), what the response
    // side does with the body, and what the log phase learns.
    var plugins: PluginRun?
    var requestBodyBytes = 0
    var maxBodySize: Int?
    enum BodyMode { case pass, collect, discard }
    var bodyMode = BodyMode.pass
    var heldHead: HTTPResponseHead?
    var collected: [UInt8] = []
    var status = 0
    var upstreamStatus: Int?
    var responseBytes = 0
    var requestHeadBytes = 0
    var endedAt: NIODeadline?
    /// When the request went to the upstream (the last attempt), for upstream latency.
    var upstreamSentAt: NIODeadline?

    var tried: [Int] = []
    var node: Int?
    var attempts = 0
    var connection: UpstreamConnection?
    var connectionWasReused = false
    var connecting = false
    var staleRetryUsed = false
    var lastConnectError: Error?

    var pendingBody = CircularBuffer<ByteBuffer>()
    var pendingBytes = 0
    var requestEnded = false
    var requestEndSent = false
    var bodyForwarded = false
    var needsUpstreamFlush = false
    var sentContinue = false

    var responseStarted = false
    var responseEnded = false
    var upstreamKeepAlive = true
    /// A `101 Switching Protocols` head waiting for its message end.
    var switchingHead: HTTPResponseHead?
    /// The gateway answered (an error or a route miss): remaining request body is discarded.
    var local = false

    var lastUpstreamActivity: NIODeadline
    var blockedSince: NIODeadline?

    init(
        head: HTTPRequestHead, keepAlive: Bool, upgrade: String?, upstream: CompiledUpstream?, balancer: Balancer?,
        timeouts: Timeouts, upstreamHead: HTTPRequestHead?, hashKey: UInt64
    ) {
        clientVersion = head.version
        method = head.method
        switch head.method {
        case .GET, .HEAD, .PUT, .DELETE, .OPTIONS, .TRACE: isIdempotent = true
        default: isIdempotent = false
        }
        self.keepAlive = keepAlive
        self.upgrade = upgrade
        var expect = false
        if head.headers.contains(name: "expect") {
            for v in head.headers["expect"] where v.lowercased() == "100-continue" { expect = true }
        }
        expectContinue = expect
        let now = NIODeadline.now()
        startedAt = now
        lastUpstreamActivity = now
        self.upstream = upstream
        self.balancer = balancer
        self.timeouts = timeouts
        self.upstreamHead = upstreamHead
        self.hashKey = hashKey
    }

    deinit {
        guard let plugins else { return }
        let end = endedAt ?? .now()
        plugins.log(PluginLogInfo(
            // 499: the client left before any response, as nginx logs it.
            status: status == 0 ? 499 : status, upstreamStatus: upstreamStatus, latencyNanos: UInt64(max(0, (end - startedAt).nanoseconds)),
            upstreamLatencyNanos: upstreamSentAt.map { UInt64(max(0, (end - $0).nanoseconds)) },
            requestBytes: requestHeadBytes + requestBodyBytes, responseBytes: responseBytes,
            node: node.flatMap { n in upstream.map { $0.plan.nodes[n].address } }))
    }

    static func local(head: HTTPRequestHead, keepAlive: Bool) -> Exchange {
        let e = Exchange(
            head: head, keepAlive: keepAlive, upgrade: nil, upstream: nil, balancer: nil, timeouts: .default,
            upstreamHead: nil, hashKey: 0)
        e.local = true
        return e
    }
}

extension TimeAmount {
    init(seconds: Double) {
        self = .nanoseconds(Int64(min(seconds, 86_400 * 365) * 1_000_000_000))
    }
}
