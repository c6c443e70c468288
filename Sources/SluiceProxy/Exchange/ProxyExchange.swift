import NIOCore
import NIOSSL
import SluiceTLS
import NIOHTTP1
import NIOPosix
import SluicePlugins

/// The client side of an exchange, as the exchange needs it: an HTTP/1.1 connection now, an
/// HTTP/2 stream later. The adapter frames what it is given for its protocol.
protocol DownstreamStream: AnyObject {
    var eventLoop: EventLoop { get }
    var isWritable: Bool { get }
    func writeContinue()
    func writeHead(_ head: ResponseHead, close: Bool)
    func writeBody(_ body: ByteBuffer)
    func writeEnd(_ trailers: HeaderBlock?)
    func flush()
    /// The response cannot be completed: close at once.
    func abort()
    /// The exchange is over; `close` when the connection must not carry another request.
    func exchangeFinished(_ exchange: ProxyExchange, close: Bool)
    /// Join the client and `upstream` into a tunnel after writing `head`.
    func startTunnel(_ exchange: ProxyExchange, head: ResponseHead, upstream: HTTP1UpstreamConnection, idleTimeout: TimeAmount)
    /// The client should be read again (the exchange can take more body).
    func exchangeWantsReads()
    /// The exchange has a deadline earlier than any the stream's timer knows of.
    func exchangeDeadline(_ deadline: NIODeadline)
}

/// Runs one `ExchangeStateMachine`: turns its actions into writes on the downstream stream
/// and the upstream connection, connects and pools upstream connections, and feeds the
/// outcomes back as events. Protocol-neutral on both sides.
final class ProxyExchange: UpstreamConnectionOwner {
    private(set) var machine: ExchangeStateMachine
    private unowned let downstream: DownstreamStream
    private let loop: LoopContext
    private(set) var connection: HTTP1UpstreamConnection?
    private var ended = false
    /// Set while the client side delivers a burst of reads: upstream writes are flushed once
    /// at its end.
    var inReadBurst = false
    private var needsUpstreamFlush = false

    init(downstream: DownstreamStream, loop: LoopContext, machine: () -> ExchangeStateMachine) {
        self.machine = machine()
        self.downstream = downstream
        self.loop = loop
    }

    var wantsClientReads: Bool { machine.wantsClientReads }
    var nextDeadline: NIODeadline? { machine.nextDeadline }
    var downstreamWritable: Bool { downstream.isWritable }
    var isEnded: Bool { ended }

    func send(_ event: ExchangeStateMachine.Event) {
        let actions = machine.event(event)
        run(actions)
    }

    func answer(_ status: HTTPResponseStatus, _ message: String, close: Bool, page: ErrorPageTitles.Variant? = nil) {
        run(machine.answer(status, message, close: close, page: page))
    }

    // MARK: Actions

    private func run(_ a: ExchangeActions) {
        switch a.plugins {
        case .none: break
        case .delay(let nanos, let then):
            downstream.eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(Int64(min(nanos, UInt64(Int64.max))))) { [self] in
                guard !self.ended else { return }  // the client left meanwhile
                self.send(.pluginDelayElapsed(then: then))
            }
        case .wait(let future):
            future.hop(to: downstream.eventLoop).assumeIsolated().whenComplete { [self] result in
                guard !self.ended else { return }
                switch result {
                case .success(let d): self.send(.pluginDecision(d))
                case .failure: self.send(.pluginDecision(nil))
                }
            }
        }
        switch a.upstream {
        case .none: break
        case .acquire(let key, let tls, let fresh, let timeout): acquire(key, tls: tls, fresh: fresh, connectTimeout: timeout)
        case .send(let head, let framing, let body, let end):
            guard let conn = connection else { break }
            conn.sendHead(head, framing: framing)
            for part in body { conn.sendBody(part) }
            if end { conn.sendEnd() }
            flushUpstream(conn)
        case .body(let b):
            if let conn = connection {
                conn.sendBody(b)
                needsUpstreamFlush = true
                if !conn.isWritable { send(.upstreamWritable(false)) }
                if !inReadBurst { flushUpstream(conn) }
            }
        case .end:
            if let conn = connection {
                conn.sendEnd()
                flushUpstream(conn)
            }
        case .release(let reusable, let pool):
            if let conn = connection {
                connection = nil
                conn.owner = nil
                if reusable {
                    loop.pool.put(
                        conn, policy: KeepalivePoolPolicy(size: pool.size, idleTimeout: TimeAmount(seconds: pool.idleTimeout), requests: pool.requests))
                } else {
                    conn.close()
                }
            }
        case .close:
            if let conn = connection {
                connection = nil
                conn.close()
            }
        }
        switch a.downstream {
        case .none: break
        case .sendContinue: downstream.writeContinue()
        case .head(let h, let close): downstream.writeHead(h, close: close)
        case .body(let b): downstream.writeBody(b)
        case .end(let t):
            downstream.writeEnd(t)
            downstream.flush()
        case .whole(let h, let body, let close):
            downstream.writeHead(h, close: close)
            if let body { downstream.writeBody(body) }
            downstream.writeEnd(nil)
            downstream.flush()
        case .abort:
            end()
            downstream.abort()
            return
        }
        switch a.completion {
        case .none:
            if let d = machine.nextDeadline { downstream.exchangeDeadline(d) }
            if machine.wantsClientReads { downstream.exchangeWantsReads() }
        case .finished(let close):
            end()
            downstream.exchangeFinished(self, close: close)
        case .tunnel(let head, let idle):
            end()
            guard let conn = connection else {
                downstream.abort()
                return
            }
            connection = nil
            conn.owner = nil
            downstream.startTunnel(self, head: head, upstream: conn, idleTimeout: idle)
        }
    }

    private func flushUpstream(_ conn: HTTP1UpstreamConnection) {
        if inReadBurst {
            needsUpstreamFlush = true  // flushed once at the end of the client's read burst
        } else {
            needsUpstreamFlush = false
            conn.flush()
        }
    }

    /// The client's read burst is over.
    func clientReadComplete() {
        inReadBurst = false
        if needsUpstreamFlush, let conn = connection {
            needsUpstreamFlush = false
            conn.flush()
        }
    }

    /// The client connection closed.
    func clientClosed() {
        guard !ended else { return }
        run(machine.event(.clientClosed))
        end()
    }

    func timerFired() {
        guard !ended else { return }
        run(machine.event(.timer))
    }

    /// The log phase, once: plugin log hooks and the access log line.
    private func end() {
        guard !ended else { return }
        ended = true
        if let log = machine.finishLog() { loop.writeAccessLog(self, log) }
    }

    // MARK: Upstream connections

    private func acquire(_ key: UpstreamKey, tls: UpstreamTLSContext?, fresh: Bool, connectTimeout: TimeAmount) {
        if !fresh, let conn = loop.pool.take(key) {
            bind(conn)
            send(.upstreamAcquired(reused: true))
            return
        }
        guard let base = ClientBootstrap(validatingGroup: downstream.eventLoop) else {
            // Not a socket event loop (an EmbeddedChannel in tests): nothing can be reached.
            send(.upstreamConnectFailed(timedOut: false))
            return
        }
        let bootstrap = base
            .connectTimeout(connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        // Requests written before the handshake ends wait in the TLS handler.
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tls.context, serverHostname: key.sni))
                    }
                    try channel.pipeline.syncOperations.addHandler(HTTP1UpstreamConnection(key: key))
                }
            }
        bootstrap.connect(host: key.host, port: key.port).assumeIsolated().whenComplete { [self] result in
            switch result {
            case .success(let channel):
                guard !self.ended, let conn = try? channel.pipeline.syncOperations.handler(type: HTTP1UpstreamConnection.self) else {
                    // The client left while connecting: the exchange already released its node.
                    channel.close(promise: nil)
                    return
                }
                self.loop.pool.noteOpened()
                self.bind(conn)
                self.send(.upstreamAcquired(reused: false))
            case .failure(let error):
                guard !self.ended else { return }
                var timedOut = false
                if case ChannelError.connectTimeout = error { timedOut = true }
                self.send(.upstreamConnectFailed(timedOut: timedOut))
            }
        }
    }

    private func bind(_ conn: HTTP1UpstreamConnection) {
        connection = conn
        conn.owner = self
    }

    // MARK: UpstreamConnectionOwner

    func upstreamPart(_ part: MessagePart<ResponseHead>) {
        switch part {
        case .head(let h): send(.responseHead(h))
        case .body(let b): send(.responseBody(b))
        case .end(let t): send(.responseEnd(t))
        }
    }

    func upstreamReadComplete() { downstream.flush() }

    func upstreamWritabilityChanged(_ writable: Bool) {
        send(.upstreamWritable(writable))
    }

    func upstreamClosed() {
        connection = nil
        send(.upstreamClosed)
    }

    /// The client became writable again: the upstream may be read.
    func downstreamBecameWritable() { connection?.resumeReading() }
}

