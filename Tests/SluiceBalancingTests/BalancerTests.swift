import SluiceBalancing
import SluiceCore
import Testing

func nodes(_ weights: [Int], priorities: [Int]? = nil) -> [UpstreamNode] {
    weights.enumerated().map { i, w in
        UpstreamNode(host: "10.0.\(i / 250).\(i % 250 + 1)", port: 80, weight: w, priority: priorities?[i] ?? 0)
    }
}

@Suite struct RoundRobinTests {
    @Test func distributesByWeightExactlyOverACycle() {
        let b = Balancer(plan: BalancerPlan(type: .roundrobin, nodes: nodes([5, 1, 1, 3])))
        var counts = [0, 0, 0, 0]
        for _ in 0..<1000 { counts[b.pick()!] += 1 }
        #expect(counts == [500, 100, 100, 300])
    }

    @Test func isSmoothNotBursty() {
        let b = Balancer(plan: BalancerPlan(type: .roundrobin, nodes: nodes([5, 1, 1])))
        let seq = (0..<7).map { _ in b.pick()! }
        // The heavy node never runs more than 3 in a row; the light ones are spread out.
        var longest = 0, run = 0
        for s in seq + seq {
            run = s == 0 ? run + 1 : 0
            longest = max(longest, run)
        }
        #expect(longest <= 3)
        #expect(seq.filter { $0 == 0 }.count == 5)
    }

    @Test func equalWeightsCycleInOrderAndZeroWeightGetsNothing() {
        let b = Balancer(plan: BalancerPlan(type: .roundrobin, nodes: nodes([1, 1, 0, 1])))
        #expect((0..<6).map { _ in b.pick()! } == [0, 1, 3, 0, 1, 3])
    }

    /// APISIX retries on the other node whatever the weights: with 1000:1 the schedule is
    /// nearly all the heavy node, and a retry that excludes it must still find the light one.
    @Test func exclusionFindsALightNodeBehindAHeavyOne() {
        let b = Balancer(plan: BalancerPlan(type: .roundrobin, nodes: nodes([1000, 1])))
        for _ in 0..<2000 { #expect(b.pick(excluding: [0]) == 1) }
        #expect(b.pick(excluding: [0, 1]) == nil)
        // Among several left, the weights still decide.
        let c = Balancer(plan: BalancerPlan(type: .roundrobin, nodes: nodes([1000, 30, 10])))
        var counts = [0, 0, 0]
        for _ in 0..<4000 { if let n = c.pick(excluding: [0]) { counts[n] += 1 } }
        #expect(counts[0] == 0 && counts[1] > counts[2] * 2 && counts[2] > 0, "\(counts)")
    }

    @Test func exclusionSkipsTriedNodes() {
        let b = Balancer(plan: BalancerPlan(type: .roundrobin, nodes: nodes([1, 1, 1])))
        for _ in 0..<10 {
            let n = b.pick(excluding: [0, 2])
            #expect(n == 1)
        }
        #expect(b.pick(excluding: [0, 1, 2]) == nil)
    }

    @Test func failedNodesAreAvoidedUntilTheirTimeoutUnlessNothingElseIsLeft() {
        let b = Balancer(plan: BalancerPlan(type: .roundrobin, nodes: nodes([1, 1])))
        b.markFailed(0, now: 1_000)
        for _ in 0..<5 { #expect(b.pick(now: 2_000) == 1) }
        #expect(b.pick(excluding: [1], now: 2_000) == 0)  // last resort
        let later = 1_000 + b.failTimeoutNanos + 1
        #expect(Set((0..<4).map { _ in b.pick(now: later)! }) == [0, 1])
    }

    @Test func lowerPriorityGroupOnlyWhenHigherIsUnavailable() {
        let b = Balancer(plan: BalancerPlan(type: .roundrobin, nodes: nodes([1, 1, 1], priorities: [10, 10, 0])))
        for _ in 0..<10 { #expect(b.pick()! != 2) }
        #expect(b.pick(excluding: [0, 1]) == 2)
    }

    @Test func picksStayCheapAt100kNodes() {
        let b = Balancer(plan: BalancerPlan(type: .roundrobin, nodes: nodes(Array(repeating: 1, count: 100_000))))
        var seen = Set<Int>()
        for _ in 0..<200_000 { seen.insert(b.pick()!) }
        #expect(seen.count == 100_000)
        let w = Balancer(plan: BalancerPlan(type: .roundrobin, nodes: nodes((0..<100_000).map { $0 % 3 + 1 })))
        var heavy = 0
        for _ in 0..<200_000 where w.pick()! % 3 == 2 { heavy += 1 }
        #expect(abs(Double(heavy) / 200_000 - 0.5) < 0.01)
    }
}

@Suite struct ConsistentHashTests {
    @Test func sameKeySameNode() {
        let plan = BalancerPlan(type: .chash, nodes: nodes(Array(repeating: 1, count: 10)))
        let a = Balancer(plan: plan), b = Balancer(plan: plan, seed: 99)
        for i in 0..<1000 {
            let key = StableHash.hash("user-\(i)")
            #expect(a.pick(hashKey: key) == b.pick(hashKey: key))
            #expect(a.pick(hashKey: key) == a.pick(hashKey: key))
        }
    }

    @Test func addingANodeMovesOnlyItsShare() {
        let before = Balancer(plan: BalancerPlan(type: .chash, nodes: nodes(Array(repeating: 1, count: 10))))
        let after = Balancer(plan: BalancerPlan(type: .chash, nodes: nodes(Array(repeating: 1, count: 11))))
        var moved = 0
        var movedElsewhere = 0
        let keys = 20_000
        for i in 0..<keys {
            let key = StableHash.hash("k\(i)")
            let x = before.pick(hashKey: key)!, y = after.pick(hashKey: key)!
            if x != y {
                moved += 1
                if y != 10 { movedElsewhere += 1 }
            }
        }
        // Ideal: 1/11 of the keys move, all of them to the new node.
        #expect(Double(moved) / Double(keys) < 0.13)
        #expect(movedElsewhere == 0)
    }

    @Test func distributionFollowsWeights() {
        let b = Balancer(plan: BalancerPlan(type: .chash, nodes: nodes([1, 1, 2])))
        var counts = [0, 0, 0]
        for i in 0..<40_000 { counts[b.pick(hashKey: StableHash.hash("key\(i)"))!] += 1 }
        #expect(abs(Double(counts[2]) / 40_000 - 0.5) < 0.05)
        #expect(abs(Double(counts[0]) / 40_000 - 0.25) < 0.05)
    }

    @Test func excludedNodeFallsToTheNextOnTheRing() {
        let b = Balancer(plan: BalancerPlan(type: .chash, nodes: nodes([1, 1, 1])))
        let key = StableHash.hash("sticky")
        let first = b.pick(hashKey: key)!
        let second = b.pick(hashKey: key, excluding: [first])!
        #expect(second != first)
        #expect(b.pick(hashKey: key, excluding: [first]) == second)
    }

    @Test func ringAt100kNodesIsBounded() {
        let plan = BalancerPlan(type: .chash, nodes: nodes(Array(repeating: 1, count: 100_000)))
        let b = Balancer(plan: plan)
        var seen = Set<Int>()
        for i in 0..<50_000 { seen.insert(b.pick(hashKey: StableHash.hash("u\(i)"))!) }
        #expect(seen.count > 30_000)
    }
}

@Suite struct LeastConnTests {
    @Test func prefersTheLeastBusyNode() {
        let b = Balancer(plan: BalancerPlan(type: .least_conn, nodes: nodes([1, 1, 1])))
        let a = b.pick()!, c = b.pick()!, d = b.pick()!
        #expect(Set([a, c, d]) == [0, 1, 2])
        b.release(1)
        #expect(b.pick() == 1)
        #expect(b.activeRequests(1) == 1)
    }

    @Test func freedCapacityIsRefilledWhereScoresAreLowest() {
        let b = Balancer(plan: BalancerPlan(type: .least_conn, nodes: nodes([1, 3])))
        var picked: [Int] = []
        for _ in 0..<400 { picked.append(b.pick()!) }
        // In proportion to weight: 100 on the 1-weight node, 300 on the 3-weight one.
        #expect(b.activeRequests(0) == 100)
        #expect(b.activeRequests(1) == 300)
        // Node 1 finishes everything: the next 300 requests all go to it.
        for n in picked where n == 1 { b.release(n) }
        for _ in 0..<300 { #expect(b.pick() == 1) }
        #expect(b.activeRequests(0) == 100)
    }
}

@Suite struct EWMATests {
    @Test func slowNodeGetsLessTraffic() {
        let b = Balancer(plan: BalancerPlan(type: .ewma, nodes: nodes([1, 1])))
        var now: UInt64 = 1_000_000
        var counts = [0, 0]
        for _ in 0..<2000 {
            let n = b.pick(now: now)!
            counts[n] += 1
            now += 1_000_000
            b.release(n, latencyNanos: n == 0 ? 50_000_000 : 1_000_000, now: now)
        }
        #expect(counts[1] > counts[0] * 3)
    }
}
