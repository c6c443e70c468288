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

/// The head of a request as the gateway sends it upstream: the fields it received, less the
/// ones that do not cross (`ForwardingHeaders.isDroppedRequestField`, and those `Connection`
/// names in `skipped`), plus the gateway's own. An adapter writes it without building a new
/// field list.
public struct UpstreamRequestHead: Sendable {
    public var method: HTTPMethod
    public var target: String
    public var fields: HeaderBlock
    /// Lower-case names listed in `Connection`, not forwarded.
    public var skipped: [String]
    public var gateway: GatewayFields

    /// Whether `field` of `fields` is forwarded.
    @inline(__always)
    public func forwards(_ field: HeaderBlock.Field) -> Bool {
        if ForwardingHeaders.isDroppedRequestField(field.kind) { return false }
        if !skipped.isEmpty, field.kind == .other, skipped.contains(where: { fields.matches(field, $0) }) { return false }
        return true
    }

    /// The fields as sent, as one block (tests, logs, protocols that need a list).
    public var sentFields: HeaderBlock {
        var out = HeaderBlock()
        out.appendUnchecked(name: "Host", value: gateway.host)
        for f in fields.fields where forwards(f) { out.append(f, of: fields) }
        gateway.forEach { out.appendUnchecked(name: String(describing: $0), value: $1) }
        return out
    }
}

/// The fields the gateway adds to a request it forwards.
public struct GatewayFields: Sendable {
    public var host: String
    public var forwardedFor: String
    public var realIP: String
    public var proto: String
    public var forwardedHost: String?
    public var port: String
    /// The `Upgrade` value forwarded (with `Connection: upgrade`), or nil.
    public var upgrade: String?

    /// Each field after `Host`, in the order written.
    @inline(__always)
    public func forEach(_ body: (StaticString, String) -> Void) {
        body("X-Forwarded-For", forwardedFor)
        body("X-Real-IP", realIP)
        body("X-Forwarded-Proto", proto)
        if let forwardedHost { body("X-Forwarded-Host", forwardedHost) }
        body("X-Forwarded-Port", port)
        if let upgrade {
            body("Connection", "upgrade")
            body("Upgrade", upgrade)
        }
    }
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
