import KubeClient
import KubeSim
import KubeSimServer
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SluiceCore
import Testing

/// Field selectors, WatchList, indexes, the status subresource and JSON patch, client
/// against simulator.
@Suite struct ClientQueryTests {
    static let group = MultiThreadedEventLoopGroup.singleton
    static let services = SimState.defaultResources[1]
    static let slices = SimState.defaultResources.first { $0.plural == "endpointslices" }!
    static let routes = SimState.defaultResources.first { $0.plural == "apisixroutes" }!

    func start(_ state: SimState = SimState()) async throws -> (SimHTTPServer, KubeAPI) {
        let server = try await SimHTTPServer.start(state: state, group: Self.group, bookmarkInterval: .milliseconds(200))
        return (server, KubeAPI(InformerTests().connection(server.port), group: Self.group))
    }

    func service(_ name: String, labels: [String: String] = [:]) -> JSONValue {
        ["metadata": ["name": .string(name), "labels": .object(labels.mapValues { .string($0) })], "spec": ["ports": [["port": 80]]]]
    }

    func names(_ items: [JSONValue]) -> [String] { items.compactMap { $0["metadata"]?["name"]?.stringValue }.sorted() }

    @Test func fieldSelectorsOnListAndWatch() async throws {
        let (server, api) = try await start()
        defer { Task { await server.stop() } }
        for n in ["a", "b", "c"] { _ = try await api.create(.services(namespace: "default"), service(n)) }
        _ = try await api.create(.services(namespace: "other"), service("a"))
        let byName = try await api.list(.services(), selector: KubeSelector(fields: "metadata.name=a"))
        #expect(byName.items.count == 2)
        let notB = try await api.list(.services(namespace: "default"), selector: KubeSelector(fields: "metadata.name!=b"))
        #expect(names(notB.items) == ["a", "c"])
        let both = try await api.list(.services(), selector: KubeSelector(fields: "metadata.name=a,metadata.namespace=other"))
        #expect(both.items.map { $0["metadata"]?["namespace"]?.stringValue } == ["other"])
        // An unsupported field is refused with 400, naming it.
        do {
            _ = try await api.list(.services(), selector: KubeSelector(fields: "spec.clusterIP=1.2.3.4"))
            Issue.record("an unsupported field selector was accepted")
        } catch let e as KubeAPIError {
            #expect(e.code == 400)
            #expect(e.message.contains("spec.clusterIP"))
        }
        // An informer on one object by name sees only it.
        let one = Informer(api: api, resource: .services(namespace: "default"), selector: KubeSelector(fields: "metadata.name=b"))
        let task = Task { await one.run { _ in } }
        defer { task.cancel() }
        #expect(try await eventually { await one.cache.count == 1 })
        _ = try await api.mergePatch(.services(namespace: "default"), name: "b", ["metadata": ["labels": ["v": "2"]]])
        _ = try await api.mergePatch(.services(namespace: "default"), name: "c", ["metadata": ["labels": ["v": "2"]]])
        #expect(try await eventually { await one.cache["default/b"]?["metadata"]?["labels"]?["v"] == "2" })
        #expect(await Array(one.cache.keys) == ["default/b"])
    }

    /// An object whose labels stop matching a watch's selector leaves the watcher's view as
    /// a DELETED event; one that starts matching enters as ADDED.
    @Test func labelSelectorWatchSeesObjectsLeaveAndEnter() async throws {
        let (server, api) = try await start()
        defer { Task { await server.stop() } }
        _ = try await api.create(.services(namespace: "default"), service("x", labels: ["tier": "web"]))
        _ = try await api.create(.services(namespace: "default"), service("y", labels: ["tier": "db"]))
        let log = NIOLockedValueBox<[String]>([])
        let web = Informer(api: api, resource: .services(namespace: "default"), selector: KubeSelector(labels: "tier=web"))
        let task = Task { await web.run { e in
            switch e {
            case .added(let o): log.withLockedValue { $0.append("add \(o["metadata"]?["name"]?.stringValue ?? "")") }
            case .deleted(let o): log.withLockedValue { $0.append("delete \(o["metadata"]?["name"]?.stringValue ?? "")") }
            case .updated: break
            }
        } }
        defer { task.cancel() }
        #expect(try await eventually { await web.cache.count == 1 })
        _ = try await api.mergePatch(.services(namespace: "default"), name: "x", ["metadata": ["labels": ["tier": "cache"]]])
        _ = try await api.mergePatch(.services(namespace: "default"), name: "y", ["metadata": ["labels": ["tier": "web"]]])
        #expect(try await eventually { log.withLockedValue { $0 } == ["add x", "delete x", "add y"] })
        #expect(await Array(web.cache.keys) == ["default/y"])
    }

    @Test func watchListStreamsTheInitialStateWithoutAList() async throws {
        let state = SimState()
        for i in 0..<30 { _ = try state.write { s throws(APIError) in try s.create(Self.services, namespace: "default", service("s\(i)")) } }
        let (server, api) = try await start(state)
        defer { Task { await server.stop() } }
        let informer = Informer(api: api, resource: .services(namespace: "default"), watchList: true)
        let adds = NIOLockedValueBox(0)
        let task = Task { await informer.run { e in if case .added = e { adds.withLockedValue { $0 += 1 } } } }
        defer { task.cancel() }
        #expect(try await eventually { await informer.hasSynced })
        #expect(await informer.cache.count == 30)
        #expect(await informer.watchListSyncs == 1)
        // The same stream goes on as the watch.
        _ = try await api.create(.services(namespace: "default"), service("later"))
        #expect(try await eventually { await informer.cache["default/later"] != nil })
        #expect(adds.withLockedValue { $0 } == 31)
        #expect(await informer.watches == 1)
    }

    @Test func watchListRefusedFallsBackToAList() async throws {
        let state = SimState()
        state.watchListEnabled = false
        for i in 0..<3 { _ = try state.write { s throws(APIError) in try s.create(Self.services, namespace: "default", service("s\(i)")) } }
        let (server, api) = try await start(state)
        defer { Task { await server.stop() } }
        let informer = Informer(api: api, resource: .services(namespace: "default"), watchList: true)
        let task = Task { await informer.run { _ in } }
        defer { task.cancel() }
        #expect(try await eventually { await informer.hasSynced })
        #expect(await informer.cache.count == 3)
        #expect(await informer.watchListSyncs == 0)
        _ = try await api.create(.services(namespace: "default"), service("later"))
        #expect(try await eventually { await informer.cache["default/later"] != nil })
    }

    /// Slices indexed by their Service: a consumer reads one Service's slices directly, and
    /// the index follows scale-ups, scale-downs and deletions.
    @Test func sliceIndexByServiceFollowsChanges() async throws {
        let state = SimState()
        let control = SimControlPlane(state: state, maxPerSlice: 10)
        let server = try await SimHTTPServer.start(state: state, group: Self.group, controlPlane: control)
        defer { Task { await server.stop() } }
        let api = KubeAPI(InformerTests().connection(server.port), group: Self.group)
        let informer = Informer(
            api: api, resource: .endpointSlices(), indexers: ["service": { o in
                guard let ns = o["metadata"]?["namespace"]?.stringValue, let svc = o["metadata"]?["labels"]?["kubernetes.io/service-name"]?.stringValue else { return [] }
                return ["\(ns)/\(svc)"]
            }])
        let task = Task { await informer.run { _ in } }
        defer { task.cancel() }
        try control.scale(namespace: "default", service: "web", replicas: 35)
        try control.scale(namespace: "default", service: "api", replicas: 5)
        try control.scale(namespace: "prod", service: "web", replicas: 12)
        func endpoints(_ key: String) async -> Int {
            await informer.byIndex("service", key).reduce(0) { $0 + ($1["endpoints"]?.arrayValue?.count ?? 0) }
        }
        #expect(try await eventually {
            let (web, apiCount, prod) = (await endpoints("default/web"), await endpoints("default/api"), await endpoints("prod/web"))
            return web == 35 && apiCount == 5 && prod == 12
        })
        #expect(await informer.byIndex("service", "default/web").count == 4)
        #expect(Set(await informer.indexValues("service")) == ["default/web", "default/api", "prod/web"])
        try control.scale(namespace: "default", service: "web", replicas: 8)
        #expect(try await eventually { await endpoints("default/web") == 8 })
        #expect(await informer.byIndex("service", "default/web").count == 1)
        // Deleting the last slices empties the index entry.
        for s in await informer.byIndex("service", "default/api") {
            try await api.delete(.endpointSlices(namespace: "default"), name: s["metadata"]?["name"]?.stringValue ?? "")
        }
        #expect(try await eventually { await informer.byIndex("service", "default/api").isEmpty })
        #expect(Set(await informer.indexValues("service")) == ["default/web", "prod/web"])
    }

    @Test func statusSubresourceAndJSONPatch() async throws {
        let (server, api) = try await start()
        defer { Task { await server.stop() } }
        let routes = KubeResource(group: "apisix.apache.org", version: "v2", plural: "apisixroutes", namespace: "default")
        let created = try await api.create(routes, ["metadata": ["name": "r"], "spec": ["http": [["name": "rule1"]]]])
        #expect(created["metadata"]?["generation"] == 1)
        // The status subresource writes status only; generation stays.
        var withStatus = created
        withStatus = withStatus.mergePatched(with: [
            "spec": ["http": [["name": "changed-through-status"]]],
            "status": ["conditions": [["type": "ResourcesAvailable", "status": "True", "reason": "ResourcesSynced", "observedGeneration": 1]]],
        ])
        let afterStatus = try await api.updateStatus(routes, name: "r", withStatus)
        #expect(afterStatus["status"]?["conditions"]?.arrayValue?.first?["reason"] == "ResourcesSynced")
        #expect(afterStatus["spec"]?["http"]?.arrayValue?.first?["name"] == "rule1")
        #expect(afterStatus["metadata"]?["generation"] == 1)
        // A stale resourceVersion on /status is a conflict.
        await #expect(throws: KubeAPIError.self) { _ = try await api.updateStatus(routes, name: "r", withStatus) }
        // An update of the object leaves status alone and moves generation.
        var spec = afterStatus.mergePatched(with: ["spec": ["http": [["name": "rule2"]]], "status": ["conditions": []]])
        spec = spec.mergePatched(with: ["metadata": ["resourceVersion": afterStatus["metadata"]?["resourceVersion"] ?? .null]])
        let updated = try await api.update(routes, name: "r", spec)
        #expect(updated["metadata"]?["generation"] == 2)
        #expect(updated["status"]?["conditions"]?.arrayValue?.count == 1)
        // Merge patch of status.
        let patched = try await api.mergePatchStatus(routes, name: "r", ["status": ["conditions": [["type": "ResourcesAvailable", "status": "False"]]]])
        #expect(patched["status"]?["conditions"]?.arrayValue?.first?["status"] == "False")
        // JSON patch with a test precondition.
        let jp = try await api.jsonPatch(routes, name: "r", [
            ["op": "test", "path": "/spec/http/0/name", "value": "rule2"],
            ["op": "add", "path": "/spec/http/-", "value": ["name": "rule3"]],
            ["op": "add", "path": "/metadata/labels", "value": ["a": "b"]],
        ])
        #expect(jp["spec"]?["http"]?.arrayValue?.count == 2)
        #expect(jp["metadata"]?["labels"]?["a"] == "b")
        do {
            _ = try await api.jsonPatch(routes, name: "r", [["op": "test", "path": "/spec/http/0/name", "value": "nope"]])
            Issue.record("a failing test operation was applied")
        } catch let e as KubeAPIError {
            #expect(e.code == 422)
        }
    }
}
