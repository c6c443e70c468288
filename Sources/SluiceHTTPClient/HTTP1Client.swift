import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// A response read whole.
public struct HTTP1Response: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: [UInt8]
}

public struct HTTP1ClientError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// How a control-plane client reaches a server over TLS: the trust roots (a PEM bundle, or
/// the system's), an optional client certificate, and whether to skip verification.
/// Building an `NIOSSLContext` parses certificates, so a client builds one and reuses it.
public enum HTTP1TLS {
    public static func context(
        certificateAuthorityPEM: [UInt8]?, certificatePEM: [UInt8]? = nil, keyPEM: [UInt8]? = nil, insecureSkipVerify: Bool = false
    ) throws -> NIOSSLContext {
        var config = TLSConfiguration.makeClientConfiguration()
        if insecureSkipVerify {
            config.certificateVerification = .none
        } else if let ca = certificateAuthorityPEM {
            config.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(ca))
        }
        if let certificatePEM, let keyPEM {
            config.certificateChain = try NIOSSLCertificate.fromPEMBytes(certificatePEM).map { .certificate($0) }
            config.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: keyPEM, format: .pem))
        }
        return try NIOSSLContext(configuration: config)
    }
}

/// Bytes read from the network by the connections it is given to (after TLS), for
/// reporting what a watch or a list costs.
public final class ByteCounter: Sendable {
    private let count = NIOLockedValueBox(0)
    public init() {}
    public var value: Int { count.withLockedValue { $0 } }
    public func add(_ n: Int) { count.withLockedValue { $0 += n } }
}

final class ByteCountingHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    let counter: ByteCounter
    init(_ counter: ByteCounter) { self.counter = counter }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        counter.add(unwrapInboundIn(data).readableBytes)
        context.fireChannelRead(data)
    }
}

extension ChannelPipeline.SynchronousOperations {
    /// TLS (when given) and byte counting (when asked) in front of the HTTP client codec.
    func addTransportHandlers(host: String, tls: NIOSSLContext?, counter: ByteCounter?) throws {
        if let tls {
            // An IP literal is not sent as SNI; the certificate is then checked against the
            // peer's address (its IP SANs).
            let isIP = host.contains(":") || host.allSatisfy { $0 == "." || $0.isASCII && $0.isNumber }
            try addHandler(NIOSSLClientHandler(context: tls, serverHostname: isIP ? nil : host))
        }
        if let counter { try addHandler(ByteCountingHandler(counter)) }
        try addHTTPClientHandlers()
    }
}

/// One keep-alive HTTP/1.1 connection for control-plane clients (Kubernetes API, etcd
/// gateway): requests one at a time, responses read whole, plus `stream` for a long
/// response read line by line (watches).
public final class HTTP1Connection: Sendable {
    private let channel: Channel
    private let collector: NIOLoopBound<WholeResponseCollector>
    public let host: String
    public let port: Int

    public static func connect(
        host: String, port: Int, group: EventLoopGroup, tls: NIOSSLContext? = nil, counter: ByteCounter? = nil, timeout: TimeAmount = .seconds(5)
    ) async throws -> HTTP1Connection {
        let channel = try await ClientBootstrap(group: group)
            .connectTimeout(timeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addTransportHandlers(host: host, tls: tls, counter: counter)
                    try channel.pipeline.syncOperations.addHandler(WholeResponseCollector())
                }
            }
            .connect(host: host, port: port).get()
        let collector = try await channel.eventLoop.submit {
            NIOLoopBound(try channel.pipeline.syncOperations.handler(type: WholeResponseCollector.self), eventLoop: channel.eventLoop)
        }.get()
        return HTTP1Connection(channel: channel, collector: collector, host: host, port: port)
    }

    private init(channel: Channel, collector: NIOLoopBound<WholeResponseCollector>, host: String, port: Int) {
        self.channel = channel
        self.collector = collector
        self.host = host
        self.port = port
    }

    public var isActive: Bool { channel.isActive }

    public func request(
        _ method: HTTPMethod, _ path: String, headers extra: [(String, String)] = [], body: [UInt8]? = nil, timeout: TimeAmount = .seconds(30)
    ) async throws -> HTTP1Response {
        var headers = HTTPHeaders([("Host", host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)")])
        for (k, v) in extra { headers.add(name: k, value: v) }
        if let body { headers.add(name: "Content-Length", value: String(body.count)) }
        let head = HTTPRequestHead(version: .http1_1, method: method, uri: path, headers: headers)
        let channel = self.channel
        let collector = self.collector
        let future: EventLoopFuture<HTTP1Response> = channel.eventLoop.flatSubmit {
            guard channel.isActive else { return channel.eventLoop.makeFailedFuture(HTTP1ClientError("connection closed")) }
            let promise = channel.eventLoop.makePromise(of: HTTP1Response.self)
            collector.value.waiting.append(promise)
            channel.write(HTTPClientRequestPart.head(head), promise: nil)
            if let body { channel.write(HTTPClientRequestPart.body(.byteBuffer(channel.allocator.buffer(bytes: body))), promise: nil) }
            channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
            return promise.futureResult
        }
        let timer = channel.eventLoop.scheduleTask(in: timeout) {
            collector.value.failAll(HTTP1ClientError("no answer to \(method.rawValue) \(path) within \(timeout)"))
            channel.close(promise: nil)
        }
        defer { timer.cancel() }
        return try await future.get()
    }

    public func close() async { try? await channel.close() }

    /// Sends one request on a connection of its own and yields the response body line by
    /// line until the server ends it or the stream's consumer goes away. The first element
    /// is the status code as a line `"HTTP <code>"`.
    public static func stream(
        host: String, port: Int, group: EventLoopGroup, tls: NIOSSLContext? = nil, counter: ByteCounter? = nil, method: HTTPMethod = .GET,
        path: String, headers extra: [(String, String)] = [], body: [UInt8]? = nil
    ) -> AsyncThrowingStream<StreamPart, Error> {
        AsyncThrowingStream { continuation in
            let task = Task {
                do {
                    let channel = try await ClientBootstrap(group: group)
                        .connectTimeout(.seconds(5))
                        .channelInitializer { channel in
                            channel.eventLoop.makeCompletedFuture {
                                try channel.pipeline.syncOperations.addTransportHandlers(host: host, tls: tls, counter: counter)
                                try channel.pipeline.syncOperations.addHandler(LineStreamHandler(continuation: continuation))
                            }
                        }
                        .connect(host: host, port: port).get()
                    var headers = HTTPHeaders([("Host", host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)")])
                    for (k, v) in extra { headers.add(name: k, value: v) }
                    if let body { headers.add(name: "Content-Length", value: String(body.count)) }
                    channel.write(HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: method, uri: path, headers: headers)), promise: nil)
                    if let body { channel.write(HTTPClientRequestPart.body(.byteBuffer(channel.allocator.buffer(bytes: body))), promise: nil) }
                    try await channel.writeAndFlush(HTTPClientRequestPart.end(nil))
                    await withTaskCancellationHandler {
                        try? await channel.closeFuture.get()
                    } onCancel: {
                        channel.close(promise: nil)
                    }
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    public enum StreamPart: Sendable {
        case status(Int)
        case line([UInt8])
    }
}

final class WholeResponseCollector: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    /// Far above any list page or etcd range this client reads (pages are bounded by `limit`).
    static let maxBody = 512 << 20
    var waiting: [EventLoopPromise<HTTP1Response>] = []
    private var head: HTTPResponseHead?
    private var body: [UInt8] = []

    func failAll(_ error: Error) {
        let w = waiting
        waiting.removeAll()
        for p in w { p.fail(error) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body = []
        case .body(let b):
            body += b.readableBytesView
            if body.count > Self.maxBody {
                // A misbehaving server cannot make the client buffer without bound.
                failAll(HTTP1ClientError("the response body is larger than \(Self.maxBody) bytes"))
                body = []
                context.close(promise: nil)
            }
        case .end:
            guard let h = head, !waiting.isEmpty else { return }
            waiting.removeFirst().succeed(HTTP1Response(status: Int(h.status.code), headers: h.headers, body: body))
            head = nil
            body = []
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(HTTP1ClientError("the server closed the connection"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        failAll(error)
        context.close(promise: nil)
    }
}

/// Splits a streamed response body into lines (one JSON message each, for Kubernetes and
/// etcd watches), with the status first. A line longer than `maxLine` ends the stream with
/// an error: a server cannot make the client buffer without bound.
public final class LineStreamHandler: ChannelInboundHandler {
    public typealias InboundIn = HTTPClientResponsePart
    let continuation: AsyncThrowingStream<HTTP1Connection.StreamPart, Error>.Continuation
    let maxLine: Int
    /// Said of the connection when it closes before the response ended.
    let closedMessage: String
    private var pending: [UInt8] = []
    private var done = false

    public init(
        continuation: AsyncThrowingStream<HTTP1Connection.StreamPart, Error>.Continuation, maxLine: Int = 64 << 20,
        closedMessage: String = "the stream's connection closed"
    ) {
        self.continuation = continuation
        self.maxLine = maxLine
        self.closedMessage = closedMessage
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !done else { return }
        switch unwrapInboundIn(data) {
        case .head(let h):
            continuation.yield(.status(Int(h.status.code)))
        case .body(let b):
            pending += b.readableBytesView
            var start = 0
            while let nl = pending[start...].firstIndex(of: UInt8(ascii: "\n")) {
                if nl > start { continuation.yield(.line(Array(pending[start..<nl]))) }
                start = nl + 1
            }
            pending.removeFirst(start)
            if pending.count > maxLine {
                finish(HTTP1ClientError("the server sent a line longer than \(maxLine) bytes"))
                context.close(promise: nil)
            }
        case .end:
            if !pending.isEmpty { continuation.yield(.line(pending)) }
            pending = []
            finish(nil)
            context.close(promise: nil)
        }
    }

    private func finish(_ error: Error?) {
        guard !done else { return }
        done = true
        if let error { continuation.finish(throwing: error) } else { continuation.finish() }
    }

    public func channelInactive(context: ChannelHandlerContext) {
        finish(HTTP1ClientError(closedMessage))
        context.fireChannelInactive()
    }

    public func errorCaught(context: ChannelHandlerContext, error: Error) {
        finish(error)
        context.close(promise: nil)
    }
}

