import NIOCore
import NIOSSL
import SluiceCore
import SluiceTLS

/// The first handler of a TLS listener's connection. It reads the client's ClientHello
/// without answering it, looks its server name up in the loop's current snapshot, and then
/// puts the TLS handler for that certificate object (its certificates, client CA and
/// protocol versions) and the HTTP/1.1 adapter in its own place, handing them the bytes read
/// so far. Choosing the context before the handshake starts, rather than inside it, is what
/// lets each `ssls` object have its own mTLS and protocol settings; and since the snapshot is
/// read per connection, a certificate written through the Admin API serves the next
/// handshake while established connections keep the context they started with.
final class TLSHandshakeSelector: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let loop: LoopContext
    private let settings: ListenerSettings
    private let defaultSNI: String?
    private var buffered: ByteBuffer?
    private var timer: Scheduled<Void>?
    private var done = false

    init(loop: LoopContext, settings: ListenerSettings, defaultSNI: String?) {
        self.loop = loop
        self.settings = settings
        self.defaultSNI = defaultSNI
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { startTimer(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        startTimer(context)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    /// The ClientHello must arrive within the header timeout, like a request head.
    private func startTimer(_ context: ChannelHandlerContext) {
        guard timer == nil else { return }
        let ctx = context
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: settings.clientHeaderTimeout) { [self] in
            guard !self.done else { return }
            self.done = true
            ctx.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !done else { return }
        var incoming = unwrapInboundIn(data)
        if buffered == nil {
            buffered = incoming
        } else {
            buffered?.writeBuffer(&incoming)
        }
        guard let bytes = buffered else { return }
        switch ClientHelloReader.read(bytes) {
        case .needMoreBytes:
            return
        case .notTLS:
            if bytes.readableBytes >= 4, let first = bytes.getInteger(at: bytes.readerIndex, as: UInt8.self), first >= 0x41, first <= 0x5A {
                plainHTTP(context)  // a method name: someone typed http:// for this port
            } else {
                refuse(context, alert: TLSAlert.handshakeFailure)
            }
        case .malformed:
            refuse(context, alert: TLSAlert.handshakeFailure)
        case .complete(let hello):
            select(context, hello: hello)
        }
    }

    private func select(_ context: ChannelHandlerContext, hello: ClientHello) {
        let index = loop.snapshot.tls
        var identity = hello.serverName.flatMap { index.lookup($0) }
        if identity == nil, let name = defaultSNI { identity = index.lookup(name) }
        guard let identity else {
            refuse(context, alert: TLSAlert.unrecognizedName)
            return
        }
        done = true
        timer?.cancel()
        timer = nil
        let tlsHandler = NIOSSLServerHandler(context: identity.context(acceptsECDSA: hello.acceptsECDSA))
        let http = HTTP1ServerConnection(
            loop: loop, settings: settings, tls: HTTP1ServerConnection.TLSSetup(identity: identity, serverName: hello.serverName))
        do {
            let pipeline = context.pipeline.syncOperations
            try pipeline.addHandler(tlsHandler, position: .after(self))
            try pipeline.addHandler(http, position: .after(tlsHandler))
        } catch {
            context.close(promise: nil)
            return
        }
        let bytes = buffered
        buffered = nil
        if let bytes { context.fireChannelRead(wrapInboundOut(bytes)) }
        context.fireChannelReadComplete()
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    /// A fatal alert, then close: an unknown name gets `unrecognized_name`, which is what a
    /// client without a matching certificate should be told.
    private func refuse(_ context: ChannelHandlerContext, alert: UInt8) {
        done = true
        buffered = nil
        let bytes = TLSAlert.fatal(alert)
        var out = context.channel.allocator.buffer(capacity: bytes.count)
        out.writeBytes(bytes)
        context.writeAndFlush(wrapOutboundOut(out)).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }

    /// HTTP sent to the TLS port gets an HTTP answer saying so (as NGINX does), then closes.
    private func plainHTTP(_ context: ChannelHandlerContext) {
        done = true
        buffered = nil
        let body = LocalResponse.page(400, .plainHTTPToHTTPS)
        var out = context.channel.allocator.buffer(capacity: body.readableBytes + 128)
        out.writeString(
            "HTTP/1.1 400 Bad Request\r\nServer: \(LocalResponse.server)\r\nContent-Type: \(LocalResponse.htmlType)\r\nContent-Length: \(body.readableBytes)\r\nConnection: close\r\n\r\n")
        out.writeImmutableBuffer(body)
        context.writeAndFlush(wrapOutboundOut(out)).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}

/// A TLS listener: the ClientHello picks the certificate object, then HTTP/1.1 runs over
/// the TLS handler that object's context made.
public struct TLSListenerFactory: ListenerFactory {
    public let settings: ProxySettings
    /// `--tls-default-sni`: the name whose certificate serves clients that send no SNI or
    /// one no object has.
    public let defaultSNI: String?

    public init(settings: ProxySettings, defaultSNI: String?) {
        var s = settings
        s.scheme = "https"
        self.settings = s
        self.defaultSNI = defaultSNI.map { $0.lowercased() }
    }

    public func configure(_ channel: Channel, loop: LoopContext) throws {
        try channel.pipeline.syncOperations.addHandler(TLSHandshakeSelector(loop: loop, settings: settings, defaultSNI: defaultSNI))
        loop.track(channel)
    }
}
