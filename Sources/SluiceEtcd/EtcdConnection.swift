import NIOCore
import NIOHTTP1
import NIOPosix
import SluiceCore

/// An error from etcd or from reaching it.
public struct EtcdError: Error, Sendable, CustomStringConvertible {
    public enum Code: Sendable, Hashable {
        /// No endpoint answered.
        case unavailable
        /// etcd answered with an error status.
        case server(status: Int)
        /// The answer was not what the gateway documents.
        case protocolError
        /// The watch's start revision was compacted away.
        case compacted(revision: Int64)
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}

/// One keep-alive HTTP/1.1 connection to an etcd member's JSON gateway (`/v3/...`), one
/// request at a time. Unary calls only; watches use `EtcdWatchConnection`.
final class EtcdConnection: Sendable {
    private let channel: Channel
    private let collector: NIOLoopBound<UnaryCollector>
    let endpoint: EtcdEndpoint

    static func connect(_ endpoint: EtcdEndpoint, group: EventLoopGroup, timeout: TimeAmount) async throws -> EtcdConnection {
        let channel = try await ClientBootstrap(group: group)
            .connectTimeout(timeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(UnaryCollector())
                }
            }
            .connect(host: endpoint.host, port: endpoint.port).get()
        let collector = try await channel.eventLoop.submit {
            NIOLoopBound(try channel.pipeline.syncOperations.handler(type: UnaryCollector.self), eventLoop: channel.eventLoop)
        }.get()
        return EtcdConnection(channel: channel, collector: collector, endpoint: endpoint)
    }

    private init(channel: Channel, collector: NIOLoopBound<UnaryCollector>, endpoint: EtcdEndpoint) {
        self.channel = channel
        self.collector = collector
        self.endpoint = endpoint
    }

    var isActive: Bool { channel.isActive }

    /// POSTs `body` to `path` and returns the decoded JSON answer.
    func post(_ path: String, _ body: JSONValue, timeout: TimeAmount) async throws -> JSONValue {
        let bytes = body.serializedBytes()
        let head = HTTPRequestHead(
            version: .http1_1, method: .POST, uri: path,
            headers: HTTPHeaders([
                ("Host", endpoint.description), ("Content-Type", "application/json"), ("Content-Length", String(bytes.count)),
            ]))
        let channel = self.channel
        let collector = self.collector
        let future: EventLoopFuture<(Int, [UInt8])> = channel.eventLoop.flatSubmit {
            guard channel.isActive else {
                return channel.eventLoop.makeFailedFuture(EtcdError(.unavailable, "connection to etcd \(self.endpoint) is closed"))
            }
            let promise = channel.eventLoop.makePromise(of: (Int, [UInt8]).self)
            collector.value.waiting.append(promise)
            channel.write(HTTPClientRequestPart.head(head), promise: nil)
            channel.write(HTTPClientRequestPart.body(.byteBuffer(channel.allocator.buffer(bytes: bytes))), promise: nil)
            channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
            return promise.futureResult
        }
        let timer = channel.eventLoop.scheduleTask(in: timeout) {
            collector.value.failAll(EtcdError(.unavailable, "etcd \(self.endpoint) did not answer \(path) in time"))
            channel.close(promise: nil)
        }
        defer { timer.cancel() }
        let (status, data) = try await future.get()
        let json: JSONValue
        do {
            json = try JSONValue.parse(data)
        } catch {
            throw EtcdError(.protocolError, "etcd \(endpoint) answered \(path) with invalid JSON: \(error)")
        }
        guard status == 200 else {
            let message = json["message"]?.stringValue ?? json["error"]?.stringValue ?? "status \(status)"
            throw EtcdError(.server(status: status), "etcd \(endpoint) \(path): \(message)")
        }
        return json
    }

    func close() async {
        try? await channel.close()
    }
}

final class UnaryCollector: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart

    var waiting: [EventLoopPromise<(Int, [UInt8])>] = []
    private var status = 0
    private var body: [UInt8] = []

    func failAll(_ error: Error) {
        let w = waiting
        waiting.removeAll()
        for p in w { p.fail(error) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            status = Int(h.status.code)
            body = []
        case .body(let b):
            body += b.readableBytesView
        case .end:
            guard !waiting.isEmpty else { return }
            waiting.removeFirst().succeed((status, body))
            body = []
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(EtcdError(.unavailable, "etcd closed the connection"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        failAll(EtcdError(.unavailable, "etcd connection failed: \(error)"))
        context.close(promise: nil)
    }
}

/// `host:port` of one etcd member, parsed from `http://127.0.0.1:2379`.
public struct EtcdEndpoint: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public init?(url: String) {
        var rest = Substring(url)
        if rest.hasPrefix("http://") { rest = rest.dropFirst(7) } else if rest.hasPrefix("https://") { return nil }
        if let slash = rest.firstIndex(of: "/") { rest = rest[..<slash] }
        guard let (host, port) = UpstreamNode.splitAddress(String(rest)), !host.isEmpty else { return nil }
        self.host = host
        self.port = port ?? 2379
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
