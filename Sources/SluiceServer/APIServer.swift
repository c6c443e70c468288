import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import SluiceAdmin
import SluiceCore

/// Serves an `APIHandler` (Admin API, control API) over HTTP/1.1 with keep-alive. Request
/// bodies are read whole, up to `maxBody` (413 above).
public final class APIServer: Sendable {
    private let channel: Channel
    public var localAddress: SocketAddress? { channel.localAddress }

    public static func start(
        name: String, listen: ListenAddress, handler: any APIHandler, group: EventLoopGroup, maxBody: Int = 1_572_864, logger: Logger
    ) async throws -> APIServer {
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(APIChannelHandler(handler: handler, maxBody: maxBody))
                }
            }
            .bind(host: listen.host, port: listen.port).get()
        logger.info("\(name) listening", metadata: ["address": "\(channel.localAddress.map { "\($0)" } ?? "?")"])
        return APIServer(channel: channel)
    }

    private init(channel: Channel) { self.channel = channel }

    public func close() async {
        try? await channel.close()
    }
}

final class APIChannelHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let handler: any APIHandler
    private let maxBody: Int
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var tooLarge = false
    /// Body bytes announced or received, for the refusal of one too large.
    private var received = 0

    init(handler: any APIHandler, maxBody: Int) {
        self.handler = handler
        self.maxBody = maxBody
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body = []
            tooLarge = false
            received = 0
            if let length = h.headers.first(name: "content-length").flatMap(Int.init), length > maxBody {
                tooLarge = true
                received = length
            }
        case .body(let buffer):
            if tooLarge {
                if received <= maxBody { received &+= buffer.readableBytes }
                return
            }
            if body.count + buffer.readableBytes > maxBody {
                received = body.count &+ buffer.readableBytes
                tooLarge = true
                body = []
                return
            }
            body += buffer.readableBytesView
        case .end:
            guard let h = head else { return }
            head = nil
            let keepAlive = h.isKeepAlive
            if tooLarge {
                // APISIX's answer (t/admin/routes4.t TEST 16): 400, with the size.
                write(
                    APIResponse.error(400, "invalid request body: request size \(received) is greater than the maximum size \(maxBody) allowed"),
                    keepAlive: false, head: h, context: context)
                return
            }
            let request = APIRequest(
                method: h.method.rawValue, uri: h.uri, headers: h.headers.map { ($0.name, $0.value) }, body: body,
                remoteAddress: context.channel.remoteAddress?.ipAddress.flatMap { IPAddress($0) })
            body = []
            let handler = self.handler
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            let promise = context.eventLoop.makePromise(of: APIResponse.self)
            promise.completeWithTask { await handler.handle(request) }
            promise.futureResult.assumeIsolated().whenSuccess { response in
                let (me, ctx) = loopBound.value
                me.write(response, keepAlive: keepAlive, head: h, context: ctx)
            }
        }
    }

    private func write(_ response: APIResponse, keepAlive: Bool, head: HTTPRequestHead, context: ChannelHandlerContext) {
        var bytes: [UInt8]
        var headers = HTTPHeaders()
        if let text = response.text {
            bytes = Array(text.body.utf8)
            headers.add(name: "Content-Type", value: text.contentType)
        } else {
            bytes = response.body.serializedBytes()
            bytes.append(UInt8(ascii: "\n"))
            headers.add(name: "Content-Type", value: "application/json")
        }
        headers.add(name: "Content-Length", value: String(bytes.count))
        headers.add(name: "Server", value: "sluice")
        for (k, v) in response.headers { headers.add(name: k, value: v) }
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        let status = HTTPResponseStatus(statusCode: response.status)
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        if head.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: bytes)))), promise: nil)
        }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive { done.assumeIsolated().whenComplete { _ in context.close(promise: nil) } }
    }
}
