public enum HTTPMethodName {
    public static let all: [String] = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE", "PURGE"]
}

/// A route: which requests it takes (uris, hosts, methods, remote addresses, vars) and where
/// they go (an inline upstream, an upstream by id, or a service's upstream).
public struct Route: Sendable {
    public var id: String?
    public var uris: [String] = []
    public var hosts: [String] = []
    public var methods: [String] = []
    public var remoteAddrs: [CIDR] = []
    public var vars: VarsExpression?
    public var varsSource: JSONValue?
    public var priority: Int = 0
    public var upstream: Upstream?
    public var upstreamID: String?
    public var serviceID: String?
    public var plugins: [String: JSONValue] = [:]
    public var pluginConfigID: String?
    public var enableWebsocket: Bool?
    public var status: Int = 1
    public var timeout: Timeouts?
    public var name: String?
    public var desc: String?
    public var labels: [String: String] = [:]

    public init(id: String? = nil, uris: [String] = [], upstream: Upstream? = nil) {
        self.id = id
        self.uris = uris
        self.upstream = upstream
    }

    public static func decode(_ value: JSONValue, id: String? = nil, path: String = "") throws(ConfigError) -> Route {
        var r = try FieldReader(value, path: path)
        var route = Route()
        route.id = try ObjectID.read(r.raw("id"), path: r.path("id")) ?? id
        r.accept("create_time", "update_time")
        if r.has("uri") && r.has("uris") {
            throw ConfigError(path: r.path("uris"), "use either uri or uris, not both")
        }
        if let uri = try r.string("uri", minLength: 1, maxLength: 4096) {
            try PathPattern.validate(uri, path: r.path("uri"))
            route.uris = [uri]
        } else if let uris = try r.stringArray("uris", minItems: 1) {
            for (i, u) in uris.enumerated() { try PathPattern.validate(u, path: FieldPath.index(r.path("uris"), i)) }
            route.uris = uris
        } else {
            throw ConfigError(path: r.path("uri"), "is required (uri or uris)")
        }
        route.hosts = try HostPattern.read(&r, single: "host", multiple: "hosts")
        // `[]` is stored and means any method, as APISIX's schema has no minItems there.
        if let methods = try r.stringArray("methods", minItems: 0) {
            for (i, m) in methods.enumerated() where !HTTPMethodName.all.contains(m) {
                throw ConfigError(path: FieldPath.index(r.path("methods"), i),
                                  "must be one of \(HTTPMethodName.all.joined(separator: ", ")), got \"\(m)\"")
            }
            route.methods = methods
        }
        if r.has("remote_addr") && r.has("remote_addrs") {
            throw ConfigError(path: r.path("remote_addrs"), "use either remote_addr or remote_addrs, not both")
        }
        if let one = try r.string("remote_addr", minLength: 1) {
            guard let c = CIDR(one) else { throw ConfigError(path: r.path("remote_addr"), "must be an IP address or CIDR, got \"\(one)\"") }
            route.remoteAddrs = [c]
        } else if let list = try r.stringArray("remote_addrs", minItems: 1) {
            for (i, s) in list.enumerated() {
                guard let c = CIDR(s) else {
                    throw ConfigError(path: FieldPath.index(r.path("remote_addrs"), i), "must be an IP address or CIDR, got \"\(s)\"")
                }
                route.remoteAddrs.append(c)
            }
        }
        if let vars = r.raw("vars") {
            route.vars = try VarsExpression.parse(vars, path: r.path("vars"))
            route.varsSource = vars
        }
        route.priority = try r.int("priority", range: Int64(Int32.min)...Int64(Int32.max)) ?? 0
        if let u = r.raw("upstream") { route.upstream = try Upstream.decode(u, path: r.path("upstream")) }
        route.upstreamID = try ObjectID.read(r.raw("upstream_id"), path: r.path("upstream_id"))
        route.serviceID = try ObjectID.read(r.raw("service_id"), path: r.path("service_id"))
        route.pluginConfigID = try ObjectID.read(r.raw("plugin_config_id"), path: r.path("plugin_config_id"))
        if let plugins = try r.object("plugins") {
            route.plugins = try PluginConfigs.validate(plugins, path: r.path("plugins"))
        }
        route.enableWebsocket = try r.bool("enable_websocket")
        route.status = try r.int("status", range: 0...1) ?? 1
        if let t = r.raw("timeout") { route.timeout = try Timeouts.decode(t, path: r.path("timeout")) }
        route.name = try r.string("name", minLength: 1, maxLength: 256)
        route.desc = try r.string("desc", maxLength: 256)
        route.labels = try r.labels()
        // As APISIX's schema: one of these must be present; `"plugins": {}` counts, and
        // such a route is answered 503 "missing upstream configuration in Route or Service".
        if route.upstream == nil && route.upstreamID == nil && route.serviceID == nil && r.raw("plugins") == nil
            && route.pluginConfigID == nil
        {
            throw ConfigError(path: r.path("upstream"), "a route needs upstream, upstream_id, service_id, plugins or plugin_config_id")
        }
        try r.rejectUnknown()
        return route
    }
}

/// A service: an upstream, plugins and hosts shared by the routes that name it.
public struct Service: Sendable {
    public var id: String?
    public var upstream: Upstream?
    public var upstreamID: String?
    public var plugins: [String: JSONValue] = [:]
    public var hosts: [String] = []
    public var enableWebsocket: Bool?
    public var name: String?
    public var desc: String?
    public var labels: [String: String] = [:]

    public init(id: String? = nil, upstream: Upstream? = nil) {
        self.id = id
        self.upstream = upstream
    }

    public static func decode(_ value: JSONValue, id: String? = nil, path: String = "") throws(ConfigError) -> Service {
        var r = try FieldReader(value, path: path)
        var s = Service()
        s.id = try ObjectID.read(r.raw("id"), path: r.path("id")) ?? id
        r.accept("create_time", "update_time")
        if let u = r.raw("upstream") { s.upstream = try Upstream.decode(u, path: r.path("upstream")) }
        s.upstreamID = try ObjectID.read(r.raw("upstream_id"), path: r.path("upstream_id"))
        if let plugins = try r.object("plugins") {
            s.plugins = try PluginConfigs.validate(plugins, path: r.path("plugins"))
        }
        s.hosts = try HostPattern.read(&r, single: nil, multiple: "hosts")
        s.enableWebsocket = try r.bool("enable_websocket")
        s.name = try r.string("name", minLength: 1, maxLength: 256)
        s.desc = try r.string("desc", maxLength: 256)
        s.labels = try r.labels()
        try r.rejectUnknown()
        return s
    }
}

/// Plugin configurations: each is checked against its plugin's schema (defaults filled in,
/// errors naming the field), and a name the build does not run is refused rather than
/// ignored (an ignored `key-auth` would leave a route open).
public enum PluginConfigs {
    public static var known: Set<String> { Set(PluginCatalog.all.keys) }

    public static func validate(_ plugins: [String: JSONValue], path: String, consumer: Bool = false) throws(ConfigError) -> [String: JSONValue] {
        var out: [String: JSONValue] = [:]
        for name in plugins.keys.sorted() {
            out[name] = try PluginCatalog.validate(name, plugins[name]!, path: FieldPath.join(path, name), consumer: consumer)
        }
        return out
    }
}

/// Path patterns: exact (`/get`), prefix (`/api/*`, `/api*`), parameters (`/user/:id`),
/// and a named tail (`/files/*path`).
public enum PathPattern {
    public static func validate(_ pattern: String, path: String) throws(ConfigError) {
        let bytes = Array(pattern.utf8)
        guard bytes.first == UInt8(ascii: "/") else { throw ConfigError(path: path, "must start with /, got \"\(pattern)\"") }
        var i = 0
        while i < bytes.count {
            let c = bytes[i]
            if c == UInt8(ascii: "*") {
                // `*` or `*name`, and nothing after it.
                var j = i + 1
                while j < bytes.count, isNameByte(bytes[j]) { j += 1 }
                guard j == bytes.count else { throw ConfigError(path: path, "* may only end a path, got \"\(pattern)\"") }
                return
            }
            if c == UInt8(ascii: ":") && bytes[i - 1] == UInt8(ascii: "/") {
                var j = i + 1
                while j < bytes.count, isNameByte(bytes[j]) { j += 1 }
                guard j > i + 1 else { throw ConfigError(path: path, "parameter needs a name after ':', got \"\(pattern)\"") }
                guard j == bytes.count || bytes[j] == UInt8(ascii: "/") else {
                    throw ConfigError(path: path, "a parameter must fill its whole segment, got \"\(pattern)\"")
                }
                i = j
                continue
            }
            if c < 0x21 || c == 0x7F { throw ConfigError(path: path, "must not contain spaces or control characters") }
            i += 1
        }
    }

    static func isNameByte(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
            || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || c == UInt8(ascii: "_") || c == UInt8(ascii: "-")
    }
}

/// Host patterns: `example.com` or `*.example.com`, compared case-insensitively.
public enum HostPattern {
    static func read(_ r: inout FieldReader, single: String?, multiple: String) throws(ConfigError) -> [String] {
        if let single, r.has(single) && r.has(multiple) {
            throw ConfigError(path: r.path(multiple), "use either \(single) or \(multiple), not both")
        }
        var hosts: [String] = []
        if let single, let h = try r.string(single, minLength: 1) {
            try validate(h, path: r.path(single))
            hosts = [h.lowercased()]
        } else if let list = try r.stringArray(multiple, minItems: 1) {
            for (i, h) in list.enumerated() { try validate(h, path: FieldPath.index(r.path(multiple), i)) }
            hosts = list.map { $0.lowercased() }
        }
        return hosts
    }

    public static func validate(_ host: String, path: String) throws(ConfigError) {
        var body = Substring(host)
        if body.hasPrefix("*.") { body = body.dropFirst(2) } else if body.hasPrefix("*") { body = body.dropFirst() }
        guard !body.isEmpty else { throw ConfigError(path: path, "must be a host name, got \"\(host)\"") }
        for c in body.utf8 {
            switch c {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "["), UInt8(ascii: "]"), UInt8(ascii: ":"):
                continue
            default:
                throw ConfigError(path: path, "must be a host name or *.suffix, got \"\(host)\"")
            }
        }
    }
}
