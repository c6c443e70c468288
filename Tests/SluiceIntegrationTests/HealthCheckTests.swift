import Foundation
import NIOConcurrencyHelpers
import NIOCore
import SluiceCore
import SluiceTesting
import Testing

/// Active and passive health checks with real upstream servers that go down and come back.
@Suite struct HealthCheckTests {
    static func status(_ gw: Gateway, _ name: String = "/apisix/upstreams/u") -> [String: String] {
        var out: [String: String] = [:]
        for n in gw.server.healthcheckStatus(upstream: name)?["nodes"]?.arrayValue ?? [] {
            out["\(n["ip"]?.stringValue ?? ""):\(n["port"]?.intValue ?? 0)"] = n["status"]?.stringValue
        }
        return out
    }

    static func upstream(_ nodes: [String], checks: String, extra: String = "") -> String {
        let map = nodes.map { #""\#($0)":1"# }.joined(separator: ",")
        return #"{"upstreams":[{"id":"u","nodes":{\#(map)},"checks":\#(checks)\#(extra)}],"routes":[{"id":"r","uri":"/*","upstream_id":"u"}]}"#
    }

    /// Which origins answer `n` requests (by `X-Upstream`).
    static func servedBy(_ client: TestHTTPClient, _ n: Int, path: String = "/x") async throws -> [String: Int] {
        var seen: [String: Int] = [:]
        for _ in 0..<n {
            let r = try await client.request(.GET, path)
            seen[r.headers.first(name: "x-upstream") ?? "status \(r.status.code)", default: 0] += 1
        }
        return seen
    }

    /// A node whose server stops is found unhealthy within its thresholds and gets no more
    /// requests; restarted on the same port, it is found healthy and gets its share again.
    /// The checks start with the config, before any request.
    @Test func activeHTTPChecksMoveTrafficAwayAndBack() async throws {
        let a = try await startUpstream("a")
        var b = try await startUpstream("b")
        let bPort = b.port
        let checks = #"{"active":{"http_path":"/status/200","healthy":{"interval":1,"successes":1},"unhealthy":{"interval":1,"tcp_failures":1}}}"#
        let gw = try await Gateway.start(Self.upstream([a.address, b.address], checks: checks))
        // Probes arrive without any request through the gateway.
        #expect(try await eventually(timeout: .seconds(5)) { b.requestsServed >= 1 }, "no probe reached the node")
        #expect(Self.status(gw)[b.address] == "healthy")
        let client = try await gw.client()
        #expect(try await Self.servedBy(client, 10).keys.sorted() == ["a", "b"])
        await b.stop()
        #expect(try await eventually(timeout: .seconds(6)) { Self.status(gw)[b.address] == "unhealthy" }, "\(Self.status(gw))")
        // Fresh connections only: the pool's idle ones to b are not what we test.
        let fresh = try await gw.client()
        #expect(try await Self.servedBy(fresh, 10) == ["a": 10])
        b = try await TestUpstream.start(name: "b", group: Gateway.group, port: bPort)
        #expect(try await eventually(timeout: .seconds(6)) { Self.status(gw)[b.address] == "healthy" }, "\(Self.status(gw))")
        #expect(try await eventually(timeout: .seconds(3)) { (try await Self.servedBy(fresh, 6))["b"] ?? 0 > 0 })
        await client.close()
        await fresh.close()
        await gw.stop()
        await a.stop()
        await b.stop()
    }

    /// A node answering the unhealthy statuses is ejected after `http_failures` probes; a tcp
    /// check finds a closed port; the control view counts the failures.
    @Test func httpStatusesAndTCPChecks() async throws {
        let up = try await startUpstream("a")
        let dead = try await deadPort()
        let gw = try await Gateway.start(Self.upstream(
            [up.address, "127.0.0.1:\(dead)"],
            checks: #"{"active":{"type":"tcp","healthy":{"interval":1,"successes":1},"unhealthy":{"interval":1,"tcp_failures":2}}}"#))
        #expect(try await eventually(timeout: .seconds(6)) { Self.status(gw)["127.0.0.1:\(dead)"] == "unhealthy" }, "\(Self.status(gw))")
        #expect(Self.status(gw)[up.address] == "healthy")
        // HTTP probes of a path answering 500: unhealthy after two.
        try await gw.apply(Self.upstream(
            [up.address], checks: #"{"active":{"http_path":"/status/500","healthy":{"interval":1},"unhealthy":{"interval":1,"http_failures":2}}}"#))
        #expect(try await eventually(timeout: .seconds(6)) { Self.status(gw)[up.address] == "unhealthy" }, "\(Self.status(gw))")
        let node = gw.server.healthcheckStatus(upstream: "/apisix/upstreams/u")?["nodes"]?.arrayValue?.first
        #expect(gw.server.healthcheckStatus(upstream: "/apisix/upstreams/u")?["type"] == "http")
        #expect(node?["counter"]?["http_failure"] != nil, "\(String(describing: node))")
        // Every node unhealthy: all are still tried (the request is answered).
        let client = try await gw.client()
        #expect(try await client.request(.GET, "/x").status == .ok)
        await client.close()
        await gw.stop()
        await up.stop()
    }

    /// Passive checks eject a node after the configured failures of real requests, and the
    /// active checker brings it back.
    @Test func passiveEjectionAndActiveRecovery() async throws {
        let a = try await startUpstream("a")
        let b = try await startUpstream("b")
        let checks = #"""
            {"active":{"http_path":"/status/200","healthy":{"interval":2,"successes":1},"unhealthy":{"interval":1}},
             "passive":{"unhealthy":{"http_statuses":[503],"http_failures":2}}}
            """#
        let gw = try await Gateway.start(Self.upstream([a.address, b.address], checks: checks, extra: #","retries":0"#))
        let client = try await gw.client()
        // Every request to /status/503 is a failure, for whichever node takes it.
        for _ in 0..<6 { _ = try await client.request(.GET, "/status/503") }
        let down = Self.status(gw).values.filter { $0 == "unhealthy" }.count
        #expect(down >= 1, "\(Self.status(gw))")
        // Probes of /status/200 bring them back.
        #expect(try await eventually(timeout: .seconds(8)) { Self.status(gw).values.allSatisfy { $0 == "healthy" } }, "\(Self.status(gw))")
        await client.close()
        await gw.stop()
        await a.stop()
        await b.stop()
    }

    /// Priority groups: when every node of the higher group is unhealthy, the next group
    /// takes the traffic without a failed attempt first.
    @Test func priorityGroupFailover() async throws {
        let backup = try await startUpstream("backup")
        let dead = try await deadPort()
        let json = #"""
            {"upstreams":[{"id":"u","retries":0,"nodes":[{"host":"127.0.0.1","port":\#(dead),"weight":1,"priority":1},
              {"host":"127.0.0.1","port":\#(backup.port),"weight":1,"priority":0}],
              "checks":{"active":{"type":"tcp","healthy":{"interval":1},"unhealthy":{"interval":1,"tcp_failures":1}}}}],
             "routes":[{"id":"r","uri":"/*","upstream_id":"u"}]}
            """#
        let gw = try await Gateway.start(json)
        #expect(try await eventually(timeout: .seconds(5)) { Self.status(gw)["127.0.0.1:\(dead)"] == "unhealthy" })
        let client = try await gw.client()
        // retries 0: a pick of the dead node would be a 502.
        #expect(try await Self.servedBy(client, 10) == ["backup": 10])
        await client.close()
        await gw.stop()
        await backup.stop()
    }

    /// A change that leaves the upstream's nodes and checks alone keeps its health state; a
    /// node that stays in a changed node set keeps its own; removing the upstream stops its
    /// probes.
    @Test func stateSurvivesUnrelatedChangesAndProbesStopWithTheUpstream() async throws {
        let a = try await startUpstream("a")
        let c = try await startUpstream("c")
        let dead = try await deadPort()
        let checks = #"{"active":{"type":"tcp","healthy":{"interval":1},"unhealthy":{"interval":30,"tcp_failures":1}}}"#
        let gw = try await Gateway.start(Self.upstream([a.address, "127.0.0.1:\(dead)"], checks: checks))
        #expect(try await eventually(timeout: .seconds(5)) { Self.status(gw)["127.0.0.1:\(dead)"] == "unhealthy" })
        // The unhealthy interval is 30 s: whatever says unhealthy below is the kept state.
        try await gw.apply(Self.upstream([a.address, "127.0.0.1:\(dead)"], checks: checks, extra: #","desc":"changed""#))
        #expect(Self.status(gw)["127.0.0.1:\(dead)"] == "unhealthy")
        try await gw.apply(Self.upstream([a.address, "127.0.0.1:\(dead)", c.address], checks: checks))
        #expect(Self.status(gw)["127.0.0.1:\(dead)"] == "unhealthy")
        #expect(Self.status(gw).count == 3)
        // Removed: no more probes reach its nodes.
        try await gw.apply(#"{"upstreams":[],"routes":[]}"#)
        #expect(gw.server.healthcheckStatus().arrayValue?.isEmpty == true)
        try await Task.sleep(for: .milliseconds(300))
        let before = c.connectionsAccepted
        try await Task.sleep(for: .seconds(2.5))
        #expect(c.connectionsAccepted == before)
        await gw.stop()
        await a.stop()
        await c.stop()
    }

    /// One checker per process, whatever the number of event loops: over about 4 s at
    /// `interval: 1` a node gets about 4 probes, not one per loop per second.
    @Test func oneCheckerWithTwoWorkers() async throws {
        let up = try await startUpstream("a")
        let checks = #"{"active":{"http_path":"/status/200","healthy":{"interval":1},"unhealthy":{"interval":1}}}"#
        let start = ContinuousClock.now
        let gw = try await Gateway.start(workers: 2, Self.upstream([up.address], checks: checks))
        try await Task.sleep(for: .seconds(4))
        let probes = up.requestsServed
        let elapsed = Double((ContinuousClock.now - start).components.seconds) + 1
        #expect(probes >= 2 && Double(probes) <= elapsed + 1, "\(probes) probes in about \(elapsed) s")
        await gw.stop()
        await up.stop()
    }

    /// Under a steady load over three nodes with `retries: 1`, one node's server dies: no
    /// request fails (the retry covers the detection window), once it is found unhealthy it
    /// gets nothing, and restarted it gets traffic again. The load is bounded in count and time.
    @Test func failoverUnderLoad() async throws {
        let a = try await startUpstream("a")
        let b = try await startUpstream("b")
        var c = try await startUpstream("c")
        let cPort = c.port
        let checks = #"{"active":{"type":"tcp","healthy":{"interval":1,"successes":1},"unhealthy":{"interval":1,"tcp_failures":1}}}"#
        let gw = try await Gateway.start(workers: 2, Self.upstream([a.address, b.address, c.address], checks: checks, extra: #","retries":1"#))
        let failed = NIOLockedValueBox(0)
        let sent = NIOLockedValueBox(0)
        let stopAt = ContinuousClock.now + .seconds(8)
        let load = Task {
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        guard var client = try? await gw.client() else { return }
                        // At most 5,000 requests per client, and never past the deadline.
                        for _ in 0..<5_000 where ContinuousClock.now < stopAt {
                            let r = try? await client.request(.GET, "/x", timeout: .seconds(5))
                            sent.withLockedValue { $0 += 1 }
                            if r?.status != .ok {
                                failed.withLockedValue { $0 += 1 }
                                await client.close()
                                if let fresh = try? await gw.client() { client = fresh }
                            }
                        }
                        await client.close()
                    }
                }
            }
        }
        try await Task.sleep(for: .seconds(1))
        await c.kill()
        #expect(try await eventually(timeout: .seconds(5)) { Self.status(gw)[c.address] == "unhealthy" }, "\(Self.status(gw))")
        let afterDetection = c.requestsServed
        try await Task.sleep(for: .seconds(1.5))
        #expect(c.requestsServed == afterDetection)
        c = try await TestUpstream.start(name: "c", group: Gateway.group, port: cPort)
        #expect(try await eventually(timeout: .seconds(5)) { Self.status(gw)[c.address] == "healthy" })
        #expect(try await eventually(timeout: .seconds(3)) { c.requestsServed > 0 }, "no traffic came back")
        await load.value
        #expect(failed.withLockedValue { $0 } == 0, "\(failed.withLockedValue { $0 }) of \(sent.withLockedValue { $0 }) failed")
        #expect(sent.withLockedValue { $0 } > 100)
        await gw.stop()
        await a.stop()
        await b.stop()
        await c.stop()
    }

    /// Bad values are refused naming the field.
    @Test(arguments: [
        (#"{"passive":{}}"#, "checks.active", "is required"),
        (#"{"active":{"type":"udp"}}"#, "checks.active.type", "must be one of"),
        (#"{"active":{"healthy":{"successes":255}}}"#, "checks.active.healthy.successes", "1-254"),
        (#"{"active":{"unhealthy":{"http_statuses":[99]}}}"#, "checks.active.unhealthy.http_statuses[0]", "200-599"),
        (#"{"active":{"timeout":0}}"#, "checks.active.timeout", "greater than 0"),
        (#"{"active":{"req_headers":["no colon"]}}"#, "checks.active.req_headers[0]", "Name: value"),
        (#"{"active":{},"extra":1}"#, "checks.extra", "unknown field"),
    ])
    func invalidChecksAreRefused(checks: String, field: String, message: String) throws {
        let value = try JSONValue.parse(#"{"nodes":{"127.0.0.1:80":1},"checks":\#(checks)}"#)
        do throws(ConfigError) {
            _ = try Upstream.decode(value)
            Issue.record("accepted \(checks)")
        } catch {
            #expect(error.path == field, "\(error)")
            #expect(error.message.contains(message), "\(error)")
        }
    }
}

/// `sluice serve` with checks from a declarative file: the control API and the metric, over
/// real HTTP, in APISIX's format.
@Suite struct HealthCheckProcessTests {
    @Test func controlAPIAndMetricShowTheCheckersView() async throws {
        let up = try await startUpstream("a")
        let dead = try await deadPort()
        let dir = makeTemporaryDirectory()
        let config = dir + "/apisix.json"
        let checks = #"{"active":{"type":"tcp","healthy":{"interval":1},"unhealthy":{"interval":1,"tcp_failures":1}}}"#
        try #"""
            {"upstreams":[{"id":"u","nodes":{"\#(up.address)":1,"127.0.0.1:\#(dead)":1},"checks":\#(checks)}],
             "routes":[{"id":"r","uri":"/*","upstream_id":"u"},{"id":"inline","uri":"/inline","upstream":{"nodes":{"\#(up.address)":1},"checks":\#(checks)}}]}
            """#.write(toFile: config, atomically: true, encoding: .utf8)
        let gw = try GatewayProcess.serve(["--standalone", config, "--workers", "2"], directory: dir)
        defer { gw.kill(SIGKILL) }
        let ports = try await gw.ports()
        let control = try await TestHTTPClient.connect(port: ports.control, group: Gateway.group)
        var one = JSONValue.null
        #expect(try await eventually(timeout: .seconds(8)) {
            one = try JSONValue.parse(try await control.request(.GET, "/v1/healthcheck/upstreams/u").bodyString)
            return one["nodes"]?.arrayValue?.contains { $0["port"]?.intValue == Int64(dead) && $0["status"] == "unhealthy" } == true
        }, "\(one)")
        #expect(one["name"] == "/apisix/upstreams/u" && one["type"] == "tcp")
        let live = one["nodes"]?.arrayValue?.first { $0["port"]?.intValue == Int64(up.port) }
        #expect(live?["status"] == "healthy" && live?["ip"] == "127.0.0.1", "\(one)")
        #expect(live?["counter"]?["tcp_failure"] == .int(0))
        let all = try JSONValue.parse(try await control.request(.GET, "/v1/healthcheck").bodyString)
        #expect(all.arrayValue?.compactMap { $0["name"]?.stringValue }.sorted() == ["/apisix/routes/inline", "/apisix/upstreams/u"], "\(all)")
        #expect(try await control.request(.GET, "/v1/healthcheck/upstreams/nope").status == .notFound)
        let metrics = try await TestHTTPClient.connect(port: ports.metrics, group: Gateway.group)
        let text = try await metrics.request(.GET, "/apisix/prometheus/metrics").bodyString
        #expect(text.contains("apisix_upstream_status{name=\"/apisix/upstreams/u\",ip=\"127.0.0.1\",port=\"\(dead)\"} 0"), "\(text)")
        #expect(text.contains("apisix_upstream_status{name=\"/apisix/upstreams/u\",ip=\"127.0.0.1\",port=\"\(up.port)\"} 1"))
        // Traffic skips the dead node: no 502 with retries left to chance.
        let proxy = try await TestHTTPClient.connect(port: ports.proxy, group: Gateway.group)
        for _ in 0..<10 { #expect(try await proxy.request(.GET, "/x").status == .ok) }
        await proxy.close()
        await metrics.close()
        await control.close()
        await up.stop()
    }
}
