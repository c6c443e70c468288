import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

/// A real HTTP/1.1 origin on 127.0.0.1 for integration tests. Paths:
/// - `/headers`: the request line and headers it received, one per line
/// - `/echo`: the request body streamed back (chunked)
/// - `/bytes/N`: N bytes with Content-Length; `/chunked/N`: N bytes chunked
/// - `/delay/MS`: answers after MS milliseconds
/// - `/status/CODE`: answers with that status
/// - `/sink`: reads the request body slowly (one socket read per millisecond) and answers
///   `received N`
/// - `/ws`: a WebSocket that echoes every text and binary message
/// - `/cached`: `hello world` with an `ETag` and a `Last-Modified`
/// - `/gzip`: `hello world` gzip-compressed, with `Content-Encoding: gzip`
/// - anything else: `ok from NAME`
/// Every response carries `X-Upstream: NAME`.
public final class TestUpstream: Sendable {
    public let name: String
    public let port: Int
    private let channel: Channel
    private let counters: NIOLockedValueBox<(connections: Int, requests: Int)>
    private let closeOnRequest: Bool

    public var connectionsAccepted: Int { counters.withLockedValue { $0.connections } }
    public var requestsServed: Int { counters.withLockedValue { $0.requests } }
    public let host: String
    public var address: String { "\(host):\(port)" }

    /// `hello world`, gzip-compressed (mtime 0).
    public static let gzippedHelloWorld: [UInt8] = [
        31, 139, 8, 0, 0, 0, 0, 0, 2, 255, 203, 72, 205, 201, 201, 87, 40, 207, 47, 202, 73, 1, 0, 133, 17, 74, 13, 11, 0, 0, 0,
    ]

    /// `closeAfterHead`: every connection is closed as soon as a request head arrives
    /// (an upstream that accepts and then fails). `host` may be any loopback address
    /// (`127.0.0.0/8` is all local on Linux), so many "pods" can share one port.
    /// `prepare` runs first on every accepted connection: a test adds its TLS handler there,
    /// which makes this an https origin.
    public static func start(
        name: String, group: EventLoopGroup, closeAfterHead: Bool = false, host: String = "127.0.0.1", port: Int = 0,
        prepare: (@Sendable (Channel) throws -> Void)? = nil
    ) async throws -> TestUpstream {
        let counters = NIOLockedValueBox((connections: 0, requests: 0))
        let children = NIOLockedValueBox([Channel]())
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                counters.withLockedValue { $0.connections += 1 }
                children.withLockedValue { list in
                    list.removeAll { !$0.isActive }
                    list.append(channel)
                }
                return channel.eventLoop.makeCompletedFuture {
                    try prepare?(channel)
                    let upgrader = NIOWebSocketServerUpgrader(
                        shouldUpgrade: { channel, head in
                            channel.eventLoop.makeSucceededFuture(head.uri == "/ws" ? HTTPHeaders() : nil)
                        },
                        upgradePipelineHandler: { channel, _ in
                            channel.eventLoop.makeCompletedFuture {
                                try channel.pipeline.syncOperations.addHandler(WebSocketEchoHandler())
                            }
                        })
                    let handler = OriginHandler(name: name, counters: counters, closeAfterHead: closeAfterHead)
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                        withServerUpgrade: (upgraders: [upgrader], completionHandler: { context in
                            if let ctx = try? context.pipeline.syncOperations.context(handlerType: OriginHandler.self) {
                                context.pipeline.syncOperations.removeHandler(context: ctx, promise: nil)
                            }
                        }))
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
            .bind(host: host, port: port).get()
        guard let bound = channel.localAddress?.port else { throw ChannelError.unknownLocalAddress }
        return TestUpstream(
            name: name, host: host, port: bound, channel: channel, counters: counters, closeOnRequest: closeAfterHead, children: children)
    }

    private let children: NIOLockedValueBox<[Channel]>

    private init(
        name: String, host: String, port: Int, channel: Channel, counters: NIOLockedValueBox<(connections: Int, requests: Int)>, closeOnRequest: Bool,
        children: NIOLockedValueBox<[Channel]>
    ) {
        self.children = children
        self.name = name
        self.host = host
        self.port = port
        self.channel = channel
        self.counters = counters
        self.closeOnRequest = closeOnRequest
    }

    public func stop() async {
        try? await channel.close()
    }

    /// As a crashed server: the listener and every open connection close at once.
    public func kill() async {
        try? await channel.close()
        for c in children.withLockedValue({ $0 }) { try? await c.close() }
    }

    /// A deterministic byte pattern, so a test can check every byte that came through.
    public static func pattern(_ n: Int, allocator: ByteBufferAllocator) -> ByteBuffer {
        OriginHandler.pattern(n, allocator: allocator)
    }
}

final class OriginHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart
    private var slowReading = false

    let name: String
    let counters: NIOLockedValueBox<(connections: Int, requests: Int)>
    let closeAfterHead: Bool
    private var head: HTTPRequestHead?
    private var echoing = false
    private var received = 0

    init(name: String, counters: NIOLockedValueBox<(connections: Int, requests: Int)>, closeAfterHead: Bool) {
        self.name = name
        self.counters = counters
        self.closeAfterHead = closeAfterHead
    }

    private func responseHead(_ status: HTTPResponseStatus, _ extra: [(String, String)] = []) -> HTTPResponseHead {
        var headers = HTTPHeaders([("X-Upstream", name)])
        for (k, v) in extra { headers.add(name: k, value: v) }
        return HTTPResponseHead(version: .http1_1, status: status, headers: headers)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            if closeAfterHead {
                context.close(promise: nil)
                return
            }
            counters.withLockedValue { $0.requests += 1 }
            head = h
            received = 0
            slowReading = h.uri == "/sink"
            if h.uri == "/echo" {
                echoing = true
                context.write(wrapOutboundOut(.head(responseHead(.ok, [("Transfer-Encoding", "chunked")]))), promise: nil)
                context.flush()
            }
        case .body(let buffer):
            received += buffer.readableBytes
            if echoing { context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil) }
        case .end:
            guard let h = head else { return }
            head = nil
            if slowReading {
                slowReading = false
                send(context, .ok, context.channel.allocator.buffer(string: "received \(received)"))
                return
            }
            if echoing {
                echoing = false
                context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
                return
            }
            respond(to: h, context: context)
        }
    }

    /// For `/sink`, each socket read is delayed: the sender has to slow down.
    func read(context: ChannelHandlerContext) {
        guard slowReading else {
            context.read()
            return
        }
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: .milliseconds(1)) { bound.value.read() }
    }

    private func send(_ context: ChannelHandlerContext, _ status: HTTPResponseStatus, _ body: ByteBuffer, chunked: Bool = false, extra: [(String, String)] = []) {
        var headers = extra
        headers.append(chunked ? ("Transfer-Encoding", "chunked") : ("Content-Length", String(body.readableBytes)))
        context.write(wrapOutboundOut(.head(responseHead(status, headers))), promise: nil)
        if body.readableBytes > 0 { context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    private func respond(to h: HTTPRequestHead, context: ChannelHandlerContext) {
        let parts = h.uri.split(separator: "?")[0].split(separator: "/")
        let allocator = context.channel.allocator
        switch (parts.first.map(String.init), parts.count) {
        case ("headers", 1):
            var text = "\(h.method.rawValue) \(h.uri) received=\(received)\n"
            for (k, v) in h.headers { text += "\(k.lowercased()): \(v)\n" }
            send(context, .ok, allocator.buffer(string: text))
        case ("bytes", 2), ("chunked", 2):
            let n = Int(parts[1]) ?? 0
            send(context, .ok, Self.pattern(n, allocator: allocator), chunked: parts[0] == "chunked")
        case ("delay", 2):
            let ms = Int64(parts[1]) ?? 0
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            context.eventLoop.scheduleTask(in: .milliseconds(ms)) {
                let (handler, ctx) = loopBound.value
                handler.send(ctx, .ok, ctx.channel.allocator.buffer(string: "delayed \(ms)ms"))
            }
        case ("cached", 1):
            send(context, .ok, allocator.buffer(string: "hello world"),
                 extra: [("ETag", "\"v1\""), ("Last-Modified", "Thu, 03 Dec 2026 10:00:00 GMT"), ("Content-Type", "text/plain")])
        case ("gzip", 1):
            send(context, .ok, allocator.buffer(bytes: TestUpstream.gzippedHelloWorld), extra: [("Content-Encoding", "gzip"), ("Content-Type", "text/plain")])
        case ("status", 2):
            let code = Int(parts[1]) ?? 500
            send(context, HTTPResponseStatus(statusCode: code), allocator.buffer(string: "status \(code)"))
        default:
            send(context, .ok, allocator.buffer(string: "ok from \(name)"))
        }
    }

    /// A deterministic byte pattern, so a test can check every byte that came through.
    static func pattern(_ n: Int, allocator: ByteBufferAllocator) -> ByteBuffer {
        // The pattern repeats every 256 bytes: write whole periods at a time.
        let period = (0..<256).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        var buffer = allocator.buffer(capacity: n)
        var left = n
        while left > 0 {
            let take = min(left, 256)
            buffer.writeBytes(period[0..<take])
            left -= take
        }
        return buffer
    }
}

final class WebSocketEchoHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text, .binary:
            let reply = WebSocketFrame(fin: true, opcode: frame.opcode, data: frame.unmaskedData)
            context.writeAndFlush(wrapOutboundOut(reply), promise: nil)
        case .connectionClose:
            let reply = WebSocketFrame(fin: true, opcode: .connectionClose, data: frame.unmaskedData)
            context.writeAndFlush(wrapOutboundOut(reply)).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        case .ping:
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
        default:
            break
        }
    }
}
