import SluiceCore
import SluiceProxy
import Testing

/// Discovery upstreams in the compiler: nodes are read from the registry at compile time, and
/// a node change recompiles only the upstreams that name the changed service.
@Suite struct DiscoveryCompileTests {
    func discoveryUpstream(_ id: String, _ serviceName: String) -> Upstream {
        var u = Upstream(id: id)
        u.discoveryType = "kubernetes"
        u.serviceName = serviceName
        return u
    }

    func nodes(_ hosts: String...) -> [UpstreamNode] { hosts.map { UpstreamNode(host: $0, port: 8080, weight: 100) } }

    func state() -> ConfigState {
        var s = ConfigState()
        s.upstreams["web"] = discoveryUpstream("web", "default/web:http")
        s.upstreams["api"] = discoveryUpstream("api", "default/api:80")
        s.upstreams["static"] = Upstream(id: "static", nodes: [UpstreamNode(host: "127.0.0.1", port: 1)])
        var r1 = Route(id: "r1", uris: ["/web"])
        r1.upstreamID = "web"
        var r2 = Route(id: "r2", uris: ["/api"])
        r2.upstreamID = "api"
        var r3 = Route(id: "r3", uris: ["/static"])
        r3.upstreamID = "static"
        // An inline discovery upstream, keyed by its route.
        let r4 = Route(id: "r4", uris: ["/inline"], upstream: discoveryUpstream("", "default/web:http"))
        s.routes = ["r1": r1, "r2": r2, "r3": r3, "r4": r4]
        return s
    }

    func target(_ snapshot: ConfigSnapshot, _ route: String) -> RouteTarget? { snapshot.targets.first { $0.routeID == route } }

    @Test func nodesComeFromTheRegistryAndOnlyNamedUpstreamsAreRecompiled() throws {
        var registry = DiscoveryRegistry(synced: true)
        registry.replace(service: "default/web", ports: ["http": nodes("10.0.0.1", "10.0.0.2"), "80": nodes("10.0.0.1", "10.0.0.2")])
        registry.replace(service: "default/api", ports: ["80": nodes("10.0.1.1")])
        let compiler = SnapshotCompiler(discovery: registry)
        let first = compiler.compile(state())
        #expect(first.upstreams["upstreams/web"]?.plan.nodes == nodes("10.0.0.1", "10.0.0.2"))
        #expect(first.upstreams["upstreams/api"]?.plan.nodes == nodes("10.0.1.1"))
        #expect(first.upstreams["routes/r4"]?.plan.nodes == nodes("10.0.0.1", "10.0.0.2"))

        // Pods of web change: web and the inline r4 are recompiled, nothing else.
        let changed = registry.replace(service: "default/web", ports: ["http": nodes("10.0.0.3"), "80": nodes("10.0.0.3")])
        let second = try #require(compiler.updateDiscovery(registry, changed: changed))
        #expect(second.version > first.version)
        #expect(second.upstreams["upstreams/web"]?.plan.nodes == nodes("10.0.0.3"))
        #expect(second.upstreams["routes/r4"]?.plan.nodes == nodes("10.0.0.3"))
        #expect(second.upstreams["upstreams/api"] === first.upstreams["upstreams/api"])
        #expect(second.upstreams["upstreams/static"] === first.upstreams["upstreams/static"])
        #expect(second.router === first.router)
        #expect(target(second, "r1")?.upstream === second.upstreams["upstreams/web"])
        #expect(target(second, "r4")?.upstream === second.upstreams["routes/r4"])
        #expect(target(second, "r2") === target(first, "r2"))
        #expect(target(second, "r3") === target(first, "r3"))

        // A change to a service nobody names publishes nothing.
        let unrelated = registry.replace(service: "default/other", ports: ["http": nodes("10.9.9.9")])
        #expect(compiler.updateDiscovery(registry, changed: unrelated) == nil)

        // A later config write compiles with the current node sets.
        var s = state()
        var r5 = Route(id: "r5", uris: ["/other"], upstream: discoveryUpstream("", "default/other:http"))
        r5.priority = 1
        s.routes["r5"] = r5
        let third = compiler.compile(s, changes: [ConfigChange(.routes, "r5")])
        #expect(third.upstreams["routes/r5"]?.plan.nodes == nodes("10.9.9.9"))
        #expect(third.upstreams["upstreams/web"] === second.upstreams["upstreams/web"])
    }

    @Test func anUpstreamThatNoLongerNamesAServiceIsNotTouched() throws {
        var registry = DiscoveryRegistry(synced: true)
        let compiler = SnapshotCompiler(discovery: registry)
        var s = state()
        _ = compiler.compile(s)
        // web now names another service.
        s.upstreams["web"] = discoveryUpstream("web", "default/web2:http")
        let before = compiler.compile(s, changes: [ConfigChange(.upstreams, "web")])
        let changed = registry.replace(service: "default/web", ports: ["http": nodes("10.0.0.7")])
        let after = try #require(compiler.updateDiscovery(registry, changed: changed))  // r4 still names default/web
        #expect(after.upstreams["upstreams/web"] === before.upstreams["upstreams/web"])
        #expect(after.upstreams["upstreams/web"]?.plan.isEmpty == true)
        #expect(after.upstreams["routes/r4"]?.plan.nodes == nodes("10.0.0.7"))
    }

    @Test func beforeTheFirstCompileTheRegistryIsKeptForIt() {
        let compiler = SnapshotCompiler(discovery: .empty)
        var registry = DiscoveryRegistry(synced: true)
        let changed = registry.replace(service: "default/web", ports: ["http": nodes("10.0.0.1")])
        #expect(compiler.updateDiscovery(registry, changed: changed) == nil)
        #expect(compiler.compile(state()).upstreams["upstreams/web"]?.plan.nodes == nodes("10.0.0.1"))
    }

    @Test func withoutADiscoverySourceTheUpstreamIsEmptyAndReportedOnce() {
        let compiler = SnapshotCompiler()
        let snapshot = compiler.compile(state())
        #expect(snapshot.upstreams["upstreams/web"]?.plan.isEmpty == true)
        let warned = compiler.takeDiscoveryWarnings().map(\.key).sorted()
        #expect(warned == ["routes/r4", "upstreams/api", "upstreams/web"])
        _ = compiler.compile(state())
        #expect(compiler.takeDiscoveryWarnings().isEmpty)
    }
}
