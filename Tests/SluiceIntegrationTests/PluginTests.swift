import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import SluiceCore
import SluiceTesting
import Testing

/// Plugins through real HTTP requests: a gateway on loopback, a real upstream, the exact
/// status codes, bodies and headers APISIX users rely on.
@Suite struct PluginTests {
    /// A gateway with one upstream and the given routes (and other resources), as JSON
    /// fragments; the JSON string `"UP"` in them is replaced by the upstream's address (only
    /// the quoted one: a bare `UP` also occurs inside base64 keys, e.g. a PEM, about one
    /// RSA key in eight, which made the RS256 test fail that often).
    struct Setup {
        let up: TestUpstream
        let gw: Gateway
        let client: TestHTTPClient

        static func start(_ resources: String) async throws -> Setup {
            let up = try await startUpstream("origin")
            let gw = try await Gateway.start(resources.replacing("\"UP\"", with: "\"\(up.address)\""))
            return Setup(up: up, gw: gw, client: try await gw.client())
        }

        func apply(_ resources: String) async throws { try await gw.apply(resources.replacing("\"UP\"", with: "\"\(up.address)\"")) }

        func get(_ uri: String, method: HTTPMethod = .GET, headers: [(String, String)] = [], body: String? = nil) async throws -> TestResponse {
            try await client.request(method, uri, headers: headers, body: body.map { ByteBuffer(string: $0) })
        }

        func stop() async {
            await client.close()
            await gw.stop()
            await up.stop()
        }
    }

    static func route(_ plugins: String, uri: String = "/*", extra: String = "") -> String {
        #"{"routes":[{"id":"r1","uri":"\#(uri)","upstream":{"nodes":{"UP":1}},"plugins":\#(plugins)\#(extra)}]"#
    }

    func json(_ r: TestResponse) throws -> JSONValue { try JSONValue.parse(Array(r.body.readableBytesView)) }

    // MARK: Authentication

    @Test func keyAuth() async throws {
        let s = try await Setup.start(Self.route(#"{"key-auth":{}}"#) + #","consumers":[{"username":"jack","plugins":{"key-auth":{"key":"jack-key"}},"labels":{"custom_id":"c-7"}}]}"#)
        var r = try await s.get("/headers")
        #expect(r.status == .unauthorized)
        #expect(try json(r) == ["message": "Missing API key in request"])
        #expect(r.headers.first(name: "www-authenticate") == #"apikey realm="key""#)
        r = try await s.get("/headers", headers: [("apikey", "wrong")])
        #expect(r.status == .unauthorized)
        #expect(try json(r) == ["message": "Invalid API key in request"])
        #expect(r.bodyString == "{\"message\":\"Invalid API key in request\"}\n")  // APISIX's bytes
        r = try await s.get("/headers", headers: [("apikey", "jack-key")])
        #expect(r.status == .ok)
        #expect(r.bodyString.contains("x-consumer-username: jack"))
        #expect(r.bodyString.contains("x-consumer-custom-id: c-7"))
        #expect(r.bodyString.contains("apikey: jack-key"))  // not hidden by default
        r = try await s.get("/headers?apikey=jack-key")
        #expect(r.status == .ok)
        // hide_credentials: the upstream never sees the key, from the header or the query.
        try await s.apply(Self.route(#"{"key-auth":{"hide_credentials":true}}"#) + #","consumers":[{"username":"jack","plugins":{"key-auth":{"key":"jack-key"}}}]}"#)
        r = try await s.get("/headers", headers: [("apikey", "jack-key")])
        #expect(r.status == .ok)
        #expect(!r.bodyString.contains("apikey"))
        r = try await s.get("/headers?a=1&apikey=jack-key&b=2")
        #expect(r.bodyString.hasPrefix("GET /headers?a=1&b=2 "), "\(r.bodyString)" as Comment)
        await s.stop()
    }

    @Test func basicAuthAndConsumerRestriction() async throws {
        let consumers = #""consumers":[{"username":"jack","plugins":{"basic-auth":{"username":"jack","password":"p1"}}},{"username":"rose","plugins":{"basic-auth":{"username":"rose","password":"p2"}}}]"#
        let s = try await Setup.start(
            Self.route(#"{"basic-auth":{},"consumer-restriction":{"whitelist":["jack"]}}"#) + ",\(consumers)}")
        var r = try await s.get("/headers")
        #expect(r.status == .unauthorized)
        #expect(try json(r) == ["message": "Missing authorization in request"])
        #expect(r.headers.first(name: "www-authenticate") == #"Basic realm="basic""#)
        r = try await s.get("/headers", headers: [("Authorization", "Basic \(Base64.encode("jack:bad"))")])
        #expect(try json(r) == ["message": "Invalid user authorization"])
        r = try await s.get("/headers", headers: [("Authorization", "Basic !!!")])
        #expect(try json(r) == ["message": "Invalid authorization in request"])
        r = try await s.get("/headers", headers: [("Authorization", "Basic \(Base64.encode("jack:p1"))")])
        #expect(r.status == .ok)
        r = try await s.get("/headers", headers: [("Authorization", "Basic \(Base64.encode("rose:p2"))")])
        #expect(r.status == .forbidden)
        #expect(try json(r) == ["message": "The consumer_name is forbidden."])
        await s.stop()
    }

    // MARK: Access control

    @Test func ipRestrictionAndRealIP() async throws {
        let s = try await Setup.start(Self.route(#"{"ip-restriction":{"whitelist":["10.0.0.0/8"],"message":"go away"}}"#) + "}")
        var r = try await s.get("/")
        #expect(r.status == .forbidden)
        #expect(try json(r) == ["message": "go away"])
        try await s.apply(Self.route(#"{"ip-restriction":{"blacklist":["127.0.0.1","::1"],"response_code":404}}"#) + "}")
        r = try await s.get("/")
        #expect(r.status == .notFound)
        #expect(try json(r) == ["message": "Your IP address is not allowed"])
        // real-ip (priority 23000) runs first: the address from X-Forwarded-For is the one
        // ip-restriction judges, and the one the upstream sees in X-Real-IP.
        try await s.apply(Self.route(#"{"real-ip":{"source":"http_x_forwarded_for","trusted_addresses":["127.0.0.1"]},"ip-restriction":{"whitelist":["203.0.113.0/24"]}}"#) + "}")
        r = try await s.get("/headers", headers: [("X-Forwarded-For", "198.51.100.1, 203.0.113.9")])
        #expect(r.status == .ok)
        #expect(r.bodyString.contains("x-real-ip: 203.0.113.9"))
        r = try await s.get("/headers", headers: [("X-Forwarded-For", "198.51.100.1")])
        #expect(r.status == .forbidden)
        await s.stop()
    }

    @Test func uriBlocker() async throws {
        let s = try await Setup.start(Self.route(#"{"uri-blocker":{"block_rules":["^/admin","\\.php$"],"rejected_msg":"blocked","case_insensitive":true}}"#) + "}")
        var r = try await s.get("/ADMIN/x")
        #expect(r.status == .forbidden)
        #expect(try json(r) == ["error_msg": "blocked"])
        r = try await s.get("/index.php")
        #expect(r.status == .forbidden)
        r = try await s.get("/fine")
        #expect(r.status == .ok)
        await s.stop()
    }

    @Test func cors() async throws {
        let s = try await Setup.start(
            Self.route(#"{"cors":{"allow_origins":"https://a.example,https://b.example","allow_methods":"GET,POST","allow_headers":"**","max_age":600,"allow_credential":true,"expose_headers":"X-Total"}}"#) + "}")
        // Preflight: answered by the gateway, never by the upstream.
        let before = s.up.requestsServed
        var r = try await s.get("/x", method: .OPTIONS, headers: [("Origin", "https://b.example"), ("Access-Control-Request-Headers", "X-Custom")])
        #expect(r.status == .ok)
        #expect(r.headers.first(name: "access-control-allow-origin") == "https://b.example")
        #expect(r.headers.first(name: "access-control-allow-methods") == "GET,POST")
        #expect(r.headers.first(name: "access-control-allow-headers") == "X-Custom")
        #expect(r.headers.first(name: "access-control-max-age") == "600")
        #expect(r.headers.first(name: "access-control-allow-credentials") == "true")
        #expect(r.headers.first(name: "vary") == "Origin")
        #expect(s.up.requestsServed == before)
        r = try await s.get("/x", headers: [("Origin", "https://a.example")])
        #expect(r.bodyString == "ok from origin")
        #expect(r.headers.first(name: "access-control-allow-origin") == "https://a.example")
        #expect(r.headers.first(name: "access-control-expose-headers") == "X-Total")
        r = try await s.get("/x", headers: [("Origin", "https://evil.example")])
        #expect(r.headers.first(name: "access-control-allow-origin") == nil)
        await s.stop()
    }

    /// As APISIX: with `allow_origins_by_regex`, the regexes alone decide even when
    /// `allow_origins` is `*`; without `expose_headers`, none is sent.
    @Test func corsRegexDecidesAndNoExposeHeadersByDefault() async throws {
        let s = try await Setup.start(
            Self.route(#"{"cors":{"allow_origins":"*","allow_origins_by_regex":["https://.*\\.example\\.org"]}}"#) + "}")
        var r = try await s.get("/x", headers: [("Origin", "https://app.example.org")])
        #expect(r.headers.first(name: "access-control-allow-origin") == "https://app.example.org")
        #expect(r.headers.first(name: "access-control-expose-headers") == nil)
        r = try await s.get("/x", headers: [("Origin", "https://evil.test")])
        #expect(r.status == .ok)
        #expect(r.headers.first(name: "access-control-allow-origin") == nil)
        await s.stop()
    }

    // MARK: Traffic control

    @Test func limitCountWithQuotaHeadersSurvivesUnrelatedEdits() async throws {
        let plugins = #"{"limit-count":{"count":2,"time_window":60,"rejected_code":429,"rejected_msg":"slow down"}}"#
        let s = try await Setup.start(Self.route(plugins) + "}")
        var r = try await s.get("/")
        #expect(r.status == .ok)
        #expect(r.headers.first(name: "x-ratelimit-limit") == "2")
        #expect(r.headers.first(name: "x-ratelimit-remaining") == "1")
        let reset = Int(r.headers.first(name: "x-ratelimit-reset") ?? "") ?? 0
        #expect((1...60).contains(reset))
        r = try await s.get("/")
        #expect(r.headers.first(name: "x-ratelimit-remaining") == "0")
        r = try await s.get("/")
        #expect(r.status == .tooManyRequests)
        #expect(try json(r) == ["error_msg": "slow down"])
        #expect(r.headers.first(name: "x-ratelimit-remaining") == "0")
        // Editing the route elsewhere keeps the counter.
        try await s.apply(Self.route(plugins, extra: #","desc":"edited""#) + "}")
        #expect(try await s.get("/").status == .tooManyRequests)
        // A new limit is a new counter.
        try await s.apply(Self.route(#"{"limit-count":{"count":3,"time_window":60}}"#) + "}")
        r = try await s.get("/")
        #expect(r.status == .ok)
        #expect(r.headers.first(name: "x-ratelimit-remaining") == "2")
        await s.stop()
    }

    @Test func limitCountPerKey() async throws {
        let s = try await Setup.start(Self.route(#"{"limit-count":{"count":1,"time_window":60,"key":"http_x_user"}}"#) + "}")
        #expect(try await s.get("/", headers: [("X-User", "a")]).status == .ok)
        #expect(try await s.get("/", headers: [("X-User", "a")]).status == .serviceUnavailable)
        #expect(try await s.get("/", headers: [("X-User", "b")]).status == .ok)
        await s.stop()
    }

    @Test func limitReqRefusesOrDelaysTheBurst() async throws {
        let s = try await Setup.start(Self.route(#"{"limit-req":{"rate":1,"burst":0,"key":"remote_addr","nodelay":true}}"#) + "}")
        #expect(try await s.get("/").status == .ok)
        #expect(try await s.get("/").status == .serviceUnavailable)
        // With a burst of 1 and no nodelay, the second request waits its turn (1 s at 1 r/s).
        try await s.apply(Self.route(#"{"limit-req":{"rate":1,"burst":1,"key":"remote_addr"}}"#) + "}")
        #expect(try await s.get("/").status == .ok)
        let start = ContinuousClock.now
        #expect(try await s.get("/").status == .ok)
        let waited = ContinuousClock.now - start
        #expect(waited >= .milliseconds(600), "\(waited)" as Comment)
        await s.stop()
    }

    @Test func limitConnCountsRequestsInFlight() async throws {
        let s = try await Setup.start(Self.route(#"{"limit-conn":{"conn":1,"burst":0,"default_conn_delay":0.1,"key":"remote_addr","rejected_code":503}}"#) + "}")
        let second = try await s.gw.client()
        async let slow = s.get("/delay/600")
        // While the slow request is in flight, a second one is refused.
        #expect(try await eventually { s.up.requestsServed >= 0 })
        try await Task.sleep(for: .milliseconds(200))
        #expect(try await second.request(.GET, "/").status == .serviceUnavailable)
        #expect(try await slow.status == .ok)
        // Once it finished, its slot is free again.
        #expect(try await eventually { try await second.request(.GET, "/").status == .ok })
        await second.close()
        await s.stop()
    }

    /// traffic-split: weights over the route's own upstream, an upstream by id and an inline
    /// one; a rule with `match` sends only matching requests.
    @Test func trafficSplit() async throws {
        let b = try await startUpstream("b")
        let c = try await startUpstream("c")
        let s = try await Setup.start(#"""
            {"upstreams":[{"id":"ub","nodes":{"\#(b.address)":1}}],
             "routes":[{"id":"r1","uri":"/*","upstream":{"nodes":{"UP":1}},"plugins":{"traffic-split":{"rules":[
                {"match":[{"vars":[["http_x_canary","==","1"]]}],"weighted_upstreams":[{"upstream":{"nodes":{"\#(c.address)":1}},"weight":1}]},
                {"weighted_upstreams":[{"upstream_id":"ub","weight":1},{"weight":3}]}]}}}]}
            """#)
        var counts: [String: Int] = [:]
        for _ in 0..<40 { counts[try await s.get("/").headers.first(name: "x-upstream") ?? "?", default: 0] += 1 }
        #expect(counts == ["b": 10, "origin": 30], "\(counts)" as Comment)
        for _ in 0..<5 { #expect(try await s.get("/", headers: [("X-Canary", "1")]).headers.first(name: "x-upstream") == "c") }
        await s.stop()
        await b.stop()
        await c.stop()
    }

    /// api-breaker: two 500s open the breaker (the gateway answers 502 itself for 2 s); a
    /// healthy answer after it closes resets it.
    @Test func apiBreaker() async throws {
        let s = try await Setup.start(Self.route(
            #"{"api-breaker":{"break_response_code":502,"break_response_body":"breaker open","break_response_headers":[{"key":"X-Breaker","value":"open"}],"unhealthy":{"http_statuses":[500],"failures":2},"healthy":{"successes":1}}}"#) + "}")
        #expect(try await s.get("/status/500").status == .internalServerError)
        #expect(try await s.get("/status/500").status == .internalServerError)
        let before = s.up.requestsServed
        var r = try await s.get("/status/500")
        #expect(r.status == .badGateway)
        #expect(r.bodyString == "breaker open")
        #expect(r.headers.first(name: "x-breaker") == "open")
        #expect(s.up.requestsServed == before)
        // Another path is another breaker.
        #expect(try await s.get("/status/200").status == .ok)
        // After 2 s the breaker lets requests through again.
        #expect(try await eventually(timeout: .seconds(5)) { try await s.get("/status/500").status == .internalServerError })
        await s.stop()
    }

    /// prometheus: APISIX's metric names and labels, counted per request.
    @Test func prometheusMetrics() async throws {
        let s = try await Setup.start(
            #"{"services":[{"id":"svc","name":"billing","upstream":{"nodes":{"UP":1}}}],"routes":[{"id":"r1","name":"pay","uri":"/status/*","service_id":"svc","plugins":{"prometheus":{"prefer_name":true}}},{"id":"r2","uri":"/other","upstream":{"nodes":{"UP":1}},"plugins":{"prometheus":{}}}]}"#)
        for _ in 0..<3 { #expect(try await s.get("/status/200").status == .ok) }
        #expect(try await s.get("/status/404").status == .notFound)
        #expect(try await s.get("/other", body: "12345").status == .ok)
        let text = await s.gw.server.metricsText()
        let lines = text.split(separator: "\n").map(String.init)
        func value(_ prefix: String, _ parts: [String]) -> String? {
            lines.first { $0.hasPrefix(prefix + "{") && parts.allSatisfy($0.contains) }?.split(separator: " ").last.map(String.init)
        }
        let node = "node=\"\(s.up.address)\""
        #expect(value("apisix_http_status", ["code=\"200\"", "route=\"pay\"", "service=\"billing\"", "matched_uri=\"/status/*\"", node]) == "3", "\(text)" as Comment)
        #expect(value("apisix_http_status", ["code=\"404\"", "route=\"pay\""]) == "1")
        #expect(value("apisix_http_status", ["code=\"200\"", "route=\"r2\"", "service=\"\""]) == "1")
        #expect(value("apisix_http_latency_count", ["type=\"request\"", "route=\"pay\""]) == "4")
        #expect(value("apisix_http_latency_count", ["type=\"upstream\"", "route=\"pay\""]) == "4")
        #expect(value("apisix_http_latency_bucket", ["type=\"request\"", "route=\"pay\"", "le=\"60000"]) == "4")
        let ingress = Int(value("apisix_bandwidth", ["type=\"ingress\"", "route=\"r2\""]) ?? "") ?? 0
        #expect(ingress > 5)  // head and the 5-byte body
        let egress = Int(value("apisix_bandwidth", ["type=\"egress\"", "route=\"r2\""]) ?? "") ?? 0
        #expect(egress > "ok from origin".utf8.count)
        #expect(text.contains("apisix_nginx_http_current_connections{state=\"active\"}"))
        #expect(Int(lines.first { $0.hasPrefix("apisix_http_requests_total ") }?.split(separator: " ").last ?? "") ?? 0 >= 5)
        await s.stop()
    }

    // MARK: Rewrites

    @Test func proxyRewrite() async throws {
        let s = try await Setup.start(Self.route(
            #"{"proxy-rewrite":{"uri":"/headers","method":"POST","host":"backend.internal","headers":{"add":{"X-Added":"$remote_addr"},"set":{"X-Set":"v"},"remove":["X-Drop"]}}}"#) + "}")
        let r = try await s.get("/anything?q=1", headers: [("X-Drop", "secret"), ("X-Set", "old")])
        let text = r.bodyString
        #expect(text.hasPrefix("POST /headers?q=1 "), "\(text)" as Comment)
        #expect(text.contains("host: backend.internal"))
        #expect(text.contains("x-added: 127.0.0.1"))
        #expect(text.contains("x-set: v"))
        #expect(!text.contains("x-drop"))
        try await s.apply(Self.route(#"{"proxy-rewrite":{"regex_uri":["^/api/(.*)","/$1"]}}"#) + "}")
        #expect(try await s.get("/api/headers").bodyString.hasPrefix("GET /headers "))
        await s.stop()
    }

    @Test func responseRewriteAndEcho() async throws {
        let s = try await Setup.start(Self.route(
            #"{"response-rewrite":{"status_code":201,"body":"{\"replaced\":true}","headers":{"set":{"X-Server":"sluice-test"},"remove":["X-Upstream"]}}}"#) + "}")
        var r = try await s.get("/x")
        #expect(r.status == .created)
        #expect(r.bodyString == #"{"replaced":true}"#)
        #expect(r.headers.first(name: "content-length") == "17")
        #expect(r.headers.first(name: "x-server") == "sluice-test")
        #expect(r.headers.first(name: "x-upstream") == nil)
        // Filters rewrite the upstream's own body; vars decide when.
        try await s.apply(Self.route(#"{"response-rewrite":{"filters":[{"regex":"o","replace":"0","scope":"global"}],"vars":[["status","==",200]]}}"#) + "}")
        #expect(try await s.get("/x").bodyString == "0k fr0m 0rigin")
        #expect(try await s.get("/status/404").bodyString == "status 404")  // vars false: untouched
        // A large streamed body that is not text passes through the filter byte for byte.
        r = try await s.get("/chunked/300000")
        #expect(r.body == TestUpstream.pattern(300_000, allocator: ByteBufferAllocator()))
        try await s.apply(Self.route(#"{"echo":{"before_body":"<<","after_body":">>","headers":{"X-Echo":"1"}}}"#) + "}")
        r = try await s.get("/x")
        #expect(r.bodyString == "<<ok from origin>>")
        #expect(r.headers.first(name: "x-echo") == "1")
        await s.stop()
    }

    @Test func redirect() async throws {
        let s = try await Setup.start(Self.route(#"{"redirect":{"uri":"/new$uri","ret_code":301,"append_query_string":true}}"#) + "}")
        var r = try await s.get("/old?x=1")
        #expect(r.status == .movedPermanently)
        #expect(r.headers.first(name: "location") == "/new/old?x=1")
        try await s.apply(Self.route(#"{"redirect":{"http_to_https":true}}"#) + "}")
        r = try await s.get("/a?b=c")
        #expect(r.status == .movedPermanently)
        #expect(r.headers.first(name: "location") == "https://test.local/a?b=c")
        r = try await s.get("/a", method: .POST, body: "x")
        #expect(r.status == .permanentRedirect)
        await s.stop()
    }

    // MARK: Others

    @Test func faultInjectionRequestIDMockingClientControl() async throws {
        let s = try await Setup.start(Self.route(#"{"fault-injection":{"abort":{"http_status":418,"body":"no tea for $remote_addr","headers":{"X-Fault":"yes"}}}}"#) + "}")
        var r = try await s.get("/")
        #expect(r.status.code == 418)
        #expect(r.bodyString == "no tea for 127.0.0.1")
        #expect(r.headers.first(name: "x-fault") == "yes")
        try await s.apply(Self.route(#"{"fault-injection":{"delay":{"duration":0.4}}}"#) + "}")
        let start = ContinuousClock.now
        #expect(try await s.get("/").status == .ok)
        #expect(ContinuousClock.now - start >= .milliseconds(400))

        try await s.apply(Self.route(#"{"request-id":{}}"#) + "}")
        r = try await s.get("/headers")
        let id = try #require(r.headers.first(name: "x-request-id"))
        #expect(id.count == 36 && id.split(separator: "-").count == 5)
        #expect(r.bodyString.contains("x-request-id: \(id)"))
        r = try await s.get("/headers", headers: [("X-Request-Id", "mine")])
        #expect(r.headers.first(name: "x-request-id") == "mine")

        // mocking answers without an upstream.
        try await s.apply(#"{"routes":[{"id":"m","uri":"/mock","plugins":{"mocking":{"response_example":"{\"a\":1}","response_status":202}}}]}"#)
        let before = s.up.requestsServed
        r = try await s.get("/mock")
        #expect(r.status == .accepted)
        #expect(r.bodyString == #"{"a":1}"#)
        #expect(r.headers.first(name: "x-mock-by") != nil)
        #expect(r.headers.first(name: "content-type") == "application/json;charset=utf8")
        #expect(s.up.requestsServed == before)

        try await s.apply(Self.route(#"{"client-control":{"max_body_size":10}}"#) + "}")
        r = try await s.get("/echo", method: .POST, body: String(repeating: "x", count: 20))
        #expect(r.status == .payloadTooLarge)
        let chunked = try await s.gw.client()
        r = try await chunked.request(.POST, "/echo", body: ByteBuffer(string: String(repeating: "y", count: 64)), chunked: true, chunkSize: 8)
        #expect(r.status == .payloadTooLarge)
        await chunked.close()
        #expect(try await s.get("/echo", method: .POST, body: "small").bodyString == "small")
        await s.stop()
    }

    // MARK: Merging, _meta, live changes

    /// Global rule + service + route + plugin config + consumer, in APISIX's precedence:
    /// the route beats the service and the plugin config; a consumer beats the route after
    /// it authenticates; global rules run as well.
    @Test func mergeOrder() async throws {
        let config = #"""
            {"services":[{"id":"s","upstream":{"nodes":{"UP":1}},"plugins":{
                "response-rewrite":{"headers":{"set":{"X-From":"service"}}},
                "proxy-rewrite":{"headers":{"set":{"X-Service":"yes"}}}}}],
             "plugin_configs":[{"id":"pc","plugins":{
                "response-rewrite":{"headers":{"set":{"X-From":"plugin-config"}}},
                "request-id":{"header_name":"X-PC-Id"}}}],
             "routes":[{"id":"r1","uri":"/*","service_id":"s","plugin_config_id":"pc","plugins":{
                "key-auth":{},
                "response-rewrite":{"headers":{"set":{"X-From":"route"}}}}}],
             "consumers":[
                {"username":"plain","plugins":{"key-auth":{"key":"k1"}}},
                {"username":"special","plugins":{"key-auth":{"key":"k2"},"response-rewrite":{"headers":{"set":{"X-From":"consumer"}}}}}],
             "global_rules":[{"id":"g","plugins":{"echo":{"headers":{"X-Global":"1"},"after_body":""}}}]}
            """#
        let s = try await Setup.start(config)
        var r = try await s.get("/headers", headers: [("apikey", "k1")])
        #expect(r.status == .ok)
        #expect(r.headers.first(name: "x-from") == "route")  // route over service and plugin config
        #expect(r.headers.first(name: "x-global") == "1")  // global rules run too
        #expect(r.headers.first(name: "x-pc-id") != nil)  // plugin config adds what the route lacks
        #expect(r.bodyString.contains("x-service: yes"))  // service plugins the route lacks
        r = try await s.get("/headers", headers: [("apikey", "k2")])
        #expect(r.headers.first(name: "x-from") == "consumer")  // consumer over route
        r = try await s.get("/headers")
        #expect(r.status == .unauthorized)
        #expect(r.headers.first(name: "x-global") == "1")  // header filters run on plugin replies
        await s.stop()
    }

    /// APISIX runs global rules for every request, matched or not: a global uri-blocker
    /// refuses an unrouted path, a global header rule marks the 404, and a global
    /// limit-count counts unrouted requests too.
    @Test func globalRulesRunForRequestsNoRouteMatches() async throws {
        let s = try await Setup.start(
            #"""
            {"routes":[{"id":"r1","uri":"/api/*","upstream":{"nodes":{"UP":1}}}],
             "global_rules":[
               {"id":"a","plugins":{"uri-blocker":{"block_rules":["^/blocked"]}}},
               {"id":"b","plugins":{"response-rewrite":{"headers":{"set":{"X-Global":"seen"}}}}},
               {"id":"c","plugins":{"limit-count":{"count":3,"time_window":60,"rejected_code":429,"key":"remote_addr"}}}]}
            """#)
        var r = try await s.get("/blocked/x")
        #expect(r.status == .forbidden)
        r = try await s.get("/nowhere")
        #expect(r.status == .notFound)
        #expect(r.headers.first(name: "x-global") == "seen")
        r = try await s.get("/api/x")
        #expect(r.status == .ok)
        #expect(r.headers.first(name: "x-global") == "seen")
        // limit-count counts the unrouted requests too: /nowhere, /api/x, then one more is the
        // third, and the fourth is over (the blocked request stopped before limit-count).
        r = try await s.get("/nowhere")
        #expect(r.status == .notFound)
        r = try await s.get("/nowhere")
        #expect(r.status == .tooManyRequests, "\(r.status)")
        await s.stop()
    }

    /// uri-blocker sees the normalized path too: dot segments cannot hide a blocked prefix.
    @Test func uriBlockerMatchesTheNormalizedPath() async throws {
        let s = try await Setup.start(Self.route(#"{"uri-blocker":{"block_rules":["^/internal/"]}}"#) + "}")
        for target in ["/internal/x", "/./internal/x", "/a/../internal/x", "/%69nternal/x"] {
            let r = try await s.get(target)
            #expect(r.status == .forbidden, "\(target): \(r.status)")
        }
        #expect(try await s.get("/public/internal/x").status == .ok)
        await s.stop()
    }

    /// An upstream with no nodes answers 503, as APISIX.
    @Test func anUpstreamWithoutNodesAnswers503() async throws {
        let gw = try await Gateway.start(#"{"routes":[{"id":"r1","uri":"/*","upstream":{"nodes":{}}}]}"#)
        let client = try await gw.client()
        #expect(try await client.request(.GET, "/x").status == .serviceUnavailable)
        await client.close()
        await gw.stop()
    }

    /// chash with hash_on consumer: each consumer sticks to one node.
    @Test func consistentHashOnTheConsumer() async throws {
        let b = try await startUpstream("b")
        let c = try await startUpstream("c")
        let consumers = (1...6).map { #"{"username":"u\#($0)","plugins":{"key-auth":{"key":"k\#($0)"}}}"# }.joined(separator: ",")
        let s = try await Setup.start(
            #"{"routes":[{"id":"r1","uri":"/*","plugins":{"key-auth":{}},"upstream":{"type":"chash","hash_on":"consumer","nodes":{"UP":1,"\#(b.address)":1,"\#(c.address)":1}}}],"consumers":[\#(consumers)]}"#)
        var nodes = Set<String>()
        for i in 1...6 {
            var seen = Set<String>()
            for _ in 0..<8 { seen.insert(try await s.get("/", headers: [("apikey", "k\(i)")]).headers.first(name: "x-upstream") ?? "?") }
            #expect(seen.count == 1, "consumer u\(i) went to \(seen)" as Comment)
            nodes.formUnion(seen)
        }
        #expect(nodes.count >= 2)  // six consumers do not all hash to one of three nodes
        await s.stop()
        await b.stop()
        await c.stop()
    }

    @Test func metaDisableFilterAndErrorResponse() async throws {
        let consumers = #","consumers":[{"username":"jack","plugins":{"key-auth":{"key":"k"}}}]}"#
        let s = try await Setup.start(Self.route(#"{"key-auth":{"_meta":{"disable":true}}}"#) + consumers)
        #expect(try await s.get("/").status == .ok)
        try await s.apply(Self.route(#"{"key-auth":{"_meta":{"filter":[["arg_secure","==","1"]]}}}"#) + consumers)
        #expect(try await s.get("/").status == .ok)
        #expect(try await s.get("/?secure=1").status == .unauthorized)
        try await s.apply(Self.route(#"{"key-auth":{"_meta":{"error_response":{"code":"DENIED"}}}}"#) + consumers)
        let r = try await s.get("/")
        #expect(r.status == .unauthorized)
        #expect(try json(r) == ["code": "DENIED"])
        await s.stop()
    }

    /// Adding and removing an authentication plugin takes effect on the next request of the
    /// same keep-alive connection.
    @Test func pluginChangesAreLiveOnOpenConnections() async throws {
        let consumers = #","consumers":[{"username":"jack","plugins":{"key-auth":{"key":"k"}}}]}"#
        let s = try await Setup.start(Self.route("{}") + consumers)
        #expect(try await s.get("/").status == .ok)
        try await s.apply(Self.route(#"{"key-auth":{}}"#) + consumers)
        #expect(try await s.get("/").status == .unauthorized)
        #expect(try await s.get("/", headers: [("apikey", "k")]).status == .ok)
        try await s.apply(Self.route("{}") + #","consumers":[]}"#)
        #expect(try await s.get("/").status == .ok)
        await s.stop()
    }
}
