import NIOHTTP1

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
    /// nil: not sent (a plugin removed it).
    public var realIP: String?
    public var proto: String?
    public var forwardedHost: String?
    public var port: String?
    /// The `Upgrade` value forwarded (with `Connection: upgrade`), or nil.
    public var upgrade: String?

    /// What proxy-rewrite set (a value) or removed (nil) of X-Real-IP and X-Forwarded-Proto,
    /// -Host and -Port: its word wins over the gateway's, as in APISIX.
    public mutating func override(_ name: String, _ value: String?) {
        switch name.lowercased() {
        case "x-real-ip": realIP = value
        case "x-forwarded-proto": proto = value
        case "x-forwarded-host": forwardedHost = value
        case "x-forwarded-port": port = value
        default: break
        }
    }

    /// Each field after `Host`, in the order written.
    @inline(__always)
    public func forEach(_ body: (StaticString, String) -> Void) {
        body("X-Forwarded-For", forwardedFor)
        if let realIP { body("X-Real-IP", realIP) }
        if let proto { body("X-Forwarded-Proto", proto) }
        if let forwardedHost { body("X-Forwarded-Host", forwardedHost) }
        if let port { body("X-Forwarded-Port", port) }
        if let upgrade {
            body("Connection", "upgrade")
            body("Upgrade", upgrade)
        }
    }
}
