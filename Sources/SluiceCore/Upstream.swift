/// Per-phase timeouts in seconds (APISIX `timeout: {connect, send, read}`).
public struct Timeouts: Sendable, Hashable {
    public var connect: Double
    public var send: Double
    public var read: Double

    public static let `default` = Timeouts(connect: 60, send: 60, read: 60)

    public init(connect: Double, send: Double, read: Double) {
        self.connect = connect
        self.send = send
        self.read = read
    }

    static func decode(_ value: JSONValue, path: String) throws(ConfigError) -> Timeouts {
        var r = try FieldReader(value, path: path)
        func required(_ key: String, _ r: inout FieldReader) throws(ConfigError) -> Double {
            guard let v = try r.number(key, min: 0, exclusiveMin: true) else {
                throw ConfigError(path: r.path(key), "is required")
            }
            return v
        }
        let t = Timeouts(connect: try required("connect", &r), send: try required("send", &r), read: try required("read", &r))
        try r.rejectUnknown()
        return t
    }
}

/// One backend address with its weight and priority group.
public struct UpstreamNode: Sendable, Hashable {
    public var host: String
    public var port: Int
    public var weight: Int
    public var priority: Int

    /// The weight balancers use: APISIX takes any integer >= 0; above 2^31 - 1 all weights
    /// weigh the same (2^31 - 1), which keeps the schedulers' arithmetic bounded.
    public static func balancingWeight(_ written: Int64) -> Int { Int(min(max(0, written), Int64(Int32.max))) }

    public init(host: String, port: Int, weight: Int = 1, priority: Int = 0) {
        self.host = host
        self.port = port
        self.weight = weight
        self.priority = priority
    }

    /// `host:port`, with IPv6 hosts in brackets.
    public var address: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// Splits `host:port`, `[v6]:port` or a bare host. Returns nil when the text is malformed.
    /// Scans the UTF-8 bytes once: a PATCH of one node re-validates every node of the
    /// upstream, so this runs 100,000 times for a large Service.
    public static func splitAddress(_ text: String) -> (host: String, port: Int?)? {
        let bytes = text.utf8
        if bytes.first == UInt8(ascii: "[") {
            guard let close = bytes.firstIndex(of: UInt8(ascii: "]")) else { return nil }
            let host = String(decoding: bytes[bytes.index(after: bytes.startIndex)..<close], as: UTF8.self)
            let rest = bytes[bytes.index(after: close)...]
            if rest.isEmpty { return (host, nil) }
            guard rest.first == UInt8(ascii: ":"), let p = parsePort(rest.dropFirst()) else { return nil }
            return (host, p)
        }
        var colon: String.UTF8View.Index? = nil
        for i in bytes.indices where bytes[i] == UInt8(ascii: ":") {
            if colon != nil { return (text, nil) }  // more than one: a bare IPv6 address
            colon = i
        }
        guard let colon else { return (text, nil) }
        guard let p = parsePort(bytes[bytes.index(after: colon)...]) else { return nil }
        return (String(decoding: bytes[..<colon], as: UTF8.self), p)
    }

    /// Decimal digits only (as `Int("…")` would accept, without a sign), at most 9 of them.
    static func parsePort(_ digits: Substring.UTF8View) -> Int? {
        guard !digits.isEmpty, digits.count <= 9 else { return nil }
        var v = 0
        for c in digits {
            guard c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") else { return nil }
            v = v * 10 + Int(c - UInt8(ascii: "0"))
        }
        return v
    }

    static func validateHost(_ host: String, path: String) throws(ConfigError) {
        guard !host.isEmpty else { throw ConfigError(path: path, "must not be empty") }
        if IPAddress(host) != nil { return }
        guard host.utf8.count <= 253 else { throw ConfigError(path: path, "must be at most 253 characters") }
        for c in host.utf8 {
            switch c {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"):
                continue
            default:
                throw ConfigError(path: path, "must be an IP address or a host name, got \"\(host)\"")
            }
        }
    }
}

public enum BalancerType: String, Sendable, Hashable, CaseIterable {
    case roundrobin, chash, least_conn, ewma
}

public enum HashOn: String, Sendable, Hashable, CaseIterable {
    case vars, header, cookie, consumer, vars_combinations
}

public enum PassHost: String, Sendable, Hashable, CaseIterable {
    case pass, node, rewrite
}

public struct KeepalivePool: Sendable, Hashable {
    /// Idle connections kept per peer and event loop.
    public var size: Int = 320
    /// Seconds an idle connection is kept.
    public var idleTimeout: Double = 60
    /// Requests served by one connection before it is closed.
    public var requests: Int = 1000

    public init(size: Int = 320, idleTimeout: Double = 60, requests: Int = 1000) {
        self.size = size
        self.idleTimeout = idleTimeout
        self.requests = requests
    }
}

/// An upstream's `tls`: certificate verification and the client certificate, given inline
/// (`client_cert`/`client_key`) or as an `ssls` object of type client (`client_cert_id`).
public struct UpstreamTLS: Sendable, Hashable {
    /// Verify the node's certificate chain and name (APISIX default: false).
    public var verify = false
    public var clientCert: String?
    public var clientKey: String?
    public var clientCertID: String?

    public init(verify: Bool = false) { self.verify = verify }

    public static func decode(_ value: JSONValue, path: String) throws(ConfigError) -> UpstreamTLS {
        var r = try FieldReader(value, path: path)
        var t = UpstreamTLS()
        t.verify = try r.bool("verify") ?? false
        t.clientCert = try r.string("client_cert", minLength: 128, maxLength: SSLObject.maxPEMLength)
        t.clientKey = try r.string("client_key", minLength: 128, maxLength: SSLObject.maxPEMLength)
        t.clientCertID = try ObjectID.read(r.raw("client_cert_id"), path: r.path("client_cert_id"))
        if let c = t.clientCert, !c.hasPrefix("-----BEGIN ") {
            throw ConfigError(path: r.path("client_cert"), "must be PEM text starting with \"-----BEGIN \"")
        }
        if (t.clientCert == nil) != (t.clientKey == nil) {
            throw ConfigError(path: r.path(t.clientCert == nil ? "client_cert" : "client_key"), "client_cert and client_key go together")
        }
        if t.clientCertID != nil && t.clientCert != nil {
            throw ConfigError(path: r.path("client_cert_id"), "use either client_cert_id or client_cert and client_key, not both")
        }
        try r.rejectUnknown()
        return t
    }
}

/// An APISIX upstream: a set of nodes and how to balance, retry and time out across them.
public struct Upstream: Sendable, Hashable {
    public var id: String?
    public var type: BalancerType = .roundrobin
    public var nodes: [UpstreamNode] = []
    public var hashOn: HashOn = .vars
    public var key: String?
    public var retries: Int?
    public var retryTimeout: Double = 0
    public var timeout: Timeouts?
    public var passHost: PassHost = .pass
    public var upstreamHost: String?
    public var scheme: String = "http"
    /// `tls`: how TLS to the nodes is checked and which client certificate is shown.
    public var tls: UpstreamTLS?
    /// `checks`: active probes and passive judgement of the nodes.
    public var checks: HealthChecks?
    public var keepalivePool = KeepalivePool()
    public var name: String?
    public var desc: String?
    public var labels: [String: String] = [:]
    /// `kubernetes` when the nodes come from service discovery; `nodes` is then empty in
    /// the config and filled in by the compiler from a `DiscoveryRegistry`.
    public var discoveryType: String?
    /// With `discoveryType`: `namespace/name:port`.
    public var serviceName: String?

    /// The discovery types this build has.
    public static let discoveryTypes: Set<String> = ["kubernetes"]

    public init(id: String? = nil, nodes: [UpstreamNode] = [], type: BalancerType = .roundrobin) {
        self.id = id
        self.nodes = nodes
        self.type = type
    }

    /// Decodes and validates an upstream object. `path` prefixes every error's field path.
    public static func decode(_ value: JSONValue, id: String? = nil, path: String = "") throws(ConfigError) -> Upstream {
        var r = try FieldReader(value, path: path)
        var u = Upstream()
        u.id = try ObjectID.read(r.raw("id"), path: r.path("id")) ?? id
        r.accept("create_time", "update_time")
        if let t = try r.string("type", allowed: Set(BalancerType.allCases.map(\.rawValue))) {
            u.type = BalancerType(rawValue: t) ?? .roundrobin
        }
        if let scheme = try r.string("scheme", allowed: ["http", "https", "grpc", "grpcs"]) {
            guard scheme == "http" || scheme == "https" else {
                throw ConfigError(path: r.path("scheme"), "\"\(scheme)\" upstreams are not supported by this build yet; use http or https")
            }
            u.scheme = scheme
        }
        if let t = r.raw("tls") { u.tls = try UpstreamTLS.decode(t, path: r.path("tls")) }
        if let c = r.raw("checks") { u.checks = try HealthChecks.decode(c, path: r.path("checks")) }
        try decodeNodeSource(&r, into: &u)
        if let h = try r.string("hash_on", allowed: Set(HashOn.allCases.map(\.rawValue))) {
            u.hashOn = HashOn(rawValue: h) ?? .vars
        }
        u.key = try r.string("key", minLength: 1)
        if u.type == .chash {
            if u.hashOn != .consumer && u.key == nil {
                throw ConfigError(path: r.path("key"), "is required when type is chash")
            }
            if u.hashOn == .vars, let key = u.key, RequestVariable(name: key) == nil {
                throw ConfigError(path: r.path("key"), "unknown variable \"\(key)\" for hash_on vars")
            }
        }
        u.retries = try r.int("retries", range: 0...Int64(Int32.max))
        u.retryTimeout = try r.number("retry_timeout", min: 0) ?? 0
        if let t = r.raw("timeout") { u.timeout = try Timeouts.decode(t, path: r.path("timeout")) }
        if let p = try r.string("pass_host", allowed: Set(PassHost.allCases.map(\.rawValue))) {
            u.passHost = PassHost(rawValue: p) ?? .pass
        }
        u.upstreamHost = try r.string("upstream_host", minLength: 1)
        if u.passHost == .rewrite && u.upstreamHost == nil {
            throw ConfigError(path: r.path("upstream_host"), "is required when pass_host is rewrite")
        }
        if let kp = r.raw("keepalive_pool") {
            var k = try FieldReader(kp, path: r.path("keepalive_pool"))
            u.keepalivePool.size = try k.int("size", range: 1...Int64(Int32.max)) ?? 320
            u.keepalivePool.idleTimeout = try k.number("idle_timeout", min: 0) ?? 60
            u.keepalivePool.requests = try k.int("requests", range: 1...Int64(Int32.max)) ?? 1000
            try k.rejectUnknown()
        }
        u.name = try r.string("name", minLength: 1, maxLength: 256)
        u.desc = try r.string("desc", maxLength: 256)
        u.labels = try r.labels()
        try r.rejectUnknown()
        return u
    }

    /// Where the nodes come from: listed in `nodes`, or found by `discovery_type` +
    /// `service_name`; exactly one of the two.
    static func decodeNodeSource(_ r: inout FieldReader, into u: inout Upstream) throws(ConfigError) {
        guard let type = try r.string("discovery_type", minLength: 1) else {
            if r.has("service_name") {
                throw ConfigError(path: r.path("service_name"), "needs discovery_type (kubernetes)")
            }
            guard let nodesValue = r.raw("nodes") else {
                throw ConfigError(path: r.path("nodes"), "is required (or discovery_type and service_name)")
            }
            u.nodes = try decodeNodes(nodesValue, path: r.path("nodes"))
            return
        }
        guard discoveryTypes.contains(type) else {
            throw ConfigError(
                path: r.path("discovery_type"),
                "\"\(type)\" is not supported; this build has \(discoveryTypes.sorted().joined(separator: ", "))")
        }
        if r.has("nodes") {
            throw ConfigError(path: r.path("nodes"), "must not be set with discovery_type: the nodes come from discovery")
        }
        guard let name = try r.string("service_name", minLength: 1) else {
            throw ConfigError(path: r.path("service_name"), "is required when discovery_type is set")
        }
        if case .failure(let e) = KubernetesServiceName.parse(name) {
            throw ConfigError(path: r.path("service_name"), e.description)
        }
        u.discoveryType = type
        u.serviceName = name
    }

    static func decodeNodes(_ value: JSONValue, path: String) throws(ConfigError) -> [UpstreamNode] {
        var nodes: [UpstreamNode] = []
        switch value {
        case .object(let map):
            for address in map.keys.sorted() {
                let p = FieldPath.join(path, address)
                guard let (host, port) = UpstreamNode.splitAddress(address) else {
                    throw ConfigError(path: p, "must be host:port")
                }
                try UpstreamNode.validateHost(host, path: p)
                let portValue = port ?? 80
                guard (1...65535).contains(portValue) else { throw ConfigError(path: p, "port must be 1-65535") }
                guard let w = map[address]?.intValue, w >= 0 else {
                    throw ConfigError(path: p, "weight must be an integer >= 0")
                }
                nodes.append(UpstreamNode(host: host, port: portValue, weight: UpstreamNode.balancingWeight(w)))
            }
        case .array(let list):
            for (i, item) in list.enumerated() {
                let p = FieldPath.index(path, i)
                var r = try FieldReader(item, path: p)
                guard let host = try r.string("host", minLength: 1) else { throw ConfigError(path: r.path("host"), "is required") }
                if !host.hasPrefix("["), host.contains(":") {
                    throw ConfigError(path: r.path("host"), "IPv6 address must be enclosed with '[' and ']'")
                }
                try UpstreamNode.validateHost(host, path: r.path("host"))
                let port = try r.int("port", range: 1...65535) ?? 80
                guard let weight = try r.int("weight", range: 0...Int64.max).map({ UpstreamNode.balancingWeight(Int64($0)) }) else {
                    throw ConfigError(path: r.path("weight"), "is required")
                }
                let priority = try r.int("priority", range: Int64(Int32.min)...Int64(Int32.max)) ?? 0
                r.accept("metadata")
                try r.rejectUnknown()
                let h = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
                nodes.append(UpstreamNode(host: h, port: port, weight: weight, priority: priority))
            }
        default:
            throw ConfigError(path: path, "must be an object {\"host:port\": weight} or an array of nodes, got \(value.typeName)")
        }
        var seen = Set<String>()
        for (i, n) in nodes.enumerated() where !seen.insert(n.address).inserted {
            throw ConfigError(path: FieldPath.index(path, i), "duplicate node \(n.address)")
        }
        return nodes
    }
}
