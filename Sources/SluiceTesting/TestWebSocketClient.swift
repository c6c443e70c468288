import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

/// A WebSocket client (RFC 6455 handshake and framing from NIOWebSocket) for tests.
public final class TestWebSocketClient: Sendable {
    private let channel: Channel
    private let inbox: NIOLockedValueBox<Inbox>

    struct Inbox {
        var messages: [String] = []
        var waiters: [EventLoopPromise<String>] = []
        var closed = false
    }

    public static func connect(port: Int, path: String, host: String = "test.local", group: EventLoopGroup) async throws -> TestWebSocketClient {
        let inbox = NIOLockedValueBox(Inbox())
        let upgraded = group.next().makePromise(of: Void.self)
        let bootstrap = ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let upgrader = NIOWebSocketClientUpgrader(
                        requestKey: "dGhlIHNhbXBsZSBub25jZQ==",
                        upgradePipelineHandler: { channel, _ in
                            channel.eventLoop.makeCompletedFuture {
                                let sync = channel.pipeline.syncOperations
                                if let detector = try? sync.context(handlerType: UpgradeFailureDetector.self) {
                                    sync.removeHandler(context: detector, promise: nil)
                                }
                                try sync.addHandler(FrameCollector(inbox: inbox))
                                upgraded.succeed(())
                            }
                        })
                    try channel.pipeline.syncOperations.addHTTPClientHandlers(
                        withClientUpgrade: (upgraders: [upgrader], completionHandler: { _ in }))
                    try channel.pipeline.syncOperations.addHandler(UpgradeFailureDetector(upgraded: upgraded))
                }
            }
        let channel: Channel
        do {
            channel = try await bootstrap.connect(host: "127.0.0.1", port: port).get()
        } catch {
            upgraded.fail(error)
            throw error
        }
        let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: HTTPHeaders([("Host", host), ("Content-Length", "0")]))
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        try await channel.writeAndFlush(HTTPClientRequestPart.end(nil))
        let timer = channel.eventLoop.scheduleTask(in: .seconds(10)) {
            upgraded.fail(TestClientError(description: "WebSocket upgrade did not complete"))
        }
        defer { timer.cancel() }
        try await upgraded.futureResult.get()
        return TestWebSocketClient(channel: channel, inbox: inbox)
    }

    private init(channel: Channel, inbox: NIOLockedValueBox<Inbox>) {
        self.channel = channel
        self.inbox = inbox
    }

    public var isActive: Bool { channel.isActive }

    public func send(_ text: String) async throws {
        let buffer = channel.allocator.buffer(string: text)
        let frame = WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: buffer)
        try await channel.writeAndFlush(frame)
    }

    /// The next text message, or an error after `timeout`.
    public func receive(timeout: TimeAmount = .seconds(10)) async throws -> String {
        let promise = channel.eventLoop.makePromise(of: String.self)
        inbox.withLockedValue { box in
            if !box.messages.isEmpty {
                promise.succeed(box.messages.removeFirst())
            } else if box.closed {
                promise.fail(TestClientError(description: "WebSocket closed"))
            } else {
                box.waiters.append(promise)
            }
        }
        let timer = channel.eventLoop.scheduleTask(in: timeout) {
            promise.fail(TestClientError(description: "no WebSocket message within \(timeout)"))
        }
        defer { timer.cancel() }
        return try await promise.futureResult.get()
    }

    public func close() async {
        try? await channel.close()
    }

    final class FrameCollector: ChannelInboundHandler {
        typealias InboundIn = WebSocketFrame
        let inbox: NIOLockedValueBox<Inbox>
        init(inbox: NIOLockedValueBox<Inbox>) { self.inbox = inbox }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let frame = unwrapInboundIn(data)
            guard frame.opcode == .text else { return }
            let text = String(buffer: frame.unmaskedData)
            inbox.withLockedValue { box in
                if box.waiters.isEmpty { box.messages.append(text) } else { box.waiters.removeFirst().succeed(text) }
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            inbox.withLockedValue { box in
                box.closed = true
                for w in box.waiters { w.fail(TestClientError(description: "WebSocket closed")) }
                box.waiters.removeAll()
            }
        }
    }

    /// Fails the upgrade when the server answers anything but 101.
    final class UpgradeFailureDetector: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = HTTPClientResponsePart
        let upgraded: EventLoopPromise<Void>
        init(upgraded: EventLoopPromise<Void>) { self.upgraded = upgraded }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            if case .head(let h) = unwrapInboundIn(data) {
                upgraded.fail(TestClientError(description: "upgrade refused with \(h.status.code)"))
            }
        }
        func errorCaught(context: ChannelHandlerContext, error: Error) {
            upgraded.fail(error)
        }
    }
}
