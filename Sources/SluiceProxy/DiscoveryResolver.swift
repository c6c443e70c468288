import SluiceCore

/// The compiler's side of service discovery: fills a discovery upstream's nodes from the
/// current `DiscoveryRegistry` at compile time, remembers which compiled upstreams name
/// which `service_name` (so a node change recompiles only those), and notes discovery
/// upstreams compiled while no discovery source runs, once each, for a warning.
struct DiscoveryResolver {
    /// nil: the gateway runs without a discovery source; discovery upstreams stay empty.
    var registry: DiscoveryRegistry?
    /// `service_name` → keys of compiled upstreams that named it. May hold keys that since
    /// changed or went away; readers check against the compiled upstream.
    private(set) var users: [String: Set<String>] = [:]
    private var warned: Set<String> = []
    private(set) var pendingWarnings: [(key: String, serviceName: String)] = []

    init(registry: DiscoveryRegistry?) { self.registry = registry }

    /// `config` with its nodes as discovery has them now (unchanged for a static upstream).
    mutating func resolve(_ key: String, _ config: Upstream) -> Upstream {
        guard config.discoveryType != nil, let name = config.serviceName else { return config }
        users[name, default: []].insert(key)
        var c = config
        if let registry {
            c.nodes = registry.nodes(for: name)
        } else {
            c.nodes = []
            if warned.insert(key).inserted { pendingWarnings.append((key, name)) }
        }
        return c
    }

    /// Forgets who uses what (a full compile rebuilds it).
    mutating func resetUsers() { users = [:] }

    /// The keys that named `serviceName` when they were compiled, pruned of stale ones.
    mutating func keys(using serviceName: String, stillNamedBy current: (String) -> String?) -> Set<String> {
        let live = (users[serviceName] ?? []).filter { current($0) == serviceName }
        users[serviceName] = live.isEmpty ? nil : live
        return live
    }

    mutating func takeWarnings() -> [(key: String, serviceName: String)] {
        defer { pendingWarnings = [] }
        return pendingWarnings
    }
}
