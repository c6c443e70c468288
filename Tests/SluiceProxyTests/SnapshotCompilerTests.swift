import SluiceCore
import SluiceProxy
import SluiceRouting
import Testing

final class NoVars: RequestVariableSource {
    let values: [RequestVariable: String]
    init(_ values: [RequestVariable: String] = [:]) { self.values = values }
    func value(of variable: RequestVariable) -> String? { values[variable] }
}

/// A small deterministic PRNG so that the random sequences are the same on every run.
struct SplitMix {
    var state: UInt64
    mutating func next(_ n: Int) -> Int {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return Int((z ^ (z >> 31)) % UInt64(n))
    }
}

@Suite struct SnapshotCompilerTests {
    static let paths = ["/a", "/a/*", "/a/b", "/a/b/*", "/u/:id", "/u/:id/x", "/u/me", "/*", "/s/*rest", "/ab"]
    static let hosts: [[String]] = [[], [], ["x.test"], ["*.test"], ["y.test", "*.y.test"]]
    static let probes = ["/a", "/a/", "/a/b", "/a/b/c", "/u/7", "/u/7/x", "/u/me", "/zzz", "/s/t/u", "/ab", "/abc"]
    static let probeHosts: [String?] = [nil, "x.test", "q.test", "y.test", "k.y.test"]

    func randomRoute(_ rng: inout SplitMix, id: String) -> Route {
        var r = Route(id: id, uris: [Self.paths[rng.next(Self.paths.count)]])
        if rng.next(3) == 0 { r.uris.append(Self.paths[rng.next(Self.paths.count)]) }
        r.uris = Array(Set(r.uris)).sorted()
        r.hosts = Self.hosts[rng.next(Self.hosts.count)]
        r.priority = rng.next(3)
        r.methods = rng.next(4) == 0 ? ["POST"] : []
        r.status = rng.next(8) == 0 ? 0 : 1
        r.upstreamID = "u\(rng.next(3))"
        return r
    }

    func answers(_ snapshot: ConfigSnapshot) -> [String] {
        var out: [String] = []
        for host in Self.probeHosts {
            for path in Self.probes {
                for method in ["GET", "POST"] {
                    let i = snapshot.router.matchIndex(
                        RouteRequest(path: path, host: host, method: method, remoteAddress: nil, variables: NoVars()))
                    out.append(i.map { "\(snapshot.targets[$0].routeID)@\(snapshot.targets[$0].upstream?.key ?? "-")" } ?? "404")
                }
            }
        }
        return out
    }

    /// 400 random route and upstream writes applied one by one: after every step the
    /// incrementally updated table answers every probe exactly as a table built from scratch.
    @Test func incrementalUpdatesMatchAFullBuild() {
        var rng = SplitMix(state: 42)
        var state = ConfigState()
        for u in 0..<3 { state.upstreams["u\(u)"] = Upstream(id: "u\(u)", nodes: [UpstreamNode(host: "10.0.0.\(u + 1)", port: 80)]) }
        let incremental = SnapshotCompiler()
        _ = incremental.compile(state)
        for step in 0..<400 {
            var changes: [ConfigChange] = []
            switch rng.next(10) {
            case 0:
                let u = "u\(rng.next(3))"
                state.upstreams[u]?.nodes = [UpstreamNode(host: "10.0.1.\(step % 250 + 1)", port: 80)]
                changes.append(ConfigChange(.upstreams, u))
            case 1, 2:
                let id = "r\(rng.next(40))"
                state.routes[id] = nil
                changes.append(ConfigChange(.routes, id))
            default:
                let id = "r\(rng.next(40))"
                state.routes[id] = randomRoute(&rng, id: id)
                changes.append(ConfigChange(.routes, id))
            }
            let fromChanges = incremental.compile(state, changes: changes)
            let fromScratch = SnapshotCompiler().compile(state)
            #expect(answers(fromChanges) == answers(fromScratch), "step \(step): \(changes)" as Comment)
        }
    }

    /// Batches of changes that name the same routes several times (an etcd watch catching up
    /// after a reconnect delivers every revision of an object): the table built change by
    /// change answers as one built from scratch, and holds one live entry per route (a route
    /// written twice in one batch used to stay live in both versions).
    @Test func batchesThatRepeatIDsLeaveNoGhostRoutes() {
        var rng = SplitMix(state: 7)
        var state = ConfigState()
        for u in 0..<3 { state.upstreams["u\(u)"] = Upstream(id: "u\(u)", nodes: [UpstreamNode(host: "10.0.0.\(u + 1)", port: 80)]) }
        let incremental = SnapshotCompiler()
        _ = incremental.compile(state)
        for step in 0..<300 {
            var changes: [ConfigChange] = []
            for _ in 0..<(1 + rng.next(6)) {
                let id = "r\(rng.next(8))"  // few ids: repeats within a batch are common
                if rng.next(4) == 0 { state.routes[id] = nil } else { state.routes[id] = randomRoute(&rng, id: id) }
                changes.append(ConfigChange(.routes, id))
                if rng.next(3) == 0 { changes.append(ConfigChange(.routes, id)) }
            }
            let fromChanges = incremental.compile(state, changes: changes)
            let fromScratch = SnapshotCompiler().compile(state)
            #expect(answers(fromChanges) == answers(fromScratch), "step \(step): \(changes)" as Comment)
            let live = fromChanges.router.entries.filter { !$0.paths.isEmpty }.map(\.id)
            #expect(live.count == Set(live).count, "step \(step): live entries \(live.sorted())" as Comment)
            #expect(Set(live) == Set(state.routes.values.filter { $0.status == 1 }.compactMap(\.id)), "step \(step)" as Comment)
        }
    }

    @Test func anUpdatedTableLeavesThePreviousOneUnchanged() {
        let base = Router(entries: [
            .init(id: "a", paths: ["/a/*"], target: 0),
            .init(id: "b", paths: ["/a/b"], hosts: ["h.test"], target: 1),
        ])
        let before = base.matchIndex(RouteRequest(path: "/a/b", host: "h.test", method: "GET", remoteAddress: nil, variables: NoVars()))
        let next = base.updating(removing: [1], adding: [.init(id: "c", paths: ["/a/b"], target: 2)])
        // The old table still sees b; the new one sees c (b removed, c added for any host).
        #expect(before == 1)
        #expect(base.matchIndex(RouteRequest(path: "/a/b", host: "h.test", method: "GET", remoteAddress: nil, variables: NoVars())) == 1)
        #expect(next.matchIndex(RouteRequest(path: "/a/b", host: "h.test", method: "GET", remoteAddress: nil, variables: NoVars())) == 2)
        #expect(next.removedCount == 1)
    }
}
