import SluiceBalancing
import SluiceCore
import Synchronization

/// The process's health state, by upstream: the compiler asks it for the `UpstreamHealth` of
/// each upstream with `checks` it compiles, and the checker probes what it lists.
///
/// State survives config changes: the same key with the same `checks` and the same nodes
/// gets the same object back; a node that stays in a changed node set keeps its cell. An
/// upstream that is no longer compiled is dropped at the next `retain`, which stops its
/// probes at the checker's next round.
public final class HealthRegistry: Sendable {
    struct Entry: Sendable {
        var checks: HealthChecks
        var addresses: [String]
        var health: UpstreamHealth
    }

    /// Written by the compiler (one compile at a time), read by the checker and the control
    /// API: a lock taken per compile and per checker round, never on the request path.
    private let entries = Mutex<[String: Entry]>([:])

    public init() {}

    /// The health of the upstream compiled under `key` (`upstreams/1`, `routes/2`), or nil
    /// when it has no checks.
    public func health(for key: String, config: Upstream, nodes: [UpstreamNode]) -> UpstreamHealth? {
        guard let checks = config.checks else {
            entries.withLock { _ = $0.removeValue(forKey: key) }
            return nil
        }
        let addresses = nodes.map(\.address)
        return entries.withLock { all -> UpstreamHealth in
            let old = all[key]
            if let old, old.checks == checks, old.addresses == addresses { return old.health }
            // Same checks: cells of nodes that stayed are kept. New checks: a fresh start.
            var kept: [String: NodeHealthCell] = [:]
            if let old, old.checks == checks {
                for c in old.health.cells { kept[UpstreamNode(host: c.host, port: c.port, weight: 0).address] = c }
            }
            let cells = nodes.map { kept[$0.address] ?? NodeHealthCell(host: $0.host, port: $0.port) }
            let health = UpstreamHealth(name: "/apisix/\(key)", checks: checks, cells: cells)
            all[key] = Entry(checks: checks, addresses: addresses, health: health)
            return health
        }
    }

    /// Keeps only the upstreams `live` holds with this very health object.
    public func retain(_ live: [String: CompiledUpstream]) {
        entries.withLock { all in
            all = all.filter { key, entry in live[key]?.health === entry.health }
        }
    }

    /// Every upstream with checks, by name.
    public var all: [UpstreamHealth] {
        entries.withLock { $0.values.map(\.health) }.sorted { $0.name < $1.name }
    }

    public func upstream(named name: String) -> UpstreamHealth? {
        all.first { $0.name == name }
    }
}
