import NIOCore
import NIOHTTP1

/// A request head as the exchange sees it, whatever protocol carried it (HTTP/1.1 now; an
/// HTTP/2 stream or a gRPC call later). `target` is the request target as received.
public struct RequestHead: Sendable {
    public var method: HTTPMethod
    public var target: String
    public var version: HTTPVersion
    public var fields: HeaderBlock

    public init(method: HTTPMethod, target: String, version: HTTPVersion, fields: HeaderBlock) {
        self.method = method
        self.target = target
        self.version = version
        self.fields = fields
    }

    /// Bytes of the head on an HTTP/1 wire: request line and fields.
    public var wireSize: Int { method.rawValue.utf8.count &+ target.utf8.count &+ 12 &+ fields.wireSize }
}

/// A response head, protocol-neutral. `status` is 100...599.
public struct ResponseHead: Sendable {
    public var status: Int
    public var version: HTTPVersion
    public var fields: HeaderBlock

    public init(status: Int, version: HTTPVersion = .http1_1, fields: HeaderBlock) {
        self.status = status
        self.version = version
        self.fields = fields
    }

    public var wireSize: Int { 17 &+ HTTPResponseStatus(statusCode: min(max(status, 100), 599)).reasonPhrase.utf8.count &+ fields.wireSize }
}

/// One part of a message, in order: a head, any number of body parts, then an end with
/// optional trailers. The downstream adapters and the upstream attempts speak it, so the
/// exchange does not know which protocol is on either side.
public enum MessagePart<Head: Sendable>: Sendable {
    case head(Head)
    case body(ByteBuffer)
    case end(HeaderBlock?)
}

/// How a message's body is delimited, as its head says.
public enum BodyFraming: Sendable, Equatable {
    case none
    case length(Int)
    case chunked
    /// A response body that ends when the connection closes (HTTP/1.0 style).
    case untilClose
}
