import NIOCore
import NIOHTTP1
import NIOSSL
import NIOTLS
import SluiceCore
import SluiceTLS

/// The HTTP/1.1 downstream adapter: the only handler of a client connection's pipeline. It
/// reads requests with `HTTP1RequestReader` straight from the socket's buffers, runs one
/// exchange at a time (pipelined requests wait in the read buffer), frames responses for
/// HTTP/1.0 and 1.1 clients, and owns what belongs to the connection rather than to an
/// exchange: the header and keep-alive idle timeouts, `Connection: close`, graceful
/// shutdown, and the switch to a tunnel after `101`.
final class HTTP1ServerConnection: ChannelDuplexHandler, RemovableChannelHandler, DownstreamStream {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let loop: LoopContext
    private let settings: ListenerSettings
    private var context: ChannelHandlerContext?
    private var reader: HTTP1RequestReader
    /// Bytes read and not consumed yet: the rest of a head, or pipelined requests.
    private var inbound: ByteBuffer?
    private var exchange: ProxyExchange?
    private var info = ClientConnectionInfo()
    private let variables = HTTPRequestVariables()
    private let limits: ExchangeStateMachine.Limits

    // The response in flight, as this connection frames it.
    private var requestVersion = HTTPVersion.http1_1
    private var requestMethod = HTTPMethod.GET
    private var responseFraming = BodyFraming.none
    /// The connection closes once the current response is written.
    private var closeAfterResponse = false
    /// The request asked for an upgrade: the bytes after it are not parsed as requests.
    private var holdForUpgrade = false

    private var parsing = false
    private var headBuffer = ByteBuffer()
    private var inReadBurst = false
    private var readPending = false
    private var quiescing = false
    private var closing = false
    private var servedAny = false
    private var idleSince = NIODeadline.now()
    /// A request whose route depends on its form body (a route reads `post_arg_*`): held,
    /// with the body so far, until the body is in; then routed and run as any other.
    private struct HeldForBody {
        var head: RequestHead
        var framing: BodyFraming
        var keepAlive: Bool
        var body: ByteBuffer
        var since: NIODeadline
    }
    private var heldForBody: HeldForBody?
    /// The largest form body read before routing; a larger one is routed without it (its
    /// `post_arg_*` are missing), as NGINX cannot read a body spilled to a file either.
    static let maxFormBodyForRouting = 64 * 1024
    /// One timer per connection serves the header, keep-alive and exchange timeouts: it is
    /// moved earlier when a shorter deadline appears, and otherwise re-evaluates what is due
    /// when it fires, so a request costs no timer scheduling in the common case.
    private var timer: Scheduled<Void>?
    private var timerDeadline = NIODeadline.distantFuture

    /// Pipelined bytes held beyond this pause reading from the client.
    static let maxBufferedBytes = 64 * 1024

    /// On a TLS listener: the certificate object the handshake uses and the name the client
    /// asked for. The rest of the connection's TLS is read when the handshake completes.
    struct TLSSetup {
        var identity: ServerIdentity
        var serverName: String?
    }

    private let tls: TLSSetup?

    init(loop: LoopContext, settings: ListenerSettings, tls: TLSSetup? = nil) {
        self.loop = loop
        self.settings = settings
        self.tls = tls
        reader = HTTP1RequestReader(limits: HTTP1Limits(maxURIBytes: settings.maxURIBytes, maxHeaderBytes: settings.maxHeaderBytes))
        limits = ExchangeStateMachine.Limits(
            connectBufferBytes: settings.connectBufferBytes, clientBodyTimeout: settings.clientBodyTimeout, maxRewrittenBody: 16 << 20)
    }

    // MARK: DownstreamStream

    var eventLoop: EventLoop { context?.eventLoop ?? loop.eventLoop }
    var isWritable: Bool { context?.channel.isWritable ?? false }

    func writeContinue() {
        guard let context else { return }
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(staticString: "HTTP/1.1 100 Continue\r\n\r\n")), promise: nil)
    }

    func writeHead(_ head: ResponseHead, close: Bool) {
        guard let context else { return }
        let framing = HTTP1Writer.responseFraming(head, requestMethod: requestMethod, version: requestVersion)
        if close || quiescing || framing == .untilClose { closeAfterResponse = true }
        responseFraming = framing
        let connection: StaticString? = closeAfterResponse ? "close" : (requestVersion.minor == 0 ? "keep-alive" : nil)
        // One buffer per connection, reused: once the previous head is on the wire this
        // connection holds the only reference, and clearing it keeps its memory.
        headBuffer.clear()
        HTTP1Writer.writeResponseHead(head, framing: framing, connection: connection, into: &headBuffer, version: requestVersion)
        context.write(wrapOutboundOut(headBuffer), promise: nil)
    }

    func writeBody(_ body: ByteBuffer) {
        guard let context, body.readableBytes > 0 else { return }
        switch responseFraming {
        case .none: return
        case .length, .untilClose:
            context.write(wrapOutboundOut(body), promise: nil)
        case .chunked:
            HTTP1Writer.chunk(body, allocator: context.channel.allocator) { context.write(wrapOutboundOut($0), promise: nil) }
        }
    }

    func writeEnd(_ trailers: HeaderBlock?) {
        guard let context, responseFraming == .chunked else { return }
        var last = context.channel.allocator.buffer(capacity: 5 + (trailers?.wireSize ?? 0))
        HTTP1Writer.writeLastChunk(trailers: trailers, into: &last)
        context.write(wrapOutboundOut(last), promise: nil)
    }

    func flush() { context?.flush() }

    func abort() {
        exchange = nil
        closing = true
        context?.close(promise: nil)
    }

    func exchangeFinished(_ ex: ProxyExchange, close: Bool) {
        guard exchange === ex, let context else { return }
        exchange = nil
        variables.requestEnded()
        if close || closeAfterResponse || quiescing {
            closeAfterFlush(context)
            return
        }
        idleSince = .now()
        ensureTimer(by: idleSince + settings.keepaliveTimeout)
        parse()
        resumeReadsIfPossible()
    }

    func exchangeWantsReads() { resumeReadsIfPossible() }

    func exchangeDeadline(_ deadline: NIODeadline) { ensureTimer(by: deadline) }

    func startTunnel(_ ex: ProxyExchange, head: ResponseHead, upstream: HTTP1UpstreamConnection, idleTimeout: TimeAmount) {
        guard exchange === ex, let context, let upstreamChannel = upstream.channel else {
            upstream.close()
            abort()
            return
        }
        exchange = nil
        timer?.cancel()
        timer = nil
        var buffer = context.channel.allocator.buffer(capacity: head.fields.wireSize + 64)
        HTTP1Writer.writeResponseHead(head, framing: .none, connection: nil, into: &buffer, version: .http1_1)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        let clientBytes = inbound
        inbound = nil
        let upstreamBytes = upstream.takeTunnelBytes()
        let (clientSide, upstreamSide) = TunnelHandler.pair(idleTimeout: idleTimeout)
        do {
            let down = context.pipeline.syncOperations
            try down.addHandler(clientSide)
            let up = upstreamChannel.pipeline.syncOperations
            _ = up.removeHandler(upstream)
            try up.addHandler(upstreamSide)
            // Bytes that came with the request or the 101 belong to the other side.
            if let clientBytes { upstreamSide.forward(clientBytes) }
            if let upstreamBytes { clientSide.forward(upstreamBytes) }
            _ = down.removeHandler(context: context)
            upstreamChannel.read()
            context.channel.read()
        } catch {
            upstreamChannel.close(promise: nil)
            context.close(promise: nil)
        }
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { connectionStarted(context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        connectionStarted(context)
        context.fireChannelActive()
    }

    private func connectionStarted(_ context: ChannelHandlerContext) {
        if let remote = context.channel.remoteAddress {
            info.address = remote.ipAddress ?? "0.0.0.0"
            info.ip = IPAddress(info.address)
            // An IPv4 client of a dual-stack listener arrives as ::ffff:a.b.c.d: it is the
            // IPv4 client a.b.c.d for rules, variables and X-Forwarded-For alike.
            if let ip = info.ip, !ip.isIPv4, ip.unmapped.isIPv4 {
                info.ip = ip.unmapped
                info.address = ip.unmapped.description
            }
            info.port = remote.port ?? 0
        }
        info.serverAddress = context.channel.localAddress?.ipAddress ?? ""
        info.serverPort = context.channel.localAddress?.port ?? 0
        info.serverPortText = String(info.serverPort)
        info.scheme = settings.scheme
        variables.remoteAddress = info.address
        variables.remotePort = info.port
        variables.serverAddress = info.serverAddress
        variables.serverPort = info.serverPort
        variables.scheme = info.scheme
        idleSince = .now()
        ensureTimer(by: idleSince + settings.clientHeaderTimeout)
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        heldForBody = nil
        if let ex = exchange {
            exchange = nil
            ex.clientClosed()
        }
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        if closing { return }
        if inbound == nil {
            inbound = buffer
        } else {
            var b = buffer
            inbound!.writeBuffer(&b)
        }
        inReadBurst = true
        exchange?.inReadBurst = true
        parse()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        inReadBurst = false
        exchange?.clientReadComplete()
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { exchange?.downstreamBecameWritable() }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let tlsEvent = event as? TLSUserEvent, case .handshakeCompleted = tlsEvent {
            handshakeCompleted(context)
            context.fireUserInboundEventTriggered(event)
            return
        }
        guard event is ChannelShouldQuiesceEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        quiescing = true
        if let ex = exchange {
            ex.send(.closeAfterResponse)  // answered with Connection: close, then closed
        } else if reader.isIdle {
            context.close(promise: nil)
        }
    }

    /// What the handshake settled becomes the connection's `$ssl_*` variables and decides
    /// which requests need a client certificate.
    private func handshakeCompleted(_ context: ChannelHandlerContext) {
        guard let tls else { return }
        let handler = try? context.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self)
        let peer = handler?.peerCertificate
        let version: String
        switch handler?.tlsVersion {
        case .tlsv13?: version = "TLSv1.3"
        case .tlsv12?: version = "TLSv1.2"
        case .tlsv11?: version = "TLSv1.1"
        case .tlsv1?: version = "TLSv1"
        case nil: version = ""
        }
        let connectionTLS = TLSConnectionInfo(
            serverName: tls.serverName, protocolVersion: version, sslID: tls.identity.id,
            clientSubjectDN: peer.map(CertificateText.distinguishedName), clientIssuerDN: peer.map(CertificateText.issuer),
            clientSerial: peer.map { CertificateText.hex($0.serialNumber) })
        info.tls = connectionTLS
        info.identity = tls.identity
        variables.tls = connectionTLS
    }

    /// Back-pressure: read from the client only while the exchange can take more.
    func read(context: ChannelHandlerContext) {
        if shouldPauseReads {
            readPending = true
        } else {
            context.read()
        }
    }

    private var shouldPauseReads: Bool {
        if (inbound?.readableBytes ?? 0) >= Self.maxBufferedBytes { return true }
        if let ex = exchange { return !ex.wantsClientReads }
        return false
    }

    private func resumeReadsIfPossible() {
        if readPending && !shouldPauseReads, let context {
            readPending = false
            context.read()
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    // MARK: Requests

    /// Reads what the buffer holds: the current request's body, then the next request once
    /// the current exchange is over.
    private func parse() {
        guard !parsing, context != nil else { return }
        parsing = true
        defer { parsing = false }
        // The reader is called until it has nothing more, even with no bytes left: a
        // message's end may follow its last byte without further input.
        while !closing, !holdForUpgrade {
            if exchange != nil && reader.isIdle { break }  // a pipelined request waits its turn
            if inbound == nil && reader.isIdle { break }
            var buffer = inbound ?? ByteBuffer()
            inbound = nil  // uniquely held while the reader moves its index
            let event: HTTP1RequestReader.Event?
            do {
                event = try reader.read(&buffer)
            } catch {
                refuse(error)
                return
            }
            inbound = buffer.readableBytes > 0 ? buffer : nil
            guard let event else { break }
            switch event {
            case .head(let head, let framing): requestHead(head, framing)
            case .body(let b):
                if var held = heldForBody {
                    if held.body.readableBytes + b.readableBytes > Self.maxFormBodyForRouting {
                        heldForBody = nil
                        start(held.head, held.framing, keepAlive: held.keepAlive, formBody: nil)
                        if held.body.readableBytes > 0 { exchange?.send(.requestBody(held.body)) }
                        exchange?.send(.requestBody(b))
                    } else {
                        var part = b
                        held.body.writeBuffer(&part)
                        heldForBody = held
                    }
                } else {
                    exchange?.send(.requestBody(b))
                }
            case .end:
                if let held = heldForBody {
                    heldForBody = nil
                    start(held.head, held.framing, keepAlive: held.keepAlive, formBody: String(buffer: held.body))
                    if held.body.readableBytes > 0 { exchange?.send(.requestBody(held.body)) }
                }
                if let ex = exchange {
                    // After an upgrade request the bytes that follow belong to the tunnel.
                    if ex.machine.request.upgrade != nil { holdForUpgrade = true }
                    ex.send(.requestEnd)
                }
            }
        }
    }

    private func requestHead(_ head: RequestHead, _ framing: BodyFraming) {
        servedAny = true
        loop.requestsServed &+= 1
        requestVersion = head.version
        requestMethod = head.method
        closeAfterResponse = false
        let keepAlive = ForwardingHeaders.keepsAlive(head.fields, version: head.version) && !quiescing
        if loop.snapshot.routesReadFormBodies, Self.routesOnFormBody(head, framing) {
            heldForBody = HeldForBody(head: head, framing: framing, keepAlive: keepAlive, body: ByteBuffer(), since: .now())
            // The client may wait for this before it sends the body.
            if head.fields.first(.expect).map({ $0.lowercased() == "100-continue" }) == true { writeContinue() }
            ensureTimer(by: .now() + settings.clientBodyTimeout)
            return
        }
        start(head, framing, keepAlive: keepAlive, formBody: nil)
    }

    /// Whether a request's body is read before routing: a form body (`post_arg_*` reads
    /// `application/x-www-form-urlencoded` only, as APISIX) that may fit.
    static func routesOnFormBody(_ head: RequestHead, _ framing: BodyFraming) -> Bool {
        switch framing {
        case .length(let n) where n > 0 && n <= maxFormBodyForRouting: break
        case .chunked: break
        default: return false
        }
        guard let type = head.fields.first(.contentType) else { return false }
        return type.lowercased().hasPrefix("application/x-www-form-urlencoded")
    }

    private func start(_ head: RequestHead, _ framing: BodyFraming, keepAlive: Bool, formBody: String?) {
        variables.formBody = formBody
        var refusal: ExchangeRouting.Refusal? = nil
        let ex = ProxyExchange(downstream: self, loop: loop) {
            ExchangeRouting.route(
                head, framing: framing, keepAlive: keepAlive, connection: info, snapshot: loop.snapshot, variables: variables,
                balancers: loop, limits: limits, now: .now(), refusal: &refusal)
        }
        exchange = ex
        if let refusal {
            ex.answer(refusal.status, refusal.message, close: refusal.close, page: refusal.page)
            return
        }
        // Inside a read burst, upstream writes are flushed once at its end.
        ex.inReadBurst = inReadBurst
        ex.send(.start)
    }

    /// A request that cannot be read: answered, then the connection closes (its framing is
    /// lost). A response already under way is cut instead.
    private func refuse(_ error: HTTP1ReadError) {
        guard let context else { return }
        inbound = nil
        if let ex = exchange {
            exchange = nil
            ex.clientClosed()
            closing = true
            context.close(promise: nil)
            return
        }
        // NGINX answers these with its page; the reader's reason is not sent.
        let status: HTTPResponseStatus
        switch error {
        case .uriTooLong: status = .uriTooLong
        case .headersTooLarge: status = .requestHeaderFieldsTooLarge
        case .badRequest, .badResponse: status = .badRequest
        case .notImplemented: status = .notImplemented
        }
        closing = true
        let body = LocalResponse.page(Int(status.code))
        requestMethod = .GET
        closeAfterResponse = true
        writeHead(LocalResponse.head(status, body: body), close: true)
        writeBody(body)
        loop.writeAccessLogForUnreadRequest(info, status: Int(status.code), bodyBytes: body.readableBytes, startedAt: idleSince)
        closeAfterFlush(context)
    }

    private func closeAfterFlush(_ context: ChannelHandlerContext) {
        closing = true
        context.writeAndFlush(wrapOutboundOut(ByteBuffer())).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }

    // MARK: Timeouts

    /// Makes sure the connection timer fires no later than `deadline`.
    private func ensureTimer(by deadline: NIODeadline) {
        guard let context, timer == nil || deadline < timerDeadline else { return }
        timer?.cancel()
        timerDeadline = deadline
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            self.timer = nil
            self.timerDeadline = .distantFuture
            self.timerFired()
        }
    }

    private func timerFired() {
        guard let context, !closing else { return }
        let now = NIODeadline.now()
        if let held = heldForBody {
            // A body held for routing that stops coming: the connection closes, as an
            // exchange's client body timeout would end it.
            if now >= held.since + settings.clientBodyTimeout {
                closing = true
                context.close(promise: nil)
            } else {
                ensureTimer(by: held.since + settings.clientBodyTimeout)
            }
            return
        }
        if let ex = exchange {
            ex.timerFired()
            if let ex = exchange, !ex.isEnded {
                ensureTimer(by: ex.nextDeadline ?? now + settings.clientHeaderTimeout)
            }
            return
        }
        // Waiting for a request head: the header timeout once a head has begun (or before
        // the first), the keep-alive idle timeout between requests.
        let limit = idleSince + (servedAny && reader.isIdle && inbound == nil ? settings.keepaliveTimeout : settings.clientHeaderTimeout)
        if now >= limit {
            closing = true
            context.close(promise: nil)
        } else {
            ensureTimer(by: limit)
        }
    }
}
