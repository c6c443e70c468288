import SluiceCore
import Testing

/// The config schemas of every runnable plugin, as `PluginCatalog.validate` applies them:
/// valid configs come back with APISIX's documented defaults filled in, invalid ones are
/// refused with the exact field path and a message saying what is wrong.
@Suite struct PluginSchemaTests {
    static func path(_ plugin: String) -> String { "plugins.\(plugin)" }

    static func json(_ text: String) -> JSONValue {
        do { return try JSONValue.parse(text) } catch {
            Issue.record("test JSON does not parse: \(text): \(error)")
            return .null
        }
    }

    static func validate(_ plugin: String, _ config: String, consumer: Bool = false) throws -> JSONValue {
        try PluginCatalog.validate(plugin, json(config), path: path(plugin), consumer: consumer)
    }

    /// The error a config is refused with; records an issue when it is accepted.
    static func refusal(_ plugin: String, _ config: JSONValue, consumer: Bool = false) -> ConfigError? {
        do throws(ConfigError) {
            let out = try PluginCatalog.validate(plugin, config, path: path(plugin), consumer: consumer)
            Issue.record("\(plugin) accepted \(config) as \(out)")
            return nil
        } catch {
            return error
        }
    }

    // MARK: Valid configs

    /// (plugin, config, what validation adds or changes). The expected output is the config
    /// merge-patched with the third column, and the output must equal it exactly, so a
    /// missing, wrong or extra default fails.
    static let valid: [(String, String, String)] = [
        ("real-ip", #"{"source":"http_x_forwarded_for","trusted_addresses":["10.0.0.0/8","::1"]}"#, #"{"recursive":false}"#),
        ("real-ip", #"{"source":"arg_realip","recursive":true}"#, "{}"),
        ("client-control", #"{"max_body_size":1024}"#, "{}"),
        ("client-control", #"{"max_body_size":0}"#, "{}"),
        ("request-id", "{}", #"""
            {"header_name":"X-Request-Id","include_in_response":true,"algorithm":"uuid",
             "range_id":{"length":16,"char_set":"abcdefghijklmnopqrstuvwxyzABCDEFGHIGKLMNOPQRSTUVWXYZ0123456789"}}
            """#),
        ("request-id", #"{"header_name":"X-Trace","algorithm":"range_id","range_id":{"length":8}}"#, #"""
            {"include_in_response":true,"range_id":{"char_set":"abcdefghijklmnopqrstuvwxyzABCDEFGHIGKLMNOPQRSTUVWXYZ0123456789"}}
            """#),
        ("fault-injection", #"{"abort":{"http_status":418,"body":"teapot","percentage":50,"vars":[[["arg_name","==","jack"]]]}}"#, "{}"),
        ("fault-injection", #"{"delay":{"duration":0.5,"percentage":100}}"#, "{}"),
        ("mocking", #"{"response_example":"{\"a\":1}"}"#,
         #"{"delay":0,"response_status":200,"content_type":"application/json;charset=utf8","with_mock_header":true}"#),
        ("mocking", #"{"response_schema":{"type":"object"},"response_status":201,"delay":1,"response_headers":{"X-Mock":"yes"}}"#,
         #"{"content_type":"application/json;charset=utf8","with_mock_header":true}"#),
        ("cors", "{}", #"""
            {"allow_origins":"*","allow_methods":"*","allow_headers":"*","max_age":5,"allow_credential":false}
            """#),
        ("cors", #"""
            {"allow_origins":"https://a.example.com,https://b.example.com:8443","allow_methods":"GET,POST",
             "allow_headers":"Authorization","expose_headers":"X-Trace","allow_credential":true,"allow_origins_by_regex":["^https://.*\\.example\\.org$"]}
            """#, #"{"max_age":5}"#),
        ("ip-restriction", #"{"whitelist":["127.0.0.1","10.0.0.0/8","::1/128"]}"#,
         #"{"message":"Your IP address is not allowed","response_code":403}"#),
        ("ip-restriction", #"{"blacklist":["192.168.1.0/24"],"message":"go away","response_code":404}"#, "{}"),
        ("uri-blocker", #"{"block_rules":["^/admin",".*\\.php$"]}"#, #"{"rejected_code":403,"case_insensitive":false}"#),
        ("uri-blocker", #"{"block_rules":["root.exe"],"rejected_code":410,"rejected_msg":"blocked","case_insensitive":true}"#, "{}"),
        ("basic-auth", "{}", #"{"hide_credentials":false,"realm":"basic"}"#),
        ("basic-auth", #"{"hide_credentials":true,"anonymous_consumer":"guest"}"#, #"{"realm":"basic"}"#),
        ("jwt-auth", "{}", #"""
            {"header":"authorization","query":"jwt","cookie":"jwt","hide_credentials":false,"key_claim_name":"key","realm":"jwt"}
            """#),
        ("jwt-auth", #"{"header":"X-JWT","claims_to_verify":["exp"],"anonymous_consumer":"guest"}"#,
         #"{"query":"jwt","cookie":"jwt","hide_credentials":false,"key_claim_name":"key","realm":"jwt"}"#),
        ("key-auth", "{}", #"{"header":"apikey","query":"apikey","hide_credentials":false,"realm":"key"}"#),
        ("key-auth", #"{"header":"X-Key","hide_credentials":true}"#, #"{"query":"apikey","realm":"key"}"#),
        ("consumer-restriction", #"{"whitelist":["jack","rose"]}"#, #"{"type":"consumer_name","rejected_code":403}"#),
        ("consumer-restriction", #"{"allowed_by_methods":[{"user":"jack","methods":["GET","POST"]}],"rejected_msg":"no"}"#,
         #"{"type":"consumer_name","rejected_code":403}"#),
        ("proxy-rewrite", #"{"uri":"/v2/users","host":"api.internal:8080","method":"POST","headers":{"set":{"X-Api":"v2"},"remove":["Cookie"]}}"#,
         #"{"use_real_request_uri_unsafe":false}"#),
        ("proxy-rewrite", #"{"regex_uri":["^/api/(.*)","/$1","^/old/(.*)","/new/$1"],"headers":{"X-Api":"v1"}}"#,
         #"{"use_real_request_uri_unsafe":false}"#),
        ("limit-conn", #"{"conn":100,"burst":50,"default_conn_delay":0.1,"key":"remote_addr"}"#, #"""
            {"only_use_default_delay":false,"key_type":"var","rejected_code":503,"allow_degradation":false,"policy":"local"}
            """#),
        ("limit-conn", #"{"conn":1,"burst":0,"default_conn_delay":1,"key":"$remote_addr $http_x_user","key_type":"var_combination","rejected_code":429}"#,
         #"{"only_use_default_delay":false,"allow_degradation":false,"policy":"local"}"#),
        // Redis settings get no defaults in the stored config (the runtime uses 6379, 0, 1000 ms).
        ("limit-count", #"{"count":2,"time_window":60}"#, #"""
            {"key":"remote_addr","key_type":"var","rejected_code":503,"policy":"local","allow_degradation":false,
             "show_limit_quota_header":true}
            """#),
        ("limit-count", #"{"count":10,"time_window":1,"key":"http_x_user","group":"g1","rejected_code":429,"rejected_msg":"slow down"}"#, #"""
            {"key_type":"var","policy":"local","allow_degradation":false,"show_limit_quota_header":true}
            """#),
        ("limit-count", #"{"count":5,"time_window":10,"policy":"redis","redis_host":"127.0.0.1","redis_password":"pw"}"#, #"""
            {"key":"remote_addr","key_type":"var","rejected_code":503,"allow_degradation":false,
             "show_limit_quota_header":true}
            """#),
        ("limit-req", #"{"rate":1,"burst":2,"key":"remote_addr"}"#,
         #"{"key_type":"var","rejected_code":503,"nodelay":false,"allow_degradation":false,"policy":"local"}"#),
        ("limit-req", #"{"rate":0.5,"burst":0,"key":"consumer_name","nodelay":true,"rejected_code":429}"#,
         #"{"key_type":"var","allow_degradation":false,"policy":"local"}"#),
        ("redirect", #"{"uri":"/new/path"}"#, #"{"ret_code":302,"encode_uri":false,"append_query_string":false}"#),
        ("redirect", #"{"http_to_https":true,"ret_code":301}"#, #"{"encode_uri":false,"append_query_string":false}"#),
        ("redirect", #"{"regex_uri":["^/old/(.*)","/new/$1"]}"#, #"{"ret_code":302,"encode_uri":false,"append_query_string":false}"#),
        ("response-rewrite", #"{"status_code":200,"body":"ok","headers":{"set":{"X-Server":"sluice"}},"vars":[["status","==",500]]}"#,
         #"{"body_base64":false}"#),
        ("response-rewrite", #"{"body":"aGVsbG8=","body_base64":true,"headers":{"add":["X-A: 1"]}}"#, "{}"),
        ("response-rewrite", #"{"filters":[{"regex":"hello","replace":"world"}]}"#,
         #"{"body_base64":false,"filters":[{"regex":"hello","replace":"world","scope":"once","options":"jo"}]}"#),
        ("echo", #"{"before_body":"before ","after_body":" after"}"#, "{}"),
        ("echo", #"{"body":"replaced","headers":{"X-Echo":"1"}}"#, "{}"),
        ("traffic-split", #"{"rules":[{"match":[{"vars":[["arg_canary","==","1"]]}],"weighted_upstreams":[{"upstream_id":"1","weight":3},{}]}]}"#,
         #"{"rules":[{"match":[{"vars":[["arg_canary","==","1"]]}],"weighted_upstreams":[{"upstream_id":"1","weight":3},{"weight":1}]}]}"#),
        ("api-breaker", #"{"break_response_code":502}"#,
         #"{"max_breaker_sec":300,"unhealthy":{"http_statuses":[500],"failures":3},"healthy":{"http_statuses":[200],"successes":3}}"#),
        ("api-breaker", #"{"break_response_code":503,"unhealthy":{"failures":1}}"#,
         #"{"max_breaker_sec":300,"unhealthy":{"http_statuses":[500]},"healthy":{"http_statuses":[200],"successes":3}}"#),
        ("prometheus", "{}", #"{"prefer_name":false}"#),
    ]

    @Test(arguments: valid)
    func validConfigGetsDefaults(plugin: String, config: String, filled: String) throws {
        let out = try Self.validate(plugin, config)
        let expected = Self.json(config).mergePatched(with: Self.json(filled))
        #expect(out == expected)
    }

    /// Spot checks of the defaults the APISIX documentation names, read field by field.
    @Test func documentedDefaults() throws {
        let key = try Self.validate("key-auth", "{}")
        #expect(key["header"] == "apikey" && key["query"] == "apikey" && key["hide_credentials"] == false)
        let count = try Self.validate("limit-count", #"{"count":1,"time_window":1}"#)
        #expect(count["key"] == "remote_addr" && count["rejected_code"] == 503 && count["policy"] == "local")
        #expect(count["show_limit_quota_header"] == true)
        let ip = try Self.validate("ip-restriction", #"{"whitelist":["1.2.3.4"]}"#)
        #expect(ip["message"] == "Your IP address is not allowed" && ip["response_code"] == 403)
        let cors = try Self.validate("cors", "{}")
        #expect(cors["allow_origins"] == "*" && cors["max_age"] == 5)
        #expect(try Self.validate("uri-blocker", #"{"block_rules":["x"]}"#)["rejected_code"] == 403)
        #expect(try Self.validate("redirect", #"{"uri":"/x"}"#)["ret_code"] == 302)
        #expect(try Self.validate("request-id", "{}")["header_name"] == "X-Request-Id")
        #expect(try Self.validate("mocking", #"{"response_example":"x"}"#)["response_status"] == 200)
        #expect(try Self.validate("limit-req", #"{"rate":1,"burst":1,"key":"remote_addr"}"#)["rejected_code"] == 503)
        // A given value wins over the default.
        #expect(try Self.validate("key-auth", #"{"header":"X-Key"}"#)["header"] == "X-Key")
    }

    // MARK: Invalid configs

    /// (plugin, config, path after `plugins.NAME` ("" for the plugin itself), message fragment).
    static let invalid: [(String, String, String, String)] = [
        ("real-ip", "{}", ".source", "is required"),
        ("real-ip", #"{"source":"not_a_var"}"#, ".source", "must name a request variable"),
        ("real-ip", #"{"source":"http_x_real_ip","trusted_addresses":["10.0.0.0/33"]}"#, ".trusted_addresses[0]", "invalid ip address"),
        ("real-ip", #"{"source":"remote_addr","recursive":"yes"}"#, ".recursive", "must be a boolean, got string"),
        ("client-control", #"{"max_body_size":-1}"#, ".max_body_size", "must be >= 0"),
        ("client-control", #"{"max_body_size":"1m"}"#, ".max_body_size", "must be an integer, got string"),
        ("client-control", #"{"max_size":1}"#, ".max_size", "unknown field"),
        ("request-id", #"{"algorithm":"snowflake"}"#, ".algorithm", "must be one of uuid, nanoid, range_id"),
        ("request-id", #"{"range_id":{"length":5}}"#, ".range_id.length", "must be >= 6"),
        ("request-id", #"{"include_in_response":1}"#, ".include_in_response", "must be a boolean, got integer"),
        ("fault-injection", "{}", "", "must set at least 1 field"),
        ("fault-injection", #"{"abort":{"body":"x"}}"#, ".abort.http_status", "is required"),
        ("fault-injection", #"{"abort":{"http_status":500,"percentage":101}}"#, ".abort.percentage", "must be <= 100"),
        ("fault-injection", #"{"abort":{"http_status":199}}"#, ".abort.http_status", "must be >= 200"),
        ("fault-injection", #"{"delay":{"duration":-1}}"#, ".delay.duration", "must be >= 0"),
        ("fault-injection", #"{"abort":{"http_status":403,"vars":[[["nope","==","1"]]]}}"#, ".abort.vars[0][0][0]", "unknown variable"),
        ("mocking", "{}", "", "needs at least one of response_example, response_schema"),
        ("mocking", #"{"response_example":"x","response_status":99}"#, ".response_status", "must be >= 100"),
        ("mocking", #"{"response_example":"x","delay":"1"}"#, ".delay", "must be an integer, got string"),
        ("cors", #"{"allow_credential":true}"#, ".allow_origins", "you can not set '*' for other option when 'allow_credential' is true"),
        ("cors", #"{"allow_credential":true,"allow_origins":"https://a.example.com"}"#, ".allow_methods", "you can not set '*'"),
        ("cors", #"{"allow_origins":"example.com"}"#, ".allow_origins", "must match"),
        ("cors", #"{"max_age":"5"}"#, ".max_age", "must be an integer, got string"),
        ("cors", #"{"allow_origins_by_regex":["(unclosed"]}"#, ".allow_origins_by_regex[0]", "is not a usable regular expression"),
        ("ip-restriction", #"{"whitelist":["1.1.1.1"],"blacklist":["2.2.2.2"]}"#, "", "takes only one of whitelist, blacklist"),
        ("ip-restriction", "{}", "", "needs one of whitelist, blacklist"),
        ("ip-restriction", #"{"whitelist":["10.0.0.256"]}"#, ".whitelist[0]", "invalid ip address"),
        ("ip-restriction", #"{"blacklist":["1.1.1.1","bad/8"]}"#, ".blacklist[1]", "invalid ip address"),
        ("ip-restriction", #"{"blacklist":["1.1.1.1"],"response_code":401}"#, ".response_code", "must be one of 403, 404"),
        ("ip-restriction", #"{"whitelist":[]}"#, ".whitelist", "must not be empty"),
        ("uri-blocker", "{}", ".block_rules", "is required"),
        ("uri-blocker", #"{"block_rules":["^/ok","(unclosed"]}"#, ".block_rules[1]", "is not a usable regular expression"),
        // PCRE constructs that need backtracking are refused, naming the construct.
        ("uri-blocker", #"{"block_rules":["(a)\\1"]}"#, ".block_rules[0]", "backreference"),
        ("uri-blocker", #"{"block_rules":["^/(?!admin)"]}"#, ".block_rules[0]", "look"),
        ("uri-blocker", #"{"block_rules":["a","a"]}"#, ".block_rules[1]", "duplicates an earlier item"),
        ("uri-blocker", #"{"block_rules":["a"],"rejected_code":199}"#, ".rejected_code", "must be >= 200"),
        ("basic-auth", #"{"hide_credentials":"true"}"#, ".hide_credentials", "must be a boolean, got string"),
        ("basic-auth", #"{"realm":""}"#, ".realm", "must not be empty"),
        ("basic-auth", #"{"username":"u"}"#, ".username", "unknown field"),
        ("jwt-auth", #"{"claims_to_verify":["iat"]}"#, ".claims_to_verify[0]", "must be one of exp, nbf"),
        ("jwt-auth", #"{"claims_to_verify":["exp","exp"]}"#, ".claims_to_verify[1]", "duplicates an earlier item"),
        ("jwt-auth", #"{"key":"k","secret":"s"}"#, ".key", "unknown field"),
        ("key-auth", #"{"header":7}"#, ".header", "must be a string, got integer"),
        ("key-auth", #"{"key":"k"}"#, ".key", "unknown field"),
        ("key-auth", #"{"anonymous_consumer":""}"#, ".anonymous_consumer", "must not be empty"),
        ("consumer-restriction", "{}", "", "needs at least one of blacklist, whitelist, allowed_by_methods"),
        ("consumer-restriction", #"{"type":"consumer","whitelist":["a"]}"#, ".type", "must be one of consumer_name, service_id, route_id"),
        ("consumer-restriction", #"{"allowed_by_methods":[{"user":"jack","methods":["FETCH"]}]}"#, ".allowed_by_methods[0].methods[0]", "must be one of"),
        ("consumer-restriction", #"{"allowed_by_methods":[{"user":"jack"}]}"#, ".allowed_by_methods[0].methods", "is required"),
        ("consumer-restriction", #"{"whitelist":["a"],"rejected_code":100}"#, ".rejected_code", "must be >= 200"),
        ("proxy-rewrite", "{}", "", "must set at least 1 field"),
        ("proxy-rewrite", #"{"regex_uri":["^/a","/b","^/c"]}"#, ".regex_uri", "The length of regex_uri should be an even number"),
        ("proxy-rewrite", #"{"regex_uri":["^/a/(.*)","/b/$name"]}"#, ".regex_uri[1]", "failed to compile the replacement template"),
        ("redirect", #"{"regex_uri":["^/a/(.*)","/b/$uri"]}"#, ".regex_uri[1]", "failed to compile the replacement template"),
        ("proxy-rewrite", #"{"headers":{"set":{"X-A":[]}}}"#, ".headers.set.X-A", "must not be empty"),
        ("proxy-rewrite", #"{"headers":{"add":{"X-A":["ok",{"no":1}]}}}"#, ".headers.add.X-A[1]", "must be a string or a number"),
        ("fault-injection", #"{"abort":{"http_status":403,"vars":[["arg_name","==","jack"]]}}"#, ".abort.vars[0]", "rule should be wrapped inside brackets"),
        ("response-rewrite", #"{"body_base64":true}"#, ".body", "invalid base64 content"),
        ("response-rewrite", #"{"body":"","body_base64":true}"#, ".body", "invalid base64 content"),
        ("response-rewrite", #"{"filters":[{"regex":"hello","replace":"x","options":"h"}]}"#, ".filters[0].options", "unknown flag"),
        ("mocking", #"{"response_example":"x","content_type":"image/png"}"#, ".content_type", "unsupported content type!"),
        ("proxy-rewrite", #"{"regex_uri":["^/a","/b","(bad","/c"]}"#, ".regex_uri[2]", "is not a usable regular expression"),
        ("proxy-rewrite", #"{"regex_uri":["^/a"]}"#, ".regex_uri", "must have at least 2 items"),
        ("proxy-rewrite", #"{"uri":"relative"}"#, ".uri", "must match"),
        ("proxy-rewrite", #"{"method":"FETCH"}"#, ".method", "must be one of"),
        ("proxy-rewrite", #"{"host":"bad host"}"#, ".host", "must match"),
        ("limit-conn", #"{"conn":0,"burst":0,"default_conn_delay":0.1,"key":"remote_addr"}"#, ".conn", "must be > 0"),
        ("limit-conn", #"{"conn":1,"burst":0,"key":"remote_addr"}"#, ".default_conn_delay", "is required"),
        ("limit-conn", #"{"conn":1,"burst":0,"default_conn_delay":0,"key":"remote_addr"}"#, ".default_conn_delay", "must be > 0"),
        ("limit-conn", #"{"conn":1,"burst":0,"default_conn_delay":1,"key":"k","key_type":"constant"}"#, ".key_type", "must be one of var, var_combination"),
        ("limit-conn", #"{"conn":1,"burst":0,"default_conn_delay":1,"key":"k","rejected_code":600}"#, ".rejected_code", "must be <= 599"),
        ("limit-count", #"{"count":2}"#, ".time_window", "is required"),
        ("limit-count", #"{"count":2,"time_window":60,"policy":"redis-cluster"}"#, ".policy", "must be one of local"),
        ("limit-count", #"{"count":2,"time_window":60,"policy":"redis"}"#, ".redis_host", "is required when policy is redis"),
        ("limit-count", #"{"count":2,"time_window":60,"policy":"redis","redis_host":"redis.local","redis_port":70000}"#, ".redis_port", "must be <= 65535"),
        ("limit-count", #"{"count":2,"time_window":60,"rejected_code":100}"#, ".rejected_code", "must be >= 200"),
        ("limit-count", #"{"count":1.5,"time_window":60}"#, ".count", "must be an integer, got number"),
        ("limit-count", #"{"count":2,"time_window":0}"#, ".time_window", "must be > 0"),
        ("limit-count", #"{"count":2,"time_window":60,"burst":3}"#, ".burst", "unknown field"),
        ("limit-req", #"{"rate":0,"burst":1,"key":"remote_addr"}"#, ".rate", "must be > 0"),
        ("limit-req", #"{"rate":1,"burst":-1,"key":"remote_addr"}"#, ".burst", "must be >= 0"),
        ("limit-req", #"{"rate":1,"burst":1}"#, ".key", "is required"),
        ("limit-req", #"{"rate":1,"burst":1,"key":"remote_addr","nodelay":"no"}"#, ".nodelay", "must be a boolean, got string"),
        ("redirect", #"{"uri":"/a","http_to_https":true}"#, "", "takes only one of http_to_https, uri"),
        ("redirect", "{}", "", "needs one of http_to_https, uri, regex_uri"),
        ("redirect", #"{"http_to_https":true,"append_query_string":true}"#, ".append_query_string", "cannot be used with http_to_https"),
        ("redirect", #"{"uri":"/a","ret_code":100}"#, ".ret_code", "must be >= 200"),
        ("redirect", #"{"regex_uri":["^/a","/b","/c"]}"#, ".regex_uri", "must have at most 2 items"),
        ("redirect", #"{"regex_uri":["(x","/b"]}"#, ".regex_uri[0]", "is not a usable regular expression"),
        ("redirect", #"{"uri":"/"}"#, ".uri", "must be at least 2 characters"),
        ("response-rewrite", #"{"body":"x","filters":[{"regex":"a","replace":"b"}]}"#, "", "body and filters cannot both be set"),
        ("response-rewrite", #"{"status_code":599}"#, ".status_code", "must be <= 598"),
        ("response-rewrite", #"{"body":"not base64!","body_base64":true}"#, ".body", "invalid base64 content"),
        ("response-rewrite", #"{"filters":[{"regex":"a"}]}"#, ".filters[0].replace", "is required"),
        ("response-rewrite", #"{"filters":[{"regex":"a","replace":"b","scope":"all"}]}"#, ".filters[0].scope", "must be one of once, global"),
        ("response-rewrite", #"{"filters":[{"regex":"(a","replace":"b"}]}"#, ".filters[0].regex", "is not a usable regular expression"),
        ("response-rewrite", #"{"vars":[["nope","==","1"]]}"#, ".vars[0][0]", "unknown variable"),
        ("echo", "{}", "", "needs at least one of before_body, body, after_body"),
        ("echo", #"{"body":"x","headers":{}}"#, ".headers", "must have at least 1 entries"),
        ("echo", #"{"body":5}"#, ".body", "must be a string, got integer"),
        ("traffic-split", #"{"rules":[{"weighted_upstreams":[]}]}"#, ".rules[0].weighted_upstreams", "must not be empty"),
        ("traffic-split", #"{"rules":[{"weighted_upstreams":[{"weight":-1}]}]}"#, ".rules[0].weighted_upstreams[0].weight", "must be >= 0"),
        ("traffic-split", #"{"rules":[{"match":[{"vars":[["uri","~~","(x"]]}]}]}"#, ".rules[0].match[0].vars[0][2]", "invalid regular expression"),
        ("api-breaker", "{}", ".break_response_code", "is required"),
        ("api-breaker", #"{"break_response_code":502,"max_breaker_sec":2}"#, ".max_breaker_sec", "must be >= 3"),
        ("api-breaker", #"{"break_response_code":502,"unhealthy":{"http_statuses":[404]}}"#, ".unhealthy.http_statuses[0]", "must be >= 500"),
        ("prometheus", #"{"prefer_name":1}"#, ".prefer_name", "must be a boolean, got integer"),
        ("prometheus", #"{"prefix":"x"}"#, ".prefix", "unknown field"),
    ]

    @Test(arguments: invalid)
    func invalidConfigIsRefused(plugin: String, config: String, field: String, message: String) {
        guard let e = Self.refusal(plugin, Self.json(config)) else { return }
        #expect(e.path == Self.path(plugin) + field, "\(e)")
        #expect(e.message.contains(message), "\(e)")
    }

    @Test(arguments: ["key-auth", "limit-count", "echo"])
    func nonObjectConfigIsRefused(plugin: String) {
        for bad: JSONValue in ["apikey", 1, ["header"], true] {
            let e = Self.refusal(plugin, bad)
            #expect(e?.path == Self.path(plugin))
            #expect(e?.message.hasPrefix("must be an object, got \(bad.typeName)") == true, "\(String(describing: e))")
        }
    }

    /// Every runnable plugin has valid configs and at least two refusals in the tables above.
    @Test func tablesCoverEveryRunnablePlugin() {
        #expect(Set(PluginCatalog.all.keys) == PluginCatalog.runnable)
        #expect(Set(Self.valid.map(\.0)) == PluginCatalog.runnable)
        for name in PluginCatalog.runnable {
            #expect(Self.invalid.filter { $0.0 == name }.count >= 2, "\(name) needs two invalid configs")
        }
    }

    // MARK: _meta

    /// The first valid config of each plugin.
    static var minimal: [String: String] {
        var out: [String: String] = [:]
        for (name, config, _) in valid where out[name] == nil { out[name] = config }
        return out
    }

    static let metaCases: [(String, String, String)] = [
        (#"{"disable":"yes"}"#, "._meta.disable", "must be a boolean, got string"),
        (#"{"priority":"high"}"#, "._meta.priority", "must be an integer, got string"),
        (#"{"filter":[["nope","==","1"]]}"#, "._meta.filter[0][0]", "unknown variable \"nope\""),
        (#"{"filter":[["arg_a","=~","1"]]}"#, "._meta.filter[0][1]", "unknown operator"),
        (#"{"filter":"arg_a"}"#, "._meta.filter", "must be an array, got string"),
        (#"{"error_response":42}"#, "._meta.error_response", "must be a string, got integer"),
        (#"{"bogus":1}"#, "._meta.bogus", "unknown field"),
        (#""off""#, "._meta", "must be an object, got string"),
    ]

    @Test(arguments: PluginCatalog.runnable.sorted(), metaCases)
    func invalidMetaIsRefused(plugin: String, metaCase: (String, String, String)) throws {
        let (meta, field, message) = metaCase
        guard case .object(var o) = Self.json(Self.minimal[plugin] ?? "{}") else { Issue.record("no minimal config"); return }
        o["_meta"] = Self.json(meta)
        guard let e = Self.refusal(plugin, .object(o)) else { return }
        #expect(e.path == Self.path(plugin) + field, "\(e)")
        #expect(e.message.contains(message), "\(e)")
    }

    @Test(arguments: PluginCatalog.runnable.sorted())
    func validMetaIsKept(plugin: String) throws {
        guard case .object(var o) = Self.json(Self.minimal[plugin] ?? "{}") else { Issue.record("no minimal config"); return }
        let meta = Self.json(#"{"disable":true,"priority":-10,"error_response":{"message":"nope"},"filter":[["arg_version","==","v2"]]}"#)
        o["_meta"] = meta
        let out = try PluginCatalog.validate(plugin, .object(o), path: Self.path(plugin))
        #expect(out["_meta"] == meta)
        // _meta is checked apart from the plugin's own fields: the rest validates as without it.
        o.removeValue(forKey: "_meta")
        let plain = try PluginCatalog.validate(plugin, .object(o), path: Self.path(plugin))
        guard case .object(var rest) = out else { Issue.record("not an object"); return }
        rest.removeValue(forKey: "_meta")
        #expect(JSONValue.object(rest) == plain)
    }

    // MARK: Consumers, unknown plugins, schema documents

    /// (plugin, credential, what validation adds) for a consumer's `plugins.NAME`.
    static let consumerValid: [(String, String, String)] = [
        ("key-auth", #"{"key":"k"}"#, "{}"),
        ("basic-auth", #"{"username":"jack","password":"s3cret"}"#, "{}"),
        ("jwt-auth", #"{"key":"user-key","secret":"my-secret"}"#,
         #"{"algorithm":"HS256","exp":86400,"base64_secret":false,"lifetime_grace_period":0}"#),
        ("jwt-auth", #"{"key":"k","algorithm":"RS256","public_key":"-----BEGIN PUBLIC KEY-----","exp":60}"#,
         #"{"base64_secret":false,"lifetime_grace_period":0}"#),
    ]

    @Test(arguments: consumerValid)
    func consumerCredentialIsValid(plugin: String, config: String, filled: String) throws {
        let out = try Self.validate(plugin, config, consumer: true)
        #expect(out == Self.json(config).mergePatched(with: Self.json(filled)))
    }

    static let consumerInvalid: [(String, String, String, String)] = [
        ("key-auth", "{}", ".key", "is required"),
        ("key-auth", #"{"key":""}"#, ".key", "must not be empty"),
        ("key-auth", #"{"key":"k","header":"X-Key"}"#, ".header", "unknown field"),  // route options are not credential fields
        ("basic-auth", #"{"username":"jack"}"#, ".password", "is required"),
        ("basic-auth", #"{"password":"p"}"#, ".username", "is required"),
        ("basic-auth", #"{"username":"","password":"p"}"#, ".username", "must not be empty"),
        ("jwt-auth", #"{"secret":"s"}"#, ".key", "is required"),
        ("jwt-auth", #"{"key":"k"}"#, ".secret", "is required for HS256"),
        ("jwt-auth", #"{"key":"k","algorithm":"ES256"}"#, ".public_key", "is required for ES256"),
        ("jwt-auth", #"{"key":"k","secret":"s","algorithm":"none"}"#, ".algorithm", "must be one of"),
        ("jwt-auth", #"{"key":"k","secret":"!!","base64_secret":true}"#, ".secret", "is not valid base64"),
        ("jwt-auth", #"{"key":"k","secret":"s","exp":0}"#, ".exp", "must be >= 1"),
    ]

    @Test(arguments: consumerInvalid)
    func invalidConsumerCredentialIsRefused(plugin: String, config: String, field: String, message: String) {
        guard let e = Self.refusal(plugin, Self.json(config), consumer: true) else { return }
        #expect(e.path == Self.path(plugin) + field, "\(e)")
        #expect(e.message.contains(message), "\(e)")
    }

    /// A consumer's non-authentication plugins are ordinary configs, defaults included.
    @Test func consumerNonAuthPluginUsesItsOwnSchema() throws {
        let out = try Self.validate("limit-count", #"{"count":5,"time_window":10}"#, consumer: true)
        #expect(out["count"] == 5 && out["key"] == "remote_addr" && out["rejected_code"] == 503)
        let e = Self.refusal("limit-count", ["count": 5], consumer: true)
        #expect(e?.path == "plugins.limit-count.time_window" && e?.message == "is required")
    }

    @Test(arguments: ["no-such-plugin", "Key-Auth", "key_auth", "openid-connect", ""])
    func unknownPluginIsRefused(name: String) {
        // Refused, never ignored: an ignored auth plugin would leave a route open.
        let e = Self.refusal(name, [:])
        #expect(e?.path == Self.path(name))
        #expect(e?.message == "unknown plugin")
    }

    @Test func keyAuthSchemaDocument() throws {
        let spec = try #require(PluginCatalog.all["key-auth"])
        let doc = try #require(PluginCatalog.schemaDocument(spec))
        #expect(doc["type"] == "object")
        #expect(doc["properties"]?["header"]?["default"] == "apikey")
        #expect(doc["properties"]?["header"]?["type"] == "string")
        #expect(doc["properties"]?["hide_credentials"]?["default"] == false)
        let meta = try #require(doc["properties"]?["_meta"])
        #expect(meta["properties"]?["disable"]?["type"] == "boolean")
        #expect(meta["properties"]?["filter"]?["type"] == "array")
        #expect(doc["$comment"] == "this is a mark for our injected plugin schema")

        let consumerDoc = try #require(PluginCatalog.schemaDocument(spec, consumer: true))
        #expect(consumerDoc["required"] == ["key"])
        #expect(consumerDoc["properties"]?["key"]?["type"] == "string")
        #expect(consumerDoc["properties"]?["_meta"] == nil)
    }

    @Test(arguments: ["limit-count", "cors", "echo", "ip-restriction"])
    func nonAuthPluginHasNoConsumerSchema(name: String) throws {
        let spec = try #require(PluginCatalog.all[name])
        #expect(!spec.isAuth)
        #expect(PluginCatalog.schemaDocument(spec, consumer: true) == nil)
    }

    @Test func oneOfGroupsAppearInTheDocument() throws {
        let ipSpec = try #require(PluginCatalog.all["ip-restriction"])
        let ip = try #require(PluginCatalog.schemaDocument(ipSpec))
        #expect(ip["oneOf"] == [["required": ["whitelist"]], ["required": ["blacklist"]]])
        #expect(ip["properties"]?["response_code"]?["enum"] == [403, 404])
        let redirectSpec = try #require(PluginCatalog.all["redirect"])
        let redirect = try #require(PluginCatalog.schemaDocument(redirectSpec))
        #expect(redirect["oneOf"]?.arrayValue?.count == 3)
    }

    /// Each default a plugin's schema document advertises is what validation fills in.
    @Test(arguments: PluginCatalog.runnable.sorted())
    func documentedDefaultsMatchValidation(plugin: String) throws {
        let spec = try #require(PluginCatalog.all[plugin])
        let doc = try #require(PluginCatalog.schemaDocument(spec))
        #expect(doc["properties"]?["_meta"] != nil)
        let config = try #require(Self.minimal[plugin])
        let given = Self.json(config)
        let out = try Self.validate(plugin, config)
        for (field, prop) in doc["properties"]?.objectValue ?? [:] {
            guard let d = prop["default"], given[field] == nil else { continue }
            #expect(out[field] == d, "\(plugin).\(field)")
        }
    }
}
