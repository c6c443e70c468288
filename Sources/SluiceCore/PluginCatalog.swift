/// What the gateway knows of a plugin before running it: its name, its priority (APISIX's
/// numbers: higher runs first), the phases it acts in, its config schema, and for
/// authentication plugins the schema of a consumer's credential.
public struct PluginSpec: Sendable {
    public var name: String
    public var priority: Int
    public var phases: [String]
    public var schema: Schema
    /// Set for authentication plugins: what a consumer's `plugins.NAME` holds.
    public var consumerSchema: Schema?

    public var isAuth: Bool { consumerSchema != nil }
}

/// The plugins this build runs. A config naming any other plugin is refused (an ignored
/// `key-auth` would leave a route open).
public enum PluginCatalog {
    /// The plugins the runtime (SluicePlugins) implements; the others' schemas are written
    /// but they are refused until they run (a test keeps this list and the runtime's equal).
    public static let runnable: Set<String> = [
        "real-ip", "client-control", "request-id", "fault-injection", "mocking", "cors", "ip-restriction", "uri-blocker", "basic-auth",
        "key-auth", "consumer-restriction", "proxy-rewrite", "limit-conn", "limit-count", "limit-req", "redirect", "response-rewrite", "echo", "traffic-split", "api-breaker", "prometheus", "jwt-auth",
    ]

    public static let all: [String: PluginSpec] = Dictionary(uniqueKeysWithValues: specs.filter { runnable.contains($0.name) }.map { ($0.name, $0) })

    /// Names by descending priority, as `/apisix/admin/plugins/list` lists them.
    public static var namesByPriority: [String] { all.values.sorted { $0.priority > $1.priority }.map(\.name) }

    /// The `_meta` every plugin config may carry.
    public static let meta: Schema = .object([
        .field("disable", .boolean),
        .field("priority", .int(min: PluginLimits.int32Min, max: PluginLimits.int32Max)),
        .field("error_response", .anyOf([.string(), .map(.any)])),
        .field("filter", .array(.any)),
    ], check: { v, path throws(ConfigError) in
        if let f = v["filter"] { _ = try VarsExpression.parse(f, path: FieldPath.join(path, "filter")) }
    })

    /// The schema as the Admin API shows it: the plugin's own, with `_meta` added.
    public static func schemaDocument(_ spec: PluginSpec, consumer: Bool = false) -> JSONValue? {
        guard let s = consumer ? spec.consumerSchema : spec.schema else { return nil }
        guard case .object(var o) = s.json else { return s.json }
        if !consumer, case .object(var props)? = o["properties"] {
            props["_meta"] = meta.json
            o["properties"] = .object(props)
        }
        o["$comment"] = "this is a mark for our injected plugin schema"
        return .object(o)
    }

    /// Validates one config and returns it with defaults filled in.
    public static func validate(_ name: String, _ config: JSONValue, path: String, consumer: Bool = false) throws(ConfigError) -> JSONValue {
        guard let spec = all[name] else { throw ConfigError(path: path, "unknown plugin") }
        guard case .object(var o) = config else { throw ConfigError(path: path, "must be an object, got \(config.typeName)") }
        let metaValue = o.removeValue(forKey: "_meta")
        // A consumer's authentication plugins hold its credentials; its other plugins are
        // ordinary configs that apply to its requests.
        let schema = consumer ? (spec.consumerSchema ?? spec.schema) : spec.schema
        // No number in a plugin config may be NaN or infinite (JSON cannot even write one; a
        // YAML file or another tool writing the store can): the ranges below compare false
        // with NaN, so the check comes first.
        try checkFinite(config, path: path)
        guard case .object(var out) = try schema.validate(.object(o), path: path) else { return config }
        if let metaValue, metaValue != .null { out["_meta"] = try meta.validate(metaValue, path: FieldPath.join(path, "_meta")) }
        return .object(out)
    }

    /// Throws, naming the field, for the first NaN or infinite number anywhere in `value`.
    static func checkFinite(_ value: JSONValue, path: String) throws(ConfigError) {
        switch value {
        case .double(let d) where !d.isFinite:
            throw ConfigError(path: path, "must be a finite number, got \(d)")
        case .array(let a):
            for (i, item) in a.enumerated() { try checkFinite(item, path: FieldPath.index(path, i)) }
        case .object(let o):
            for k in o.keys.sorted() { if let v = o[k] { try checkFinite(v, path: FieldPath.join(path, k)) } }
        default:
            return
        }
    }

    // MARK: Shared pieces

    static let rejectedCode = Schema.int(min: 200, max: 599)
    /// A status a plugin answers with: any final status a client understands.
    static let httpStatus = Schema.int(min: 100, max: 599)
    static let ipOrCIDR = Schema.string(.init(minLength: 1))
    static func checkCIDRs(_ list: JSONValue?, _ path: String) throws(ConfigError) {
        for (i, item) in (list?.arrayValue ?? []).enumerated() {
            guard let s = item.stringValue, CIDR(s) != nil || IPAddress(s) != nil else {
                throw ConfigError(path: FieldPath.index(path, i), "invalid ip address: \(item.stringValue ?? item.typeName)")
            }
        }
    }
    static func checkRegexes(_ list: JSONValue?, _ path: String) throws(ConfigError) {
        for (i, item) in (list?.arrayValue ?? []).enumerated() {
            try checkRegex(item.stringValue, FieldPath.index(path, i))
        }
    }
    /// A pattern must compile for the linear-time engine; the refusal says why (a syntax
    /// error, or a PCRE construct that needs backtracking, such as a backreference).
    static func checkRegex(_ pattern: String?, _ path: String) throws(ConfigError) {
        guard let pattern else { throw ConfigError(path: path, "must be a regular expression string") }
        do throws(RegexSyntaxError) {
            _ = try CompiledRegex(pattern)
        } catch {
            throw ConfigError(path: path, "is not a usable regular expression: \(error)")
        }
    }
    static let keyType = Schema.stringEnum("var", "var_combination")
    static let httpMethods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE", "PURGE"]
    /// Header names and values a plugin sends: names are RFC 9110 tokens; values (checked by
    /// `checkHeaderMap` in the owning object, as a regex cannot see inside a CR LF
    /// grapheme) hold no control character; numbers are exact integers or finite doubles.
    static let headerMap = Schema.map(
        .anyOf([.string(), .num(min: -PluginLimits.exactIntegerMax, max: PluginLimits.exactIntegerMax)]), keyPattern: HeaderSyntax.tokenPattern)
    static let headerNameList = Schema.list(.string(.init(pattern: HeaderSyntax.tokenPattern)))
    /// proxy-rewrite's `add`/`set`: a value may also be a list, one header line per item.
    /// Its values are checked by `checkHeaderMap`, which names the list item at fault.
    static let multiValueHeaderMap = Schema.map(.any, keyPattern: HeaderSyntax.tokenPattern)

    /// One header value: a string without control characters, or an exact number.
    static func checkHeaderScalar(_ v: JSONValue, _ path: String) throws(ConfigError) {
        switch v {
        case .string(let s): try checkHeaderValue(s, path)
        case .int(let i):
            guard Double(i).magnitude <= PluginLimits.exactIntegerMax else { throw ConfigError(path: path, "must be at most \(Int64(PluginLimits.exactIntegerMax)) in magnitude") }
        case .double(let d):
            guard d.isFinite, d.magnitude <= PluginLimits.exactIntegerMax else { throw ConfigError(path: path, "must be a finite number of at most \(Int64(PluginLimits.exactIntegerMax)) in magnitude") }
        default: throw ConfigError(path: path, "must be a string or a number, got \(v.typeName)")
        }
    }

    /// A `regex_uri` replacement: NGINX's `ngx.re.sub` takes `$N`, `${N}` and `$$` only.
    static func checkReplacement(_ value: JSONValue?, _ path: String) throws(ConfigError) {
        guard let t = value?.stringValue, CompiledRegex.isValidReplacement(t) else {
            throw ConfigError(path: path, "failed to compile the replacement template: only $N, ${N} and $$ may follow a $")
        }
    }

    /// fault-injection's `vars`: a list of expressions, each a group of its own.
    static func checkVarGroups(_ v: JSONValue, _ p: String) throws(ConfigError) {
        guard let groups = v["vars"]?.arrayValue else { return }
        let path = FieldPath.join(p, "vars")
        for (i, g) in groups.enumerated() {
            guard case .array(let items) = g, items.allSatisfy({ $0.arrayValue != nil }) || items.first?.stringValue != nil else {
                throw ConfigError(path: FieldPath.index(path, i), "rule should be wrapped inside brackets")
            }
            if case .string(let head)? = items.first, !["AND", "OR", "!AND", "!OR"].contains(head.uppercased()) {
                throw ConfigError(path: FieldPath.index(path, i), "rule should be wrapped inside brackets")
            }
            _ = try VarsExpression.parse(g, path: FieldPath.index(path, i))
        }
    }

    /// `{name: value}` (or proxy-rewrite's `{add, set, remove}`): every name a token, every
    /// string value free of control characters.
    static func checkHeaderMap(_ value: JSONValue?, _ path: String, multiValue: Bool = false) throws(ConfigError) {
        guard case .object(let o)? = value else { return }
        for k in o.keys.sorted() {
            let p = FieldPath.join(path, k)
            try checkHeaderName(k, p)
            if case .string(let s)? = o[k] { try checkHeaderValue(s, p) }
            if case .array(let items)? = o[k] {
                guard multiValue else { throw ConfigError(path: p, "must be a string or a number, got array") }
                guard !items.isEmpty else { throw ConfigError(path: p, "must not be empty") }
                for (i, item) in items.enumerated() { try checkHeaderScalar(item, FieldPath.index(p, i)) }
            } else if multiValue, let v = o[k] {
                try checkHeaderScalar(v, p)
            }
        }
    }

    static func checkHeaderName(_ name: String, _ path: String) throws(ConfigError) {
        guard HeaderSyntax.isToken(name) else {
            throw ConfigError(path: path, "must be a header name (letters, digits and !#$%&'*+-.^_`|~), got \(JSONValue.string(name).serialized())")
        }
    }

    static func checkHeaderValue(_ value: String, _ path: String) throws(ConfigError) {
        guard HeaderSyntax.isSafeValue(value) else {
            throw ConfigError(path: path, "must not contain control characters (CR, LF, NUL...) in a header value")
        }
    }

    /// Text that becomes a URI or part of one (templates included): no control character or
    /// space, which would end the request line.
    static func checkURIText(_ value: JSONValue?, _ path: String) throws(ConfigError) {
        guard let s = value?.stringValue else { return }
        guard !s.utf8.contains(where: { HeaderSyntax.breaksURI($0) }) else {
            throw ConfigError(path: path, "must not contain control characters or spaces")
        }
    }

    // MARK: The plugins

    // Every integer and number field has a range (PluginLimits names the shared ones), with
    // APISIX's minimums and defaults: a config the schema accepts compiles and runs without
    // trapping, and the runtime clamps to the same ranges (see PluginLimits).
    static let count = Schema.int(max: PluginLimits.int32Max, exclusiveMin: 0)
    static let delaySeconds = Schema.num(min: 0, max: PluginLimits.maxDelaySeconds)
    static let percentage = Schema.int(min: 0, max: 100)
    static let realm = Schema.string(.init(minLength: 1, maxLength: 256))
    static func checkRealm(_ v: JSONValue, _ p: String) throws(ConfigError) {
        if let s = v["realm"]?.stringValue { try checkHeaderValue(s, FieldPath.join(p, "realm")) }
    }
    static func checkVars(_ v: JSONValue, _ p: String) throws(ConfigError) {
        if let vars = v["vars"] { _ = try VarsExpression.parse(vars, path: FieldPath.join(p, "vars")) }
    }

    static let specs: [PluginSpec] = [
        PluginSpec(
            name: "real-ip", priority: 23000, phases: ["rewrite"],
            schema: .object([
                .field("source", .nonEmptyString),
                .field("trusted_addresses", .list(ipOrCIDR, minItems: 1)),
                .field("recursive", .boolean, default: false),
            ], required: ["source"], check: { v, p throws(ConfigError) in
                try checkCIDRs(v["trusted_addresses"], FieldPath.join(p, "trusted_addresses"))
                guard let s = v["source"]?.stringValue, RequestVariable(name: s) != nil else {
                    throw ConfigError(path: FieldPath.join(p, "source"), "must name a request variable such as http_x_forwarded_for or arg_realip")
                }
            })),
        PluginSpec(
            name: "client-control", priority: 22000, phases: ["rewrite"],
            // 0: no limit.
            schema: .object([.field("max_body_size", .int(min: 0, max: PluginLimits.maxBodySize))])),
        PluginSpec(
            name: "request-id", priority: 12015, phases: ["rewrite", "header_filter"],
            schema: .object([
                .field("header_name", .string(.init(pattern: HeaderSyntax.tokenPattern)), default: "X-Request-Id"),
                .field("include_in_response", .boolean, default: true),
                .field("algorithm", .stringEnum("uuid", "nanoid", "range_id"), default: "uuid"),
                .field("range_id", .object([
                    .field("length", .int(min: Double(PluginLimits.rangeIDLength.lowerBound), max: Double(PluginLimits.rangeIDLength.upperBound)), default: 16),
                    // Visible ASCII only: the id is a header value.
                    .field("char_set", .string(.init(minLength: 6, maxLength: 1024, pattern: "^[!-~]+$")), default: "abcdefghijklmnopqrstuvwxyzABCDEFGHIGKLMNOPQRSTUVWXYZ0123456789"),
                ]), default: ["length": 16, "char_set": "abcdefghijklmnopqrstuvwxyzABCDEFGHIGKLMNOPQRSTUVWXYZ0123456789"]),
            ])),
        PluginSpec(
            name: "fault-injection", priority: 11000, phases: ["rewrite"],
            schema: .object([
                .field("abort", .object([
                    .field("http_status", .int(min: 200, max: 599)),
                    .field("body", .string()),
                    .field("headers", headerMap),
                    .field("percentage", percentage),
                    .field("vars", .list(.array(.any), maxItems: 20)),
                ], required: ["http_status"], check: { v, p throws(ConfigError) in
                    try checkVarGroups(v, p)
                    try checkHeaderMap(v["headers"], FieldPath.join(p, "headers"))
                })),
                .field("delay", .object([
                    .field("duration", delaySeconds),
                    .field("percentage", percentage),
                    .field("vars", .list(.array(.any), maxItems: 20)),
                ], required: ["duration"], check: { v, p throws(ConfigError) in try checkVarGroups(v, p) })),
            ], minProperties: 1)),
        PluginSpec(
            name: "mocking", priority: 10900, phases: ["access"],
            schema: .object([
                .field("delay", .int(min: 0, max: PluginLimits.maxDelaySeconds), default: 0),
                .field("response_status", httpStatus, default: 200),
                .field("content_type", .string(.init(minLength: 1)), default: "application/json;charset=utf8"),
                .field("response_example", .string()),
                .field("response_schema", .map(.any)),
                .field("with_mock_header", .boolean, default: true),
                .field("response_headers", headerMap),
            ], anyOfRequired: [["response_example", "response_schema"]], check: { v, p throws(ConfigError) in
                if let s = v["content_type"]?.stringValue {
                    try checkHeaderValue(s, FieldPath.join(p, "content_type"))
                    // The types APISIX's mocking serves; others get its message.
                    let main = s.split(separator: ";").first.map { $0.trimmingWhitespace().lowercased() } ?? ""
                    guard ["application/json", "application/xml", "text/plain", "text/html", "text/xml"].contains(main) else {
                        throw ConfigError(path: FieldPath.join(p, "content_type"), "unsupported content type!")
                    }
                }
                try checkHeaderMap(v["response_headers"], FieldPath.join(p, "response_headers"))
            })),
        PluginSpec(
            name: "cors", priority: 4000, phases: ["rewrite", "header_filter"],
            schema: .object([
                .field("allow_origins", .string(.init(pattern: #"^(\*|\*\*|null|\w+://[^,]+(,\w+://[^,]+)*)$"#)), default: "*"),
                .field("allow_methods", .string(), default: "*"),
                .field("allow_headers", .string(), default: "*"),
                // No default: APISIX sends no Access-Control-Expose-Headers unless configured.
                .field("expose_headers", .string()),
                // Seconds; -1 disables caching (APISIX).
                .field("max_age", .int(min: -1, max: PluginLimits.int32Max), default: 5),
                .field("allow_credential", .boolean, default: false),
                .field("allow_origins_by_regex", .list(.string(.init(minLength: 1, maxLength: 4096)), minItems: 1, unique: true)),
            ], check: { v, p throws(ConfigError) in
                try checkRegexes(v["allow_origins_by_regex"], FieldPath.join(p, "allow_origins_by_regex"))
                for k in ["allow_origins", "allow_methods", "allow_headers", "expose_headers"] {
                    if let s = v[k]?.stringValue { try checkHeaderValue(s, FieldPath.join(p, k)) }
                }
                if v["allow_credential"] == true {
                    for k in ["allow_origins", "allow_methods", "allow_headers", "expose_headers"] where v[k] == "*" {
                        throw ConfigError(path: FieldPath.join(p, k), "you can not set '*' for other option when 'allow_credential' is true")
                    }
                }
            })),
        PluginSpec(
            name: "ip-restriction", priority: 3000, phases: ["access"],
            schema: .object([
                .field("whitelist", .list(ipOrCIDR, minItems: 1)),
                .field("blacklist", .list(ipOrCIDR, minItems: 1)),
                .field("message", .string(.init(minLength: 1, maxLength: 1024)), default: "Your IP address is not allowed"),
                .field("response_code", .integer(.init(enum: [403, 404])), default: 403),
            ], oneOfRequired: [["whitelist", "blacklist"]], check: { v, p throws(ConfigError) in
                try checkCIDRs(v["whitelist"], FieldPath.join(p, "whitelist"))
                try checkCIDRs(v["blacklist"], FieldPath.join(p, "blacklist"))
            })),
        PluginSpec(
            name: "uri-blocker", priority: 2900, phases: ["rewrite"],
            schema: .object([
                .field("block_rules", .list(.string(.init(minLength: 1, maxLength: 4096)), minItems: 1, unique: true)),
                .field("rejected_code", rejectedCode, default: 403),
                .field("rejected_msg", .nonEmptyString),
                .field("case_insensitive", .boolean, default: false),
            ], required: ["block_rules"], check: { v, p throws(ConfigError) in
                try checkRegexes(v["block_rules"], FieldPath.join(p, "block_rules"))
            })),
        PluginSpec(
            name: "basic-auth", priority: 2520, phases: ["rewrite"],
            schema: .object([
                .field("hide_credentials", .boolean, default: false),
                .field("realm", realm, default: "basic"),
                .field("anonymous_consumer", .nonEmptyString),
            ], check: checkRealm),
            consumerSchema: .object([.field("username", .nonEmptyString), .field("password", .nonEmptyString)], required: ["username", "password"])),
        PluginSpec(
            name: "jwt-auth", priority: 2510, phases: ["rewrite"],
            schema: .object([
                .field("header", .string(), default: "authorization"),
                .field("query", .string(), default: "jwt"),
                .field("cookie", .string(), default: "jwt"),
                .field("hide_credentials", .boolean, default: false),
                .field("key_claim_name", .nonEmptyString, default: "key"),
                .field("realm", realm, default: "jwt"),
                .field("anonymous_consumer", .nonEmptyString),
                .field("claims_to_verify", .list(.stringEnum("exp", "nbf"), unique: true)),
            ], check: checkRealm),
            consumerSchema: .object([
                .field("key", .nonEmptyString),
                .field("secret", .nonEmptyString),
                .field("algorithm", .stringEnum("HS256", "HS384", "HS512", "RS256", "ES256"), default: "HS256"),
                .field("public_key", .nonEmptyString),
                // Seconds a signed token lives (APISIX's sign API; kept for compatibility).
                .field("exp", .int(min: 1, max: PluginLimits.int32Max), default: 86400),
                .field("base64_secret", .boolean, default: false),
                .field("lifetime_grace_period", .int(min: 0, max: PluginLimits.maxWindowSeconds), default: 0),
            ], required: ["key"], check: { v, p throws(ConfigError) in
                let alg = v["algorithm"]?.stringValue ?? "HS256"
                if alg.hasPrefix("HS") {
                    guard let secret = v["secret"]?.stringValue else { throw ConfigError(path: FieldPath.join(p, "secret"), "is required for \(alg)") }
                    if v["base64_secret"] == true, Base64.decode(secret) == nil {
                        throw ConfigError(path: FieldPath.join(p, "secret"), "is not valid base64 (base64_secret is true)")
                    }
                } else if v["public_key"] == nil {
                    throw ConfigError(path: FieldPath.join(p, "public_key"), "is required for \(alg)")
                }
            })),
        PluginSpec(
            name: "key-auth", priority: 2500, phases: ["rewrite"],
            schema: .object([
                .field("header", .string(), default: "apikey"),
                .field("query", .string(), default: "apikey"),
                .field("hide_credentials", .boolean, default: false),
                .field("realm", realm, default: "key"),
                .field("anonymous_consumer", .nonEmptyString),
            ], check: checkRealm),
            consumerSchema: .object([.field("key", .nonEmptyString)], required: ["key"])),
        PluginSpec(
            name: "consumer-restriction", priority: 2400, phases: ["access"],
            schema: .object([
                .field("type", .stringEnum("consumer_name", "service_id", "route_id"), default: "consumer_name"),
                .field("whitelist", .list(.string(), minItems: 1)),
                .field("blacklist", .list(.string(), minItems: 1)),
                .field("allowed_by_methods", .list(.object([
                    .field("user", .string()),
                    .field("methods", .list(.string(.init(enum: httpMethods)), minItems: 1)),
                ], required: ["user", "methods"]))),
                .field("rejected_code", rejectedCode, default: 403),
                .field("rejected_msg", .string()),
            ], anyOfRequired: [["blacklist", "whitelist", "allowed_by_methods"]])),
        PluginSpec(
            name: "proxy-rewrite", priority: 1008, phases: ["rewrite"],
            schema: .object([
                .field("uri", .string(.init(minLength: 1, maxLength: 4096, pattern: #"^\/.*"#))),
                .field("method", .string(.init(enum: ["GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "MKCOL", "COPY", "MOVE", "PROPFIND", "LOCK", "UNLOCK", "PATCH", "TRACE"]))),
                .field("regex_uri", .list(.string(), minItems: 2)),
                .field("host", .string(.init(pattern: #"^[0-9a-zA-Z-.]+(:\d{1,5})?$"#))),
                .field("headers", .anyOf([
                    .object([.field("add", multiValueHeaderMap), .field("set", multiValueHeaderMap), .field("remove", headerNameList)], minProperties: 1),
                    headerMap,
                ])),
                .field("use_real_request_uri_unsafe", .boolean, default: false),
            ], minProperties: 1, check: { v, p throws(ConfigError) in
                try checkURIText(v["uri"], FieldPath.join(p, "uri"))
                if let list = v["regex_uri"]?.arrayValue {
                    guard list.count % 2 == 0 else {
                        throw ConfigError(path: FieldPath.join(p, "regex_uri"), "The length of regex_uri should be an even number")
                    }
                    for i in stride(from: 0, to: list.count, by: 2) {
                        try checkRegex(list[i].stringValue, FieldPath.index(FieldPath.join(p, "regex_uri"), i))
                        try checkURIText(list[i + 1], FieldPath.index(FieldPath.join(p, "regex_uri"), i + 1))
                        try checkReplacement(list[i + 1], FieldPath.index(FieldPath.join(p, "regex_uri"), i + 1))
                    }
                }
                let headers = v["headers"]
                let hp = FieldPath.join(p, "headers")
                if headers?["add"] != nil || headers?["set"] != nil || headers?["remove"] != nil {
                    try checkHeaderMap(headers?["add"], FieldPath.join(hp, "add"), multiValue: true)
                    try checkHeaderMap(headers?["set"], FieldPath.join(hp, "set"), multiValue: true)
                } else {
                    try checkHeaderMap(headers, hp)
                }
            })),
        PluginSpec(
            name: "api-breaker", priority: 1005, phases: ["access", "log"],
            schema: .object([
                .field("break_response_code", .int(min: 200, max: 599)),
                .field("break_response_body", .string()),
                .field("break_response_headers", .list(.object([
                    .field("key", .string(.init(pattern: HeaderSyntax.tokenPattern))), .field("value", .nonEmptyString),
                ], required: ["key", "value"], check: { v, p throws(ConfigError) in
                    if let s = v["value"]?.stringValue { try checkHeaderValue(s, FieldPath.join(p, "value")) }
                }))),
                .field("max_breaker_sec", .int(min: 3, max: PluginLimits.maxWindowSeconds), default: 300),
                .field("unhealthy", .object([
                    .field("http_statuses", .list(.int(min: 500, max: 599), minItems: 1, unique: true), default: [500]),
                    .field("failures", .int(min: 1, max: PluginLimits.int32Max), default: 3),
                ]), default: ["http_statuses": [500], "failures": 3]),
                .field("healthy", .object([
                    .field("http_statuses", .list(.int(min: 200, max: 499), minItems: 1, unique: true), default: [200]),
                    .field("successes", .int(min: 1, max: PluginLimits.int32Max), default: 3),
                ]), default: ["http_statuses": [200], "successes": 3]),
            ], required: ["break_response_code"])),
        PluginSpec(
            name: "limit-conn", priority: 1003, phases: ["access", "log"],
            schema: .object([
                .field("conn", count),
                .field("burst", .int(min: 0, max: PluginLimits.int32Max)),
                .field("default_conn_delay", .num(max: PluginLimits.maxDelaySeconds, exclusiveMin: 0)),
                .field("only_use_default_delay", .boolean, default: false),
                .field("key", .nonEmptyString),
                .field("key_type", keyType, default: "var"),
                .field("rejected_code", rejectedCode, default: 503),
                .field("rejected_msg", .nonEmptyString),
                .field("allow_degradation", .boolean, default: false),
                .field("policy", .stringEnum("local"), default: "local"),
            ], required: ["conn", "burst", "default_conn_delay", "key"])),
        PluginSpec(
            name: "limit-count", priority: 1002, phases: ["access"],
            schema: .object([
                .field("count", count),
                .field("time_window", .int(max: PluginLimits.maxWindowSeconds, exclusiveMin: 0)),
                .field("key", .nonEmptyString, default: "remote_addr"),
                .field("key_type", .stringEnum("var", "var_combination", "constant"), default: "var"),
                .field("group", .nonEmptyString),
                .field("rejected_code", rejectedCode, default: 503),
                .field("rejected_msg", .nonEmptyString),
                .field("policy", .stringEnum("local", "redis"), default: "local"),
                .field("allow_degradation", .boolean, default: false),
                .field("show_limit_quota_header", .boolean, default: true),
                .field("redis_host", .string(.init(minLength: 2))),
                // With policy redis, absent ones mean port 6379, database 0, timeout 1000 ms.
                .field("redis_port", .int(min: 1, max: 65535)),
                .field("redis_username", .nonEmptyString),
                .field("redis_password", .string()),
                .field("redis_database", .int(min: 0, max: PluginLimits.int32Max)),
                .field("redis_timeout", .int(min: 1, max: PluginLimits.maxRedisTimeoutMs)),
            ], required: ["count", "time_window"], check: { v, p throws(ConfigError) in
                if v["policy"] == "redis", v["redis_host"] == nil { throw ConfigError(path: FieldPath.join(p, "redis_host"), "is required when policy is redis") }
            })),
        PluginSpec(
            name: "limit-req", priority: 1001, phases: ["access"],
            schema: .object([
                .field("rate", .num(max: PluginLimits.maxRate, exclusiveMin: 0)),
                .field("burst", .num(min: 0, max: PluginLimits.maxRate)),
                .field("key", .nonEmptyString),
                .field("key_type", keyType, default: "var"),
                .field("rejected_code", rejectedCode, default: 503),
                .field("rejected_msg", .nonEmptyString),
                .field("nodelay", .boolean, default: false),
                .field("allow_degradation", .boolean, default: false),
                .field("policy", .stringEnum("local"), default: "local"),
            ], required: ["rate", "burst", "key"])),
        PluginSpec(
            name: "traffic-split", priority: 966, phases: ["access"],
            schema: .object([
                .field("rules", .list(.object([
                    .field("match", .list(.object([.field("vars", .array(.any))], check: { v, p throws(ConfigError) in try checkVars(v, p) }))),
                    .field("weighted_upstreams", .list(.object([
                        .field("upstream_id", .anyOf([
                            .string(.init(minLength: 1, maxLength: 64, pattern: #"^[a-zA-Z0-9-_.]+$"#)), .int(min: 1, max: PluginLimits.exactIntegerMax),
                        ])),
                        .field("upstream", .map(.any)),
                        .field("weight", .int(min: 0, max: PluginLimits.int32Max), default: 1),
                    ], check: { v, p throws(ConfigError) in
                        if let u = v["upstream"] { _ = try Upstream.decode(u, path: FieldPath.join(p, "upstream")) }
                    }), minItems: 1, maxItems: 20), default: [["weight": 1]]),
                ]))),
            ])),
        PluginSpec(
            name: "redirect", priority: 900, phases: ["rewrite"],
            schema: .object([
                .field("http_to_https", .boolean),
                .field("uri", .string(.init(minLength: 2))),
                .field("regex_uri", .list(.string(), minItems: 2, maxItems: 2)),
                .field("ret_code", .int(min: 200, max: 599), default: 302),
                .field("encode_uri", .boolean, default: false),
                .field("append_query_string", .boolean, default: false),
            ], oneOfRequired: [["http_to_https", "uri", "regex_uri"]], check: { v, p throws(ConfigError) in
                if v["http_to_https"] == true, v["append_query_string"] == true {
                    throw ConfigError(path: FieldPath.join(p, "append_query_string"), "cannot be used with http_to_https")
                }
                if let r = v["regex_uri"]?.arrayValue?.first?.stringValue { try checkRegex(r, FieldPath.index(FieldPath.join(p, "regex_uri"), 0)) }
                try checkURIText(v["uri"], FieldPath.join(p, "uri"))
                if let list = v["regex_uri"]?.arrayValue, list.count == 2 {
                    try checkURIText(list[1], FieldPath.index(FieldPath.join(p, "regex_uri"), 1))
                    try checkReplacement(list[1], FieldPath.index(FieldPath.join(p, "regex_uri"), 1))
                }
            })),
        PluginSpec(
            name: "response-rewrite", priority: 899, phases: ["header_filter", "body_filter"],
            schema: .object([
                .field("status_code", .int(min: 200, max: 598)),
                .field("body", .string()),
                .field("body_base64", .boolean, default: false),
                .field("headers", .anyOf([
                    .object([
                        .field("add", .list(.string(.init(pattern: #"^[^:]+:[^:]*"#)), minItems: 1)),
                        .field("set", headerMap),
                        .field("remove", .list(.string(.init(pattern: HeaderSyntax.tokenPattern)), minItems: 1)),
                    ], minProperties: 1),
                    headerMap,
                ])),
                .field("vars", .array(.any)),
                .field("filters", .list(.object([
                    .field("regex", .nonEmptyString),
                    .field("replace", .string()),
                    .field("scope", .stringEnum("once", "global"), default: "once"),
                    .field("options", .string(), default: "jo"),
                ], required: ["regex", "replace"]), minItems: 1)),
            ], check: { v, p throws(ConfigError) in
                if v["body"] != nil, v["filters"] != nil { throw ConfigError(path: p, "body and filters cannot both be set") }
                try checkVars(v, p)
                // As APISIX: body_base64 needs a body, and one that decodes ("invalid base64 content").
                if v["body_base64"] == true {
                    guard let b = v["body"]?.stringValue, !b.isEmpty, let bytes = Base64.decode(b), !bytes.isEmpty else {
                        throw ConfigError(path: FieldPath.join(p, "body"), "invalid base64 content (body_base64 is true)")
                    }
                }
                for (i, f) in (v["filters"]?.arrayValue ?? []).enumerated() {
                    let fp = FieldPath.index(FieldPath.join(p, "filters"), i)
                    if let r = f["regex"]?.stringValue { try checkRegex(r, FieldPath.join(fp, "regex")) }
                    // PCRE option letters NGINX's ngx.re takes; others are refused, as APISIX does.
                    if let o = f["options"]?.stringValue, let bad = o.first(where: { !"aijosxmuUdDJ".contains($0) }) {
                        throw ConfigError(path: FieldPath.join(fp, "options"), "unknown flag \"\(bad)\"")
                    }
                }
                let headers = v["headers"]
                let hp = FieldPath.join(p, "headers")
                if headers?["add"] != nil || headers?["set"] != nil || headers?["remove"] != nil {
                    // `add` holds "name: value" strings.
                    for (i, item) in (headers?["add"]?.arrayValue ?? []).enumerated() {
                        let ip = FieldPath.index(FieldPath.join(hp, "add"), i)
                        guard let (name, value) = HeaderLine.split(item.stringValue ?? "") else {
                            throw ConfigError(path: ip, "must be \"name: value\"")
                        }
                        try checkHeaderName(name, ip)
                        try checkHeaderValue(value, ip)
                    }
                    try checkHeaderMap(headers?["set"], FieldPath.join(hp, "set"))
                } else {
                    try checkHeaderMap(headers, hp)
                }
            })),
        PluginSpec(
            name: "prometheus", priority: 500, phases: ["log"],
            schema: .object([.field("prefer_name", .boolean, default: false)])),
        PluginSpec(
            name: "echo", priority: 412, phases: ["header_filter", "body_filter"],
            schema: .object([
                .field("before_body", .string()),
                .field("body", .string()),
                .field("after_body", .string()),
                .field("headers", .map(.string(), keyPattern: HeaderSyntax.tokenPattern, minProperties: 1)),
            ], anyOfRequired: [["before_body", "body", "after_body"]], check: { v, p throws(ConfigError) in
                try checkHeaderMap(v["headers"], FieldPath.join(p, "headers"))
            })),
    ]
}

/// A response-rewrite `headers.add` item, `"name: value"`: the name before the first colon
/// and the value after it, both trimmed.
public enum HeaderLine {
    public static func split(_ s: String) -> (name: String, value: String)? {
        guard let colon = s.firstIndex(of: ":") else { return nil }
        let name = String(s[..<colon]).trimmingWhitespace()
        let value = String(s[s.index(after: colon)...]).trimmingWhitespace()
        return name.isEmpty ? nil : (name, value)
    }
}

/// The ranges plugin numbers are held to: by the schemas when a config is written, and again
/// by the runtime when it compiles one (a store written by another tool, or data from an
/// older build, goes through the same clamps), so no configured number can make plugin
/// arithmetic trap or allocate without bound.
public enum PluginLimits {
    public static let int32Min: Double = -2_147_483_648
    /// Counts (requests, connections, failures, weights): 2^31-1.
    public static let int32Max: Double = 2_147_483_647
    /// Integers a double holds exactly (2^53-1): numeric header values, numeric ids.
    public static let exactIntegerMax: Double = 9_007_199_254_740_991
    /// Delays a plugin holds a request for (mocking, fault-injection, limit-conn): 1 day.
    public static let maxDelaySeconds: Double = 86_400
    public static let maxDelayNanos: UInt64 = 86_400 * 1_000_000_000
    /// Windows and breaker periods (limit-count `time_window`, api-breaker
    /// `max_breaker_sec`, jwt grace period): 1 year.
    public static let maxWindowSeconds: Double = 31_536_000
    /// limit-req `rate` and `burst`, per second: 1e9.
    public static let maxRate: Double = 1_000_000_000
    /// client-control `max_body_size`: 1 TiB.
    public static let maxBodySize: Double = 1_099_511_627_776
    /// request-id `range_id.length`.
    public static let rangeIDLength: ClosedRange<Int> = 6...128
    /// limit-count `redis_timeout`, in milliseconds: 1 day.
    public static let maxRedisTimeoutMs: Double = 86_400_000

    /// `value` as an Int held to `range` (absent or not an integer: `default`). For runtime
    /// reads of validated configs: a value outside the range is clamped to it, never trusted.
    public static func int(_ value: JSONValue?, _ range: ClosedRange<Int>, default d: Int) -> Int {
        guard let i = value?.intValue else { return d }
        if i < Int64(range.lowerBound) { return range.lowerBound }
        if i > Int64(range.upperBound) { return range.upperBound }
        return Int(i)
    }

    /// `value` as a finite Double held to `range` (absent, not a number or NaN: `default`).
    public static func double(_ value: JSONValue?, _ range: ClosedRange<Double>, default d: Double) -> Double {
        guard let x = value?.doubleValue, !x.isNaN else { return d }
        return min(max(x, range.lowerBound), range.upperBound)
    }

    /// A status to answer with: `value` when it is a valid final status (100-599), else `default`.
    public static func status(_ value: JSONValue?, default d: Int) -> Int {
        guard let i = value?.intValue, (100...599).contains(i) else { return d }
        return Int(i)
    }
}

/// RFC 9110 field syntax, as the gateway holds what plugins emit to it.
public enum HeaderSyntax {
    /// `token`: the characters of a header name.
    public static let tokenPattern = #"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"#

    @inlinable
    public static func isTokenByte(_ c: UInt8) -> Bool {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"): return true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "*"),
            UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"),
            UInt8(ascii: "~"):
            return true
        default: return false
        }
    }

    public static func isToken(_ s: String) -> Bool { !s.isEmpty && s.utf8.allSatisfy(isTokenByte) }

    /// A byte a field value may not hold: a control character other than HTAB (CR, LF and NUL
    /// among them), or DEL.
    @inlinable
    public static func isUnsafeValueByte(_ c: UInt8) -> Bool { (c < 0x20 && c != 0x09) || c == 0x7F }

    /// Whether `s` can be sent as a header value as it is (no CR, LF, NUL or other control).
    public static func isSafeValue(_ s: String) -> Bool { !s.utf8.contains(where: isUnsafeValueByte) }

    /// A byte that would end or split a request line or a Location value: controls, space, DEL.
    @inlinable
    public static func breaksURI(_ c: UInt8) -> Bool { c <= 0x20 || c == 0x7F }

    /// `s` with every byte that `breaksURI` percent-encoded (`%0D`, `%0A`, `%00`, `%20`...):
    /// the form a URI gives those bytes, so a rewritten URI or a Location is always one line.
    public static func encodingURIBreakers(_ s: String) -> String {
        guard s.utf8.contains(where: breaksURI) else { return s }
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(s.utf8.count + 16)
        for c in s.utf8 {
            if breaksURI(c) {
                out.append(UInt8(ascii: "%"))
                out.append(hex[Int(c >> 4)])
                out.append(hex[Int(c & 0x0F)])
            } else {
                out.append(c)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
