import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

/// A complete HTTP response as a test sees it.
public struct TestResponse: Sendable {
    public var status: HTTPResponseStatus
    public var headers: HTTPHeaders
    public var body: ByteBuffer
    public var bodyString: String { String(buffer: body) }
}

public struct TestClientError: Error, CustomStringConvertible {
    public var description: String
    public init(description: String) { self.description = description }
}

/// A keep-alive HTTP/1.1 client on one connection, one request at a time.
public final class TestHTTPClient: Sendable {
    private let channel: Channel
    private let collector: NIOLoopBound<ResponseCollector>

    public static func connect(port: Int, group: EventLoopGroup) async throws -> TestHTTPClient {
        let channel = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(ResponseCollector())
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        let collector = try await channel.eventLoop.submit {
            NIOLoopBound(try channel.pipeline.syncOperations.handler(type: ResponseCollector.self), eventLoop: channel.eventLoop)
        }.get()
        return TestHTTPClient(channel: channel, collector: collector)
    }

    private init(channel: Channel, collector: NIOLoopBound<ResponseCollector>) {
        self.channel = channel
        self.collector = collector
    }

    public var isActive: Bool { channel.isActive }

    /// Sends one request; the body goes out in `chunkSize` pieces (chunked when
    /// `chunked` is set, with Content-Length otherwise). Fails after `timeout`.
    public func request(
        _ method: HTTPMethod = .GET, _ uri: String, host: String = "test.local", headers: [(String, String)] = [],
        body: ByteBuffer? = nil, chunked: Bool = false, chunkSize: Int = 64 * 1024, timeout: TimeAmount = .seconds(30)
    ) async throws -> TestResponse {
        var h = HTTPHeaders([("Host", host)])
        for (k, v) in headers { h.add(name: k, value: v) }
        if let body {
            if chunked {
                h.add(name: "Transfer-Encoding", value: "chunked")
            } else if !h.contains(name: "content-length") {
                h.add(name: "Content-Length", value: String(body.readableBytes))
            }
        }
        let head = HTTPRequestHead(version: .http1_1, method: method, uri: uri, headers: h)
        let collector = self.collector
        let channel = self.channel
        let future: EventLoopFuture<TestResponse> = channel.eventLoop.flatSubmit {
            guard channel.isActive else {
                return channel.eventLoop.makeFailedFuture(TestClientError(description: "connection is closed"))
            }
            let promise = channel.eventLoop.makePromise(of: TestResponse.self)
            collector.value.enqueue(promise, method: method)
            channel.write(HTTPClientRequestPart.head(head), promise: nil)
            if var remaining = body {
                while remaining.readableBytes > 0 {
                    let piece = remaining.readSlice(length: min(chunkSize, remaining.readableBytes))!
                    channel.write(HTTPClientRequestPart.body(.byteBuffer(piece)), promise: nil)
                }
            }
            channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
            return promise.futureResult
        }
        let timer = channel.eventLoop.scheduleTask(in: timeout) {
            collector.value.failAll(TestClientError(description: "no response to \(method) \(uri) within \(timeout)"))
        }
        defer { timer.cancel() }
        return try await future.get()
    }

    public func close() async {
        try? await channel.close()
    }
}

final class ResponseCollector: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart

    private var waiting: [EventLoopPromise<TestResponse>] = []
    private var head: HTTPResponseHead?
    private var body: ByteBuffer?

    func enqueue(_ promise: EventLoopPromise<TestResponse>, method: HTTPMethod) { waiting.append(promise) }

    func failAll(_ error: Error) {
        let w = waiting
        waiting.removeAll()
        for p in w { p.fail(error) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body = context.channel.allocator.buffer(capacity: 0)
        case .body(var b):
            body?.writeBuffer(&b)
        case .end:
            guard let h = head, !waiting.isEmpty else { return }
            let p = waiting.removeFirst()
            p.succeed(TestResponse(status: h.status, headers: h.headers, body: body ?? ByteBuffer()))
            head = nil
            body = nil
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(TestClientError(description: "connection closed before a complete response"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        failAll(error)
        context.close(promise: nil)
    }
}

/// Sends raw bytes and returns everything the server sends back until it closes the
/// connection, or until `until` says the bytes so far are enough, or `timeout`.
public enum RawHTTP {
    public static func exchange(
        port: Int, group: EventLoopGroup, _ request: String, timeout: TimeAmount = .seconds(10),
        until: (@Sendable (String) -> Bool)? = nil
    ) async throws -> (response: String, closedByServer: Bool) {
        let box = NIOLockedValueBox((bytes: [UInt8](), closed: false))
        let done = group.next().makePromise(of: Void.self)
        let channel: Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(RawCollector(box: box, done: done, until: until))
                    }
                }
                .connect(host: "127.0.0.1", port: port).get()
        } catch {
            done.succeed(())  // never leave a promise behind
            throw error
        }
        var buffer = channel.allocator.buffer(capacity: request.utf8.count)
        buffer.writeString(request)
        try await channel.writeAndFlush(buffer)
        let timer = channel.eventLoop.scheduleTask(in: timeout) { done.succeed(()) }
        try await done.futureResult.get()
        timer.cancel()
        try? await channel.close()
        let (bytes, closed) = box.withLockedValue { ($0.bytes, $0.closed) }
        return (String(decoding: bytes, as: UTF8.self), closed)
    }

    final class RawCollector: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        let box: NIOLockedValueBox<(bytes: [UInt8], closed: Bool)>
        let done: EventLoopPromise<Void>
        let until: (@Sendable (String) -> Bool)?

        init(box: NIOLockedValueBox<(bytes: [UInt8], closed: Bool)>, done: EventLoopPromise<Void>, until: (@Sendable (String) -> Bool)?) {
            self.box = box
            self.done = done
            self.until = until
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let buffer = unwrapInboundIn(data)
            let all = box.withLockedValue { state -> [UInt8] in
                state.bytes.append(contentsOf: buffer.readableBytesView)
                return state.bytes
            }
            if let until, until(String(decoding: all, as: UTF8.self)) { done.succeed(()) }
        }

        func channelInactive(context: ChannelHandlerContext) {
            box.withLockedValue { $0.closed = true }
            done.succeed(())
        }

        func errorCaught(context: ChannelHandlerContext, error: Error) {
            context.close(promise: nil)
        }
    }
}

/// Downloads a response while reading slowly (one read per `interval`), discarding the body,
/// to check that a proxy in between slows its upstream instead of buffering the difference.
public enum SlowReader {
    public static func download(
        port: Int, group: EventLoopGroup, path: String, interval: TimeAmount, timeout: TimeAmount = .seconds(120)
    ) async throws -> Int {
        let done = group.next().makePromise(of: Int.self)
        let bootstrap = ClientBootstrap(group: group)
            .channelOption(.autoRead, value: false)
            .channelOption(.socketOption(.so_rcvbuf), value: 64 * 1024)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(SlowBodyCounter(done: done, interval: interval))
                }
            }
        let channel: Channel
        do {
            channel = try await bootstrap.connect(host: "127.0.0.1", port: port).get()
        } catch {
            done.fail(error)
            throw error
        }
        let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: HTTPHeaders([("Host", "test.local")]))
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        try await channel.writeAndFlush(HTTPClientRequestPart.end(nil))
        channel.read()
        let timer = channel.eventLoop.scheduleTask(in: timeout) { done.fail(TestClientError(description: "slow download timed out")) }
        defer { timer.cancel() }
        let n = try await done.futureResult.get()
        try? await channel.close()
        return n
    }

    final class SlowBodyCounter: ChannelInboundHandler {
        typealias InboundIn = HTTPClientResponsePart
        let done: EventLoopPromise<Int>
        let interval: TimeAmount
        var bytes = 0

        init(done: EventLoopPromise<Int>, interval: TimeAmount) {
            self.done = done
            self.interval = interval
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head: break
            case .body(let b): bytes += b.readableBytes
            case .end: done.succeed(bytes)
            }
        }

        func channelReadComplete(context: ChannelHandlerContext) {
            let channel = context.channel
            context.eventLoop.scheduleTask(in: interval) { channel.read() }
        }

        func channelInactive(context: ChannelHandlerContext) {
            done.fail(TestClientError(description: "closed after \(bytes) bytes"))
        }
    }
}
