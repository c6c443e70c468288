import NIOHTTP1
import SluiceCore

/// An address or CIDR list, parsed once.
struct AddressList: Sendable {
    let networks: [CIDR]

    init(_ value: JSONValue?) {
        networks = (value?.arrayValue ?? []).compactMap { v -> CIDR? in
            guard let s = v.stringValue else { return nil }
            if let c = CIDR(s) { return c }
            return IPAddress(s).map { CIDR(address: $0, prefixLength: $0.bitWidth) }
        }
    }

    func contains(_ ip: IPAddress?) -> Bool {
        guard let ip else { return false }
        return networks.contains { $0.contains(ip) }
    }
}

/// ip-restriction: only the whitelist may pass, or the blacklist may not.
final class IPRestrictionPlugin: HTTPPlugin {
    static let name = "ip-restriction"
    let whitelist: AddressList?
    let blacklist: AddressList?
    let reply: PluginReply

    init(_ c: JSONValue) {
        whitelist = c["whitelist"].map { AddressList($0) }
        blacklist = c["blacklist"].map { AddressList($0) }
        reply = .message(PluginLimits.status(c["response_code"], default: 403), c["message"]?.stringValue ?? "Your IP address is not allowed")
    }

    func access(_ r: PluginRequest) -> PluginAction {
        if let blacklist, blacklist.contains(r.clientIP) { return .respond(reply) }
        if let whitelist, !whitelist.contains(r.clientIP) { return .respond(reply) }
        return .next
    }
}

/// uri-blocker: refuse requests whose URI matches any rule. Both forms are checked: the
/// target as sent (APISIX's `$request_uri`) and the normalized path with its query, which
/// is what routing and the upstream see, so `/./internal` or `/a/../internal` cannot slip
/// past a `^/internal` rule.
final class URIBlockerPlugin: HTTPPlugin {
    static let name = "uri-blocker"
    let regex: CompiledRegex?
    let reply: PluginReply

    init(_ c: JSONValue) {
        let rules = (c["block_rules"]?.arrayValue ?? []).compactMap(\.stringValue)
        regex = try? CompiledRegex(rules.map { "(?:\($0))" }.joined(separator: "|"), caseInsensitive: c["case_insensitive"] == true)
        reply = .errorMessage(PluginLimits.status(c["rejected_code"], default: 403), c["rejected_msg"]?.stringValue)
    }

    func rewrite(_ r: PluginRequest) -> PluginAction {
        guard let regex else { return .next }
        if regex.matches(r.requestURI) { return .respond(reply) }
        let normalized = r.query.map { r.path + "?" + $0 } ?? r.path
        if normalized != r.requestURI, regex.matches(normalized) { return .respond(reply) }
        return .next
    }
}

/// cors: answers preflight requests itself and adds the CORS headers to responses for
/// allowed origins.
final class CORSPlugin: HTTPPlugin {
    static let name = "cors"
    static let allMethods = "GET,POST,PUT,DELETE,PATCH,HEAD,OPTIONS,CONNECT,TRACE"
    let allowOrigins: String
    let originList: Set<String>
    let originRegexes: [CompiledRegex]
    /// `allow_origins_by_regex` is set: then only it decides, as in APISIX.
    let byRegex: Bool
    let allowMethods: String
    let allowHeaders: String
    /// nil: no `Access-Control-Expose-Headers` (APISIX sends none unless configured).
    let exposeHeaders: String?
    let maxAge: String
    let allowCredential: Bool

    init(_ c: JSONValue) {
        allowOrigins = c["allow_origins"]?.stringValue ?? "*"
        originList = Set(allowOrigins.split(separator: ",").map { String($0).trimmingWhitespace() })
        originRegexes = (c["allow_origins_by_regex"]?.arrayValue ?? []).compactMap { $0.stringValue.flatMap { try? CompiledRegex("^(?:\($0))$") } }
        byRegex = c["allow_origins_by_regex"]?.arrayValue != nil
        // Header values: one the schema would refuse (a control character) falls back to "*".
        func value(_ k: String) -> String { c[k]?.stringValue.flatMap { HeaderSyntax.isSafeValue($0) ? $0 : nil } ?? "*" }
        let methods = value("allow_methods")
        allowMethods = methods == "**" ? Self.allMethods : methods
        allowHeaders = value("allow_headers")
        exposeHeaders = c["expose_headers"]?.stringValue.flatMap { HeaderSyntax.isSafeValue($0) && !$0.isEmpty ? $0 : nil }
        maxAge = String(PluginLimits.int(c["max_age"], -1...Int(Int32.max), default: 5))
        allowCredential = c["allow_credential"] == true
    }

    var hasResponsePhases: Bool { true }

    func rewrite(_ r: PluginRequest) -> PluginAction {
        // The client's Origin, kept before later plugins (proxy-rewrite) change the headers.
        if let origin = r.headers.first(name: "origin") { r.scratch[ObjectIdentifier(self)] = origin }
        // Preflight never reaches the upstream; the headers come in the header filter.
        return r.method == .OPTIONS ? .respond(PluginReply(status: 200)) : .next
    }

    /// The value of Access-Control-Allow-Origin for this request, or nil when its origin is
    /// not allowed.
    func allowedOrigin(_ r: PluginRequest) -> String? {
        let origin = r.scratch[ObjectIdentifier(self)] as? String
        if byRegex {
            // The regexes alone decide, whatever allow_origins says.
            guard let origin, originRegexes.contains(where: { $0.matches(origin) }) else { return nil }
            return origin
        }
        if allowOrigins == "*" { return "*" }
        if allowOrigins == "**" { return origin ?? "*" }
        guard let origin else { return allowOrigins == "*" ? "*" : nil }
        if originList.contains(origin) { return origin }
        if originRegexes.contains(where: { $0.matches(origin) }) { return origin }
        return allowOrigins == "*" ? "*" : nil
    }

    func headerFilter(_ r: PluginRequest, _ response: inout PluginResponse) {
        // The answer depends on Origin unless every origin gets `*`: caches are told so,
        // whether or not this origin was allowed (as APISIX).
        if allowOrigins != "*" { response.headers.add(name: "Vary", value: "Origin") }
        guard let origin = allowedOrigin(r) else { return }
        let h = response.headers
        var headers = h
        headers.replaceOrAdd(name: "Access-Control-Allow-Origin", value: origin)
        headers.replaceOrAdd(name: "Access-Control-Allow-Methods", value: allowMethods)
        headers.replaceOrAdd(name: "Access-Control-Max-Age", value: maxAge)
        if let exposeHeaders { headers.replaceOrAdd(name: "Access-Control-Expose-Headers", value: exposeHeaders) }
        let allowed = allowHeaders == "**" ? (r.headers.first(name: "access-control-request-headers") ?? "") : allowHeaders
        if !allowed.isEmpty { headers.replaceOrAdd(name: "Access-Control-Allow-Headers", value: allowed) }
        if allowCredential { headers.replaceOrAdd(name: "Access-Control-Allow-Credentials", value: "true") }
        response.headers = headers
    }
}

/// real-ip: the client address from a header or argument (e.g. X-Forwarded-For set by a
/// load balancer in front), when the connection comes from a trusted address.
final class RealIPPlugin: HTTPPlugin {
    static let name = "real-ip"
    let source: RequestVariable?
    let isForwardedFor: Bool
    let trusted: AddressList?
    let recursive: Bool

    init(_ c: JSONValue) {
        let s = c["source"]?.stringValue ?? ""
        source = RequestVariable(name: s)
        isForwardedFor = s == "http_x_forwarded_for"
        trusted = c["trusted_addresses"].map { AddressList($0) }
        recursive = c["recursive"] == true
    }

    func rewrite(_ r: PluginRequest) -> PluginAction {
        if let trusted, !trusted.contains(r.clientIP) { return .next }
        guard let source, var value = r.value(of: source) else { return .next }
        if isForwardedFor {
            let hops = value.split(separator: ",").map { String($0).trimmingWhitespace() }
            if recursive, let trusted {
                // The last address, from the right, that is not one of our trusted proxies.
                value = hops.last(where: { !trusted.contains(Self.parse($0)?.0) }) ?? hops.first ?? ""
            } else {
                value = hops.last ?? ""
            }
        }
        guard let (parsed, port) = Self.parse(value.trimmingWhitespace()) else { return .next }
        let ip = parsed.unmapped  // ::ffff:a.b.c.d is the IPv4 client a.b.c.d, as at the listener
        r.clientIP = ip
        r.remoteAddress = ip.description
        // The source's port when it names one; otherwise the connection's stays (APISIX).
        if let port { r.remotePort = port }
        return .next
    }

    /// `ip`, `ip:port` or `[v6]:port`.
    static func parse(_ s: String) -> (IPAddress, Int?)? {
        if let ip = IPAddress(s) { return (ip, nil) }
        if s.hasPrefix("["), let close = s.firstIndex(of: "]") {
            guard let ip = IPAddress(s[s.index(after: s.startIndex)..<close]) else { return nil }
            let rest = s[s.index(after: close)...]
            guard rest.hasPrefix(":"), let port = Int(rest.dropFirst()), (1...65535).contains(port) else { return rest.isEmpty ? (ip, nil) : nil }
            return (ip, port)
        }
        if let colon = s.lastIndex(of: ":"), let ip = IPAddress(s[..<colon]), ip.isIPv4 {
            guard let port = Int(s[s.index(after: colon)...]), (1...65535).contains(port) else { return nil }
            return (ip, port)
        }
        return nil
    }
}

/// client-control: a request body larger than `max_body_size` gets 413, whether its size is
/// announced (Content-Length) or found while it streams (chunked).
final class ClientControlPlugin: HTTPPlugin {
    static let name = "client-control"
    let maxBodySize: Int?

    init(_ c: JSONValue) {
        let m = c["max_body_size"].map { PluginLimits.int($0, 0...Int(PluginLimits.maxBodySize), default: 0) }
        maxBodySize = m == 0 ? nil : m
    }

    func rewrite(_ r: PluginRequest) -> PluginAction {
        guard let maxBodySize else { return .next }
        if let cl = r.headers.first(name: "content-length").flatMap({ Int($0) }), cl > maxBodySize { return .respond(PluginReply(status: 413)) }
        r.maxBodySize = min(r.maxBodySize ?? Int.max, maxBodySize)
        return .next
    }
}
