import Foundation
import KubeClient
import KubeSim
import KubeSimServer
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import SluiceCore
import SluiceTesting
import Testing

/// `sluice ingress` end to end: kube-sim, a `sluice serve` process, controller processes,
/// and real servers standing in for pods.
@Suite(.serialized) struct IngressEndToEndTests {
    static let httpbinPort = SimServicePort(name: "http", port: 0)

    /// 127.0.1.1 ... 127.0.1.N: pod addresses with a real server behind each.
    static func loopback(_ range: ClosedRange<Int>) -> [String] { range.map { "127.0.1.\($0)" } }

    /// The seed scenario: 20 replicas behind Service httpbin and ApisixRoute httpbin-route
    /// (host httpbin.org, path /get) → upstream default_httpbin_80 with those 20 nodes,
    /// requests proxied to every pod, and the route's status ResourcesAvailable.
    @Test func seedScenarioProxiesToEveryPod() async throws {
        let port = try await freePort()
        let addresses = Self.loopback(1...20)
        let pods = try await startPods(addresses, port: port)
        let env = try await IngressEnvironment(podAddresses: addresses)
        try env.control.scale(namespace: "default", service: "httpbin", replicas: 20, ports: [SimServicePort(name: "http", port: port)])
        try await env.create(.apisixRoutes(namespace: "default"), httpbinRoute)
        // A route whose Service does not exist: reported on the object, the rest still syncs.
        try await env.create(.apisixRoutes(namespace: "default"), #"""
            {"metadata": {"name": "broken", "namespace": "default"},
             "spec": {"http": [{"name": "r", "match": {"paths": ["/broken"]}, "backends": [{"serviceName": "nope", "servicePort": 80}]}]}}
            """#)
        // Outside the watched namespace: never translated, never given a status.
        try await env.create(.apisixRoutes(namespace: "elsewhere"), #"""
            {"metadata": {"name": "ignored", "namespace": "elsewhere"},
             "spec": {"http": [{"name": "r", "match": {"paths": ["/x"]}, "backends": [{"serviceName": "nope", "servicePort": 80}]}]}}
            """#)
        try env.startController(["--leader-elect", "false", "--namespace", "default"])
        let expected = Set(addresses.map { "\($0):\(port)" })
        #expect(try await eventually(timeout: .seconds(20)) { try await env.nodes("default_httpbin_80") == expected })
        // Upstreams are written before routes: the route may land a moment after the nodes.
        var route = try await env.admin(.GET, "/routes/default_httpbin-route_rule1")
        #expect(try await eventually {
            route = try await env.admin(.GET, "/routes/default_httpbin-route_rule1")
            return route.status == 200
        })
        #expect(route.json["value"]?["upstream_id"]?.stringValue == "default_httpbin_80")
        #expect(route.json["value"]?["labels"]?["managed-by"]?.stringValue == "sluice-ingress")

        let client = try await TestHTTPClient.connect(port: env.ports.proxy, group: IngressEnvironment.group)
        var servedBy: [String: Int] = [:]
        for _ in 0..<200 {
            let r = try await client.request(.GET, "/get", host: "httpbin.org")
            #expect(r.status == .ok)
            servedBy[r.headers["X-Upstream"].first ?? "?", default: 0] += 1
        }
        #expect(Set(servedBy.keys) == Set(addresses))
        #expect(try await client.request(.GET, "/get", host: "other.org").status == .notFound)
        await client.close()

        // Status on both objects, with the generation observed.
        #expect(try await eventually {
            let ok = try ApisixRoute(json: try await env.api.get(.apisixRoutes(namespace: "default"), name: "httpbin-route"))
            let bad = try ApisixRoute(json: try await env.api.get(.apisixRoutes(namespace: "default"), name: "broken"))
            return ok.status.resourcesAvailable?.status == .true && ok.status.resourcesAvailable?.observedGeneration == 1
                && bad.status.resourcesAvailable?.status == .false
                && bad.status.resourcesAvailable?.message.contains("spec.http[0].backends[0].serviceName") == true
        })
        #expect(try await env.admin(.GET, "/routes/default_broken_r").status == 404)
        let ignored = try ApisixRoute(json: try await env.api.get(.apisixRoutes(namespace: "elsewhere"), name: "ignored"))
        #expect(ignored.status.conditions.isEmpty)

        // Another writer's condition on the same status (a policy controller, say).
        let current = try await env.api.get(.apisixRoutes(namespace: "default"), name: "httpbin-route")
        var conditions = current["status"]?["conditions"]?.arrayValue ?? []
        conditions.append(["type": "PolicyChecked", "status": "True", "reason": "Checked", "message": "by another controller", "lastTransitionTime": "2026-12-04T00:00:00Z"])
        _ = try await env.api.mergePatchStatus(.apisixRoutes(namespace: "default"), name: "httpbin-route", ["status": ["conditions": .array(conditions)]])

        // An edit that no longer translates (a Service name typo) keeps the last good route
        // serving, and says why on the status, as the APISIX controller does.
        _ = try await env.api.modify(.apisixRoutes(namespace: "default"), name: "httpbin-route") { o in
            o.mergePatched(with: ["spec": ["http": [["name": "rule1", "match": ["hosts": ["httpbin.org"], "paths": ["/get"]],
                                                     "backends": [["serviceName": "httpbn", "servicePort": 80]]]]]])
        }
        #expect(try await eventually {
            let r = try ApisixRoute(json: try await env.api.get(.apisixRoutes(namespace: "default"), name: "httpbin-route"))
            return r.status.resourcesAvailable?.status == .false && r.status.resourcesAvailable?.observedGeneration == 2
                && r.status.resourcesAvailable?.message.contains("Service default/httpbn not found") == true
        })
        // The controller's status write kept the other writer's condition.
        let after = try ApisixRoute(json: try await env.api.get(.apisixRoutes(namespace: "default"), name: "httpbin-route"))
        #expect(after.status.conditions.contains { $0.type == "PolicyChecked" && $0.message == "by another controller" }, "\(after.status)")
        let still = try await TestHTTPClient.connect(port: env.ports.proxy, group: IngressEnvironment.group)
        #expect(try await still.request(.GET, "/get", host: "httpbin.org").status == .ok)
        await still.close()
        #expect(try await env.nodes("default_httpbin_80") == expected)
        await env.stop()
        for p in pods.values { await p.stop() }
    }

    /// 2,000 endpoints in 20 slices become 2,000 nodes; following legacy Endpoints instead
    /// gets the 1,000 the API server kept, and a warning naming the Service.
    @Test func twoThousandEndpointsFromSlicesButOneThousandFromEndpoints() async throws {
        let env = try await IngressEnvironment()
        try env.control.scale(namespace: "default", service: "httpbin", replicas: 2000, ports: [SimServicePort(name: "http", port: 8080)])
        let slices = try await env.api.list(.endpointSlices(namespace: "default")).items
        #expect(slices.count == 20)
        try await env.create(.apisixRoutes(namespace: "default"), httpbinRoute)
        let slicesController = try env.startController()
        #expect(try await eventually(timeout: .seconds(30)) { try await env.nodes("default_httpbin_80").count == 2000 })
        slicesController.kill(SIGTERM)
        #expect(await slicesController.waitForExit() == 0)

        let legacy = try env.startController(["--leader-elect", "false", "--watch-endpointslice", "false"])
        #expect(try await eventually(timeout: .seconds(30)) { try await env.nodes("default_httpbin_80").count == 1000 })
        #expect(try await eventually { legacy.text.contains("Endpoints of Service default/httpbin are truncated") })
        await env.stop()
    }

    /// Every pod replaced, two at a time, under a bounded request loop: no request fails.
    /// Old pods keep serving while terminating (as with a preStop grace period) and are
    /// stopped once the gateway no longer lists them; after that only new pods serve.
    @Test func rollingUpdateFailsNoRequest() async throws {
        let port = try await freePort()
        let old = Self.loopback(1...20)
        let new = Self.loopback(21...40)
        let pods = try await startPods(old + new, port: port)
        let env = try await IngressEnvironment(podAddresses: old + new)
        try env.control.scale(namespace: "default", service: "httpbin", replicas: 20, ports: [SimServicePort(name: "http", port: port)])
        try await env.create(.apisixRoutes(namespace: "default"), httpbinRoute)
        try env.startController()
        #expect(try await eventually(timeout: .seconds(20)) { try await env.nodes("default_httpbin_80") == Set(old.map { "\($0):\(port)" }) })

        let stats = NIOLockedValueBox((ok: 0, failed: 0, afterStop: [String: Int]()))
        let stopped = NIOLockedValueBox(false)
        let finish = NIOLockedValueBox(false)
        let proxyPort = env.ports.proxy
        let load = Task {
            let deadline = ContinuousClock.now + .seconds(60)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<2 {
                    group.addTask {
                        var client = try await TestHTTPClient.connect(port: proxyPort, group: IngressEnvironment.group)
                        var n = 0
                        while n < 20_000, ContinuousClock.now < deadline, !finish.withLockedValue({ $0 }) {
                            n += 1
                            let wasStopped = stopped.withLockedValue { $0 }
                            do {
                                let r = try await client.request(.GET, "/get", host: "httpbin.org", timeout: .seconds(5))
                                stats.withLockedValue {
                                    if r.status == .ok { $0.ok += 1 } else { $0.failed += 1 }
                                    if wasStopped { $0.afterStop[r.headers["X-Upstream"].first ?? "?", default: 0] += 1 }
                                }
                            } catch {
                                stats.withLockedValue { $0.failed += 1 }
                                client = try await TestHTTPClient.connect(port: proxyPort, group: IngressEnvironment.group)
                            }
                        }
                        await client.close()
                    }
                }
                try await group.waitForAll()
            }
        }
        #expect(try await eventually { stats.withLockedValue { $0.ok } > 100 })
        try env.control.rollingUpdate(namespace: "default", service: "httpbin", batch: 2)
        #expect(try await eventually(timeout: .seconds(20)) { try await env.nodes("default_httpbin_80") == Set(new.map { "\($0):\(port)" }) })
        for a in old { await pods[a]?.stop() }
        stopped.withLockedValue { $0 = true }
        #expect(try await eventually { stats.withLockedValue { $0.afterStop.values.reduce(0, +) } > 200 })
        finish.withLockedValue { $0 = true }
        try await load.value
        let s = stats.withLockedValue { $0 }
        #expect(s.failed == 0)
        #expect(s.ok > 300)
        #expect(Set(s.afterStop.keys).isSubset(of: Set(new)))
        await env.stop()
        for p in pods.values { await p.stop() }
    }

    /// kube-sim goes away, pods change meanwhile, its history is compacted: the resumed
    /// watches get 410 Gone, the controller relists, and the gateway never loses a node
    /// that still exists.
    @Test func watchExpiryLosesNoNode() async throws {
        let env = try await IngressEnvironment(podAddresses: Self.loopback(1...30))
        try env.control.scale(namespace: "default", service: "httpbin", replicas: 20, ports: [SimServicePort(name: "http", port: 8080)])
        try await env.create(.apisixRoutes(namespace: "default"), httpbinRoute)
        try env.startController()
        let first = Set(Self.loopback(1...20).map { "\($0):8080" })
        #expect(try await eventually(timeout: .seconds(20)) { try await env.nodes("default_httpbin_80") == first })
        let lost = NIOLockedValueBox(false)
        let watching = NIOLockedValueBox(true)
        let sampler = Task {
            while watching.withLockedValue({ $0 }) {
                if !first.isSubset(of: try await env.nodes("default_httpbin_80")) { lost.withLockedValue { $0 = true } }
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        await env.stopSim()
        try env.control.scale(namespace: "default", service: "httpbin", replicas: 25, ports: [SimServicePort(name: "http", port: 8080)])
        env.state.compact()
        try await env.restartSim()
        let after = Set(Self.loopback(1...25).map { "\($0):8080" })
        #expect(try await eventually(timeout: .seconds(20)) { try await env.nodes("default_httpbin_80") == after })
        watching.withLockedValue { $0 = false }
        try await sampler.value
        #expect(!lost.withLockedValue { $0 })
        await env.stop()
    }

    /// Two controllers with leader election: one holds the Lease and writes, the other
    /// writes nothing; when the leader dies the other takes over and keeps the gateway in step.
    @Test func onlyTheLeaderWrites() async throws {
        let env = try await IngressEnvironment(podAddresses: Self.loopback(1...30))
        try env.control.scale(namespace: "default", service: "httpbin", replicas: 20, ports: [SimServicePort(name: "http", port: 8080)])
        try await env.create(.apisixRoutes(namespace: "default"), httpbinRoute)
        let election = ["--log-level", "debug", "--leader-elect", "true", "--lease-duration", "3", "--renew-deadline", "2", "--retry-period", "0.3"]
        let a = try env.startController(election + ["--identity", "controller-a"])
        let b = try env.startController(election + ["--identity", "controller-b"])
        #expect(try await eventually(timeout: .seconds(20)) { try await env.nodes("default_httpbin_80").count == 20 })
        let lease = try Lease(json: try await env.api.get(.leases(namespace: "default"), name: "sluice-ingress-leader"))
        let holder = try #require(lease.spec.holderIdentity)
        #expect(["controller-a", "controller-b"].contains(holder))
        let (leader, follower) = holder == "controller-a" ? (a, b) : (b, a)
        let puts = "sluice_ingress_gateway_writes_total{op=\"put\"}"
        // The leader's first sync (upstream, then route) is counted when its flush is over,
        // after the gateway already shows the nodes.
        #expect(try await eventually { try await Self.metric(leader, puts) ?? 0 >= 2 }, "\(leader.text)")
        #expect(try await eventually { leader.text.contains("became the leader") })
        // The follower's count once it has reported its metrics port; its log is read after
        // the count, so a leadership it had taken (and written with) would show there.
        let followerPuts = try await awaitMetric(follower, puts)
        #expect(followerPuts == 0, "\(follower.text)")
        #expect(try await awaitMetric(follower, "sluice_ingress_leader") == 0)
        #expect(!follower.text.contains("became the leader"), "\(follower.text)")

        leader.kill(SIGKILL)
        #expect(try await eventually(timeout: .seconds(15)) { follower.text.contains("became the leader") })
        try env.control.scale(namespace: "default", service: "httpbin", replicas: 25, ports: [SimServicePort(name: "http", port: 8080)])
        #expect(try await eventually(timeout: .seconds(15)) { try await env.nodes("default_httpbin_80").count == 25 }, "\(follower.text)")
        let taken = try Lease(json: try await env.api.get(.leases(namespace: "default"), name: "sluice-ingress-leader"))
        #expect(taken.spec.holderIdentity == (holder == "controller-a" ? "controller-b" : "controller-a"))
        #expect((taken.spec.leaseTransitions ?? 0) >= 1)
        await env.stop()
    }

    /// The gateway restarts with an empty store: the controller notices (its writes fail,
    /// then its periodic comparison) and writes everything again.
    @Test func gatewayRestartedEmptyIsResynced() async throws {
        let env = try await IngressEnvironment(podAddresses: Self.loopback(1...30))
        try env.control.scale(namespace: "default", service: "httpbin", replicas: 20, ports: [SimServicePort(name: "http", port: 8080)])
        try await env.create(.apisixRoutes(namespace: "default"), httpbinRoute)
        try env.startController()
        #expect(try await eventually(timeout: .seconds(20)) { try await env.nodes("default_httpbin_80").count == 20 })
        try await env.restartGatewayEmpty()
        #expect(try await env.nodes("default_httpbin_80").isEmpty)
        #expect(try await eventually(timeout: .seconds(20)) {
            let nodes = try await env.nodes("default_httpbin_80")
            let route = try await env.admin(.GET, "/routes/default_httpbin-route_rule1")
            return nodes.count == 20 && route.status == 200
        })
        await env.stop()
    }

    /// A pod change is written as a merge patch of the nodes that changed: the bytes the
    /// controller writes for one pod do not grow with the Service.
    @Test func aPodChangeWritesOnlyTheChangedNodes() async throws {
        let env = try await IngressEnvironment()
        try env.control.scale(namespace: "default", service: "httpbin", replicas: 1000, ports: [SimServicePort(name: "http", port: 8080)])
        try await env.create(.apisixRoutes(namespace: "default"), httpbinRoute)
        let c = try env.startController()
        #expect(try await eventually(timeout: .seconds(30)) { try await env.nodes("default_httpbin_80").count == 1000 })
        // The first sync (upstream and route) is over and counted.
        #expect(try await eventually { try await Self.metric(c, "sluice_ingress_gateway_writes_total{op=\"put\"}") == 2 })
        let before = try await Self.metric(c, "sluice_ingress_gateway_write_bytes_total") ?? 0
        try env.control.scale(namespace: "default", service: "httpbin", replicas: 1001, ports: [SimServicePort(name: "http", port: 8080)])
        #expect(try await eventually(timeout: .seconds(10)) { try await env.nodes("default_httpbin_80").count == 1001 })
        // The counters move once the write's round is over, a moment after the gateway has it.
        #expect(try await eventually { try await Self.metric(c, "sluice_ingress_gateway_writes_total{op=\"patch\"}") ?? 0 >= 1 })
        let after = try await Self.metric(c, "sluice_ingress_gateway_write_bytes_total") ?? 0
        #expect(after > before)
        #expect(after - before < 200)  // one node's patch, not 1,001 nodes (~25 KB)
        await env.stop()
    }

    /// `--etcd`: the controller writes straight into the store the gateway watches.
    @Test func writesStraightIntoEtcd() async throws {
        let etcd = try await EtcdTestServer.start(group: IngressEnvironment.group)
        let dir = makeTemporaryDirectory()
        let gateway = try GatewayProcess.serve(["--etcd", etcd.url, "--admin-key", adminKey, "--workers", "1"], directory: dir)
        let ports = try await gateway.ports()
        let env = try await IngressEnvironment(podAddresses: Self.loopback(1...30))
        try env.control.scale(namespace: "default", service: "httpbin", replicas: 20, ports: [SimServicePort(name: "http", port: 8080)])
        try await env.create(.apisixRoutes(namespace: "default"), httpbinRoute)
        let c = try GatewayProcess(
            ["ingress", "--kubeconfig", env.kubeconfig, "--etcd", etcd.url, "--leader-elect", "false", "--metrics-listen", "127.0.0.1:0"],
            directory: env.dir)
        env.controllers.append(c)
        let http = try await TestHTTPClient.connect(port: ports.admin, group: IngressEnvironment.group)
        #expect(try await eventually(timeout: .seconds(20)) {
            let r = try await http.request(.GET, "/apisix/admin/upstreams/default_httpbin_80", headers: [("X-API-KEY", adminKey)])
            return (try? JSONValue.parse(r.bodyString))?["value"]?["nodes"]?.objectValue?.count == 20
        })
        await http.close()
        gateway.kill(SIGKILL)
        _ = await gateway.waitForExit()
        await env.stop()
        await etcd.stop()
    }

    /// A cluster without the APISIX CRDs (Ingress only): they count as empty, and the
    /// Ingress is served; its Prefix path matches element-wise.
    @Test func anIngressOnlyClusterIsServed() async throws {
        let port = try await freePort()
        let addresses = Self.loopback(1...3)
        let pods = try await startPods(addresses, port: port)
        let env = try await IngressEnvironment(
            podAddresses: addresses, resources: SimState.defaultResources.filter { $0.group != "apisix.apache.org" })
        try env.control.scale(namespace: "default", service: "web", replicas: 3, ports: [SimServicePort(name: "http", port: port)])
        try await env.create(.ingressClasses(), #"{"metadata": {"name": "sluice"}, "spec": {"controller": "sluice.io/ingress-controller"}}"#)
        try await env.create(.ingresses(namespace: "default"), #"""
            {"metadata": {"name": "web", "namespace": "default"},
             "spec": {"ingressClassName": "sluice", "rules": [{"host": "web.example.com", "http": {"paths": [
               {"path": "/api", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"name": "http"}}}}]}}]}}
            """#)
        let c = try env.startController()
        #expect(try await eventually(timeout: .seconds(20)) { try await env.nodes("default_web_80").count == 3 })
        let client = try await TestHTTPClient.connect(port: env.ports.proxy, group: IngressEnvironment.group)
        #expect(try await eventually {
            try await client.request(.GET, "/api/items", host: "web.example.com").status == .ok
        })
        #expect(try await client.request(.GET, "/api", host: "web.example.com").status == .ok)
        #expect(try await client.request(.GET, "/apiary", host: "web.example.com").status == .notFound)
        await client.close()
        #expect(c.text.contains("CRDs not installed"))
        await env.stop()
        for p in pods.values { await p.stop() }
    }

    /// Bad flags and an unreadable kubeconfig exit 2 with a message naming the flag.
    @Test func badFlagsExitTwo() async throws {
        let dir = makeTemporaryDirectory()
        let notBool = try GatewayProcess(["ingress", "--leader-elect", "maybe"], directory: dir)
        #expect(await notBool.waitForExit() == 2)
        #expect(notBool.text.contains("--leader-elect"))
        let noConfig = try GatewayProcess(["ingress", "--kubeconfig", "\(dir)/missing"], directory: dir)
        #expect(await noConfig.waitForExit() == 2)
        #expect(noConfig.text.contains("--kubeconfig"))
        let badURL = try GatewayProcess(["ingress", "--admin-url", "ftp://x"], directory: dir)
        #expect(await badURL.waitForExit() == 2)
        #expect(badURL.text.contains("--admin-url"))
        // Timings past any sensible range used to pass `> 0` and trap when converted.
        for (flag, value) in [("--retry-period", "inf"), ("--retry-period", "1e300"), ("--resync-interval", "1e300"), ("--coalesce-window", "9223372036854775807")] {
            let p = try GatewayProcess(["ingress", flag, value], directory: dir)
            #expect(await p.waitForExit() == 2, "\(flag) \(value)")
            #expect(p.text.contains(flag), "\(flag) \(value): \(p.text)")
        }
    }

    /// `metric`, once the controller has logged its metrics port and shows the series; nil
    /// if it has not by `timeout`.
    func awaitMetric(_ controller: GatewayProcess, _ series: String, timeout: Duration = .seconds(10)) async throws -> Double? {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let value = try await Self.metric(controller, series) { return value }
            if ContinuousClock.now >= deadline { return nil }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// A metric's value from a controller's /metrics (its port from its log); nil while the
    /// port is not in its log yet, or the series is not shown.
    static func metric(_ controller: GatewayProcess, _ series: String) async throws -> Double? {
        guard let line = controller.text.split(separator: "\n").first(where: { $0.hasSuffix("metrics listening") }),
            let address = line.split(separator: " ").first(where: { $0.hasPrefix("address=") }),
            let port = address.split(separator: ":").last.flatMap({ Int($0) })
        else { return nil }
        let http = try await TestHTTPClient.connect(port: port, group: IngressEnvironment.group)
        defer { Task { await http.close() } }
        let text = try await http.request(.GET, "/metrics").bodyString
        for l in text.split(separator: "\n") where l.hasPrefix(series + " ") { return Double(l.split(separator: " ").last ?? "") }
        return nil
    }
}
