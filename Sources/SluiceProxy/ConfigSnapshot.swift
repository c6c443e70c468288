import SluiceBalancing
import SluiceCore
import SluicePlugins
import SluiceRouting
import SluiceTLS

/// An upstream ready for traffic: its validated config and its balancer plan. For a
/// discovery upstream, `config.nodes` are the nodes discovery had when it was compiled. The compiler
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
    /// For `scheme: https`: the client TLS context, or why there is none (the upstream's
    /// client certificate did not compile; its requests are answered 502).
    public let tls: UpstreamTLSContext?
    public let tlsError: ConfigError?
    /// Health checks' verdicts on the nodes, by plan index (nil: no `checks`).
    public let health: UpstreamHealth?

    public init(key: String, config: Upstream, tls: Result<UpstreamTLSContext, ConfigError>? = nil, health: HealthRegistry? = nil) {
        self.key = key
        self.config = config
        switch tls {
        case .success(let c): self.tls = c; self.tlsError = nil
        case .failure(let e): self.tls = nil; self.tlsError = e
        case nil: self.tls = nil; self.tlsError = nil
        }
        self.plan = BalancerPlan(type: config.type, nodes: config.nodes)
        self.health = health?.health(for: key, config: config, nodes: plan.nodes)
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
    public let serviceID: String?
    public let upstream: CompiledUpstream?
    public let timeouts: Timeouts
    public let enableWebsocket: Bool
    /// Service, plugin config and route plugins, merged and compiled.
    public let plugins: PluginChain
    /// The plugin config the route names (its changes renew the target).
    public let pluginConfigID: String?
    /// For metrics.
    public let routeName: String?
    public let serviceName: String?
    /// The route's path and host patterns, when it has one of each (metrics label them).
    public let matchedURI: String
    public let matchedHost: String
    /// The stand-in for requests no route matched: global rules run for them (as APISIX
    /// runs them for every request), then they are answered 404.
    let isUnmatched: Bool

    static let unmatched = RouteTarget(
        routeID: "", serviceID: nil, upstream: nil, timeouts: .default, enableWebsocket: false, plugins: .empty, pluginConfigID: nil,
        isUnmatched: true)

    init(
        routeID: String, serviceID: String?, upstream: CompiledUpstream?, timeouts: Timeouts, enableWebsocket: Bool, plugins: PluginChain,
        pluginConfigID: String?, routeName: String? = nil, serviceName: String? = nil, matchedURI: String = "", matchedHost: String = "",
        isUnmatched: Bool = false
    ) {
        self.isUnmatched = isUnmatched
        self.routeName = routeName
        self.serviceName = serviceName
        self.matchedURI = matchedURI
        self.matchedHost = matchedHost
        self.routeID = routeID
        self.serviceID = serviceID
        self.upstream = upstream
        self.timeouts = timeouts
        self.enableWebsocket = enableWebsocket
        self.plugins = plugins
        self.pluginConfigID = pluginConfigID
    }

    /// The same target leading to `upstream` (its nodes changed, nothing else did).
    func leading(to upstream: CompiledUpstream) -> RouteTarget {
        RouteTarget(
            routeID: routeID, serviceID: serviceID, upstream: upstream, timeouts: timeouts, enableWebsocket: enableWebsocket,
            plugins: plugins, pluginConfigID: pluginConfigID, routeName: routeName, serviceName: serviceName, matchedURI: matchedURI,
            matchedHost: matchedHost)
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
    /// Global rules, by id, each its own chain.
    public let globalRules: [PluginChain]
    public let consumers: ConsumerIndex
    /// Server certificates by SNI, for the TLS listeners.
    public let tls: SNIIndex
    /// Some route's `vars` read `post_arg_*`: form bodies are read before routing.
    public let routesReadFormBodies: Bool

    public init(
        version: UInt64, router: Router, targets: [RouteTarget], upstreams: [String: CompiledUpstream], globalRules: [PluginChain] = [],
        consumers: ConsumerIndex = .empty, tls: SNIIndex = .empty, routesReadFormBodies: Bool = false
    ) {
        self.tls = tls
        self.routesReadFormBodies = routesReadFormBodies
        self.version = version
        self.router = router
        self.targets = targets
        self.upstreams = upstreams
        self.globalRules = globalRules
        self.consumers = consumers
    }

    public static let empty = ConfigSnapshot(version: 0, router: Router(entries: []), targets: [], upstreams: [:])
}

/// Turns a validated `ConfigState` into a `ConfigSnapshot`. Keeps the compiled upstreams of
/// the previous run and reuses those whose config did not change, and, when told what
/// changed, updates the previous route table in place of rebuilding it: a route write then
/// costs O(that route), not O(all routes).
public final class SnapshotCompiler {
    private var previous: [String: CompiledUpstream] = [:]
    private var version: UInt64 = 0
    private var router: Router?
    private var targets: [RouteTarget] = []
    /// Route id → index in the router's entries.
    private var routeIndex: [String: Int] = [:]
    /// Enabled routes whose `vars` read `post_arg_*`.
    private var formBodyRoutes: Set<String> = []
    /// Plugin state that outlives snapshots (rate-limit counters).
    public let pluginState = PluginStateStore()
    /// Where the prometheus plugin reports.
    public let metrics: HTTPMetrics?
    private var globalRules: [PluginChain] = []
    private var consumers = ConsumerIndex.empty
    private var compiles = 0
    private var discovery: DiscoveryResolver
    /// Server certificates (incrementally: an unchanged object keeps its contexts).
    public let serverTLS: TLSCompiler
    /// Client contexts of https upstreams, shared by equal settings.
    public let upstreamTLS: UpstreamTLSContexts
    /// Health state of upstreams with `checks`, kept across compiles; the checker probes it.
    public let health = HealthRegistry()
    private var sniIndex = SNIIndex.empty
    /// The `ssls` objects of the state being compiled (for `client_cert_id`).
    private var ssls: [String: SSLObject] = [:]

    /// `discovery`: the node sets discovery upstreams start with; nil when the gateway runs
    /// without a discovery source (such upstreams then have no nodes, and are reported by
    /// `takeDiscoveryWarnings`).
    public init(
        metrics: HTTPMetrics? = nil, discovery: DiscoveryRegistry? = nil, serverTLS: TLSCompiler = TLSCompiler(),
        upstreamTLS: UpstreamTLSContexts = UpstreamTLSContexts()
    ) {
        self.metrics = metrics
        self.discovery = DiscoveryResolver(registry: discovery)
        self.serverTLS = serverTLS
        self.upstreamTLS = upstreamTLS
    }

    /// Discovery upstreams compiled since the last call while no discovery source runs,
    /// each upstream once per process.
    public func takeDiscoveryWarnings() -> [(key: String, serviceName: String)] { discovery.takeWarnings() }

    /// Compiles `state`. With `changes` (the objects written since the previous compile),
    /// only the affected routes are recompiled; without, everything is.
    public func compile(_ state: ConfigState, changes: [ConfigChange]? = nil) -> ConfigSnapshot {
        version += 1
        ssls = state.ssls
        let changedSSLs = changes.map { Set($0.filter { $0.kind == .ssls }.map(\.id)) }
        if changedSSLs?.isEmpty != true {
            sniIndex = serverTLS.compile(state.ssls, changed: changedSSLs)
        }
        if let changes, let router, let snapshot = incremental(state, Self.distinct(changes), router) {
            return snapshot
        }
        return full(state)
    }

    /// Server certificates that did not compile, by `ssls` id.
    public var tlsErrors: [String: ConfigError] { serverTLS.errors }

    private func compiledUpstream(
        _ key: String, _ written: Upstream, into upstreams: inout [String: CompiledUpstream]
    ) -> CompiledUpstream {
        let config = discovery.resolve(key, written)
        var tls: Result<UpstreamTLSContext, ConfigError>? = nil
        if config.scheme == "https" {
            do throws(ConfigError) {
                tls = .success(try upstreamTLS.context(for: config.tls, ssls: ssls, path: Self.fieldPath(ofKey: key)))
            } catch {
                tls = .failure(error)
            }
        }
        if let u = upstreams[key], u.config == config, Self.sameTLS(u, tls) { return u }
        let u: CompiledUpstream
        if let old = previous[key], old.config == config, Self.sameTLS(old, tls) {
            u = old
        } else {
            u = CompiledUpstream(key: key, config: config, tls: tls, health: health)
        }
        upstreams[key] = u
        return u
    }

    /// `upstreams/1` → `upstreams[1]`, as errors name objects.
    static func fieldPath(ofKey key: String) -> String {
        guard let slash = key.firstIndex(of: "/") else { return key }
        return "\(key[..<slash])[\(key[key.index(after: slash)...])]"
    }

    private static func sameTLS(_ u: CompiledUpstream, _ tls: Result<UpstreamTLSContext, ConfigError>?) -> Bool {
        switch tls {
        case nil: return u.tls == nil && u.tlsError == nil
        case .success(let c): return u.tls === c
        case .failure(let e): return u.tlsError == e
        }
    }

    /// The router entry and target of one route, or nil when it is disabled.
    private func compileRoute(
        _ id: String, _ state: ConfigState, _ index: Int, _ upstreams: inout [String: CompiledUpstream]
    ) -> (Router.Entry, RouteTarget)? {
        formBodyRoutes.remove(id)
        guard let route = state.routes[id], route.status == 1 else { return nil }
        if route.vars?.readsPostArgs == true { formBodyRoutes.insert(id) }
        let service = route.serviceID.flatMap { state.services[$0] }
        var upstream: CompiledUpstream? = nil
        if let inline = route.upstream {
            upstream = compiledUpstream("routes/\(id)", inline, into: &upstreams)
        } else if let uid = route.upstreamID, let u = state.upstreams[uid] {
            upstream = compiledUpstream("upstreams/\(uid)", u, into: &upstreams)
        } else if let service, let sid = route.serviceID {
            if let inline = service.upstream {
                upstream = compiledUpstream("services/\(sid)", inline, into: &upstreams)
            } else if let uid = service.upstreamID, let u = state.upstreams[uid] {
                upstream = compiledUpstream("upstreams/\(uid)", u, into: &upstreams)
            }
        }
        let timeouts = route.timeout ?? upstream?.config.timeout ?? .default
        var pluginContext = PluginCompileContext(owner: "routes/\(id)", state: pluginState, metrics: metrics)
        let configs = PluginFactory.routeConfigs(route, service: service, pluginConfig: route.pluginConfigID.flatMap { state.pluginConfigs[$0] })
        for (key, u) in PluginFactory.splitUpstreams(owner: "routes/\(id)", configs) { _ = compiledUpstream(key, u, into: &upstreams) }
        let hosts = route.hosts.isEmpty ? (service?.hosts ?? []) : route.hosts
        let target = RouteTarget(
            routeID: id, serviceID: route.serviceID, upstream: upstream, timeouts: timeouts,
            enableWebsocket: route.enableWebsocket ?? service?.enableWebsocket ?? false,
            plugins: configs.isEmpty ? .empty : PluginFactory.chain(configs, &pluginContext), pluginConfigID: route.pluginConfigID,
            routeName: route.name, serviceName: service?.name, matchedURI: route.uris.count == 1 ? route.uris[0] : "",
            matchedHost: hosts.count == 1 ? hosts[0] : "")
        let entry = Router.Entry(
            id: id, paths: route.uris, hosts: hosts, methods: MethodSet(route.methods),
            remoteAddrs: route.remoteAddrs, vars: route.vars, priority: route.priority, target: index)
        return (entry, target)
    }

    private func full(_ state: ConfigState) -> ConfigSnapshot {
        discovery.resetUsers()
        var upstreams: [String: CompiledUpstream] = [:]
        for (id, upstream) in state.upstreams {
            _ = compiledUpstream("upstreams/\(id)", upstream, into: &upstreams)
        }
        var entries: [Router.Entry] = []
        var targets: [RouteTarget] = []
        var routeIndex: [String: Int] = [:]
        entries.reserveCapacity(state.routes.count)
        targets.reserveCapacity(state.routes.count)
        formBodyRoutes.removeAll()
        for id in state.routes.keys {
            guard let (entry, target) = compileRoute(id, state, targets.count, &upstreams) else { continue }
            routeIndex[id] = targets.count
            entries.append(entry)
            targets.append(target)
        }
        let router = Router(entries: entries)
        compileGlobals(state, &upstreams)
        // Every live config asked for its state just now: the rest belongs to deleted ones.
        pluginState.sweep()
        upstreamTLS.sweep()
        return remember(router, targets, routeIndex, upstreams)
    }

    private func compileGlobals(_ state: ConfigState, _ upstreams: inout [String: CompiledUpstream]) {
        consumers = ConsumerIndex(state.consumers.values.map { PluginFactory.compileConsumer($0, state: pluginState, metrics: metrics) })
        // A plugin runs in one global rule only: the first by id, as APISIX keeps it when rules
        // written past the Admin API's check (straight into etcd) share one.
        var taken = Set<String>()
        globalRules = state.globalRules.keys.sorted().compactMap { id in
            let owner = "global_rules/\(id)"
            var ctx = PluginCompileContext(owner: owner, state: pluginState, metrics: metrics)
            let configs = (state.globalRules[id]?.plugins ?? [:]).filter { taken.insert($0.key).inserted }
            for (key, u) in PluginFactory.splitUpstreams(owner: owner, configs) { _ = compiledUpstream(key, u, into: &upstreams) }
            let chain = PluginFactory.chain(configs, &ctx)
            return chain.isEmpty ? nil : chain
        }
    }

    /// Each changed object once, in first-seen order. A batch may name an object twice (an
    /// etcd watch catching up after a reconnect delivers every revision of it); the state
    /// holds only its last value, so it is compiled once. Compiling it twice would retire the
    /// old entry, add the new one, then try to retire the new one by an index the router does
    /// not have yet, leaving two live entries for one route.
    static func distinct(_ changes: [ConfigChange]) -> [ConfigChange] {
        var seen = Set<ConfigChange>()
        seen.reserveCapacity(changes.count)
        return changes.filter { seen.insert($0).inserted }
    }

    private func incremental(_ state: ConfigState, _ changes: [ConfigChange], _ router: Router) -> ConfigSnapshot? {
        // Services change hosts and upstreams of many routes: rebuild. So does a table whose
        // holes outnumber its routes.
        // Plugin state of deleted configs is swept on full compiles: one in 1,000 compiles
        // is full, whatever changed.
        compiles += 1
        if changes.contains(where: { $0.kind == .services }) || router.removedCount > max(1024, routeIndex.count) || compiles % 1000 == 0 {
            return nil
        }
        // A client certificate object changed: the https upstreams naming it get new
        // contexts. Rare enough to compile everything.
        let changedSSLs = Set(changes.filter { $0.kind == .ssls }.map(\.id))
        if !changedSSLs.isEmpty, previous.values.contains(where: { $0.config.tls?.clientCertID.map(changedSSLs.contains) ?? false }) {
            return nil
        }
        var upstreams = previous
        if changes.contains(where: { $0.kind == .consumers || $0.kind == .globalRules }) { compileGlobals(state, &upstreams) }
        var targets = self.targets
        var routeIndex = self.routeIndex
        var changedUpstreams = Set<String>()
        for change in changes where change.kind == .upstreams {
            let key = "upstreams/\(change.id)"
            if let config = state.upstreams[change.id] {
                _ = compiledUpstream(key, config, into: &upstreams)
            } else {
                upstreams[key] = nil
            }
            changedUpstreams.insert(key)
        }
        var removing: [Int] = []
        var adding: [Router.Entry] = []
        var next = router.entries.count
        for change in changes where change.kind == .routes {
            if let old = routeIndex.removeValue(forKey: change.id) { removing.append(old) }
            upstreams["routes/\(change.id)"] = state.routes[change.id]?.upstream == nil ? nil : upstreams["routes/\(change.id)"]
            guard let (entry, target) = compileRoute(change.id, state, next, &upstreams) else { continue }
            routeIndex[change.id] = next
            adding.append(entry)
            targets.append(target)
            next += 1
        }
        // Routes that reach a changed upstream or plugin config keep their entry; their
        // target is renewed.
        let changedPluginConfigs = Set(changes.filter { $0.kind == .pluginConfigs }.map(\.id))
        if !changedUpstreams.isEmpty || !changedPluginConfigs.isEmpty {
            for (id, index) in routeIndex {
                let viaUpstream = targets[index].upstream.map { changedUpstreams.contains($0.key) } ?? false
                let viaPluginConfig = targets[index].pluginConfigID.map { changedPluginConfigs.contains($0) } ?? false
                guard viaUpstream || viaPluginConfig else { continue }
                if let (_, target) = compileRoute(id, state, index, &upstreams) { targets[index] = target }
            }
        }
        let updated = removing.isEmpty && adding.isEmpty ? router : router.updating(removing: removing, adding: adding)
        return remember(updated, targets, routeIndex, upstreams)
    }

    /// Compiles one written object on its own, with throwaway plugin state, before it is
    /// stored: its plugin chain (every plugin constructed), and the balancer plan of each
    /// upstream it holds (inline, or in traffic-split rules). A value that validation let
    /// through but compilation cannot take fails here, as a 400 naming the object, instead of
    /// being persisted and failing (or worse) on every start. `scratch` holds the object alone.
    public static func trialCompile(_ kind: ResourceKind, id: String, scratch: ConfigState, keyring: Keyring? = nil) throws(ConfigError) {
        let owner = "\(kind.rawValue)/\(id)"
        var plugins: [String: JSONValue] = [:]
        var inline: [Upstream] = []
        switch kind {
        case .routes:
            guard let r = scratch.routes[id] else { return }
            plugins = r.plugins
            if let u = r.upstream { inline.append(u) }
        case .services:
            guard let s = scratch.services[id] else { return }
            plugins = s.plugins
            if let u = s.upstream { inline.append(u) }
        case .upstreams:
            if let u = scratch.upstreams[id] { inline.append(u) }
        case .consumers:
            guard let c = scratch.consumers[id] else { return }
            _ = PluginFactory.compileConsumer(c, state: PluginStateStore())
            return
        case .pluginConfigs:
            plugins = scratch.pluginConfigs[id]?.plugins ?? [:]
        case .globalRules:
            plugins = scratch.globalRules[id]?.plugins ?? [:]
        case .ssls:
            guard let o = scratch.ssls[id] else { return }
            try trialCompileSSL(o, id: id, keyring: keyring)
            return
        case .streamRoutes:
            return
        }
        for (_, u) in PluginFactory.splitUpstreams(owner: owner, plugins) { inline.append(u) }
        for u in inline {
            _ = CompiledUpstream(key: owner, config: u)
            // An inline client certificate must parse and match; a client_cert_id names an
            // object that was checked when it was written.
            if u.tls?.clientCert != nil {
                _ = try UpstreamTLSContexts(keyring: keyring).context(for: u.tls, ssls: [:], path: "")
            }
        }
        if !plugins.isEmpty {
            var ctx = PluginCompileContext(owner: owner, state: PluginStateStore())
            _ = PluginFactory.chain(plugins, &ctx)
        }
    }

    /// An `ssls` object's certificates parse, each key matches its certificate, and the CA
    /// (for mTLS) parses. Errors name the field (`cert`, `keys[0]`, `client.ca`).
    static func trialCompileSSL(_ o: SSLObject, id: String, keyring: Keyring?) throws(ConfigError) {
        switch o.kind {
        case .server:
            _ = try ServerIdentity.compile(o, id: id, keyring: keyring, alpn: ["http/1.1"])
        case .client:
            for (i, pair) in o.pairs.enumerated() {
                let certPath = i == 0 ? "cert" : "certs[\(i - 1)]"
                let keyPath = i == 0 ? "key" : "keys[\(i - 1)]"
                guard let keyPEM = KeyText.decrypt(pair.key, keyring: keyring) else {
                    throw ConfigError(path: keyPath, "is neither PEM nor a value the configured keyring decrypts")
                }
                _ = try CertificatePair.parse(certPEM: pair.cert, keyPEM: keyPEM, certPath: certPath, keyPath: keyPath)
            }
        }
    }

    /// New node sets from discovery. Recompiles only the upstreams whose `service_name` is
    /// in `changed` and renews the route targets that lead to them; the route table and
    /// every other upstream (and so its balancer state on the loops) stay as they are.
    /// Returns nil when nothing compiled so far uses a changed name: nothing to publish.
    public func updateDiscovery(_ registry: DiscoveryRegistry, changed: Set<String>) -> ConfigSnapshot? {
        discovery.registry = registry
        guard let router else { return nil }  // the first compile will read the registry
        var upstreams = previous
        var renewed: [String: CompiledUpstream] = [:]
        for name in changed {
            for key in discovery.keys(using: name, stillNamedBy: { upstreams[$0]?.config.serviceName }) {
                guard let old = upstreams[key] else { continue }
                let u = CompiledUpstream(key: key, config: discovery.resolve(key, old.config))
                upstreams[key] = u
                renewed[key] = u
            }
        }
        guard !renewed.isEmpty else { return nil }
        version += 1
        var targets = self.targets
        // Traffic-split upstreams are looked up by key in the snapshot: replacing them in
        // `upstreams` is enough. Targets hold theirs directly.
        for i in targets.indices {
            if let key = targets[i].upstream?.key, let u = renewed[key] { targets[i] = targets[i].leading(to: u) }
        }
        return remember(router, targets, routeIndex, upstreams)
    }

    private func remember(
        _ router: Router, _ targets: [RouteTarget], _ routeIndex: [String: Int], _ upstreams: [String: CompiledUpstream]
    ) -> ConfigSnapshot {
        self.router = router
        self.targets = targets
        self.routeIndex = routeIndex
        previous = upstreams
        health.retain(upstreams)
        return ConfigSnapshot(
            version: version, router: router, targets: targets, upstreams: upstreams, globalRules: globalRules, consumers: consumers,
            tls: sniIndex, routesReadFormBodies: !formBodyRoutes.isEmpty)
    }
}
