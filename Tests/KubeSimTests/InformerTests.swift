import KubeClient
import KubeSim
import KubeSimServer
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SluiceCore
import SluiceTesting
import Testing

/// The client's informer against the simulator, on real sockets.
@Suite struct InformerTests {
    static let group = MultiThreadedEventLoopGroup.singleton
    static let services = SimState.defaultResources[1]

    func connection(_ port: Int) -> KubeConnection {
        KubeConnection(
            server: "http://127.0.0.1:\(port)", scheme: "http", host: "127.0.0.1", port: port, basePath: "", certificateAuthorityPEM: nil,
            insecureSkipTLSVerify: false, auth: .bearer("t"), namespace: "default")
    }

    func service(_ name: String, labels: [String: String] = [:]) -> JSONValue {
        ["metadata": ["name": .string(name), "labels": .object(labels.mapValues { .string($0) })], "spec": ["ports": [["port": 80]]]]
    }

    func eventually(_ timeout: Duration = .seconds(10), _ check: () async -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if await check() { return true }
            try await Task.sleep(for: .milliseconds(20))
        }
        return await check()
    }

    @Test func listsInPagesThenFollowsChanges() async throws {
        let state = SimState()
        for i in 0..<25 { _ = try state.write { s throws(APIError) in try s.create(Self.services, namespace: "default", service("s\(i)")) } }
        let server = try await SimHTTPServer.start(state: state, group: Self.group)
        let api = KubeAPI(connection(server.port), group: Self.group)
        let informer = Informer(api: api, resource: .services(namespace: "default"), pageSize: 10)
        let log = NIOLockedValueBox<[String]>([])
        let task = Task { await informer.run { e in
            switch e {
            case .added(let o): log.withLockedValue { $0.append("add \(o["metadata"]?["name"]?.stringValue ?? "")") }
            case .updated(_, let o): log.withLockedValue { $0.append("update \(o["metadata"]?["name"]?.stringValue ?? "")") }
            case .deleted(let o): log.withLockedValue { $0.append("delete \(o["metadata"]?["name"]?.stringValue ?? "")") }
            }
        } }
        #expect(try await eventually { await informer.cache.count == 25 })
        _ = try await api.create(.services(namespace: "default"), service("new"))
        _ = try await api.mergePatch(.services(namespace: "default"), name: "s3", ["metadata": ["labels": ["x": "1"]]])
        try await api.delete(.services(namespace: "default"), name: "s4")
        #expect(try await eventually { log.withLockedValue { $0.contains("delete s4") } })
        let events = log.withLockedValue { $0 }
        #expect(events.filter { $0.hasPrefix("add ") }.count == 26)
        #expect(events.contains("update s3"))
        #expect(await informer.cache.count == 25)
        #expect(await informer.cache["default/s3"]?["metadata"]?["labels"]?["x"] == "1")
        task.cancel()
        await server.stop()
    }

    /// The simulator goes away; meanwhile objects change and its history is compacted; it
    /// comes back on the same port. The informer's resumed watch gets 410, it lists again,
    /// and reports exactly the difference: no object that still exists is deleted.
    @Test func afterARestartAndCompactionItRelistsWithoutLosingObjects() async throws {
        let state = SimState()
        for i in 0..<5 { _ = try state.write { s throws(APIError) in try s.create(Self.services, namespace: "default", service("s\(i)")) } }
        var server = try await SimHTTPServer.start(state: state, group: Self.group)
        let port = server.port
        let api = KubeAPI(connection(port), group: Self.group)
        let informer = Informer(api: api, resource: .services(namespace: "default"))
        let deleted = NIOLockedValueBox<[String]>([])
        let added = NIOLockedValueBox<[String]>([])
        let task = Task { await informer.run { e in
            switch e {
            case .added(let o): added.withLockedValue { $0.append(o["metadata"]?["name"]?.stringValue ?? "") }
            case .deleted(let o): deleted.withLockedValue { $0.append(o["metadata"]?["name"]?.stringValue ?? "") }
            case .updated: break
            }
        } }
        #expect(try await eventually { await informer.cache.count == 5 })
        await server.stop()
        _ = try state.write { s throws(APIError) in try s.delete(Self.services, namespace: "default", name: "s0") }
        _ = try state.write { s throws(APIError) in try s.create(Self.services, namespace: "default", service("late")) }
        state.compact()
        server = try await SimHTTPServer.start(state: state, port: port, group: Self.group)
        #expect(try await eventually {
            let cache = await informer.cache
            return cache["default/late"] != nil && cache["default/s0"] == nil
        })
        #expect(await informer.relists >= 1)
        #expect(deleted.withLockedValue { $0 } == ["s0"])  // only the one really deleted
        #expect(added.withLockedValue { $0.contains("late") })
        #expect(await informer.cache.count == 5)
        task.cancel()
        await server.stop()
    }

    @Test func modifyRetriesOnConflict() async throws {
        let state = SimState()
        _ = try state.write { s throws(APIError) in try s.create(Self.services, namespace: "default", service("c")) }
        let server = try await SimHTTPServer.start(state: state, group: Self.group)
        let api = KubeAPI(connection(server.port), group: Self.group)
        // Ten writers add one label each to the same object, concurrently.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<10 {
                group.addTask {
                    _ = try await api.modify(.services(namespace: "default"), name: "c", attempts: 20) { current in
                        current.mergePatched(with: ["metadata": ["labels": [.init("w\(i)"): "1"]]])
                    }
                }
            }
            try await group.waitForAll()
        }
        let final = try await api.get(.services(namespace: "default"), name: "c")
        #expect(final["metadata"]?["labels"]?.objectValue?.count == 10)
        await server.stop()
    }
}

@Suite struct ScenarioTests {
    @Test func scaleAndRollingUpdateThroughTheScenarioAPI() async throws {
        let state = SimState()
        let server = try await SimHTTPServer.start(state: state, group: InformerTests.group)
        let api = KubeAPI(InformerTests().connection(server.port), group: InformerTests.group)
        let slices = Informer(api: api, resource: .endpointSlices(namespace: "default"))
        let task = Task { await slices.run { _ in } }
        let (scaled, _) = try await RawHTTP.exchange(
            port: server.port, group: InformerTests.group,
            "POST /sim/scale?namespace=default&service=httpbin&replicas=250 HTTP/1.1\r\nHost: sim\r\nContent-Length: 0\r\n\r\n",
            timeout: .seconds(10), until: { $0.contains("resourceVersion") })
        #expect(scaled.hasPrefix("HTTP/1.1 200"))
        func endpointCount() async -> Int { await slices.cache.values.reduce(0) { $0 + ($1["endpoints"]?.arrayValue?.count ?? 0) } }
        #expect(try await InformerTests().eventually { await endpointCount() == 250 })
        #expect(await slices.cache.count == 3)
        let legacy = try await api.get(.init(group: "", version: "v1", plural: "endpoints", namespace: "default"), name: "httpbin")
        #expect(legacy["subsets"]?.arrayValue?.first?["addresses"]?.arrayValue?.count == 250)
        // A rolling update, 10 pods at a time: at the end 250 endpoints, all new pods.
        let (rolled, _) = try await RawHTTP.exchange(
            port: server.port, group: InformerTests.group,
            "POST /sim/rollout?namespace=default&service=httpbin&batch=10 HTTP/1.1\r\nHost: sim\r\nContent-Length: 0\r\n\r\n",
            timeout: .seconds(30), until: { $0.contains("resourceVersion") })
        #expect(rolled.hasPrefix("HTTP/1.1 200"))
        #expect(try await InformerTests().eventually {
            let names = await slices.cache.values.flatMap { $0["endpoints"]?.arrayValue ?? [] }.compactMap { $0["targetRef"]?["name"]?.stringValue }
            return names.count == 250 && names.allSatisfy { $0.hasPrefix("httpbin-r2-") }
        })
        task.cancel()
        await server.stop()
    }
}
