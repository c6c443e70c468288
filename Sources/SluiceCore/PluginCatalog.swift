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
        .field("priority", .integer()),
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
        guard case .object(var out) = try schema.validate(.object(o), path: path) else { return config }
        if let metaValue, metaValue != .null { out["_meta"] = try meta.validate(metaValue, path: FieldPath.join(path, "_meta")) }
        return .object(out)
    }

    // MARK: Shared pieces

    static let rejectedCode = Schema.int(min: 200, max: 599)
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
            guard let s = item.stringValue, (try? CompiledRegex(s)) != nil else {
                throw ConfigError(path: FieldPath.index(path, i), "is not a valid regular expression")
            }
        }
    }
    static let keyType = Schema.stringEnum("var", "var_combination")
    static let httpMethods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE", "PURGE"]
    static let headerMap = Schema.map(.anyOf([.string(), .number()]), keyPattern: "^[^:]+$")

    // MARK: The plugins

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
            schema: .object([.field("max_body_size", .int(min: 0))])),
        PluginSpec(
            name: "request-id", priority: 12015, phases: ["rewrite", "header_filter"],
            schema: .object([
                .field("header_name", .string(), default: "X-Request-Id"),
                .field("include_in_response", .boolean, default: true),
                .field("algorithm", .stringEnum("uuid", "nanoid", "range_id"), default: "uuid"),
                .field("range_id", .object([
                    .field("length", .int(min: 6), default: 16),
                    .field("char_set", .string(.init(minLength: 6)), default: "abcdefghijklmnopqrstuvwxyzABCDEFGHIGKLMNOPQRSTUVWXYZ0123456789"),
                ]), default: ["length": 16, "char_set": "abcdefghijklmnopqrstuvwxyzABCDEFGHIGKLMNOPQRSTUVWXYZ0123456789"]),
            ])),
        PluginSpec(
            name: "fault-injection", priority: 11000, phases: ["rewrite"],
            schema: .object([
                .field("abort", .object([
                    .field("http_status", .int(min: 200)),
                    .field("body", .string()),
                    .field("headers", headerMap),
                    .field("percentage", .int(min: 0, max: 100)),
                    .field("vars", .array(.any)),
                ], required: ["http_status"], check: { v, p throws(ConfigError) in
                    if let vars = v["vars"] { _ = try VarsExpression.parse(vars, path: FieldPath.join(p, "vars")) }
                })),
                .field("delay", .object([
                    .field("duration", .num(min: 0)),
                    .field("percentage", .int(min: 0, max: 100)),
                    .field("vars", .array(.any)),
                ], required: ["duration"], check: { v, p throws(ConfigError) in
                    if let vars = v["vars"] { _ = try VarsExpression.parse(vars, path: FieldPath.join(p, "vars")) }
                })),
            ], minProperties: 1)),
        PluginSpec(
            name: "mocking", priority: 10900, phases: ["access"],
            schema: .object([
                .field("delay", .int(min: 0), default: 0),
                .field("response_status", .int(min: 100), default: 200),
                .field("content_type", .string(), default: "application/json;charset=utf8"),
                .field("response_example", .string()),
                .field("response_schema", .map(.any)),
                .field("with_mock_header", .boolean, default: true),
                .field("response_headers", headerMap),
            ], anyOfRequired: [["response_example", "response_schema"]])),
        PluginSpec(
            name: "cors", priority: 4000, phases: ["rewrite", "header_filter"],
            schema: .object([
                .field("allow_origins", .string(.init(pattern: #"^(\*|\*\*|null|\w+://[^,]+(,\w+://[^,]+)*)$"#)), default: "*"),
                .field("allow_methods", .string(), default: "*"),
                .field("allow_headers", .string(), default: "*"),
                .field("expose_headers", .string(), default: "*"),
                .field("max_age", .integer(), default: 5),
                .field("allow_credential", .boolean, default: false),
                .field("allow_origins_by_regex", .list(.string(.init(minLength: 1, maxLength: 4096)), minItems: 1, unique: true)),
            ], check: { v, p throws(ConfigError) in
                try checkRegexes(v["allow_origins_by_regex"], FieldPath.join(p, "allow_origins_by_regex"))
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
                .field("rejected_code", .int(min: 200), default: 403),
                .field("rejected_msg", .nonEmptyString),
                .field("case_insensitive", .boolean, default: false),
            ], required: ["block_rules"], check: { v, p throws(ConfigError) in
                try checkRegexes(v["block_rules"], FieldPath.join(p, "block_rules"))
            })),
        PluginSpec(
            name: "basic-auth", priority: 2520, phases: ["rewrite"],
            schema: .object([
                .field("hide_credentials", .boolean, default: false),
                .field("realm", .nonEmptyString, default: "basic"),
                .field("anonymous_consumer", .nonEmptyString),
            ]),
            consumerSchema: .object([.field("username", .nonEmptyString), .field("password", .nonEmptyString)], required: ["username", "password"])),
        PluginSpec(
            name: "jwt-auth", priority: 2510, phases: ["rewrite"],
            schema: .object([
                .field("header", .string(), default: "authorization"),
                .field("query", .string(), default: "jwt"),
                .field("cookie", .string(), default: "jwt"),
                .field("hide_credentials", .boolean, default: false),
                .field("key_claim_name", .nonEmptyString, default: "key"),
                .field("realm", .nonEmptyString, default: "jwt"),
                .field("anonymous_consumer", .nonEmptyString),
                .field("claims_to_verify", .list(.stringEnum("exp", "nbf"), unique: true), default: ["exp", "nbf"]),
            ]),
            consumerSchema: .object([
                .field("key", .nonEmptyString),
                .field("secret", .nonEmptyString),
                .field("algorithm", .stringEnum("HS256", "HS384", "HS512", "RS256", "ES256"), default: "HS256"),
                .field("public_key", .nonEmptyString),
                .field("exp", .int(min: 1), default: 86400),
                .field("base64_secret", .boolean, default: false),
                .field("lifetime_grace_period", .int(min: 0), default: 0),
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
                .field("realm", .nonEmptyString, default: "key"),
                .field("anonymous_consumer", .nonEmptyString),
            ]),
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
                .field("rejected_code", .int(min: 200), default: 403),
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
                    .object([.field("add", headerMap), .field("set", headerMap), .field("remove", .list(.string(.init(pattern: "^[^:]+$"))))], minProperties: 1),
                    headerMap,
                ])),
                .field("use_real_request_uri_unsafe", .boolean, default: false),
            ], minProperties: 1, check: { v, p throws(ConfigError) in
                if let list = v["regex_uri"]?.arrayValue {
                    guard list.count % 2 == 0 else { throw ConfigError(path: FieldPath.join(p, "regex_uri"), "must hold pairs of [regex, replacement]") }
                    for i in stride(from: 0, to: list.count, by: 2) {
                        guard let s = list[i].stringValue, (try? CompiledRegex(s)) != nil else {
                            throw ConfigError(path: FieldPath.index(FieldPath.join(p, "regex_uri"), i), "is not a valid regular expression")
                        }
                    }
                }
            })),
        PluginSpec(
            name: "api-breaker", priority: 1005, phases: ["access", "log"],
            schema: .object([
                .field("break_response_code", .int(min: 200, max: 599)),
                .field("break_response_body", .string()),
                .field("break_response_headers", .list(.object([.field("key", .nonEmptyString), .field("value", .nonEmptyString)], required: ["key", "value"]))),
                .field("max_breaker_sec", .int(min: 3), default: 300),
                .field("unhealthy", .object([
                    .field("http_statuses", .list(.int(min: 500, max: 599), minItems: 1, unique: true), default: [500]),
                    .field("failures", .int(min: 1), default: 3),
                ]), default: ["http_statuses": [500], "failures": 3]),
                .field("healthy", .object([
                    .field("http_statuses", .list(.int(min: 200, max: 499), minItems: 1, unique: true), default: [200]),
                    .field("successes", .int(min: 1), default: 3),
                ]), default: ["http_statuses": [200], "successes": 3]),
            ], required: ["break_response_code"])),
        PluginSpec(
            name: "limit-conn", priority: 1003, phases: ["access", "log"],
            schema: .object([
                .field("conn", .int(exclusiveMin: 0)),
                .field("burst", .int(min: 0)),
                .field("default_conn_delay", .num(exclusiveMin: 0)),
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
                .field("count", .int(exclusiveMin: 0)),
                .field("time_window", .int(exclusiveMin: 0)),
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
                .field("redis_database", .int(min: 0)),
                .field("redis_timeout", .int(min: 1)),
            ], required: ["count", "time_window"], check: { v, p throws(ConfigError) in
                if v["policy"] == "redis", v["redis_host"] == nil { throw ConfigError(path: FieldPath.join(p, "redis_host"), "is required when policy is redis") }
            })),
        PluginSpec(
            name: "limit-req", priority: 1001, phases: ["access"],
            schema: .object([
                .field("rate", .num(exclusiveMin: 0)),
                .field("burst", .num(min: 0)),
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
                    .field("match", .list(.object([.field("vars", .array(.any))], check: { v, p throws(ConfigError) in
                        if let vars = v["vars"] { _ = try VarsExpression.parse(vars, path: FieldPath.join(p, "vars")) }
                    }))),
                    .field("weighted_upstreams", .list(.object([
                        .field("upstream_id", .anyOf([.string(.init(minLength: 1, maxLength: 64, pattern: #"^[a-zA-Z0-9-_.]+$"#)), .int(min: 1)])),
                        .field("upstream", .map(.any)),
                        .field("weight", .int(min: 0), default: 1),
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
                .field("ret_code", .int(min: 200), default: 302),
                .field("encode_uri", .boolean, default: false),
                .field("append_query_string", .boolean, default: false),
            ], oneOfRequired: [["http_to_https", "uri", "regex_uri"]], check: { v, p throws(ConfigError) in
                if v["http_to_https"] == true, v["append_query_string"] == true {
                    throw ConfigError(path: FieldPath.join(p, "append_query_string"), "cannot be used with http_to_https")
                }
                if let r = v["regex_uri"]?.arrayValue?.first?.stringValue, (try? CompiledRegex(r)) == nil {
                    throw ConfigError(path: FieldPath.index(FieldPath.join(p, "regex_uri"), 0), "is not a valid regular expression")
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
                        .field("remove", .list(.string(.init(pattern: "^[^:]+$")), minItems: 1)),
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
                if let vars = v["vars"] { _ = try VarsExpression.parse(vars, path: FieldPath.join(p, "vars")) }
                if v["body_base64"] == true, let b = v["body"]?.stringValue, Base64.decode(b) == nil {
                    throw ConfigError(path: FieldPath.join(p, "body"), "is not valid base64 (body_base64 is true)")
                }
                for (i, f) in (v["filters"]?.arrayValue ?? []).enumerated() {
                    if let r = f["regex"]?.stringValue, (try? CompiledRegex(r)) == nil {
                        throw ConfigError(path: FieldPath.join(FieldPath.index(FieldPath.join(p, "filters"), i), "regex"), "is not a valid regular expression")
                    }
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
                .field("headers", .map(.string(), minProperties: 1)),
            ], anyOfRequired: [["before_body", "body", "after_body"]])),
    ]
}
