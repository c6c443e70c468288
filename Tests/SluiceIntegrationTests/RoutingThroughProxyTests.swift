import NIOCore
import NIOHTTP1
import SluiceCore
import SluiceTesting
import Testing

/// Route selection with real requests: the variables the proxy reads from the wire and the
/// objects a route inherits from its service.
@Suite struct RoutingThroughProxyTests {
    @Test func varsSeeHeadersCookiesAndQueryArguments() async throws {
        let stable = try await startUpstream("stable")
        let canary = try await startUpstream("canary")
        let gw = try await Gateway.start(
            #"{"routes":[{"id":"canary","uri":"/app","priority":1,"vars":["OR",["http_x_canary","==","1"],["cookie_group","==","beta"],["arg_v","==","2"]],"upstream":{"nodes":{"\#(canary.address)":1}}},{"id":"stable","uri":"/app","upstream":{"nodes":{"\#(stable.address)":1}}}]}"#
        )
        let client = try await gw.client()
        func served(_ uri: String, _ headers: [(String, String)] = []) async throws -> String? {
            try await client.request(.GET, uri, headers: headers).headers.first(name: "x-upstream")
        }
        #expect(try await served("/app") == "stable")
        #expect(try await served("/app", [("X-Canary", "1")]) == "canary")
        #expect(try await served("/app", [("Cookie", "a=1; group=beta")]) == "canary")
        #expect(try await served("/app?x=1&v=2") == "canary")
        #expect(try await served("/app?v=3") == "stable")
        await client.close()
        await gw.stop()
        await stable.stop()
        await canary.stop()
    }

    @Test func routesInheritTheServicesUpstreamAndHosts() async throws {
        let up = try await startUpstream("svc")
        let gw = try await Gateway.start(
            #"{"services":[{"id":"s","hosts":["api.example.com"],"upstream":{"nodes":{"\#(up.address)":1}}}],"routes":[{"id":"r","uri":"/v1/*","service_id":"s"}]}"#
        )
        let client = try await gw.client()
        let ok = try await client.request(.GET, "/v1/items", host: "api.example.com")
        #expect(ok.status == .ok)
        #expect(ok.headers.first(name: "x-upstream") == "svc")
        #expect(try await client.request(.GET, "/v1/items", host: "other.example.com").status == .notFound)
        await client.close()
        await gw.stop()
        await up.stop()
    }

    @Test func consistentHashKeepsAKeyOnOneNode() async throws {
        let a = try await startUpstream("a")
        let b = try await startUpstream("b")
        let c = try await startUpstream("c")
        let gw = try await Gateway.start(
            routeJSON(nodes: [a.address, b.address, c.address], upstreamExtra: #","type":"chash","hash_on":"header","key":"x-user""#))
        let client = try await gw.client()
        var seen: [String: Set<String>] = [:]
        for i in 0..<60 {
            let user = "user-\(i % 12)"
            let name = try await client.request(.GET, "/x", headers: [("X-User", user)]).headers.first(name: "x-upstream") ?? "?"
            seen[user, default: []].insert(name)
        }
        #expect(seen.values.allSatisfy { $0.count == 1 })  // sticky
        #expect(Set(seen.values.flatMap { $0 }).count > 1)  // and spread
        await client.close()
        await gw.stop()
        for u in [a, b, c] { await u.stop() }
    }
}
