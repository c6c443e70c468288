/// An upstream's `checks`, with APISIX's schema and defaults (apisix/schema_def.lua,
/// `health_checker`): active probes sent by the gateway, and passive judgement of the
/// responses real requests get.
public struct HealthChecks: Sendable, Hashable {
    public enum ProbeType: String, Sendable, Hashable, CaseIterable {
        case http, https, tcp
    }

    public struct Active: Sendable, Hashable {
        public var type: ProbeType = .http
        /// Seconds a probe may take.
        public var timeout: Double = 1
        /// Probes in flight at once for this upstream.
        public var concurrency = 10
        public var httpPath = "/"
        /// The `Host` of HTTP probes (default: the node's address).
        public var host: String?
        /// Probe this port instead of the node's.
        public var port: Int?
        public var httpsVerifyCertificate = true
        /// Extra request header lines, `Name: value`.
        public var requestHeaders: [String] = []
        public var healthyInterval = 1
        public var healthySuccesses = 2
        public var healthyStatuses: Set<Int> = [200, 302]
        public var unhealthyInterval = 1
        public var unhealthyStatuses: Set<Int> = [429, 404, 500, 501, 502, 503, 504, 505]
        public var httpFailures = 5
        public var tcpFailures = 2
        public var timeouts = 3
        public init() {}
    }

    public struct Passive: Sendable, Hashable {
        public var type: ProbeType = .http
        public var healthyStatuses: Set<Int> = [200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 306, 307, 308]
        public var successes = 5
        public var unhealthyStatuses: Set<Int> = [429, 500, 503]
        public var httpFailures = 5
        public var tcpFailures = 2
        public var timeouts = 7
        public init() {}
    }

    public var active: Active
    public var passive: Passive?

    public init(active: Active = Active(), passive: Passive? = nil) {
        self.active = active
        self.passive = passive
    }

    /// Counters APISIX bounds to 1...254 (lua-resty-healthcheck keeps them in one byte each).
    static let counterRange: ClosedRange<Int64> = 1...254

    public static func decode(_ value: JSONValue, path: String) throws(ConfigError) -> HealthChecks {
        var r = try FieldReader(value, path: path)
        guard let activeValue = r.raw("active") else {
            // As APISIX's schema: `active`, or `active` and `passive`.
            throw ConfigError(path: r.path("active"), "is required (passive checks need active ones to bring a node back)")
        }
        var checks = HealthChecks(active: try decodeActive(activeValue, path: r.path("active")))
        if let p = r.raw("passive") { checks.passive = try decodePassive(p, path: r.path("passive")) }
        try r.rejectUnknown()
        return checks
    }

    static func statuses(_ r: inout FieldReader, _ key: String) throws(ConfigError) -> Set<Int>? {
        guard let list = try r.array(key, minItems: 1) else { return nil }
        var out = Set<Int>()
        for (i, v) in list.enumerated() {
            guard let n = v.intValue, (200...599).contains(n) else {
                throw ConfigError(path: FieldPath.index(r.path(key), i), "must be an HTTP status 200-599")
            }
            guard out.insert(Int(n)).inserted else { throw ConfigError(path: FieldPath.index(r.path(key), i), "duplicates an earlier item") }
        }
        return out
    }

    static func decodeActive(_ value: JSONValue, path: String) throws(ConfigError) -> Active {
        var r = try FieldReader(value, path: path)
        var a = Active()
        if let t = try r.string("type", allowed: Set(ProbeType.allCases.map(\.rawValue))) { a.type = ProbeType(rawValue: t) ?? .http }
        if let t = try r.number("timeout", min: 0, exclusiveMin: true, max: 86_400) { a.timeout = t }
        // Any positive count is taken; the checker never has more than its process-wide cap
        // in flight anyway.
        if let c = try r.int("concurrency", range: 1...Int64(Int32.max)) { a.concurrency = c }
        if let p = try r.string("http_path", minLength: 1, maxLength: 4096) {
            guard p.hasPrefix("/"), !p.utf8.contains(where: { $0 < 0x21 || $0 == 0x7F }) else {
                throw ConfigError(path: r.path("http_path"), "must be a path starting with / without spaces or control characters")
            }
            a.httpPath = p
        }
        if let h = try r.string("host", minLength: 1, maxLength: 253) {
            guard !h.utf8.contains(where: { $0 < 0x21 || $0 == 0x7F }) else {
                throw ConfigError(path: r.path("host"), "must be a host name without spaces or control characters")
            }
            a.host = h
        }
        a.port = try r.int("port", range: 1...65535)
        if let v = try r.bool("https_verify_certificate") { a.httpsVerifyCertificate = v }
        if let headers = try r.stringArray("req_headers", minItems: 1, unique: false) {
            for (i, line) in headers.enumerated() {
                guard let colon = line.firstIndex(of: ":"), colon != line.startIndex,
                    !line.utf8.contains(where: { ($0 < 0x20 && $0 != 0x09) || $0 == 0x7F })
                else {
                    throw ConfigError(path: FieldPath.index(r.path("req_headers"), i), "must be \"Name: value\" without control characters")
                }
            }
            a.requestHeaders = headers
        }
        if let h = r.raw("healthy") {
            var hr = try FieldReader(h, path: r.path("healthy"))
            if let i = try hr.int("interval", range: 1...86400) { a.healthyInterval = i }
            if let s = try hr.int("successes", range: counterRange) { a.healthySuccesses = s }
            if let s = try statuses(&hr, "http_statuses") { a.healthyStatuses = s }
            try hr.rejectUnknown()
        }
        if let u = r.raw("unhealthy") {
            var ur = try FieldReader(u, path: r.path("unhealthy"))
            if let i = try ur.int("interval", range: 1...86400) { a.unhealthyInterval = i }
            if let s = try statuses(&ur, "http_statuses") { a.unhealthyStatuses = s }
            if let n = try ur.int("http_failures", range: counterRange) { a.httpFailures = n }
            if let n = try ur.int("tcp_failures", range: counterRange) { a.tcpFailures = n }
            if let n = try ur.int("timeouts", range: counterRange) { a.timeouts = n }
            try ur.rejectUnknown()
        }
        try r.rejectUnknown()
        return a
    }

    static func decodePassive(_ value: JSONValue, path: String) throws(ConfigError) -> Passive {
        var r = try FieldReader(value, path: path)
        var p = Passive()
        if let t = try r.string("type", allowed: Set(ProbeType.allCases.map(\.rawValue))) { p.type = ProbeType(rawValue: t) ?? .http }
        if let h = r.raw("healthy") {
            var hr = try FieldReader(h, path: r.path("healthy"))
            if let s = try statuses(&hr, "http_statuses") { p.healthyStatuses = s }
            if let n = try hr.int("successes", range: 0...254) { p.successes = n }
            try hr.rejectUnknown()
        }
        if let u = r.raw("unhealthy") {
            var ur = try FieldReader(u, path: r.path("unhealthy"))
            if let s = try statuses(&ur, "http_statuses") { p.unhealthyStatuses = s }
            if let n = try ur.int("http_failures", range: 0...254) { p.httpFailures = n }
            if let n = try ur.int("tcp_failures", range: 0...254) { p.tcpFailures = n }
            if let n = try ur.int("timeouts", range: 0...254) { p.timeouts = n }
            try ur.rejectUnknown()
        }
        try r.rejectUnknown()
        return p
    }
}
