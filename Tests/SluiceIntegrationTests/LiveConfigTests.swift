import NIOCore
import NIOHTTP1
import NIOConcurrencyHelpers
import SluiceCore
import SluiceTesting
import Testing

@Suite struct LiveConfigTests {
    @Test func aNewRouteServesTheVeryNextRequest() async throws {
        let up = try await startUpstream("a")
        let gw = try await Gateway.start(#"{"routes":[]}"#)
        let client = try await gw.client()
        #expect(try await client.request(.GET, "/new").status == .notFound)
        try await gw.apply(routeJSON(uri: "/new", nodes: [up.address]))
        #expect(try await client.request(.GET, "/new").status == .ok)
        try await gw.apply(#"{"routes":[]}"#)
        #expect(try await client.request(.GET, "/new").status == .notFound)
        await client.close()
        await gw.stop()
        await up.stop()
    }

    /// A bounded loop of requests on 8 keep-alive connections while the route's upstream is
    /// switched back and forth 40 times: no request may fail, and both upstreams serve.
    @Test func configSwapsUnderLoadFailNothing() async throws {
        let a = try await startUpstream("a")
        let b = try await startUpstream("b")
        let gw = try await Gateway.start(routeJSON(nodes: [a.address]))
        let failures = NIOLockedValueBox(0)
        let served = NIOLockedValueBox([String: Int]())
        let stop = NIOLockedValueBox(false)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    let client = try await gw.client()
                    let deadline = ContinuousClock.now + .seconds(20)
                    var n = 0
                    while n < 1_000 && ContinuousClock.now < deadline && !stop.withLockedValue({ $0 }) {
                        n += 1
                        do {
                            let r = try await client.request(.GET, "/x", timeout: .seconds(5))
                            if r.status != .ok { failures.withLockedValue { $0 += 1 } }
                            let name = r.headers.first(name: "x-upstream") ?? "?"
                            served.withLockedValue { $0[name, default: 0] += 1 }
                        } catch {
                            failures.withLockedValue { $0 += 1 }
                        }
                    }
                    await client.close()
                }
            }
            group.addTask {
                for i in 0..<40 {
                    try await gw.apply(routeJSON(nodes: [i % 2 == 0 ? b.address : a.address], extra: #","desc":"v\#(i)""#))
                    try await Task.sleep(for: .milliseconds(25))
                }
                stop.withLockedValue { $0 = true }
            }
            try await group.waitForAll()
        }
        #expect(failures.withLockedValue { $0 } == 0)
        let counts = served.withLockedValue { $0 }
        #expect((counts["a"] ?? 0) > 0 && (counts["b"] ?? 0) > 0, "\(counts)" as Comment)
        await gw.stop()
        await a.stop()
        await b.stop()
    }

    @Test func unchangedUpstreamKeepsItsBalancerAcrossUnrelatedChanges() async throws {
        let a = try await startUpstream("a")
        let b = try await startUpstream("b")
        let config = { (desc: String) in
            #"{"upstreams":[{"id":"u","nodes":{"\#(a.address)":1,"\#(b.address)":1}}],"routes":[{"id":"1","uri":"/*","upstream_id":"u","desc":"\#(desc)"}]}"#
        }
        let gw = try await Gateway.start(workers: 1, config("v0"))
        let client = try await gw.client()
        // Round robin alternates a, b, a, b... and a route edit must not restart it.
        var seq: [String] = []
        for i in 0..<6 {
            seq.append(try await client.request(.GET, "/x").headers.first(name: "x-upstream") ?? "?")
            try await gw.apply(config("v\(i + 1)"))
        }
        #expect(seq == ["a", "b", "a", "b", "a", "b"] || seq == ["b", "a", "b", "a", "b", "a"], "\(seq)" as Comment)
        await client.close()
        await gw.stop()
        await a.stop()
        await b.stop()
    }

    @Test func webSocketEchoesThroughTheProxyAcrossConfigChanges() async throws {
        let up = try await startUpstream("ws")
        let gw = try await Gateway.start(routeJSON(uri: "/ws", nodes: [up.address], extra: #","enable_websocket":true"#))
        let ws = try await TestWebSocketClient.connect(port: gw.port, path: "/ws", group: Gateway.group)
        try await ws.send("hello")
        #expect(try await ws.receive() == "hello")
        for i in 0..<20 {
            // Unrelated changes, then the route itself removed: the tunnel keeps running.
            try await gw.apply(routeJSON(uri: "/other\(i)", nodes: [up.address]))
            try await ws.send("msg \(i)")
            #expect(try await ws.receive() == "msg \(i)")
        }
        #expect(ws.isActive)
        await ws.close()
        await gw.stop()
        await up.stop()
    }

    @Test func webSocketIsRefusedWhenTheRouteDoesNotEnableIt() async throws {
        let up = try await startUpstream("ws")
        let gw = try await Gateway.start(routeJSON(uri: "/ws", nodes: [up.address]))
        await #expect(throws: (any Error).self) {
            _ = try await TestWebSocketClient.connect(port: gw.port, path: "/ws", group: Gateway.group)
        }
        await gw.stop()
        await up.stop()
    }

    @Test func idleUpstreamConnectionsCloseAfterTheirIdleTimeout() async throws {
        let up = try await startUpstream("a")
        let gw = try await Gateway.start(
            routeJSON(nodes: [up.address], upstreamExtra: #","keepalive_pool":{"size":4,"idle_timeout":3,"requests":100}"#))
        let clients = [try await gw.client(), try await gw.client(), try await gw.client()]
        for c in clients { #expect(try await c.request(.GET, "/x").status == .ok) }
        #expect(try await gw.server.inspectLoops { $0.idleUpstreamConnections }.reduce(0, +) > 0)
        // The sweep closes them once idle_timeout has passed.
        #expect(try await eventually(timeout: .seconds(20)) { try await gw.server.inspectLoops { $0.idleUpstreamConnections }.reduce(0, +) == 0 })
        // And new requests open fresh connections without trouble.
        for c in clients { #expect(try await c.request(.GET, "/x").status == .ok) }
        for c in clients { await c.close() }
        await gw.stop()
        await up.stop()
    }

    @Test func gracefulShutdownFinishesInFlightRequests() async throws {
        let up = try await startUpstream("slow")
        let gw = try await Gateway.start(routeJSON(nodes: [up.address]))
        let client = try await gw.client()
        // Long enough that the shutdown reaches the connection before the response head,
        // even on a loaded machine.
        async let slow = client.request(.GET, "/delay/1500")
        // Shut down only once the request is in flight (the upstream has its head).
        #expect(try await eventually { up.requestsServed == 1 })
        async let stopped: Void = gw.server.shutdown(gracePeriod: .seconds(5))
        let r = try await slow
        #expect(r.status == .ok)
        #expect(r.headers.first(name: "connection") == "close")
        await stopped
        await #expect(throws: (any Error).self) { _ = try await TestHTTPClient.connect(port: gw.port, group: Gateway.group) }
        await up.stop()
    }
}
