import Foundation
import KubeSim
import KubeSimServer
import NIOCore
import SluiceCore
import SluiceTesting
import Testing

/// `sluice serve --kubernetes-discovery KUBECONFIG` against the Kubernetes simulator, whose
/// pods are real servers on loopback addresses: the gateway follows the EndpointSlices
/// itself, and no pod change writes to its config store.
@Suite struct KubernetesDiscoveryProcessTests {
    static let podAddresses = (11...15).map { "127.0.0.\($0)" }

    /// One server per pod address, all on the same port, as pods of one Deployment are.
    func startPods() async throws -> [TestUpstream] {
        var lastError: Error? = nil
        for _ in 0..<5 {  // the port picked on the first address may be taken on another
            var pods: [TestUpstream] = []
            do {
                let first = try await TestUpstream.start(name: Self.podAddresses[0], group: Gateway.group, host: Self.podAddresses[0])
                pods.append(first)
                for address in Self.podAddresses.dropFirst() {
                    pods.append(try await TestUpstream.start(name: address, group: Gateway.group, host: address, port: first.port))
                }
                return pods
            } catch {
                lastError = error
                for p in pods { await p.stop() }
            }
        }
        throw lastError ?? TestClientError(description: "cannot start the pods")
    }

    /// Which pods answer `count` requests.
    func pods(answering count: Int, _ client: TestHTTPClient, path: String = "/") async throws -> [String: Int] {
        var seen: [String: Int] = [:]
        for _ in 0..<count {
            let r = try await client.request(.GET, path)
            guard r.status == .ok, let pod = r.headers.first(name: "x-upstream") else {
                seen["status \(r.status.code)", default: 0] += 1
                continue
            }
            seen[pod, default: 0] += 1
        }
        return seen
    }

    @Test func podsAreFollowedWithoutStoreWrites() async throws {
        let pods = try await startPods()
        let state = SimState()
        let plane = SimControlPlane(state: state, podAddresses: Self.podAddresses)
        try plane.scale(namespace: "default", service: "httpbin", replicas: 5, ports: [SimServicePort(name: "http", port: pods[0].port)])
        try plane.scale(namespace: "default", service: "idle", replicas: 0)  // a Service without endpoints
        let sim = try await SimHTTPServer.start(state: state, group: Gateway.group, controlPlane: plane)

        let dir = makeTemporaryDirectory()
        try SimHTTPServer.kubeconfig(url: "http://127.0.0.1:\(sim.port)").write(toFile: "\(dir)/kubeconfig", atomically: true, encoding: .utf8)
        let p = try GatewayProcess.serve(
            ["--kubernetes-discovery", "\(dir)/kubeconfig", "--data-dir", "data", "--admin-key", adminKey, "--workers", "2"], directory: dir)
        let ports = try await p.ports()
        let admin = AdminClient(http: try await TestHTTPClient.connect(port: ports.admin, group: Gateway.group))
        let proxy = try await TestHTTPClient.connect(port: ports.proxy, group: Gateway.group)
        let control = try await TestHTTPClient.connect(port: ports.control, group: Gateway.group)
        let metrics = try await TestHTTPClient.connect(port: ports.metrics, group: Gateway.group)

        var r = try await admin.call(.PUT, "/upstreams/httpbin", #"{"discovery_type":"kubernetes","service_name":"default/httpbin:http"}"#)
        #expect(r.status == 201, "\(r.json)")
        r = try await admin.call(.PUT, "/routes/all", #"{"uri":"/*","upstream_id":"httpbin"}"#)
        #expect(r.status == 201, "\(r.json)")
        r = try await admin.call(.PUT, "/routes/idle", #"{"uri":"/idle","upstream":{"discovery_type":"kubernetes","service_name":"default/idle:80"}}"#)
        #expect(r.status == 201, "\(r.json)")
        r = try await admin.call(.PUT, "/routes/missing", #"{"uri":"/missing","upstream":{"discovery_type":"kubernetes","service_name":"default/nothing:http"}}"#)
        #expect(r.status == 201, "\(r.json)")
        let stored = try await admin.call(.GET, "/upstreams/httpbin")
        let modifiedIndex = try #require(stored.json["modifiedIndex"])

        // Every pod serves (wait for discovery's first sync, then for all five).
        var all: [String: Int] = [:]
        #expect(try await eventually(timeout: .seconds(20)) {
            for (k, v) in try await self.pods(answering: 20, proxy) { all[k, default: 0] += v }
            return Set(Self.podAddresses).isSubset(of: all.keys)
        }, "pods seen: \(all)")

        // Scale 5 → 2: afterwards only the two remaining pods get requests.
        try plane.scale(namespace: "default", service: "httpbin", replicas: 2)
        var last: [String: Int] = [:]
        #expect(try await eventually(timeout: .seconds(20)) {
            last = try await self.pods(answering: 10, proxy)
            return Set(last.keys) == Set(Self.podAddresses.prefix(2))
        }, "after scaling to 2: \(last)")
        let gone = pods.suffix(3).map(\.requestsServed)
        let settled = try await self.pods(answering: 40, proxy)
        #expect(Set(settled.keys) == Set(Self.podAddresses.prefix(2)), "\(settled)")
        #expect(pods.suffix(3).map(\.requestsServed) == gone, "removed pods still got requests")

        // Services without endpoints, or unknown: 503.
        #expect(try await proxy.request(.GET, "/idle").status == .serviceUnavailable)
        #expect(try await proxy.request(.GET, "/missing").status == .serviceUnavailable)

        // The store saw no write for any of it.
        let after = try await admin.call(.GET, "/upstreams/httpbin")
        #expect(after.json["modifiedIndex"] == modifiedIndex)
        #expect(after.json["value"]?["nodes"] == nil)

        // The control API shows the node sets; the metrics count the updates.
        let dump = try JSONValue.parse(try await control.request(.GET, "/v1/discovery/kubernetes/dump").bodyString)
        let httpbin = dump["endpoints"]?.arrayValue?.first { $0["name"] == "default/httpbin" }
        #expect(dump["synced"] == true)
        #expect(Set(httpbin?["value"]?["http"]?.arrayValue?.compactMap { $0["host"]?.stringValue } ?? []) == Set(Self.podAddresses.prefix(2)))
        let text = try await metrics.request(.GET, "/apisix/prometheus/metrics").bodyString
        let line = text.split(separator: "\n").first { $0.hasPrefix("sluice_discovery_updates_total ") }
        #expect((line?.split(separator: " ").last.flatMap { Int($0) } ?? 0) >= 2, "\(line ?? "no discovery metric")")

        for c in [proxy, control, metrics] { await c.close() }
        await admin.close()
        p.kill(SIGTERM)
        #expect(await p.waitForExit() == 0)
        await sim.stop()
        for pod in pods { await pod.stop() }
    }

    /// Without the flag a discovery upstream is accepted, has no nodes, and is named in a
    /// warning once.
    @Test func withoutTheFlagTheUpstreamIsEmptyAndWarnedAbout() async throws {
        let dir = makeTemporaryDirectory()
        let p = try GatewayProcess.serve(["--data-dir", "data", "--admin-key", adminKey, "--workers", "1"], directory: dir)
        let ports = try await p.ports()
        let admin = AdminClient(http: try await TestHTTPClient.connect(port: ports.admin, group: Gateway.group))
        let proxy = try await TestHTTPClient.connect(port: ports.proxy, group: Gateway.group)
        var r = try await admin.call(.PUT, "/upstreams/k8s", #"{"discovery_type":"kubernetes","service_name":"default/httpbin:http"}"#)
        #expect(r.status == 201, "\(r.json)")
        r = try await admin.call(.PUT, "/routes/1", #"{"uri":"/*","upstream_id":"k8s"}"#)
        #expect(r.status == 201)
        r = try await admin.call(.PUT, "/routes/2", #"{"uri":"/b","upstream_id":"k8s"}"#)
        #expect(r.status == 201)
        #expect(try await proxy.request(.GET, "/a").status == .serviceUnavailable)
        r = try await admin.call(.PUT, "/upstreams/bad", #"{"discovery_type":"consul","service_name":"x"}"#)
        #expect(r.status == 400)
        #expect(r.json["error_msg"]?.stringValue?.contains("discovery_type") == true)
        #expect(try await eventually { p.text.contains("upstreams/k8s") })
        let warnings = p.text.split(separator: "\n").filter { $0.contains("--kubernetes-discovery") && $0.contains("upstreams/k8s") }
        #expect(warnings.count == 1, "\(p.text)")
        await proxy.close()
        await admin.close()
        p.kill(SIGTERM)
        _ = await p.waitForExit()
    }
}
