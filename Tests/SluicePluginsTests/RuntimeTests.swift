@testable import SluicePlugins
import SluiceCore
import Testing

@Suite struct RuntimeTests {
    /// Every plugin the catalog accepts runs, and every plugin that runs is in the catalog:
    /// a config is never accepted and then ignored.
    @Test func catalogAndRuntimeAgree() {
        #expect(PluginCatalog.runnable == PluginFactory.available)
        #expect(Set(PluginCatalog.all.keys) == PluginFactory.available)
    }

    /// Rate-limit state is bounded: keys whose window ended are dropped as the table is used.
    @Test func expiredCountersAreDropped() {
        let counters = FixedWindowCounters(windowSeconds: 1)
        let second: UInt64 = 1_000_000_000
        for i in 0..<5_000 { _ = counters.take("client-\(i)", limit: 10, now: 0) }
        #expect(counters.table.count == 5_000)
        // Two windows later, traffic on every shard sweeps the old keys away: what is left
        // is the 20,000 keys of the current window only.
        for i in 0..<20_000 { _ = counters.take("later-\(i)", limit: 10, now: 2 * second) }
        #expect(counters.table.count == 20_000)
    }

    @Test func fixedWindowCountsAndResets() {
        let counters = FixedWindowCounters(windowSeconds: 60)
        let s: UInt64 = 1_000_000_000
        #expect(counters.take("k", limit: 2, now: 0) == (true, 1, 60))
        #expect(counters.take("k", limit: 2, now: 10 * s) == (true, 0, 50))
        #expect(counters.take("k", limit: 2, now: 11 * s) == (false, 0, 49))
        #expect(counters.take("k", limit: 2, now: 60 * s) == (true, 1, 60))  // a new window
    }

    /// State survives recompiles that still ask for it; a sweep drops what no compile asked for.
    @Test func stateStoreKeepsWhatIsStillUsed() {
        let store = PluginStateStore()
        final class Box {}
        let a = store.state("a") { Box() }
        _ = store.state("b") { Box() }
        store.sweep()
        #expect(store.state("a") { Box() } === a)  // kept across the sweep, asked for again
        store.sweep()  // "b" was not asked for since the previous sweep
        #expect(store.count == 1)
    }

    @Test func templates() {
        let r = PluginRequest(
            method: .GET, path: "/p", query: "x=1", headers: ["X-User": "ann"], requestURI: "/p?x=1", host: "h", remoteAddress: "10.0.0.1",
            clientIP: nil, remotePort: 5, serverAddress: "", serverPort: 80, scheme: "http", routeID: "r", serviceID: nil, startNanos: 0)
        #expect(Template("/a$uri?u=${http_x_user}&q=$arg_x").render(r) == "/a/p?u=ann&q=1")
        // `\$` is not a variable and is sent as written, backslash included (APISIX).
        #expect(Template("cost \\$5 $nope!").render(r) == "cost \\$5 !")
    }
}
