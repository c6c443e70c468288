import SluiceCore

/// Which header fields cross the gateway, and the ones it adds. Connection-specific fields
/// never cross (RFC 9110 §7.6.1); framing fields are the adapters' business on each side.
enum ForwardingHeaders {
    /// Who the client is, for the forwarding headers.
    struct Client {
        var address: String
        var hostHeader: String?
        var scheme: String
        var serverPort: String
    }

    /// Request fields not forwarded as received: hop-by-hop ones, framing (the upstream side
    /// frames the body itself), `Expect` (the gateway answers 100-continue itself), and those
    /// the gateway sets.
    @inline(__always)
    static func isDroppedRequestField(_ kind: KnownField) -> Bool {
        switch kind {
        case .te, .expect, .trailer, .upgrade, .xRealIP, .connection, .keepAlive, .xForwardedFor, .proxyConnection, .xForwardedHost,
            .xForwardedPort, .xForwardedProto, .proxyAuthenticate, .proxyAuthorization, .transferEncoding, .host:
            return true
        default:
            return false
        }
    }

    /// Response fields not forwarded: hop-by-hop ones and the framing one.
    @inline(__always)
    static func isDroppedResponseField(_ kind: KnownField) -> Bool {
        switch kind {
        case .te, .trailer, .upgrade, .connection, .keepAlive, .proxyConnection, .transferEncoding: return true
        default: return false
        }
    }

    /// Connection options other than keep-alive and close, lower-cased: further hop-by-hop
    /// field names. Empty, with no allocation, for the usual values.
    static func connectionTokens(_ fields: HeaderBlock) -> [String] {
        var tokens: [String] = []
        for f in fields.fields where f.kind == .connection {
            if fields.valueEquals(f, caseInsensitive: "keep-alive") || fields.valueEquals(f, caseInsensitive: "close") { continue }
            for t in fields.value(f).split(separator: ",") {
                let token = String(t).trimmingWhitespace().lowercased()
                if token != "keep-alive" && token != "close" && !token.isEmpty { tokens.append(token) }
            }
        }
        return tokens
    }

    /// Whether a `Connection` field lists `token` (lower-case).
    static func connectionHas(_ fields: HeaderBlock, _ token: String) -> Bool {
        for f in fields.fields where f.kind == .connection {
            for t in fields.value(f).split(separator: ",") where String(t).trimmingWhitespace().lowercased() == token { return true }
        }
        return false
    }

    /// The fields sent upstream: the client's (or the plugins') fields without the dropped
    /// ones, `Host` per `pass_host`, the forwarding headers, and the upgrade pair.
    static func upstreamFields(_ fields: HeaderBlock, client: Client, host: String, upgrade: String?) -> HeaderBlock {
        let tokens = connectionTokens(fields)
        var out = HeaderBlock()
        var forwardedFor: String? = nil
        out.reserve(fields: fields.count + 7, bytes: fields.bytes.readableBytes + 160)
        out.appendUnchecked(name: "Host", value: host)
        for f in fields.fields {
            if isDroppedRequestField(f.kind) {
                if f.kind == .xForwardedFor {
                    let v = fields.value(f)
                    forwardedFor = forwardedFor.map { "\($0), \(v)" } ?? v
                }
                continue
            }
            if !tokens.isEmpty, f.kind == .other, tokens.contains(where: { fields.matches(f, $0) }) { continue }
            out.append(f, of: fields)
        }
        out.appendUnchecked(name: "X-Forwarded-For", value: forwardedFor.map { "\($0), \(client.address)" } ?? client.address)
        out.appendUnchecked(name: "X-Real-IP", value: client.address)
        out.appendUnchecked(name: "X-Forwarded-Proto", value: client.scheme)
        if let h = client.hostHeader { out.appendUnchecked(name: "X-Forwarded-Host", value: h) }
        out.appendUnchecked(name: "X-Forwarded-Port", value: client.serverPort)
        if let upgrade {
            out.appendUnchecked(name: "Connection", value: "upgrade")
            out.appendUnchecked(name: "Upgrade", value: upgrade)
        }
        return out
    }

    /// The fields sent to the client: the upstream's without the hop-by-hop ones. An upgrade
    /// response keeps its `Upgrade` and says `Connection: upgrade`.
    static func downstreamFields(_ fields: HeaderBlock, upgrade: Bool) -> HeaderBlock {
        let tokens = connectionTokens(fields)
        var drop = false
        for f in fields.fields where isDroppedResponseField(f.kind) || (!tokens.isEmpty && f.kind == .other && tokens.contains(where: { fields.matches(f, $0) })) {
            drop = true
            break
        }
        var out = fields
        if drop {
            out = HeaderBlock()
            out.reserve(fields: fields.count + 2, bytes: fields.bytes.readableBytes + 32)
            for f in fields.fields {
                if isDroppedResponseField(f.kind) { continue }
                if !tokens.isEmpty, f.kind == .other, tokens.contains(where: { fields.matches(f, $0) }) { continue }
                out.append(f, of: fields)
            }
        }
        if upgrade {
            out.appendUnchecked(name: "Connection", value: "upgrade")
            if let u = fields.first(.upgrade) { out.appendUnchecked(name: "Upgrade", value: u) }
        }
        return out
    }
}
