import NIOCore
import NIOHTTP1
import SluiceCore
import SluiceProxy
import SluiceTesting
import Testing

@Suite struct ProxyTests {
    @Test func forwardsRequestWithForwardingHeaders() async throws {
        let up = try await startUpstream("a")
        let gw = try await Gateway.start(routeJSON(uri: "/headers", nodes: [up.address]))
        let client = try await gw.client()
        let r = try await client.request(.GET, "/headers", host: "Shop.Example.com:8080", headers: [("X-Forwarded-For", "203.0.113.9"), ("Connection", "keep-alive, X-Secret"), ("X-Secret", "hop")])
        #expect(r.status == .ok)
        #expect(r.headers.first(name: "x-upstream") == "a")
        let lines = r.bodyString.split(separator: "\n").map(String.init)
        #expect(lines.first == "GET /headers received=0")
        #expect(lines.contains("host: Shop.Example.com:8080"))  // pass_host: pass
        #expect(lines.contains("x-forwarded-for: 203.0.113.9, 127.0.0.1"))
        #expect(lines.contains("x-real-ip: 127.0.0.1"))
        #expect(lines.contains("x-forwarded-proto: http"))
        #expect(lines.contains("x-forwarded-host: Shop.Example.com:8080"))
        #expect(!lines.contains { $0.hasPrefix("x-secret") })  // named in Connection: hop-by-hop
        #expect(!lines.contains { $0.hasPrefix("connection: keep-alive") })
        await client.close()
        await gw.stop()
        await up.stop()
    }

    @Test func passHostNodeAndRewrite() async throws {
        let up = try await startUpstream("a")
        let gw = try await Gateway.start(routeJSON(uri: "/headers", nodes: [up.address], upstreamExtra: #","pass_host":"node""#))
        let client = try await gw.client()
        var r = try await client.request(.GET, "/headers", host: "public.example")
        #expect(r.bodyString.contains("\nhost: 127.0.0.1:\(up.port)\n"))
        try await gw.apply(routeJSON(uri: "/headers", nodes: [up.address], upstreamExtra: #","pass_host":"rewrite","upstream_host":"internal.svc""#))
        r = try await client.request(.GET, "/headers", host: "public.example")
        #expect(r.bodyString.contains("\nhost: internal.svc\n"))
        await client.close()
        await gw.stop()
        await up.stop()
    }

    @Test(arguments: [0, 1024, 10 * 1024 * 1024])
    func uploadsAreStreamedThroughIntact(_ size: Int) async throws {
        let up = try await startUpstream("a")
        let gw = try await Gateway.start(routeJSON(uri: "/echo", nodes: [up.address]))
        let client = try await gw.client()
        let body = TestUpstream.pattern(size, allocator: ByteBufferAllocator())
        let r = try await client.request(.POST, "/echo", body: body)
        #expect(r.status == .ok)
        #expect(r.body == body)
        // Chunked upload too.
        let c = try await client.request(.PUT, "/echo", body: body, chunked: true, chunkSize: 7_777)
        #expect(c.body == body)
        await client.close()
        await gw.stop()
        await up.stop()
    }

    @Test(arguments: ["bytes", "chunked"])
    func downloadsAreStreamedThroughIntact(_ kind: String) async throws {
        let up = try await startUpstream("a")
        let gw = try await Gateway.start(routeJSON(nodes: [up.address]))
        let client = try await gw.client()
        for size in [0, 1024, 10 * 1024 * 1024] {
            let r = try await client.request(.GET, "/\(kind)/\(size)")
            #expect(r.status == .ok)
            #expect(r.body == TestUpstream.pattern(size, allocator: ByteBufferAllocator()), "\(kind) \(size)" as Comment)
        }
        let head = try await client.request(.HEAD, "/bytes/5000")
        #expect(head.status == .ok)
        #expect(head.headers.first(name: "content-length") == "5000")
        #expect(head.body.readableBytes == 0)
        // The connection is still usable after HEAD.
        #expect(try await client.request(.GET, "/bytes/10").body.readableBytes == 10)
        await client.close()
        await gw.stop()
        await up.stop()
    }

    @Test func keepAliveReusesUpstreamConnections() async throws {
        let up = try await startUpstream("a")
        let gw = try await Gateway.start(workers: 2, routeJSON(nodes: [up.address]))
        var clients: [TestHTTPClient] = []
        for _ in 0..<4 { clients.append(try await gw.client()) }
        var ok = 0
        for i in 0..<400 {
            let r = try await clients[i % 4].request(.GET, "/x")
            if r.status == .ok { ok += 1 }
        }
        #expect(ok == 400)
        // At most one upstream connection per client connection at a time.
        #expect(up.connectionsAccepted <= 4)
        #expect(up.requestsServed == 400)
        for c in clients { await c.close() }
        await gw.stop()
        await up.stop()
    }

    @Test func retriesAnotherNodeWhenOneIsDown() async throws {
        let up = try await startUpstream("alive")
        let dead = try await deadPort()
        let gw = try await Gateway.start(routeJSON(nodes: [up.address, "127.0.0.1:\(dead)"]))
        let client = try await gw.client()
        for _ in 0..<50 {
            let r = try await client.request(.GET, "/x")
            #expect(r.status == .ok)
            #expect(r.headers.first(name: "x-upstream") == "alive")
        }
        await client.close()
        await gw.stop()
        await up.stop()
    }

    /// APISIX's case: a refusing node of weight 1000 and a live one of weight 1. Every
    /// request is retried on the live node instead of failing with 502.
    @Test func retriesTheLightNodeWhenTheHeavyOneRefuses() async throws {
        let up = try await startUpstream("light")
        let dead = try await deadPort()
        let gw = try await Gateway.start(
            #"{"routes":[{"id":"r1","uri":"/*","upstream":{"nodes":{"127.0.0.1:\#(dead)":1000,"\#(up.address)":1}}}]}"#)
        let client = try await gw.client()
        for _ in 0..<30 {
            let r = try await client.request(.GET, "/x")
            #expect(r.status == .ok)
            #expect(r.headers.first(name: "x-upstream") == "light")
        }
        await client.close()
        await gw.stop()
        await up.stop()
    }

    /// A 5xx from the upstream is passed on with `X-APISIX-Upstream-Status`; other statuses
    /// are not marked.
    @Test func upstream5xxIsMarkedWithItsStatus() async throws {
        let up = try await startUpstream("u")
        let gw = try await Gateway.start(routeJSON(nodes: [up.address]))
        let client = try await gw.client()
        var r = try await client.request(.GET, "/status/503")
        #expect(r.status == .serviceUnavailable)
        #expect(r.headers.first(name: "x-apisix-upstream-status") == "503")
        r = try await client.request(.GET, "/status/404")
        #expect(r.status == .notFound)
        #expect(r.headers.first(name: "x-apisix-upstream-status") == nil)
        await client.close()
        await gw.stop()
        await up.stop()
    }

    @Test func answers502WhenNoNodeIsReachable() async throws {
        let dead = try await deadPort()
        let gw = try await Gateway.start(routeJSON(nodes: ["127.0.0.1:\(dead)"]))
        let client = try await gw.client()
        let r = try await client.request(.GET, "/x")
        #expect(r.status == .badGateway)
        // NGINX's error page, as APISIX answers (its tests match the title).
        #expect(r.headers.first(name: "content-type") == "text/html; charset=utf-8")
        #expect(r.headers.first(name: "x-apisix-upstream-status") == "502")
        #expect(r.bodyString.hasPrefix("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n"), "\(r.bodyString)")
        #expect(r.headers.first(name: "content-length") == String(r.body.readableBytes))
        // The client connection survives a 502.
        #expect(try await client.request(.GET, "/y").status == .badGateway)
        await client.close()
        await gw.stop()
    }

    /// A route stored with `plugins: {}` and no upstream (APISIX accepts it) is answered 503
    /// with the error page, and no `X-APISIX-Upstream-Status`: no upstream was involved.
    @Test func routeWithoutUpstreamAnswers503() async throws {
        let gw = try await Gateway.start(#"{"routes":[{"id":"1","uri":"/hello","plugins":{}}]}"#)
        let client = try await gw.client()
        let r = try await client.request(.GET, "/hello")
        #expect(r.status == .serviceUnavailable)
        #expect(r.headers.first(name: "content-type") == "text/html; charset=utf-8")
        #expect(r.bodyString.contains("<title>503 Service Temporarily Unavailable</title>"), "\(r.bodyString)")
        #expect(r.headers.first(name: "x-apisix-upstream-status") == nil)
        let miss = try await client.request(.GET, "/other")
        #expect(miss.status == .notFound)
        #expect(miss.headers.first(name: "content-type") == "text/plain; charset=utf-8")
        #expect(miss.bodyString == "{\"error_msg\":\"404 Route Not Found\"}\n")
        await client.close()
        await gw.stop()
    }

    @Test func answers502WhenTheUpstreamClosesWithoutAnswering() async throws {
        let up = try await startUpstream("broken", closeAfterHead: true)
        let gw = try await Gateway.start(routeJSON(nodes: [up.address], upstreamExtra: #","retries":0"#))
        let client = try await gw.client()
        let r = try await client.request(.GET, "/x")
        #expect(r.status == .badGateway)
        await client.close()
        await gw.stop()
        await up.stop()
    }

    @Test func answers504OnUpstreamReadTimeout() async throws {
        let up = try await startUpstream("slow")
        // Host slow.test has a 0.3 s read timeout; other hosts the default 60 s.
        let gw = try await Gateway.start(
            #"{"routes":[{"id":"slow","uri":"/*","host":"slow.test","timeout":{"connect":1,"send":1,"read":0.3},"upstream":{"nodes":{"\#(up.address)":1}}},{"id":"any","uri":"/*","upstream":{"nodes":{"\#(up.address)":1}}}]}"#)
        let client = try await gw.client()
        // The upstream would answer 200 after 20 s; the gateway gives up after 0.3 s.
        let start = ContinuousClock.now
        let r = try await client.request(.GET, "/delay/20000", host: "slow.test")
        #expect(r.status == .gatewayTimeout)
        #expect(ContinuousClock.now - start < .seconds(15))
        // The client connection is still usable.
        let fast = try await client.request(.GET, "/delay/10", host: "other.test")
        #expect(fast.status == .ok)
        await client.close()
        await gw.stop()
        await up.stop()
    }

    @Test func routeWithoutMatchGets404AndMethodsAreHonoured() async throws {
        let up = try await startUpstream("a")
        let gw = try await Gateway.start(
            #"{"routes":[{"id":"1","uri":"/only-post","methods":["POST"],"upstream":{"nodes":{"\#(up.address)":1}}}]}"#)
        let client = try await gw.client()
        let miss = try await client.request(.GET, "/only-post")
        #expect(miss.status == .notFound)
        #expect(miss.bodyString == "{\"error_msg\":\"404 Route Not Found\"}\n")
        #expect(try await client.request(.POST, "/only-post", body: ByteBuffer(string: "x")).status == .ok)
        await client.close()
        await gw.stop()
        await up.stop()
    }

    @Test func expectContinueIsAnswered() async throws {
        let up = try await startUpstream("a")
        let gw = try await Gateway.start(routeJSON(uri: "/echo", nodes: [up.address]))
        let (response, _) = try await RawHTTP.exchange(
            port: gw.port, group: Gateway.group,
            "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
            until: { $0.contains("100 Continue") })
        #expect(response.hasPrefix("HTTP/1.1 100 Continue\r\n"))
        await gw.stop()
        await up.stop()
    }

    @Test func pipelinedRequestsAreAnsweredInOrder() async throws {
        let up = try await startUpstream("a")
        let gw = try await Gateway.start(routeJSON(nodes: [up.address]))
        let request = "GET /delay/50 HTTP/1.1\r\nHost: a\r\n\r\nGET /bytes/3 HTTP/1.1\r\nHost: a\r\n\r\nGET /status/201 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        let (response, closed) = try await RawHTTP.exchange(port: gw.port, group: Gateway.group, request, timeout: .seconds(20))
        #expect(closed)
        // Bodies are not followed by CRLF: split on the status lines themselves.
        let statuses = response.split(separator: "HTTP/1.1 ").map { String($0.prefix(3)) }
        #expect(response.hasPrefix("HTTP/1.1 "))
        #expect(statuses == ["200", "200", "201"])
        #expect(response.contains("delayed 50ms"))
        await gw.stop()
        await up.stop()
    }

    @Test func headerTimeoutClosesSlowClients() async throws {
        var settings = ProxySettings()
        settings.clientHeaderTimeout = .seconds(1)  // long enough for the client to write under load
        let gw = try await Gateway.start(settings: settings, #"{"routes":[]}"#)
        let start = ContinuousClock.now
        // An incomplete head, never finished: the gateway must close the connection itself.
        let (response, closed) = try await RawHTTP.exchange(port: gw.port, group: Gateway.group, "GET / HTTP/1.1\r\nHost: a\r\n", timeout: .seconds(20))
        #expect(closed)
        #expect(response.isEmpty)
        #expect(ContinuousClock.now - start < .seconds(15))
        await gw.stop()
    }
}
