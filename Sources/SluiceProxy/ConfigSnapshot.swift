import SluiceBalancing
import SluiceCore
import SluiceRouting

/// An upstream ready for traffic: its validated config and its balancer plan. The compiler
/// hands out the same instance for as long as the upstream's config is unchanged, which is
/// how balancer state on the event loops survives unrelated config changes.
public final class CompiledUpstream: Sendable {
    /// `upstreams/ID`, or `routes/ID` / `services/ID` for an inline upstream.
    public let key: String
    public let config: Upstream
    public let plan: BalancerPlan
    /// Retries after a failed attempt: `retries`, or one less than the node count.
    public let retries: Int
    public let hashKeyVariable: RequestVariable?

    public init(key: String, config: Upstream) {
        self.key = key
        self.config = config
        self.plan = BalancerPlan(type: config.type, nodes: config.nodes)
        self.retries = config.retries ?? max(0, config.nodes.filter { $0.weight > 0 }.count - 1)
        switch config.hashOn {
        case .vars: hashKeyVariable = config.key.flatMap { RequestVariable(name: $0) }
        case .header: hashKeyVariable = config.key.map { .header($0.lowercased()) }
        case .cookie: hashKeyVariable = config.key.map { .cookie($0) }
        case .consumer, .vars_combinations: hashKeyVariable = nil
        }
    }
}

/// What a matched route leads to. A class, so a request takes it with one retain.
public final class RouteTarget: Sendable {
    public let routeID: String
    public let upstream: CompiledUpstream?
    public let timeouts: Timeouts
    public let enableWebsocket: Bool

    init(routeID: String, upstream: CompiledUpstream?, timeouts: Timeouts, enableWebsocket: Bool) {
        self.routeID = routeID
        self.upstream = upstream
        self.timeouts = timeouts
        self.enableWebsocket = enableWebsocket
    }
}

/// One immutable, fully compiled configuration. A request reads the snapshot of its event
/// loop once, at its head, and keeps it to the end.
public final class ConfigSnapshot: Sendable {
    public let version: UInt64
    public let router: Router
    /// What each router entry leads to, by the entry's `target` index (which is also its
    /// index in `router.entries`).
    public let targets: [RouteTarget]
    /// Every compiled upstream by key, inline ones included.
    public let upstreams: [String: CompiledUpstream]

    public init(version: UInt64, router: Router, targets: [RouteTarget], upstreams: [String: CompiledUpstream]) {
        self.version = version
        self.router = router
        self.targets = targets
        self.upstreams = upstreams
    }

    public static let empty = ConfigSnapshot(version: 0, router: Router(entries: []), targets: [], upstreams: [:])
}

/// Turns a validated `ConfigState` into a `ConfigSnapshot`. Keeps the compiled upstreams of
/// the previous run and reuses those whose config did not change.
public final class SnapshotCompiler {
    private var previous: [String: CompiledUpstream] = [:]
    private var version: UInt64 = 0

    public init() {}

    public func compile(_ state: ConfigState) -> ConfigSnapshot {
        version += 1
        var upstreams: [String: CompiledUpstream] = [:]

        func compiled(_ key: String, _ config: Upstream) -> CompiledUpstream {
            if let u = upstreams[key] { return u }
            let u: CompiledUpstream
            if let old = previous[key], old.config == config {
                u = old
            } else {
                u = CompiledUpstream(key: key, config: config)
            }
            upstreams[key] = u
            return u
        }

        for (id, upstream) in state.upstreams {
            _ = compiled("upstreams/\(id)", upstream)
        }

        var entries: [Router.Entry] = []
        var targets: [RouteTarget] = []
        entries.reserveCapacity(state.routes.count)
        targets.reserveCapacity(state.routes.count)
        // Sorting by id makes the final tie-break (entry order) stable across compiles.
        for id in state.routes.keys.sorted() {
            let route = state.routes[id]!
            guard route.status == 1 else { continue }
            let service = route.serviceID.flatMap { state.services[$0] }
            var upstream: CompiledUpstream? = nil
            if let inline = route.upstream {
                upstream = compiled("routes/\(id)", inline)
            } else if let uid = route.upstreamID, let u = state.upstreams[uid] {
                upstream = compiled("upstreams/\(uid)", u)
            } else if let service, let sid = route.serviceID {
                if let inline = service.upstream {
                    upstream = compiled("services/\(sid)", inline)
                } else if let uid = service.upstreamID, let u = state.upstreams[uid] {
                    upstream = compiled("upstreams/\(uid)", u)
                }
            }
            let timeouts = route.timeout ?? upstream?.config.timeout ?? .default
            let target = RouteTarget(
                routeID: id, upstream: upstream, timeouts: timeouts,
                enableWebsocket: route.enableWebsocket ?? service?.enableWebsocket ?? false)
            let hosts = route.hosts.isEmpty ? (service?.hosts ?? []) : route.hosts
            entries.append(
                .init(
                    id: id, paths: route.uris, hosts: hosts, methods: MethodSet(route.methods),
                    remoteAddrs: route.remoteAddrs, vars: route.vars, priority: route.priority, target: targets.count))
            targets.append(target)
        }
        previous = upstreams
        return ConfigSnapshot(version: version, router: Router(entries: entries), targets: targets, upstreams: upstreams)
    }
}
