/// An APISIX v3 `ssls` object: certificates and keys, the server names they serve, and the
/// client-certificate (mTLS) and protocol settings for those names. This type checks the
/// object's shape only; whether the PEM parses and the key matches its certificate is checked
/// where certificates are compiled (SluiceTLS), before the object is stored.
public struct SSLObject: Sendable, Hashable {
    public enum Kind: String, Sendable, CaseIterable {
        /// Served to clients on the TLS listeners, chosen by SNI.
        case server
        /// Presented to upstreams (`upstream.tls.client_cert_id`).
        case client
    }

    /// `TLSv1.1`, `TLSv1.2`, `TLSv1.3`: the names APISIX's `ssl_protocols` takes.
    public enum ProtocolVersion: String, Sendable, CaseIterable, Comparable {
        case tls11 = "TLSv1.1"
        case tls12 = "TLSv1.2"
        case tls13 = "TLSv1.3"

        public static func < (a: ProtocolVersion, b: ProtocolVersion) -> Bool {
            allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
        }
    }

    /// `client`: the CA client certificates must chain to, on this object's names.
    public struct ClientVerification: Sendable, Hashable {
        public var ca: String
        /// How many intermediate certificates a client chain may have (APISIX default 1).
        public var depth: Int = 1
        /// Request paths for which a missing client certificate is let through.
        public var skipMTLSURIRegex: [String] = []
    }

    public var id: String?
    public var kind: Kind = .server
    /// The first certificate chain and its key, as PEM. `key` may be the keyring-encrypted
    /// form APISIX stores (base64, not starting with `-----`).
    public var cert: String = ""
    public var key: String = ""
    /// More pairs for the same names (an RSA and an ECDSA certificate, say).
    public var certs: [String] = []
    public var keys: [String] = []
    /// Lower-cased server names: exact names, or `*.` and one more suffix for a wildcard.
    public var snis: [String] = []
    public var client: ClientVerification?
    /// The protocol versions allowed on these names; empty: the listener's (TLS 1.2 and 1.3).
    public var sslProtocols: [ProtocolVersion] = []
    public var status: Int = 1
    public var labels: [String: String] = [:]
    public var desc: String?

    public init(id: String? = nil) { self.id = id }

    /// Every (certificate, key) pair, the first one first.
    public var pairs: [(cert: String, key: String)] {
        [(cert, key)] + zip(certs, keys).map { ($0, $1) }
    }

    /// The largest PEM text accepted for one certificate, key or CA (APISIX: 64 KiB).
    public static let maxPEMLength = 64 * 1024
    /// Bounds on the lists: they are compiled into per-connection lookups.
    public static let maxSNIs = 1024
    public static let maxExtraPairs = 8

    public static func decode(_ value: JSONValue, id: String? = nil, path: String = "") throws(ConfigError) -> SSLObject {
        var r = try FieldReader(value, path: path)
        var o = SSLObject()
        o.id = try ObjectID.read(r.raw("id"), path: r.path("id")) ?? id
        r.accept("create_time", "update_time", "validity_start", "validity_end")
        if let t = try r.string("type", allowed: Set(Kind.allCases.map(\.rawValue))) { o.kind = Kind(rawValue: t) ?? .server }
        o.cert = try pem(&r, "cert", required: true) ?? ""
        o.key = try keyText(&r, "key", required: true) ?? ""
        if let certs = try r.array("certs", maxItems: maxExtraPairs) {
            o.certs = try certs.enumerated().map { (i, v) throws(ConfigError) in
                try pemValue(v, path: FieldPath.index(r.path("certs"), i), begins: "-----BEGIN ")
            }
        }
        if let keys = try r.array("keys", maxItems: maxExtraPairs) {
            o.keys = try keys.enumerated().map { (i, v) throws(ConfigError) in
                try pemValue(v, path: FieldPath.index(r.path("keys"), i), begins: nil)
            }
        }
        if o.certs.count != o.keys.count {
            throw ConfigError(path: r.path("keys"), "must have one key per certificate in certs (\(o.certs.count)), got \(o.keys.count)")
        }
        if r.has("sni") && r.has("snis") { throw ConfigError(path: r.path("snis"), "use either sni or snis, not both") }
        if let one = try r.string("sni", minLength: 1, maxLength: 253) {
            o.snis = [try normalizedSNI(one, path: r.path("sni"))]
        } else if let many = try r.stringArray("snis", minItems: 1) {
            if many.count > maxSNIs { throw ConfigError(path: r.path("snis"), "must have at most \(maxSNIs) names") }
            var seen = Set<String>()
            for (i, name) in many.enumerated() {
                let n = try normalizedSNI(name, path: FieldPath.index(r.path("snis"), i))
                if seen.insert(n).inserted { o.snis.append(n) }
            }
        }
        if o.kind == .server && o.snis.isEmpty {
            throw ConfigError(path: r.path("snis"), "is required for an ssl of type server (the names it serves)")
        }
        if let c = r.raw("client") {
            var cr = try FieldReader(c, path: r.path("client"))
            guard let ca = try pem(&cr, "ca", required: true) else { throw ConfigError(path: cr.path("ca"), "is required") }
            var v = ClientVerification(ca: ca)
            v.depth = try cr.int("depth", range: 0...16) ?? 1
            if let regexes = try cr.stringArray("skip_mtls_uri_regex", minItems: 1) {
                for (i, re) in regexes.enumerated() {
                    do throws(RegexSyntaxError) {
                        _ = try LinearRegex(re)
                    } catch {
                        throw ConfigError(path: FieldPath.index(cr.path("skip_mtls_uri_regex"), i), "is not a valid regex: \(error.description)")
                    }
                }
                v.skipMTLSURIRegex = regexes
            }
            try cr.rejectUnknown()
            o.client = v
        }
        if let protocols = try r.stringArray("ssl_protocols", minItems: 1) {
            for (i, p) in protocols.enumerated() {
                guard let v = ProtocolVersion(rawValue: p) else {
                    throw ConfigError(
                        path: FieldPath.index(r.path("ssl_protocols"), i),
                        "must be one of \(ProtocolVersion.allCases.map(\.rawValue).joined(separator: ", ")), got \"\(p)\"")
                }
                o.sslProtocols.append(v)
            }
            o.sslProtocols.sort()
        }
        o.status = try r.int("status", range: 0...1) ?? 1
        o.labels = try r.labels()
        o.desc = try r.string("desc", maxLength: 256)
        try r.rejectUnknown()
        return o
    }

    /// Lower case, no trailing dot; `*.` only as the whole first label.
    public static func normalizedSNI(_ name: String, path: String) throws(ConfigError) -> String {
        var n = name.lowercased()
        if n.hasSuffix(".") { n.removeLast() }
        let body = n.hasPrefix("*.") ? n.dropFirst(2) : n[...]
        guard !body.isEmpty, body.utf8.count <= 253,
            body.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D || $0 == 0x2E || $0 == 0x5F }),
            !body.hasPrefix("."), !body.contains("..")
        else {
            throw ConfigError(path: path, "must be a host name or *.suffix (letters, digits, - _ .), got \"\(name)\"")
        }
        return n
    }

    private static func pem(_ r: inout FieldReader, _ key: String, required: Bool) throws(ConfigError) -> String? {
        guard let v = r.raw(key) else {
            if required { throw ConfigError(path: r.path(key), "is required") }
            return nil
        }
        return try pemValue(v, path: r.path(key), begins: "-----BEGIN ")
    }

    private static func keyText(_ r: inout FieldReader, _ key: String, required: Bool) throws(ConfigError) -> String? {
        guard let v = r.raw(key) else {
            if required { throw ConfigError(path: r.path(key), "is required") }
            return nil
        }
        return try pemValue(v, path: r.path(key), begins: nil)
    }

    /// A PEM string (or, for keys, `begins` nil: PEM or the keyring-encrypted base64 form).
    private static func pemValue(_ v: JSONValue, path: String, begins: String?) throws(ConfigError) -> String {
        guard case .string(let s) = v else { throw ConfigError(path: path, "must be a string, got \(v.typeName)") }
        let n = s.utf8.count
        if n < 128 { throw ConfigError(path: path, "is too short to be a PEM certificate or key") }
        if n > maxPEMLength { throw ConfigError(path: path, "must be at most \(maxPEMLength) bytes") }
        if let begins, !s.hasPrefix(begins) {
            throw ConfigError(path: path, "must be PEM text starting with \"\(begins)\"")
        }
        return s
    }
}
