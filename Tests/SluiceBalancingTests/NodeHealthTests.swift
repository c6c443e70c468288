import SluiceBalancing
import SluiceCore
import Testing

/// Health cells and how the balancer honours them, as pure types.
@Suite struct NodeHealthTests {
    let t = NodeHealthCell.Thresholds(successes: 2, httpFailures: 3, tcpFailures: 2, timeouts: 1)

    @Test func thresholdsTurnANodeAndResetTheOtherSide() {
        let c = NodeHealthCell(host: "10.0.0.1", port: 80)
        #expect(c.record(.httpFailure, t) == nil)
        #expect(c.record(.httpFailure, t) == nil)
        // A success while healthy forgets the failures so far.
        #expect(c.record(.success, t) == nil)
        #expect(c.counters.httpFailure == 0)
        #expect(c.record(.tcpFailure, t) == nil)
        #expect(c.record(.tcpFailure, t) == false)
        #expect(!c.isHealthy)
        #expect(c.counters == .init(success: 0, httpFailure: 0, tcpFailure: 0, timeoutFailure: 0))
        // Failures while unhealthy do not count; successes do, up to the threshold.
        #expect(c.record(.timeout, t) == nil)
        #expect(c.record(.success, t) == nil)
        #expect(c.record(.success, t) == true)
        #expect(c.isHealthy)
        #expect(c.record(.timeout, t) == false)
    }

    @Test func aZeroThresholdTurnsThatJudgementOff() {
        let c = NodeHealthCell(host: "10.0.0.1", port: 80)
        let off = NodeHealthCell.Thresholds(successes: 0, httpFailures: 0, tcpFailures: 0, timeouts: 0)
        for _ in 0..<300 { c.record(.httpFailure, off) }
        #expect(c.isHealthy)
    }

    func health(_ count: Int, checks: HealthChecks = HealthChecks()) -> UpstreamHealth {
        UpstreamHealth(name: "/apisix/upstreams/u", checks: checks, cells: (0..<count).map { NodeHealthCell(host: "10.0.0.\($0)", port: 80) })
    }

    func down(_ h: UpstreamHealth, _ node: Int) {
        for _ in 0..<10 { h.recordActive(node, .tcpFailure) }
    }

    @Test func unhealthyNodesGetNothingWhileAHealthyOneRemains() {
        let nodes = (0..<3).map { UpstreamNode(host: "10.0.0.\($0)", port: 80, weight: 1) }
        let h = health(3)
        let b = Balancer(plan: BalancerPlan(type: .roundrobin, nodes: nodes), health: h)
        down(h, 1)
        var seen: [Int: Int] = [:]
        for _ in 0..<300 { seen[b.pick() ?? -1, default: 0] += 1 }
        #expect(seen[1] == nil && seen[0] ?? 0 > 100 && seen[2] ?? 0 > 100, "\(seen)")
        // All down: every node is tried again.
        down(h, 0)
        down(h, 2)
        seen = [:]
        for _ in 0..<300 { seen[b.pick() ?? -1, default: 0] += 1 }
        #expect(seen.keys.sorted() == [0, 1, 2], "\(seen)")
    }

    @Test func priorityGroupsFailOverWhenAWholeGroupIsDown() {
        let nodes = [
            UpstreamNode(host: "10.0.0.0", port: 80, weight: 1, priority: 1), UpstreamNode(host: "10.0.0.1", port: 80, weight: 1, priority: 1),
            UpstreamNode(host: "10.0.0.2", port: 80, weight: 1, priority: 0),
        ]
        let plan = BalancerPlan(type: .roundrobin, nodes: nodes)
        let h = health(3)
        let b = Balancer(plan: plan, health: h)
        let low = plan.nodes.firstIndex { $0.host == "10.0.0.2" } ?? -1
        for _ in 0..<20 { #expect(b.pick() != low) }
        for (i, n) in plan.nodes.enumerated() where n.priority == 1 { down(h, i) }
        for _ in 0..<20 { #expect(b.pick() == low) }
    }

    @Test func passiveJudgementUsesItsOwnStatusesAndThresholds() {
        var checks = HealthChecks()
        checks.passive = HealthChecks.Passive()
        checks.passive?.httpFailures = 2
        let h = health(1, checks: checks)
        h.recordPassive(0, status: 404)  // in neither list
        h.recordPassive(0, status: 500)
        #expect(h.isHealthy(0))
        h.recordPassive(0, status: 503)
        #expect(!h.isHealthy(0))
        // Passive tcp: statuses judge nothing, connections do.
        var tcp = HealthChecks()
        tcp.passive = HealthChecks.Passive()
        tcp.passive?.type = .tcp
        tcp.passive?.tcpFailures = 1
        let t = health(1, checks: tcp)
        for _ in 0..<10 { t.recordPassive(0, status: 503) }
        #expect(t.isHealthy(0) && t.cells[0].counters.success == 0)
        t.recordPassive(0, .tcpFailure)
        #expect(!t.isHealthy(0))
        // No passive config: real requests judge nothing.
        let plain = health(1)
        for _ in 0..<10 { plain.recordPassive(0, status: 500) }
        #expect(plain.isHealthy(0))
    }
}
