import NIOCore
import NIOHTTP1
import SluiceCore
import SluiceTesting
import Testing

/// Behaviours APISIX users notice, each as APISIX's own tests (apache/apisix `t/`) state it,
/// through real HTTP on loopback: status, headers and body bytes.
@Suite struct APISIXBehaviourTests {
    typealias Setup = PluginTests.Setup

    static func routes(_ list: String, extra: String = "") -> String {
        #"{"routes":[\#(list)]\#(extra)}"#
    }

    /// lua-resty-expr's short form `[var, value]` is `==` on the lower-cased value, and
    /// `null` stands for a missing variable (t/router/radixtree-uri-vars.t TEST 11-15).
    @Test func varsShortFormAndNull() async throws {
        let s = try await Setup.start(Self.routes(#"""
            {"id":"short","uri":"/short","vars":[["http_user_agent","iOS"]],"upstream":{"nodes":{"UP":1}}},
            {"id":"null","uri":"/null","vars":[["http_x_token","==",null]],"upstream":{"nodes":{"UP":1}}},
            {"id":"present","uri":"/present","vars":[["http_x_token","~=",null]],"upstream":{"nodes":{"UP":1}}}
            """#))
        #expect(try await s.get("/short", headers: [("User-Agent", "ios")]).status == .ok)
        #expect(try await s.get("/short", headers: [("User-Agent", "iOS")]).status == .notFound)
        #expect(try await s.get("/null").status == .ok)
        #expect(try await s.get("/null", headers: [("X-Token", "t")]).status == .notFound)
        #expect(try await s.get("/present", headers: [("X-Token", "t")]).status == .ok)
        #expect(try await s.get("/present").status == .notFound)
        await s.stop()
    }

    /// fault-injection's `vars` groups are alternatives: any group that holds triggers the
    /// abort (t/plugin/fault-injection.t TEST 35-37).
    @Test func faultInjectionVarsGroupsAreAlternatives() async throws {
        let plugin = #"{"fault-injection":{"abort":{"http_status":403,"body":"Fault Injection!\n","vars":[[["arg_name","==","jack"],["arg_age","!","<",18]],[["http_apikey","==","api-key"]]]}}}"#
        let s = try await Setup.start(PluginTests.route(plugin) + "}")
        var r = try await s.get("/x?name=jack&age=20")
        #expect(r.status == .forbidden && r.bodyString == "Fault Injection!\n")
        r = try await s.get("/x", headers: [("apikey", "api-key")])
        #expect(r.status == .forbidden)
        #expect(try await s.get("/x?name=jack&age=10").status == .ok)
        #expect(try await s.get("/x?name=rose").status == .ok)
        await s.stop()
    }

    /// mocking expands variables in `response_headers` and in the example body
    /// (t/plugin/mocking.t TEST 15-22).
    @Test func mockingExpandsVariables() async throws {
        let plugin = #"{"mocking":{"response_example":"remote_addr:$remote_addr,empty:$foo","response_headers":{"X-Route-Id":"$route_id"}}}"#
        let s = try await Setup.start(PluginTests.route(plugin) + "}")
        let r = try await s.get("/x")
        #expect(r.status == .ok)
        #expect(r.headers.first(name: "x-route-id") == "r1")
        #expect(r.bodyString == "remote_addr:127.0.0.1,empty:")
        await s.stop()
    }

    /// redirect: `${1}` in `regex_uri` (t/plugin/redirect.t TEST 31-33), NGINX's page as the
    /// body, no redirect when the regex does not match, and `\$` kept as written.
    @Test func redirectRegexCapturesAndPage() async throws {
        let s = try await Setup.start(Self.routes(#"""
            {"id":"re","uri":"/test/*","plugins":{"redirect":{"regex_uri":["^/test/(.*)","http://test.com/${1}"],"ret_code":301}},"upstream":{"nodes":{"UP":1}}},
            {"id":"esc","uri":"/hello","plugins":{"redirect":{"uri":"\\$uri/foo$uri"}},"upstream":{"nodes":{"UP":1}}},
            {"id":"miss","uri":"/other/*","plugins":{"redirect":{"regex_uri":["^/nomatch/(.*)","/x/$1"]}},"upstream":{"nodes":{"UP":1}}}
            """#))
        var r = try await s.get("/test/1")
        #expect(r.status == .movedPermanently)
        #expect(r.headers.first(name: "location") == "http://test.com/1")
        #expect(r.headers.first(name: "content-type") == "text/html; charset=utf-8")
        #expect(r.bodyString.contains("<title>301 Moved Permanently</title>"), "\(r.bodyString)")
        r = try await s.get("/hello")
        #expect(r.status == .found)
        #expect(r.headers.first(name: "location") == #"\$uri/foo/hello"#)
        r = try await s.get("/other/a")
        #expect(r.status == .ok && r.bodyString == "ok from origin")
        await s.stop()
    }

    /// proxy-rewrite: `regex_uri` captures in header values (t/plugin/proxy-rewrite3.t TEST
    /// 27-30: "" without a match) and header values given as lists (one line each).
    @Test func proxyRewriteCapturesAndMultiValueHeaders() async throws {
        let plugin = #"{"proxy-rewrite":{"regex_uri":["^/test/(.*)/(.*)/(.*)","/headers"],"headers":{"set":{"X-Request-ID":"$1/$2/$3"},"add":{"X-Multi":["a","b"]}}}}"#
        let s = try await Setup.start(PluginTests.route(plugin) + "}")
        var r = try await s.get("/test/plugin/proxy/rewrite")
        #expect(r.status == .ok)
        #expect(r.bodyString.contains("x-request-id: plugin/proxy/rewrite\n"), "\(r.bodyString)")
        #expect(r.bodyString.contains("x-multi: a\n") && r.bodyString.contains("x-multi: b\n"), "\(r.bodyString)")
        r = try await s.get("/headers")
        #expect(r.bodyString.contains("x-request-id: //\n"), "\(r.bodyString)")
        await s.stop()
    }

    /// key-auth with `anonymous_consumer`: a wrong key falls back too, and with
    /// `hide_credentials` the key does not reach the upstream; a missing anonymous consumer is
    /// refused with the realm's challenge (t/plugin/key-auth-anonymous-consumer.t, -realm.t).
    @Test func keyAuthAnonymousFallback() async throws {
        let consumers = #","consumers":[{"username":"jack","plugins":{"key-auth":{"key":"jack-key"}}},{"username":"anon"}]}"#
        let s = try await Setup.start(PluginTests.route(#"{"key-auth":{"anonymous_consumer":"anon","hide_credentials":true}}"#) + consumers)
        var r = try await s.get("/headers?apikey=wrong", headers: [("apikey", "wrong")])
        #expect(r.status == .ok)
        #expect(r.bodyString.contains("x-consumer-username: anon"), "\(r.bodyString)")
        #expect(!r.bodyString.contains("wrong"), "the failed credential went upstream: \(r.bodyString)")
        #expect(r.headers.first(name: "www-authenticate") == nil)
        try await s.apply(PluginTests.route(#"{"key-auth":{"anonymous_consumer":"ghost"}}"#) + consumers)
        r = try await s.get("/headers")
        #expect(r.status == .unauthorized)
        #expect(r.bodyString == "{\"message\":\"Invalid user authorization\"}\n")
        #expect(r.headers.first(name: "www-authenticate") == #"apikey realm="key""#)
        // An empty key is a wrong key, not a missing one.
        try await s.apply(PluginTests.route(#"{"key-auth":{}}"#) + consumers)
        r = try await s.get("/headers", headers: [("apikey", "")])
        #expect(r.bodyString == "{\"message\":\"Invalid API key in request\"}\n")
        await s.stop()
    }

    /// consumer-restriction without a consumer: 401 naming the type (t/plugin/consumer-restriction.t).
    @Test func consumerRestrictionMessages() async throws {
        let s = try await Setup.start(PluginTests.route(#"{"consumer-restriction":{"whitelist":["jack"]}}"#) + "}")
        let r = try await s.get("/x")
        #expect(r.status == .unauthorized)
        #expect(r.bodyString == "{\"message\":\"The request is rejected, please check the consumer_name for this request\"}\n")
        await s.stop()
    }

    /// api-breaker's body is text unless a header names its type; of two Content-Type entries
    /// the last is sent, alone (t/plugin/api-breaker.t TEST 15).
    @Test func apiBreakerResponseType() async throws {
        let plugin = #"{"api-breaker":{"break_response_code":502,"break_response_body":"broken","break_response_headers":[{"key":"Content-Type","value":"application/json"},{"key":"Content-Type","value":"application/json+v1"}],"unhealthy":{"http_statuses":[500],"failures":1},"max_breaker_sec":60}}"#
        let s = try await Setup.start(PluginTests.route(plugin) + "}")
        #expect(try await s.get("/status/500").status == .internalServerError)
        let r = try await s.get("/status/500")
        #expect(r.status == .badGateway && r.bodyString == "broken")
        #expect(r.headers["content-type"] == ["application/json+v1"], "\(r.headers)")
        await s.stop()
    }

    /// response-rewrite with a body drops the validators of the old one (ETag,
    /// Last-Modified), as APISIX; filters leave a compressed body alone, encoding and all.
    @Test func responseRewriteHeadersOfTheOldBody() async throws {
        let plugin = #"{"response-rewrite":{"body":"new body"}}"#
        let s = try await Setup.start(PluginTests.route(plugin) + "}")
        var r = try await s.get("/cached")
        #expect(r.bodyString == "new body")
        #expect(r.headers.first(name: "etag") == nil && r.headers.first(name: "last-modified") == nil, "\(r.headers)")
        try await s.apply(PluginTests.route(#"{"response-rewrite":{"filters":[{"regex":"hello","replace":"bye"}]}}"#) + "}")
        r = try await s.get("/gzip")
        #expect(r.headers.first(name: "content-encoding") == "gzip")
        #expect(Array(r.body.readableBytesView) == TestUpstream.gzippedHelloWorld)
        r = try await s.get("/cached")
        #expect(r.bodyString == "bye world")
        await s.stop()
    }

    /// `$balancer_ip`/`$balancer_port` in response headers; `$remote_port` after real-ip takes
    /// the source's port when it names one (t/plugin/real-ip.t TEST 12-13).
    @Test func balancerAndRealIPVariables() async throws {
        let plugins = #"{"real-ip":{"source":"http_x_forwarded_for"},"proxy-rewrite":{"headers":{"set":{"X-Remote":"$remote_addr:$remote_port"}}},"response-rewrite":{"headers":{"set":{"X-Node":"$balancer_ip:$balancer_port"}}}}"#
        let s = try await Setup.start(PluginTests.route(plugins) + "}")
        let r = try await s.get("/headers", headers: [("X-Forwarded-For", "1.1.1.1:7090")])
        #expect(r.headers.first(name: "x-node") == s.up.address, "\(r.headers)")
        #expect(r.bodyString.contains("x-remote: 1.1.1.1:7090\n"), "\(r.bodyString)")
        await s.stop()
    }

    /// limit-conn counts requests in flight: pipelined requests on one connection are one
    /// at a time, so `conn: 1` refuses none of them.
    @Test func limitConnAndPipelining() async throws {
        let plugin = #"{"limit-conn":{"conn":1,"burst":0,"default_conn_delay":0.1,"key":"remote_addr"}}"#
        let s = try await Setup.start(PluginTests.route(plugin) + "}")
        let one = "GET /delay/20 HTTP/1.1\r\nHost: a\r\n\r\n"
        let request = String(repeating: one, count: 4) + "GET /status/201 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        let (response, closed) = try await RawHTTP.exchange(port: s.gw.port, group: Gateway.group, request, timeout: .seconds(20))
        #expect(closed)
        let statuses = response.split(separator: "HTTP/1.1 ").map { String($0.prefix(3)) }
        #expect(statuses == ["200", "200", "200", "200", "201"], "\(response)")
        await s.stop()
    }

    /// A limit without `rejected_msg` answers with NGINX's page (t/plugin/limit-count.t TEST 4).
    @Test func limitRejectionWithoutMessageIsThePage() async throws {
        let s = try await Setup.start(PluginTests.route(#"{"limit-count":{"count":1,"time_window":60,"rejected_code":503}}"#) + "}")
        #expect(try await s.get("/x").status == .ok)
        let r = try await s.get("/x")
        #expect(r.status == .serviceUnavailable)
        #expect(r.headers.first(name: "content-type") == "text/html; charset=utf-8")
        #expect(r.bodyString.contains("<title>503 Service Temporarily Unavailable</title>"), "\(r.bodyString)")
        await s.stop()
    }

    /// http_to_https sends the client to the gateway's TLS port (omitted only when it is 443),
    /// and a request that came over TLS to a balancer in front (X-Forwarded-Proto: https) is
    /// not redirected again (t/plugin/redirect.t TEST 24-33).
    @Test func httpToHTTPSUsesTheTLSPortAndForwardedProto() async throws {
        let up = try await startUpstream("origin")
        let gw = try await TLSGateway.start()
        let admin = try await gw.adminClient()
        #expect(try await admin.call(.PUT, "/routes/1", #"{"uri":"/hello","plugins":{"redirect":{"http_to_https":true}},"upstream":{"nodes":{"\#(up.address)":1}}}"#).status == 201)
        let client = try await TestHTTPClient.connect(port: gw.port, group: Gateway.group)
        var r = try await client.request(.GET, "/hello?a=1", host: "foo.com")
        #expect(r.status == .movedPermanently)
        #expect(r.headers.first(name: "location") == "https://foo.com:\(gw.tlsPort)/hello?a=1")
        r = try await client.request(.POST, "/hello", host: "foo.com", body: ByteBuffer(string: "x"))
        #expect(r.status == .permanentRedirect)
        r = try await client.request(.GET, "/hello", host: "foo.com", headers: [("X-Forwarded-Proto", "https")])
        #expect(r.status == .ok && r.bodyString == "ok from origin")
        await client.close()
        await admin.http.close()
        await gw.stop()
        await up.stop()
    }

    /// An exact route beats a prefix of the same path at a higher priority.
    @Test func exactRouteBeatsAHigherPriorityPrefix() async throws {
        let s = try await Setup.start(Self.routes(#"""
            {"id":"exact","uri":"/hello","priority":0,"plugins":{"response-rewrite":{"headers":{"set":{"X-Route":"exact"}}}},"upstream":{"nodes":{"UP":1}}},
            {"id":"prefix","uri":"/hello*","priority":10,"plugins":{"response-rewrite":{"headers":{"set":{"X-Route":"prefix"}}}},"upstream":{"nodes":{"UP":1}}}
            """#))
        #expect(try await s.get("/hello").headers.first(name: "x-route") == "exact")
        #expect(try await s.get("/hello/x").headers.first(name: "x-route") == "prefix")
        await s.stop()
    }

    /// cors answers for the Origin the client sent, even when proxy-rewrite changes it for the
    /// upstream (t/plugin/cors.t TEST 34-35); `Vary: Origin` whenever allow_origins is not
    /// `*`, matched or not (cors3.t TEST 4), and never for `*` (cors2.t TEST 5).
    @Test func corsReadsTheClientsOriginAndVaries() async throws {
        let plugins = #"{"cors":{"allow_origins":"http://sub.domain.com"},"proxy-rewrite":{"headers":{"Origin":"http://example.com"}}}"#
        let s = try await Setup.start(PluginTests.route(plugins) + "}")
        var r = try await s.get("/x", headers: [("Origin", "http://sub.domain.com")])
        #expect(r.headers.first(name: "access-control-allow-origin") == "http://sub.domain.com", "\(r.headers)")
        #expect(r.headers["vary"].contains("Origin"))
        r = try await s.get("/x", headers: [("Origin", "http://other.com")])
        #expect(r.headers.first(name: "access-control-allow-origin") == nil)
        #expect(r.headers["vary"].contains("Origin"), "\(r.headers)")
        try await s.apply(PluginTests.route(#"{"cors":{"allow_origins":"*","allow_origins_by_regex":[".*\\.domain\\.com"]}}"#) + "}")
        r = try await s.get("/x", headers: [("Origin", "http://a.domain.com")])
        #expect(r.headers.first(name: "access-control-allow-origin") == "http://a.domain.com")
        #expect(!r.headers["vary"].contains("Origin"), "\(r.headers)")
        await s.stop()
    }

    /// proxy-rewrite's word on X-Forwarded-Proto/-Host/-Port and X-Real-IP wins over the
    /// gateway's (t/plugin/proxy-rewrite2.t TEST 4, 9-11; proxy-rewrite3.t TEST 34).
    @Test func proxyRewriteOwnsTheForwardingHeaders() async throws {
        let plugin = #"{"proxy-rewrite":{"headers":{"set":{"X-Forwarded-Proto":"https","X-Forwarded-Port":"9882"},"remove":["X-Forwarded-Host"]}}}"#
        let s = try await Setup.start(PluginTests.route(plugin) + "}")
        let r = try await s.get("/headers")
        #expect(r.bodyString.contains("x-forwarded-proto: https\n"), "\(r.bodyString)")
        #expect(r.bodyString.contains("x-forwarded-port: 9882\n"), "\(r.bodyString)")
        #expect(!r.bodyString.contains("x-forwarded-host:"), "\(r.bodyString)")
        #expect(r.bodyString.contains("x-real-ip: 127.0.0.1\n"), "\(r.bodyString)")
        #expect(r.bodyString.components(separatedBy: "x-forwarded-proto:").count == 2, "sent twice: \(r.bodyString)")
        await s.stop()
    }

    /// `post_arg_*` in route `vars` reads a form body before routing (t/node/vars.t): the
    /// body still reaches the upstream whole; other types, and bodies over 64 KiB, route
    /// without it.
    @Test func postArgVarsRouteOnTheFormBody() async throws {
        let s = try await Setup.start(Self.routes(#"""
            {"id":"form","uri":"/echo","vars":[["post_arg_k","==","post form"]],"plugins":{"response-rewrite":{"headers":{"set":{"X-Route":"form"}}}},"upstream":{"nodes":{"UP":1}}},
            {"id":"other","uri":"/echo","upstream":{"nodes":{"UP":1}}}
            """#))
        let form = [("Content-Type", "application/x-www-form-urlencoded")]
        var r = try await s.get("/echo", method: .POST, headers: form, body: "a=1&k=post+form&k=second")
        #expect(r.headers.first(name: "x-route") == "form", "\(r.headers)")
        #expect(r.bodyString == "a=1&k=post+form&k=second")
        r = try await s.get("/echo", method: .POST, headers: form, body: "k=other")
        #expect(r.headers.first(name: "x-route") == nil)
        #expect(r.bodyString == "k=other")
        r = try await s.get("/echo", method: .POST, headers: [("Content-Type", "application/json")], body: #"{"k":"post form"}"#)
        #expect(r.headers.first(name: "x-route") == nil)
        // Chunked, and in several writes.
        r = try await s.client.request(
            .POST, "/echo", headers: form, body: ByteBuffer(string: "k=post%20form&pad=" + String(repeating: "x", count: 3000)), chunked: true, chunkSize: 700)
        #expect(r.headers.first(name: "x-route") == "form", "\(r.headers)")
        #expect(r.body.readableBytes == 3018)
        // Too large to read before routing: routed without it, and forwarded whole.
        let big = "k=post+form&pad=" + String(repeating: "y", count: 70_000)
        r = try await s.client.request(.POST, "/echo", headers: form, body: ByteBuffer(string: big), chunked: true, chunkSize: 8192)
        #expect(r.headers.first(name: "x-route") == nil)
        #expect(r.body.readableBytes == big.utf8.count)
        // Expect: 100-continue is answered while the body is awaited (curl sends it for larger bodies).
        let curl = try await Command.run("/usr/bin/curl", [
            "-sS", "--max-time", "10", "-D", "-", "-H", "Expect: 100-continue", "--data", "k=post+form",
            "http://127.0.0.1:\(s.gw.port)/echo",
        ])
        #expect(curl.output.lowercased().contains("x-route: form"), "\(curl.output)")
        await s.stop()
    }
}
