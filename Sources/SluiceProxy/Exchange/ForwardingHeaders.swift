import NIOHTTP1
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

    /// Whether a response field reaches the client: not a hop-by-hop one, and not one that
    /// `Connection` names (`tokens`, from `connectionTokens`).
    @inline(__always)
    static func forwardsResponseField(_ f: HeaderBlock.Field, of fields: HeaderBlock, tokens: [String]) -> Bool {
        if isDroppedResponseField(f.kind) { return false }
        if !tokens.isEmpty, f.kind == .other, tokens.contains(where: { fields.matches(f, $0) }) { return false }
        return true
    }

    /// Whether the connection that carried a message with these fields stays open after it:
    /// HTTP/1.1 unless `Connection` says close, HTTP/1.0 only when it says keep-alive.
    static func keepsAlive(_ fields: HeaderBlock, version: HTTPVersion) -> Bool {
        var keepAlive = version.minor >= 1
        for f in fields.fields where f.kind == .connection {
            if fields.valueEquals(f, caseInsensitive: "close") { keepAlive = false }
            if fields.valueEquals(f, caseInsensitive: "keep-alive") { keepAlive = true }
        }
        if keepAlive, connectionHas(fields, "close") { keepAlive = false }
        return keepAlive
    }

    /// Whether a `Connection` field lists `token` (lower-case), without allocating.
    static func connectionHas(_ fields: HeaderBlock, _ token: StaticString) -> Bool {
        for f in fields.fields where f.kind == .connection && fields.valueListContains(f, caseInsensitive: token) { return true }
        return false
    }

    /// The head sent upstream: the client's (or the plugins') fields, of which the dropped
    /// ones are skipped when it is written, plus the gateway's own (`Host` per `pass_host`,
    /// the forwarding headers, the upgrade pair). Nothing is copied to build it.
    static func upstreamHead(
        method: HTTPMethod, target: String, fields: HeaderBlock, client: Client, host: String, upgrade: String?
    ) -> UpstreamRequestHead {
        var forwardedFor: String? = nil
        for f in fields.fields where f.kind == .xForwardedFor {
            let v = fields.value(f)
            forwardedFor = forwardedFor.map { "\($0), \(v)" } ?? v
        }
        return UpstreamRequestHead(
            method: method, target: target, fields: fields, skipped: connectionTokens(fields),
            gateway: GatewayFields(
                host: host, forwardedFor: forwardedFor.map { "\($0), \(client.address)" } ?? client.address, realIP: client.address,
                proto: client.scheme, forwardedHost: client.hostHeader, port: client.serverPort, upgrade: upgrade))
    }

    /// The fields sent to the client: the upstream's without the hop-by-hop ones. An upgrade
    /// response keeps its `Upgrade` and says `Connection: upgrade`.
    static func downstreamFields(_ fields: HeaderBlock, upgrade: Bool) -> HeaderBlock {
        let tokens = connectionTokens(fields)
        var out = fields
        if fields.fields.contains(where: { !forwardsResponseField($0, of: fields, tokens: tokens) }) {
            out = HeaderBlock()
            out.reserve(fields: fields.count + 2, bytes: fields.bytes.readableBytes + 32)
            for f in fields.fields where forwardsResponseField(f, of: fields, tokens: tokens) { out.append(f, of: fields) }
        }
        if upgrade {
            out.appendUnchecked(name: "Connection", value: "upgrade")
            if let u = fields.first(.upgrade) { out.appendUnchecked(name: "Upgrade", value: u) }
        }
        return out
    }

    /// The TLS server name for an upstream host: without the port and trailing dot, lower
    /// case; nil for an IP address, which SNI cannot carry.
    static func serverName(_ host: String) -> String? {
        var name = ExchangeRouting.routingHost(host)
        if name.hasPrefix("[") || name.isEmpty { return nil }
        if name.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2E }) { return nil }
        if name.utf8.contains(UInt8(ascii: ":")) { return nil }
        if name.hasSuffix(".") { name.removeLast() }
        return name
    }
}
