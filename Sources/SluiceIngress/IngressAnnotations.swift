import KubeClient
import SluiceCore

/// The `k8s.apisix.apache.org/*` annotations of the APISIX ingress controller on an Ingress,
/// with its names and meanings, as what they add to each route the Ingress makes. A bad
/// value is a `TranslationError` naming the annotation; the Ingress then produces nothing
/// new and its last good translation keeps serving.
struct IngressAnnotations {
    static let prefix = "k8s.apisix.apache.org/"

    /// `use-regex`: paths are regular expressions matched against the URI.
    var useRegex = false
    var enableWebsocket: Bool?
    /// Plugins every route of the Ingress carries.
    var plugins: [String: JSONValue] = [:]
    /// `plugin-config-name`: an ApisixPluginConfig of the Ingress's namespace.
    var pluginConfigName: String?
    /// `upstream-scheme`, `upstream-retries`, `upstream-*-timeout`: settings of the
    /// upstreams this Ingress's routes use (an upstream of its own when set).
    var upstream: [String: JSONValue] = [:]

    static func field(_ name: String) -> String { "metadata.annotations[\(prefix)\(name)]" }

    static func parse(_ all: [String: String]) throws(TranslationError) -> IngressAnnotations {
        func value(_ name: String) -> String? {
            all[prefix + name].map { $0.trimmingWhitespace() }
        }
        func flag(_ name: String) throws(TranslationError) -> Bool? {
            guard let v = value(name) else { return nil }
            switch v.lowercased() {
            case "true": return true
            case "false": return false
            default: throw TranslationError("\(field(name)): must be \"true\" or \"false\", got \"\(FieldBounds.shown(v))\"")
            }
        }
        func uri(_ name: String) throws(TranslationError) -> String? {
            guard let v = value(name) else { return nil }
            guard v.hasPrefix("/") || v.hasPrefix("http://") || v.hasPrefix("https://"),
                !v.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7F })
            else {
                throw TranslationError("\(field(name)): must be a path or URL without spaces or control characters, got \"\(FieldBounds.shown(v))\"")
            }
            return v
        }
        func regex(_ name: String) throws(TranslationError) -> String? {
            guard let v = value(name) else { return nil }
            do throws(RegexSyntaxError) {
                _ = try CompiledRegex(v)
            } catch {
                throw TranslationError("\(field(name)): is not a usable regular expression: \(error)")
            }
            return v
        }
        func cidrs(_ names: [String]) throws(TranslationError) -> [JSONValue]? {
            guard let name = names.first(where: { value($0) != nil }), let v = value(name) else { return nil }
            var out: [JSONValue] = []
            for part in v.split(separator: ",") {
                let s = part.trimmingWhitespace()
                guard CIDR(s) != nil else { throw TranslationError("\(field(name)): \"\(FieldBounds.shown(s))\" is not an IP address or CIDR") }
                out.append(.string(s))
            }
            guard !out.isEmpty else { throw TranslationError("\(field(name)): must list at least one IP address or CIDR") }
            return out
        }
        func headerText(_ name: String) throws(TranslationError) -> String? {
            guard let v = value(name) else { return nil }
            guard !v.isEmpty, HeaderSyntax.isSafeValue(v) else {
                throw TranslationError("\(field(name)): must be a non-empty header value without control characters")
            }
            return v
        }

        var a = IngressAnnotations()
        a.useRegex = try flag("use-regex") ?? false
        a.enableWebsocket = try flag("enable-websocket")

        // Rewrites: a fixed target, or a regex and its template.
        if let target = try uri("rewrite-target") {
            guard target.hasPrefix("/") else { throw TranslationError("\(field("rewrite-target")): must be a path starting with /") }
            a.plugins["proxy-rewrite"] = ["uri": .string(target)]
        } else if let re = try regex("rewrite-target-regex") {
            guard let template = value("rewrite-target-regex-template"), !template.isEmpty else {
                throw TranslationError("\(field("rewrite-target-regex-template")): is required with rewrite-target-regex")
            }
            guard CompiledRegex.isValidReplacement(template), template.hasPrefix("/") else {
                throw TranslationError("\(field("rewrite-target-regex-template")): must be a path using only $N, ${N} and $$, got \"\(FieldBounds.shown(template))\"")
            }
            a.plugins["proxy-rewrite"] = ["regex_uri": [.string(re), .string(template)]]
        }

        // Redirects: to https, or to a fixed place with a code.
        if try flag("http-to-https") == true {
            a.plugins["redirect"] = ["http_to_https": true]
        } else if let target = try uri("http-redirect") {
            var code: Int64 = 301
            if let c = value("http-redirect-code") {
                guard let n = Int64(c), (300...399).contains(n) else {
                    throw TranslationError("\(field("http-redirect-code")): must be a 3xx status, got \"\(FieldBounds.shown(c))\"")
                }
                code = n
            }
            a.plugins["redirect"] = ["uri": .string(target), "ret_code": .int(code)]
        }

        if try flag("enable-cors") == true {
            var cors: [String: JSONValue] = [:]
            if let v = try headerText("cors-allow-origin") { cors["allow_origins"] = .string(v) }
            if let v = try headerText("cors-allow-methods") { cors["allow_methods"] = .string(v) }
            if let v = try headerText("cors-allow-headers") { cors["allow_headers"] = .string(v) }
            if let v = try headerText("cors-expose-headers") { cors["expose_headers"] = .string(v) }
            if let v = try flag("cors-allow-credentials") { cors["allow_credential"] = .bool(v) }
            if let v = value("cors-max-age") {
                guard let n = Int64(v), (-1...Int64(Int32.max)).contains(n) else {
                    throw TranslationError("\(field("cors-max-age")): must be seconds (-1 or more), got \"\(FieldBounds.shown(v))\"")
                }
                cors["max_age"] = .int(n)
            }
            a.plugins["cors"] = .object(cors)
        }

        // Source ranges; the older whitelist/blacklist names are read too.
        let allow = try cidrs(["allowlist-source-range", "whitelist-source-range"])
        let block = try cidrs(["blocklist-source-range", "blacklist-source-range"])
        if allow != nil, block != nil {
            throw TranslationError("\(field("allowlist-source-range")): cannot be used with blocklist-source-range (ip-restriction takes one list)")
        }
        if let allow { a.plugins["ip-restriction"] = ["whitelist": .array(allow)] }
        if let block { a.plugins["ip-restriction"] = ["blacklist": .array(block)] }

        if let t = value("auth-type") {
            switch t {
            case "basicAuth", "basic-auth": a.plugins["basic-auth"] = [:]
            case "keyAuth", "key-auth": a.plugins["key-auth"] = [:]
            default: throw TranslationError("\(field("auth-type")): must be keyAuth or basicAuth, got \"\(FieldBounds.shown(t))\"")
            }
        }

        if let scheme = value("upstream-scheme") {
            guard ["http", "https"].contains(scheme) else {
                throw TranslationError("\(field("upstream-scheme")): must be http or https, got \"\(FieldBounds.shown(scheme))\"")
            }
            a.upstream["scheme"] = .string(scheme)
        }
        if let r = value("upstream-retries") {
            guard let n = Int64(r), (0...100).contains(n) else {
                throw TranslationError("\(field("upstream-retries")): must be 0-100, got \"\(FieldBounds.shown(r))\"")
            }
            a.upstream["retries"] = .int(n)
        }
        var timeout: [String: JSONValue] = [:]
        for (name, key) in [("upstream-connect-timeout", "connect"), ("upstream-read-timeout", "read"), ("upstream-send-timeout", "send")] {
            guard let v = value(name) else { continue }
            let ns = try FieldBounds.duration(v, field(name), min: 1_000_000, max: 86_400 * 1_000_000_000)
            timeout[key] = .double(Double(ns) / 1_000_000_000)
        }
        if !timeout.isEmpty {
            // APISIX's upstream timeout needs all three: the others keep its 60 s default.
            for key in ["connect", "send", "read"] where timeout[key] == nil { timeout[key] = 60 }
            a.upstream["timeout"] = .object(timeout)
        }

        if let pc = value("plugin-config-name") {
            guard !pc.isEmpty, pc.utf8.count <= 253 else { throw TranslationError("\(field("plugin-config-name")): must name an ApisixPluginConfig") }
            a.pluginConfigName = pc
        }
        return a
    }

    /// The route-level `vars` for a regex path: `^path` (`^path$` for Exact).
    static func regexVars(_ path: String, exact: Bool, field: String) throws(TranslationError) -> JSONValue {
        let pattern = "^" + path + (exact ? "$" : "")
        do throws(RegexSyntaxError) {
            _ = try CompiledRegex(pattern)
        } catch {
            throw TranslationError("\(field): is not a usable regular expression with use-regex: \(error)")
        }
        return [["uri", "~~", .string(pattern)]]
    }
}
