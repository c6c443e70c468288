import NIOHTTP1
import SluiceCore

/// A consumer ready for authentication lookups, with its own plugins compiled.
public final class CompiledConsumer: Sendable {
    public let username: String
    public let labels: [String: String]
    /// The consumer's credentials by auth plugin name (validated, defaults filled).
    public let credentials: [String: JSONValue]
    /// Its non-authentication plugins, merged over the route's after it authenticates.
    public let chain: PluginChain

    public init(username: String, labels: [String: String], credentials: [String: JSONValue], chain: PluginChain) {
        self.username = username
        self.labels = labels
        self.credentials = credentials
        self.chain = chain
    }
}

/// Consumers by credential, built once per snapshot: key-auth keys, basic-auth usernames.
public final class ConsumerIndex: Sendable {
    public let byUsername: [String: CompiledConsumer]
    let byKey: [String: CompiledConsumer]
    let byBasicUser: [String: CompiledConsumer]
    let byJWTKey: [String: CompiledConsumer]
    /// jwt-auth credentials with their keys parsed, by username.
    let jwtVerifiers: [String: JWTVerifier]

    public init(_ consumers: [CompiledConsumer]) {
        var names: [String: CompiledConsumer] = [:]
        var keys: [String: CompiledConsumer] = [:]
        var basic: [String: CompiledConsumer] = [:]
        var jwt: [String: CompiledConsumer] = [:]
        var verifiers: [String: JWTVerifier] = [:]
        for c in consumers.sorted(by: { $0.username < $1.username }) {
            names[c.username] = c
            if let k = c.credentials["key-auth"]?["key"]?.stringValue, keys[k] == nil { keys[k] = c }
            if let u = c.credentials["basic-auth"]?["username"]?.stringValue, basic[u] == nil { basic[u] = c }
            if let credential = c.credentials["jwt-auth"], let k = credential["key"]?.stringValue, jwt[k] == nil {
                jwt[k] = c
                verifiers[c.username] = JWTVerifier(credential)
            }
        }
        byUsername = names
        byKey = keys
        byBasicUser = basic
        byJWTKey = jwt
        jwtVerifiers = verifiers
    }

    public static let empty = ConsumerIndex([])
}

/// One request as the plugins see and change it: method, path, query and headers become
/// the upstream request; the consumer is set by authentication; response headers are
/// added on the way back. Made only for requests whose route (or a global rule) has
/// plugins.
public final class PluginRequest: RequestVariableSource {
    public var method: HTTPMethod
    /// The routed (normalized) path; a rewrite changes what the upstream receives.
    public var path: String
    /// The query without `?`.
    public var query: String?
    /// The request's headers, which go to the upstream (after the proxy's own rules).
    public var headers: HTTPHeaders
    /// The Host the upstream receives, when a plugin sets it (proxy-rewrite `host`).
    public var upstreamHost: String?
    /// The request target as the client sent it.
    public let requestURI: String
    public let host: String?
    public var remoteAddress: String
    public var clientIP: IPAddress?
    /// The client's port; real-ip sets it when its source carries one (`1.2.3.4:7090`).
    public var remotePort: Int
    /// The node the balancer picked for the last attempt (`$balancer_ip`, `$balancer_port`).
    public var balancerNode: (host: String, port: Int)?
    public let serverAddress: String
    public let serverPort: Int
    public let scheme: String
    /// The connection's TLS, when it has one.
    public var tls: TLSConnectionInfo?
    public let routeID: String
    public let serviceID: String?
    public let startNanos: UInt64
    /// Set by an authentication plugin.
    public var consumer: CompiledConsumer?
    /// The snapshot's consumers, for authentication plugins.
    public var consumers: ConsumerIndex = .empty
    /// The response status, known in the response phases.
    public var status: Int?
    /// Headers to add to the response (limit-count quota, request-id), applied before the
    /// header filters run, or to a plugin's own reply.
    public var responseHeaders: [(String, String)] = []
    /// For metrics: the route's and service's names, and the path and host patterns the
    /// route matched by.
    public var routeName: String?
    public var serviceName: String?
    public var matchedURI = ""
    public var matchedHost = ""
    /// The upstream to use instead of the route's, by snapshot key (traffic-split).
    public var upstreamOverride: String?
    /// X-Real-IP and X-Forwarded-Proto/-Host/-Port as proxy-rewrite set (a value) or removed
    /// (nil) them: the gateway sends these instead of its own. nil when untouched.
    public var forwardingOverrides: [(name: String, value: String?)]?
    /// The largest request body allowed (client-control); the proxy counts streamed bytes.
    public var maxBodySize: Int?
    /// Per-request values plugins leave for their later phases, by plugin instance.
    var scratch: [ObjectIdentifier: Any] = [:]

    public init(
        method: HTTPMethod, path: String, query: String?, headers: HTTPHeaders, requestURI: String, host: String?, remoteAddress: String,
        clientIP: IPAddress?, remotePort: Int, serverAddress: String, serverPort: Int, scheme: String, routeID: String, serviceID: String?,
        startNanos: UInt64
    ) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.requestURI = requestURI
        self.host = host
        self.remoteAddress = remoteAddress
        self.clientIP = clientIP
        self.remotePort = remotePort
        self.serverAddress = serverAddress
        self.serverPort = serverPort
        self.scheme = scheme
        self.routeID = routeID
        self.serviceID = serviceID
        self.startNanos = startNanos
    }

    public func value(of variable: RequestVariable) -> String? {
        switch variable {
        case .header(let name):
            let values = headers[name]
            if values.isEmpty { return nil }
            return values.count == 1 ? values[0] : values.joined(separator: ", ")
        case .arg(let name):
            // Raw, as NGINX's $arg_name (and so APISIX's, in templates and `vars` alike).
            return QueryArgument.raw(name, in: query)
        case .cookie(let name): return Self.cookie(name, in: headers)
        case .postArg: return nil  // read for routing only: plugins see no request body
        case .uri: return path
        case .requestURI: return requestURI
        case .host: return host
        case .remoteAddr: return remoteAddress
        case .remotePort: return String(remotePort)
        case .serverAddr: return serverAddress
        case .serverPort: return String(serverPort)
        case .requestMethod: return method.rawValue
        case .scheme: return scheme
        case .queryString: return query
        case .consumerName: return consumer?.username
        case .routeID: return routeID
        case .serviceID: return serviceID
        case .status: return status.map(String.init)
        case .balancerIP: return balancerNode?.host
        case .balancerPort: return balancerNode.map { String($0.port) }
        case .tls(let v): return tls?.value(v) ?? (v == .https ? "" : nil)
        }
    }

    static func cookie(_ name: String, in headers: HTTPHeaders) -> String? {
        for header in headers["cookie"] {
            for pair in header.split(separator: ";") {
                let trimmed = pair.drop(while: { $0 == " " })
                if let eq = trimmed.firstIndex(of: "="), trimmed[..<eq] == name {
                    return String(trimmed[trimmed.index(after: eq)...])
                }
            }
        }
        return nil
    }

    /// The value of `$name` / `${name}` variables in plugin templates; unknown names are "".
    func variable(_ name: Substring) -> String {
        guard let v = RequestVariable(name: String(name)) else { return "" }
        return value(of: v) ?? ""
    }

    /// The query with one argument removed (hide_credentials).
    func removeQueryArgument(_ name: String) {
        guard let q = query else { return }
        let kept = q.split(separator: "&", omittingEmptySubsequences: true).filter { part in
            let key = part.split(separator: "=", maxSplits: 1).first.map { PercentDecoding.decode($0) } ?? ""
            return key != name
        }
        query = kept.isEmpty ? nil : kept.joined(separator: "&")
    }
}

/// NGINX's `$arg_name`: the value of the first `name=` argument of the query string, exactly
/// as the client sent it (not percent-decoded, `+` kept), the name compared ignoring ASCII
/// case; an argument without `=` has no value. Being raw, the value never holds a byte the
/// request line could not (no CR, LF, NUL), so a template that puts it into a header or a
/// Location cannot inject one; decode it where decoding is meant (key-auth reads its own).
public enum QueryArgument {
    public static func raw(_ name: String, in query: String?) -> String? {
        guard let query, !name.isEmpty else { return nil }
        let want = Array(name.utf8)
        for pair in query.utf8.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true) {
            guard pair.count > want.count, pair[pair.index(pair.startIndex, offsetBy: want.count)] == UInt8(ascii: "=") else { continue }
            if zip(pair, want).allSatisfy({ asciiLower($0) == asciiLower($1) }) {
                return String(Substring(pair.dropFirst(want.count + 1)))
            }
        }
        return nil
    }

    @inline(__always)
    static func asciiLower(_ c: UInt8) -> UInt8 { c >= 65 && c <= 90 ? c | 0x20 : c }
}

/// A string with `$var` / `${var}` references, parsed once.
struct Template: Sendable {
    enum Part: Sendable {
        case literal(String)
        case variable(String)
    }
    let parts: [Part]
    let isLiteral: Bool

    init(_ text: String) {
        var parts: [Part] = []
        var literal = ""
        var i = text.startIndex
        while i < text.endIndex {
            let c = text[i]
            if c == "\\", text.index(after: i) < text.endIndex, text[text.index(after: i)] == "$" {
                // `\$name` is not a variable, and is sent as written, backslash included (as
                // APISIX's resolve_var and redirect templates keep it).
                literal += "\\$"
                i = text.index(i, offsetBy: 2)
                continue
            }
            if c == "$" {
                var j = text.index(after: i)
                var braced = false
                if j < text.endIndex, text[j] == "{" {
                    braced = true
                    j = text.index(after: j)
                }
                let start = j
                while j < text.endIndex, text[j].isLetter || text[j].isNumber || text[j] == "_" { j = text.index(after: j) }
                if j > start, !braced || (j < text.endIndex && text[j] == "}") {
                    if !literal.isEmpty { parts.append(.literal(literal)); literal = "" }
                    parts.append(.variable(String(text[start..<j])))
                    i = braced ? text.index(after: j) : j
                    continue
                }
            }
            literal.append(c)
            i = text.index(after: i)
        }
        if !literal.isEmpty { parts.append(.literal(literal)) }
        self.parts = parts
        self.isLiteral = !parts.contains { if case .variable = $0 { return true } else { return false } }
    }

    /// The text with its variables' values. With `captures` (proxy-rewrite's header values
    /// after a `regex_uri`), `$1` and `${1}` are the regex's groups, "" when it has none or
    /// did not match.
    func render(_ r: PluginRequest, captures: [String]? = nil) -> String {
        if isLiteral, parts.count <= 1 {
            if case .literal(let s)? = parts.first { return s }
            return ""
        }
        var out = ""
        for p in parts {
            switch p {
            case .literal(let s): out += s
            case .variable(let name):
                if let captures, name.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) {
                    if name.utf8.count <= 4, let n = Int(name), n < captures.count { out += captures[n] }
                } else {
                    out += r.variable(Substring(name))
                }
            }
        }
        return out
    }
}

/// Header actions of proxy-rewrite and response-rewrite: add, then set, then remove.
///
/// Values are templates; they are all rendered (reading the request) before any header is
/// changed (`render`, then `Rendered.apply`), so that no template reads the headers while
/// they are being written: rendering `$http_x` inside a mutation of the same headers is an
/// exclusivity violation that aborts the process.
struct HeaderActions: Sendable {
    var add: [(String, Template)] = []
    var set: [(String, Template)] = []
    var remove: [String] = []

    /// From `{add: {..}, set: {..}, remove: [..]}`, or a flat object meaning `set`. Names that
    /// are not header tokens (a config the schema would refuse) are left out.
    init(_ value: JSONValue?, addAsList: Bool = false) {
        guard case .object(let o)? = value else { return }
        // A value given as an array is one header line per item (proxy-rewrite's multi-value
        // headers): `add` appends each, `set` replaces the header with all of them.
        func pairs(_ v: JSONValue?) -> [(String, Template)] {
            guard case .object(let m)? = v else { return [] }
            var out: [(String, Template)] = []
            for (k, value) in m.sorted(by: { $0.key < $1.key }) where HeaderSyntax.isToken(k) {
                if case .array(let items) = value {
                    for item in items { out.append((k, Template(Self.text(item)))) }
                } else {
                    out.append((k, Template(Self.text(value))))
                }
            }
            return out
        }
        if o["add"] != nil || o["set"] != nil || o["remove"] != nil {
            if addAsList {
                for item in o["add"]?.arrayValue ?? [] {
                    guard let (name, value) = HeaderLine.split(item.stringValue ?? ""), HeaderSyntax.isToken(name) else { continue }
                    add.append((name, Template(value)))
                }
            } else {
                add = pairs(o["add"])
            }
            set = pairs(o["set"])
            remove = (o["remove"]?.arrayValue ?? []).compactMap(\.stringValue)
        } else {
            set = pairs(value)
        }
    }

    static func text(_ v: JSONValue) -> String {
        switch v {
        case .string(let s): return s
        case .int(let i): return String(i)
        case .double(let d): return String(d)
        default: return v.serialized()
        }
    }

    var isEmpty: Bool { add.isEmpty && set.isEmpty && remove.isEmpty }

    /// The actions with their values rendered for this request.
    struct Rendered {
        var add: [(String, String)] = []
        var set: [(String, String)] = []
        var remove: [String] = []
        /// Names whose rendered value could not be sent (it held CR, LF, NUL or another
        /// control character), and of those the ones `set` would have written.
        var unsafe: [String] = []
        var unsafeSet: [String] = []

        /// Applies the actions. An unsafe value is never written: an `add` of one is left
        /// out, and a `set` of one removes the header, so that neither the injected value
        /// nor the one the client sent under that name goes through.
        func apply(to headers: inout HTTPHeaders) {
            for (k, v) in add { headers.add(name: k, value: v) }
            var setBefore: [String] = []
            for (k, v) in set {
                // The second value of one name (an array in the config) joins the first.
                if setBefore.contains(where: { $0.lowercased() == k.lowercased() }) {
                    if !v.isEmpty { headers.add(name: k, value: v) }
                    continue
                }
                setBefore.append(k)
                if v.isEmpty { headers.remove(name: k) } else { headers.replaceOrAdd(name: k, value: v) }
            }
            for k in unsafeSet { headers.remove(name: k) }
            for k in remove { headers.remove(name: k) }
        }
    }

    func render(_ r: PluginRequest, captures: [String]? = nil) -> Rendered {
        var out = Rendered()
        out.remove = remove
        for (k, t) in add {
            let v = t.render(r, captures: captures)
            if HeaderSyntax.isSafeValue(v) { out.add.append((k, v)) } else { out.unsafe.append(k) }
        }
        for (k, t) in set {
            let v = t.render(r, captures: captures)
            if HeaderSyntax.isSafeValue(v) {
                out.set.append((k, v))
            } else {
                out.unsafe.append(k)
                out.unsafeSet.append(k)
            }
        }
        return out
    }
}
