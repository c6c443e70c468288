import Benchmark
import SluiceBalancing
import SluiceCore
import SluiceProxy
import SluiceRouting

final class NoVariables: RequestVariableSource {
    func value(of variable: RequestVariable) -> String? { nil }
}

/// Routes like an API gateway holds them: a prefix per service, some with hosts.
func makeRouter(_ count: Int) -> (Router, [String]) {
    var entries: [Router.Entry] = []
    entries.reserveCapacity(count)
    for i in 0..<count {
        entries.append(
            .init(id: "\(i)", paths: ["/svc/\(i)/items/*", "/svc/\(i)/health"], methods: MethodSet(["GET", "POST"]), target: i))
    }
    let paths = (0..<1024).map { "/svc/\(($0 &* 7919) % count)/items/\($0)" }
    return (Router(entries: entries), paths)
}

func makeNodes(_ count: Int, weighted: Bool) -> [UpstreamNode] {
    (0..<count).map { i in
        UpstreamNode(host: "10.\(i >> 16 & 255).\(i >> 8 & 255).\(i & 255)", port: 8080, weight: weighted ? i % 5 + 1 : 100)
    }
}

func makeState(routes: Int) -> ConfigState {
    var state = ConfigState()
    for u in 0..<100 {
        var upstream = Upstream(id: "u\(u)", nodes: makeNodes(10, weighted: true))
        upstream.type = .roundrobin
        state.upstreams["u\(u)"] = upstream
    }
    for i in 0..<routes {
        var route = Route(id: "r\(i)", uris: ["/svc/\(i)/*"])
        route.upstreamID = "u\(i % 100)"
        route.hosts = i % 3 == 0 ? ["svc\(i).example.com"] : []
        state.routes["r\(i)"] = route
    }
    return state
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        maxDuration: .seconds(3),
        maxIterations: 1_000_000)

    let none = NoVariables()
    for count in [100, 10_000, 100_000] {
        let (router, paths) = makeRouter(count)
        Benchmark("Route lookup, \(count) routes") { benchmark in
            var i = 0
            for _ in benchmark.scaledIterations {
                let r = router.match(
                    RouteRequest(path: paths[i & 1023], host: "api.example.com", method: "GET", remoteAddress: nil, variables: none))
                blackHole(r)
                i &+= 1
            }
        }
    }

    for count in [10, 1_000, 100_000] {
        let rr = Balancer(plan: BalancerPlan(type: .roundrobin, nodes: makeNodes(count, weighted: true)))
        Benchmark("Node pick roundrobin (weighted), \(count) nodes") { benchmark in
            for _ in benchmark.scaledIterations { blackHole(rr.pick()) }
        }
        let plan = BalancerPlan(type: .chash, nodes: makeNodes(count, weighted: false))
        let ch = Balancer(plan: plan)
        let keys = (0..<1024).map { StableHash.hash("user-\($0)") }
        Benchmark("Node pick chash, \(count) nodes") { benchmark in
            var i = 0
            for _ in benchmark.scaledIterations {
                blackHole(ch.pick(hashKey: keys[i & 1023]))
                i &+= 1
            }
        }
        let lc = Balancer(plan: BalancerPlan(type: .least_conn, nodes: makeNodes(count, weighted: true)))
        Benchmark("Node pick least_conn (pick + release), \(count) nodes") { benchmark in
            for _ in benchmark.scaledIterations {
                if let n = lc.pick() { lc.release(n) }
            }
        }
    }

    let routerEntries = makeRouter(10_000).0.entries
    Benchmark(
        "Router build, 10k routes", configuration: .init(metrics: [.wallClock, .mallocCountTotal], maxIterations: 50)
    ) { benchmark in
        for _ in benchmark.scaledIterations { blackHole(Router(entries: routerEntries)) }
    }

    let state = makeState(routes: 10_000)
    Benchmark(
        "Snapshot compile, 10k routes", configuration: .init(metrics: [.wallClock, .mallocCountTotal, .peakMemoryResident], maxIterations: 50)
    ) { benchmark in
        let compiler = SnapshotCompiler()
        for _ in benchmark.scaledIterations { blackHole(compiler.compile(state)) }
    }
}
