import Logging
import NIOCore
import SluiceAdmin
import SluiceCore
import SluiceEtcd
import SluiceServer
import SluiceTesting
import Testing

/// A gateway whose etcd connection goes through a `TCPRelay` that can stop answering, with
/// short liveness intervals (the defaults are 30 s idle, 10 s probes).
struct RelayedEtcdGateway {
    let gateway: Gateway
    let service: ConfigService
    let sync: EtcdSync
    let task: Task<Void, Never>

    static let liveness = EtcdWatchLiveness(idleTimeout: .seconds(2), probeInterval: .milliseconds(300), probeTimeout: .milliseconds(700))

    static func start(_ relay: TCPRelay) async throws -> RelayedEtcdGateway {
        let gateway = try await Gateway.start()
        let client = EtcdClient(endpoints: [try #require(EtcdEndpoint(url: relay.url))], group: Gateway.group, watchLiveness: liveness)
        let store = EtcdStore(client: client)
        let server = gateway.server
        let service = ConfigService(store: store, publisher: { state, changes in try await server.apply(state, changes: changes) })
        try await service.start()
        var logger = Logger(label: "etcd-liveness-test")
        logger.logLevel = .critical
        let sync = EtcdSync(store: store, service: service, logger: logger)
        return RelayedEtcdGateway(gateway: gateway, service: service, sync: sync, task: Task { await sync.run() })
    }

    /// What `/apisix/prometheus/metrics` serves.
    func metrics() async -> String {
        let response = await MetricsAPI(service: service, storeHealth: sync).handle(
            APIRequest(method: "GET", uri: "/apisix/prometheus/metrics", headers: [], body: [], remoteAddress: nil))
        return response.text?.body ?? ""
    }

    func reachableMetric() async -> Int? {
        for line in await metrics().split(separator: "\n") where line.hasPrefix("apisix_etcd_reachable ") {
            return Int(line.dropFirst("apisix_etcd_reachable ".count))
        }
        return nil
    }

    func silentRestartsMetric() async -> Int? {
        let name = #"sluice_etcd_watch_restarts_total{reason="silent"} "#
        for line in await metrics().split(separator: "\n") where line.hasPrefix(name) { return Int(line.dropFirst(name.count)) }
        return nil
    }

    func stop() async {
        task.cancel()
        await task.value
        await gateway.stop()
    }
}

@Suite struct EtcdLivenessTests {
    func route(_ id: String, _ up: TestUpstream) -> String {
        #"{"uri":"/\#(id)","upstream":{"nodes":{"\#(up.address)":1}}}"#
    }

    @Test func aWatchOnAConnectionThatStopsAnsweringIsReplacedAndTheMetricDropsMeanwhile() async throws {
        let etcd = try await EtcdTestServer.start(group: Gateway.group)
        let relay = try await TCPRelay.start(to: etcd.clientPort, group: Gateway.group)
        let up = try await startUpstream("a")
        let g = try await RelayedEtcdGateway.start(relay)
        let client = try await g.gateway.client()
        #expect(try await eventually(timeout: .seconds(20)) { await g.reachableMetric() == 1 })
        _ = try etcd.etcdctl(["put", "/apisix/routes/before", route("before", up)])
        #expect(try await eventually(timeout: .seconds(20)) { try await client.request(.GET, "/before").status == .ok })

        // The relay stops forwarding both ways, closing nothing: the watch, the probes and any
        // new connection are answered by no one. etcd itself goes on taking writes.
        let frozenAt = ContinuousClock.now
        await relay.freeze()
        _ = try etcd.etcdctl(["put", "/apisix/routes/during", route("during", up)])
        #expect(try await eventually(timeout: .seconds(30)) { await g.reachableMetric() == 0 })
        let detected = ContinuousClock.now - frozenAt
        print("etcd watch on a frozen connection: apisix_etcd_reachable 0 after \(detected) (idle timeout 2 s)")
        #expect(detected >= .milliseconds(1500), "\(detected)")  // not before the idle timeout (2 s)...
        #expect(detected < .seconds(30), "\(detected)")  // ...and within a bound of it
        #expect(try await eventually(timeout: .seconds(20)) { (await g.silentRestartsMetric() ?? 0) >= 1 })
        // While frozen the write cannot be known: the last config is served, and the metric
        // stays 0 through the replacement attempts (each one silent too).
        #expect(try await client.request(.GET, "/during").status == .notFound)
        #expect(try await client.request(.GET, "/before").status == .ok)
        let until = ContinuousClock.now + .seconds(3)
        while ContinuousClock.now < until {
            #expect(await g.reachableMetric() == 0)
            try await Task.sleep(for: .milliseconds(100))
        }

        // Thawed: the replacement resumes from the last applied revision and catches up.
        await relay.thaw()
        let thawedAt = ContinuousClock.now
        #expect(try await eventually(timeout: .seconds(30)) { try await client.request(.GET, "/during").status == .ok })
        print("etcd relay thawed: the write made during the freeze served after \(ContinuousClock.now - thawedAt)")
        #expect(try await eventually(timeout: .seconds(20)) { await g.reachableMetric() == 1 })
        #expect(try await client.request(.GET, "/before").status == .ok)
        await client.close()
        await g.stop()
        await up.stop()
        await relay.stop()
        await etcd.remove()
    }

    @Test func aWatchFrozenForGoodIsReplacedOverANewConnection() async throws {
        let etcd = try await EtcdTestServer.start(group: Gateway.group)
        let relay = try await TCPRelay.start(to: etcd.clientPort, group: Gateway.group)
        let up = try await startUpstream("a")
        let g = try await RelayedEtcdGateway.start(relay)
        let client = try await g.gateway.client()
        #expect(try await eventually(timeout: .seconds(20)) { await g.reachableMetric() == 1 })
        // The connections open now (the watch's among them) go silent and stay open: a
        // half-open connection. New connections work.
        await relay.freezeOpenConnections()
        let accepted = relay.connectionsAccepted
        _ = try etcd.etcdctl(["put", "/apisix/routes/later", route("later", up)])
        let start = ContinuousClock.now
        #expect(try await eventually(timeout: .seconds(30)) { try await client.request(.GET, "/later").status == .ok })
        let caughtUp = ContinuousClock.now - start
        print("etcd watch frozen for good: replaced and caught up after \(caughtUp) (idle timeout 2 s)")
        #expect(caughtUp < .seconds(30), "\(caughtUp)")
        #expect(relay.connectionsAccepted > accepted)  // over a new connection
        #expect((await g.silentRestartsMetric() ?? 0) >= 1)
        #expect(try await eventually(timeout: .seconds(20)) { await g.reachableMetric() == 1 })
        await client.close()
        await g.stop()
        await up.stop()
        await relay.stop()
        await etcd.remove()
    }
}
