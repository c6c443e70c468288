import KubeClient
import KubeSim
import KubeSimServer
import Logging
import NIOConcurrencyHelpers
import NIOPosix
import SluiceCore
import SluiceDiscovery
import Testing

/// The discovery actor against the Kubernetes simulator on a real socket.
@Suite struct KubernetesDiscoveryTests {
    static let group = MultiThreadedEventLoopGroup.singleton

    struct Running {
        let sim: SimHTTPServer
        let plane: SimControlPlane
        let discovery: KubernetesDiscovery
        let received: NIOLockedValueBox<[DiscoveryUpdate]>
        let task: Task<Void, Never>

        var latest: DiscoveryRegistry? { received.withLockedValue { $0.last?.registry } }

        func stop() async {
            task.cancel()
            await sim.stop()
        }
    }

    func start(interval: Duration = .milliseconds(75), before: (SimControlPlane) throws -> Void = { _ in }) async throws -> Running {
        let state = SimState()
        let plane = SimControlPlane(state: state)
        try before(plane)
        let sim = try await SimHTTPServer.start(state: state, group: Self.group, controlPlane: plane)
        let connection = KubeConnection(
            server: "http://127.0.0.1:\(sim.port)", scheme: "http", host: "127.0.0.1", port: sim.port, basePath: "", certificateAuthorityPEM: nil,
            insecureSkipTLSVerify: false, auth: .none, namespace: "default")
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        let discovery = KubernetesDiscovery(api: KubeAPI(connection, group: Self.group), minimumInterval: interval, logger: logger)
        let received = NIOLockedValueBox<[DiscoveryUpdate]>([])
        let task = Task { await discovery.run { u in received.withLockedValue { $0.append(u) } } }
        return Running(sim: sim, plane: plane, discovery: discovery, received: received, task: task)
    }

    func eventually(_ timeout: Duration = .seconds(10), _ check: () async -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if await check() { return true }
            try await Task.sleep(for: .milliseconds(10))
        }
        return await check()
    }

    @Test func theFirstUpdateHoldsEverythingListedThenPodChangesFollow() async throws {
        let r = try await start { plane in
            try plane.scale(namespace: "default", service: "web", replicas: 3)
            try plane.scale(namespace: "shop", service: "api", replicas: 2, ports: [SimServicePort(name: "grpc", port: 9000)])
        }
        #expect(try await eventually { r.latest?.synced == true })
        let first = try #require(r.received.withLockedValue { $0.first })
        // Synced in one piece: both services' nodes in the first update, names in both spellings.
        #expect(first.registry.nodes(for: "default/web:http").count == 3)
        #expect(first.registry.nodes(for: "default/web:80").count == 3)
        #expect(first.registry.nodes(for: "shop/api:grpc").count == 2)
        #expect(first.registry.nodes(for: "shop/api:grpc").allSatisfy { $0.port == 9000 && $0.weight == 100 })
        #expect(first.changed.isSuperset(of: ["default/web:http", "default/web:80", "shop/api:grpc", "shop/api:80"]))

        let before = r.received.withLockedValue { $0.count }
        try r.plane.scale(namespace: "default", service: "web", replicas: 1)
        #expect(try await eventually { r.latest?.nodes(for: "default/web:http").count == 1 })
        let after = r.received.withLockedValue { Array($0[before...]) }
        // Only the scaled Service is reported.
        #expect(after.allSatisfy { $0.changed.allSatisfy { $0.hasPrefix("default/web:") } })
        #expect(r.latest?.nodes(for: "shop/api:grpc").count == 2)

        // A deleted Service has no nodes.
        _ = try r.plane.state.write { s throws(APIError) in
            try s.delete(SimState.defaultResources.first { $0.plural == "services" }!, namespace: "shop", name: "api")
        }
        #expect(try await eventually { r.latest?.nodes(for: "shop/api:grpc").isEmpty == true })
        await r.stop()
    }

    @Test func anEmptyClusterStillReportsSync() async throws {
        let r = try await start()
        #expect(try await eventually { r.latest?.synced == true })
        #expect(r.latest?.services.isEmpty == true)
        #expect(await r.discovery.dump()["synced"] == true)
        await r.stop()
    }

    /// The first change after a quiet period goes out at once; a burst of changes goes out as
    /// at most one update per interval, the last one right.
    @Test func burstsAreCoalesced() async throws {
        let interval = Duration.milliseconds(300)
        let r = try await start(interval: interval) { plane in
            try plane.scale(namespace: "default", service: "web", replicas: 10)
        }
        #expect(try await eventually { r.latest?.nodes(for: "default/web:http").count == 10 })
        try await Task.sleep(for: interval)  // the scenario needs a quiet period
        let clock = ContinuousClock()
        let start = clock.now
        try r.plane.scale(namespace: "default", service: "web", replicas: 11)
        #expect(try await eventually { r.latest?.nodes(for: "default/web:http").count == 11 })
        #expect(clock.now - start < interval, "the first change after a quiet period waited \(clock.now - start)")

        let before = r.received.withLockedValue { $0.count }
        let burstStart = clock.now
        let changes = 15
        for n in 1...changes {
            try r.plane.scale(namespace: "default", service: "web", replicas: 11 + n)
            try await Task.sleep(for: .milliseconds(20))  // spread the changes over more than one interval
        }
        #expect(try await eventually { r.latest?.nodes(for: "default/web:http").count == 11 + changes })
        let elapsed = clock.now - burstStart
        let updates = r.received.withLockedValue { $0.count } - before
        let allowed = Int(elapsed / interval) + 2
        #expect(updates <= allowed && updates < changes, "\(updates) updates for \(changes) changes in \(elapsed)")
        await r.stop()
    }
}
