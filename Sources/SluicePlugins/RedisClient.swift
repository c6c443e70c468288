import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A RESP value as Redis answers.
public indirect enum RESPValue: Sendable, Equatable {
    case simple(String)
    case error(String)
    case integer(Int64)
    case bulk([UInt8]?)
    case array([RESPValue]?)

    public var int: Int64? {
        switch self {
        case .integer(let i): return i
        case .bulk(let b?): return Int64(String(decoding: b, as: UTF8.self))
        case .simple(let s): return Int64(s)
        default: return nil
        }
    }
}

public struct RedisError: Error, Sendable, CustomStringConvertible {
    public var description: String
}

/// Parses RESP2 replies; incomplete input waits for more bytes. What the server sends is
/// bounded as Redis bounds it (`proto-max-bulk-len` 512 MB), arrays at 1M items and 16
/// levels: a broken or hostile server gets the connection closed, never a trap, an
/// allocation it sizes, or a recursion it deepens.
struct RESPDecoder: ByteToMessageDecoder {
    typealias InboundOut = RESPValue
    static let maxBulk = 512 * 1024 * 1024
    static let maxArray = 1 << 20
    static let maxDepth = 16
    /// A line (a simple string, an error, a length) longer than this without CR LF is refused.
    static let maxLine = 64 * 1024

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        var copy = buffer
        guard let value = try Self.parse(&copy) else { return .needMoreData }
        buffer = copy
        context.fireChannelRead(NIOAny(value))
        return .continue
    }

    static func line(_ b: inout ByteBuffer) throws -> String? {
        let view = b.readableBytesView
        guard let cr = view.firstIndex(of: UInt8(ascii: "\r")), cr + 1 < view.endIndex else {
            if view.count > maxLine { throw RedisError(description: "reply line longer than \(maxLine) bytes") }
            return nil
        }
        guard view[cr + 1] == UInt8(ascii: "\n") else { throw RedisError(description: "reply line with CR not followed by LF") }
        let s = b.readString(length: cr - view.startIndex)
        b.moveReaderIndex(forwardBy: 2)
        return s
    }

    static func parse(_ b: inout ByteBuffer, depth: Int = 0) throws -> RESPValue? {
        guard depth <= maxDepth else { throw RedisError(description: "reply nested deeper than \(maxDepth) levels") }
        guard let type = b.readInteger(as: UInt8.self) else { return nil }
        guard let text = try line(&b) else { return nil }
        switch type {
        case UInt8(ascii: "+"): return .simple(text)
        case UInt8(ascii: "-"): return .error(text)
        case UInt8(ascii: ":"):
            guard let i = Int64(text) else { throw RedisError(description: "bad integer reply \(text)") }
            return .integer(i)
        case UInt8(ascii: "$"):
            guard let n = Int(text), n <= maxBulk else { throw RedisError(description: "bad bulk length \(text)") }
            if n < 0 { return .bulk(nil) }
            guard b.readableBytes >= n + 2, let bytes = b.readBytes(length: n) else { return nil }
            b.moveReaderIndex(forwardBy: 2)
            return .bulk(bytes)
        case UInt8(ascii: "*"):
            guard let n = Int(text), n <= maxArray else { throw RedisError(description: "bad array length \(text)") }
            if n < 0 { return .array(nil) }
            var items: [RESPValue] = []
            for _ in 0..<n {
                guard let v = try parse(&b, depth: depth + 1) else { return nil }
                items.append(v)
            }
            return .array(items)
        default:
            throw RedisError(description: "unknown reply type byte \(type)")
        }
    }
}

/// Matches replies to commands in order (Redis answers a connection's commands in order).
final class RESPHandler: ChannelInboundHandler {
    typealias InboundIn = RESPValue
    var waiting = CircularBuffer<EventLoopPromise<RESPValue>>()

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let v = unwrapInboundIn(data)
        guard let p = waiting.popFirst() else { return }
        if case .error(let e) = v { p.fail(RedisError(description: e)) } else { p.succeed(v) }
    }

    func failAll(_ error: Error) {
        while let p = waiting.popFirst() { p.fail(error) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(RedisError(description: "the connection to redis closed"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        failAll(error)
        context.close(promise: nil)
    }
}

/// One pipelined connection to a Redis server, shared by every event loop of the gateway:
/// commands from any thread are queued and written on the connection's own loop, so replies
/// match commands in order. It reconnects on the next command after a failure; a command
/// without a reply within `timeout` closes the connection (later replies could no longer be
/// matched).
public final class RedisClient: Sendable {
    public struct Options: Sendable, Hashable {
        public var host: String
        public var port: Int
        public var username: String?
        public var password: String?
        public var database: Int
        public var timeout: TimeAmount
        public init(host: String, port: Int = 6379, username: String? = nil, password: String? = nil, database: Int = 0, timeout: TimeAmount = .seconds(1)) {
            self.host = host
            self.port = min(max(port, 1), 65535)
            self.username = username
            self.password = password
            self.database = database
            self.timeout = timeout
        }
    }

    public let options: Options
    let eventLoop: EventLoop
    private let state = NIOLockedValueBox<EventLoopFuture<(Channel, NIOLoopBound<RESPHandler>)>?>(nil)

    public init(_ options: Options, eventLoop: EventLoop = MultiThreadedEventLoopGroup.singleton.next()) {
        self.options = options
        self.eventLoop = eventLoop
    }

    static func encode(_ args: [String], into buffer: inout ByteBuffer) {
        buffer.writeString("*\(args.count)\r\n")
        for a in args {
            buffer.writeString("$\(a.utf8.count)\r\n")
            buffer.writeString(a)
            buffer.writeString("\r\n")
        }
    }

    private func connection() -> EventLoopFuture<(Channel, NIOLoopBound<RESPHandler>)> {
        state.withLockedValue { current in
            if let c = current { return c }
            let options = self.options
            let loop = eventLoop
            let f = ClientBootstrap(group: loop)
                .connectTimeout(options.timeout)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(RESPDecoder()))
                        try channel.pipeline.syncOperations.addHandler(RESPHandler())
                    }
                }
                .connect(host: options.host, port: options.port)
                .flatMap { channel -> EventLoopFuture<(Channel, NIOLoopBound<RESPHandler>)> in
                    channel.eventLoop.makeCompletedFuture {
                        (channel, NIOLoopBound(try channel.pipeline.syncOperations.handler(type: RESPHandler.self), eventLoop: channel.eventLoop))
                    }
                }
                .flatMap { pair -> EventLoopFuture<(Channel, NIOLoopBound<RESPHandler>)> in
                    // AUTH and SELECT before anything else.
                    var setup: [[String]] = []
                    if let password = options.password, !password.isEmpty {
                        setup.append(options.username.map { ["AUTH", $0, password] } ?? ["AUTH", password])
                    }
                    if options.database != 0 { setup.append(["SELECT", String(options.database)]) }
                    let sent = setup.map { Self.send($0, on: pair.0, pair.1, timeout: options.timeout) }
                    return EventLoopFuture.andAllSucceed(sent, on: loop).map { pair }
                }
            f.whenComplete { [self] result in
                switch result {
                case .success(let (channel, _)):
                    channel.closeFuture.whenComplete { _ in self.reset(f) }
                case .failure:
                    self.reset(f)
                }
            }
            current = f
            return f
        }
    }

    private func reset(_ f: EventLoopFuture<(Channel, NIOLoopBound<RESPHandler>)>) {
        state.withLockedValue { current in
            if current === f { current = nil }
        }
    }

    static func send(_ args: [String], on channel: Channel, _ bound: NIOLoopBound<RESPHandler>, timeout: TimeAmount) -> EventLoopFuture<RESPValue> {
        let loop = channel.eventLoop
        let promise = loop.makePromise(of: RESPValue.self)
        loop.execute {
            var buffer = channel.allocator.buffer(capacity: 64)
            encode(args, into: &buffer)
            bound.value.waiting.append(promise)
            channel.writeAndFlush(buffer, promise: nil)
            let timer = loop.scheduleTask(in: timeout) {
                bound.value.failAll(RedisError(description: "redis did not answer within \(timeout)"))
                channel.close(promise: nil)
            }
            promise.futureResult.whenComplete { _ in timer.cancel() }
        }
        return promise.futureResult
    }

    /// Sends one command; the future completes on the client's event loop.
    public func command(_ args: [String]) -> EventLoopFuture<RESPValue> {
        let timeout = options.timeout
        return connection().flatMap { channel, handler in Self.send(args, on: channel, handler, timeout: timeout) }
    }

    public func close() {
        let f = state.withLockedValue { c -> EventLoopFuture<(Channel, NIOLoopBound<RESPHandler>)>? in
            defer { c = nil }
            return c
        }
        f?.whenSuccess { channel, _ in channel.close(promise: nil) }
    }
}
