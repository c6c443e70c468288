import SluiceCore

/// The mutable half of a load balancer: round-robin positions, connection counts, latency
/// averages and passive failure marks. One lives on each event loop, so picking a node takes
/// no lock; it is not `Sendable` on purpose.
public final class Balancer {
    public let plan: BalancerPlan
    private var groups: [GroupState]
    private var downUntil: [Int32: UInt64] = [:]
    private var random: FastRandom
    /// How long a node that failed to connect is avoided (NGINX's `fail_timeout` default).
    public var failTimeoutNanos: UInt64 = 10_000_000_000

    /// Health checks' verdicts, shared with every loop (nil: the upstream has no checks).
    public let health: UpstreamHealth?

    public init(plan: BalancerPlan, seed: UInt64 = 0x5EED, health: UpstreamHealth? = nil) {
        self.plan = plan
        self.health = health
        self.random = FastRandom(seed: seed)
        self.groups = plan.groups.map { GroupState(group: $0, type: plan.type) }
    }

    /// Picks a node index into `plan.nodes`, skipping `excluded` ones (already tried by this
    /// request). Nodes recently marked failed are avoided while any other node is available.
    /// Higher-priority groups are used first; a lower group only when a higher one has
    /// nothing to give. Returns nil when every node is excluded.
    public func pick(hashKey: UInt64 = 0, excluding excluded: [Int] = [], now: UInt64 = 0) -> Int? {
        let first: Int?
        if downUntil.isEmpty {
            first = pickRespectingHealth(false, hashKey, excluded, now)
        } else {
            first = pickRespectingHealth(true, hashKey, excluded, now) ?? pickRespectingHealth(false, hashKey, excluded, now)
        }
        // One atomic load when every node is healthy. An unhealthy pick gives way to a
        // healthy node (of this group, else of the next), or stands when none is left.
        guard let health, let n = first, !health.isHealthy(n) else { return first }
        return pick(hashKey, avoiding: Avoidance(excluded: excluded, downUntil: downUntil, now: now, health: health)) ?? n
    }

    private func pickRespectingHealth(_ health: Bool, _ hashKey: UInt64, _ excluded: [Int], _ now: UInt64) -> Int? {
        pick(hashKey, avoiding: Avoidance(excluded: excluded, downUntil: health ? downUntil : [:], now: now, health: nil))
    }

    /// The first group, by priority, that has a node `avoid` does not rule out.
    private func pick(_ hashKey: UInt64, avoiding avoid: Avoidance) -> Int? {
        for g in 0..<groups.count {
            if let n = groups[g].pick(hashKey: hashKey, avoid: avoid, random: &random) {
                return Int(n)
            }
        }
        return nil
    }

    /// Tells the balancer a request to `node` finished (least_conn and ewma bookkeeping).
    public func release(_ node: Int, latencyNanos: UInt64? = nil, now: UInt64 = 0) {
        for g in 0..<groups.count where groups[g].release(Int32(node), latencyNanos: latencyNanos, now: now) { return }
    }

    /// Marks a node as failed (connect error): it is avoided for `failTimeoutNanos`.
    public func markFailed(_ node: Int, now: UInt64) {
        // With health checks their verdict decides (as APISIX, whose checker replaces
        // NGINX's fail_timeout): a node back up is used as soon as a probe says so.
        if health != nil { return }
        downUntil[Int32(node)] = now &+ failTimeoutNanos
        if downUntil.count > 64 { downUntil = downUntil.filter { $0.value > now } }
    }

    public func markRecovered(_ node: Int) {
        if !downUntil.isEmpty { downUntil.removeValue(forKey: Int32(node)) }
    }

    /// In-flight requests per node (least_conn, ewma), for tests and the control API.
    public func activeRequests(_ node: Int) -> Int {
        for g in groups { if let a = g.active(Int32(node)) { return a } }
        return 0
    }
}

/// Which nodes a pick must skip: those this request already tried, and those marked failed.
struct Avoidance {
    let excluded: [Int]
    let downUntil: [Int32: UInt64]
    let now: UInt64
    /// Set: unhealthy nodes are avoided too.
    let health: UpstreamHealth?

    /// True when nothing is to be avoided: the fast path.
    var isEmpty: Bool { excluded.isEmpty && downUntil.isEmpty && health == nil }

    @inline(__always)
    func avoids(_ node: Int32) -> Bool {
        if isEmpty { return false }
        if excluded.contains(Int(node)) { return true }
        if let health, !health.isHealthy(Int(node)) { return true }
        if let until = downUntil[node], until > now { return true }
        return false
    }
}

/// Per-group picker state. Mutated in place (never copied out of its optional), so that
/// a pick touches O(log n) elements rather than copying the scheduler's arrays.
struct GroupState {
    let group: BalancerPlan.Group
    let type: BalancerType
    var counter = 0
    var stride: StrideScheduler?
    var leastConn: LeastConnHeap?
    var ewma: EWMAState?

    init(group: BalancerPlan.Group, type: BalancerType) {
        self.group = group
        self.type = type
        switch type {
        case .roundrobin where !group.equalWeights:
            stride = StrideScheduler(weights: group.weights)
        case .least_conn:
            leastConn = LeastConnHeap(weights: group.weights)
        case .ewma:
            ewma = EWMAState(count: group.members.count)
        default:
            break
        }
    }

    private func localIndex(_ node: Int32) -> Int? {
        // Members are ascending node indices: binary search.
        var lo = 0, hi = group.members.count
        while lo < hi {
            let mid = (lo + hi) >> 1
            if group.members[mid] < node { lo = mid + 1 } else { hi = mid }
        }
        return lo < group.members.count && group.members[lo] == node ? lo : nil
    }

    /// A member not avoided, with probability proportional to its weight; nil when every
    /// member is avoided. O(members): only taken after the schedule found none.
    func weightedPick(avoid: Avoidance, random: inout FastRandom) -> Int32? {
        var total: UInt64 = 0
        for (i, node) in group.members.enumerated() where !avoid.avoids(node) { total &+= UInt64(max(0, group.weights[i])) }
        guard total > 0 else { return nil }
        var r = random.next() % total
        for (i, node) in group.members.enumerated() where !avoid.avoids(node) {
            let w = UInt64(max(0, group.weights[i]))
            if r < w { return node }
            r -= w
        }
        return nil
    }

    mutating func pick(hashKey: UInt64, avoid: Avoidance, random: inout FastRandom) -> Int32? {
        let count = group.members.count
        guard count > 0 else { return nil }
        switch type {
        case .roundrobin:
            if stride != nil {
                for _ in 0..<count {
                    let local = stride!.next()
                    let node = group.members[local]
                    if !avoid.avoids(node) { return node }
                }
                // With unequal weights a heavy node fills most of the schedule: `count` steps
                // can all land on the node a retry must avoid (1000:1, say). Choose among the
                // others by weight instead.
                return weightedPick(avoid: avoid, random: &random)
            }
            for _ in 0..<count {
                let local = counter
                counter = counter + 1 == count ? 0 : counter + 1
                let node = group.members[local]
                if !avoid.avoids(node) { return node }
            }
            return nil
        case .chash:
            guard let ring = group.ring else { return nil }
            var p = ring.firstPoint(atOrAfter: hashKey)
            // Walk on to the next point owned by an acceptable node; bounded by the ring size.
            for _ in 0..<ring.points.count {
                let owner = ring.owners[p]
                if !avoid.avoids(owner) { return owner }
                p = p + 1 == ring.points.count ? 0 : p + 1
            }
            return nil
        case .least_conn:
            guard leastConn != nil else { return nil }
            let top = leastConn!.top
            if !avoid.avoids(group.members[top]) {
                leastConn!.adjust(top, by: 1)
                return group.members[top]
            }
            // Rare (retry or failed node): scan for the best acceptable one.
            var best: Int? = nil
            for local in 0..<count where !avoid.avoids(group.members[local]) {
                if best == nil || leastConn!.score(local) < leastConn!.score(best!) { best = local }
            }
            guard let chosen = best else { return nil }
            leastConn!.adjust(chosen, by: 1)
            return group.members[chosen]
        case .ewma:
            guard ewma != nil else { return nil }
            var chosen: Int? = nil
            if count == 1 {
                chosen = avoid.avoids(group.members[0]) ? nil : 0
            } else {
                // Power of two choices; fall back to a scan when both are unacceptable.
                let a = random.below(count)
                var b = random.below(count - 1)
                if b >= a { b += 1 }
                let okA = !avoid.avoids(group.members[a]), okB = !avoid.avoids(group.members[b])
                if okA && okB {
                    chosen = ewma!.score(a) <= ewma!.score(b) ? a : b
                } else if okA {
                    chosen = a
                } else if okB {
                    chosen = b
                } else {
                    for local in 0..<count where !avoid.avoids(group.members[local]) {
                        if chosen == nil || ewma!.score(local) < ewma!.score(chosen!) { chosen = local }
                    }
                }
            }
            guard let c = chosen else { return nil }
            ewma!.inFlight[c] += 1
            return group.members[c]
        }
    }

    /// Returns true when `node` belongs to this group.
    mutating func release(_ node: Int32, latencyNanos: UInt64?, now: UInt64) -> Bool {
        guard let local = localIndex(node) else { return false }
        if leastConn != nil { leastConn!.adjust(local, by: -1) }
        if ewma != nil {
            ewma!.inFlight[local] = max(0, ewma!.inFlight[local] - 1)
            if let latencyNanos { ewma!.observe(local, latencyNanos: latencyNanos, now: now) }
        }
        return true
    }

    func active(_ node: Int32) -> Int? {
        guard let local = localIndex(node) else { return nil }
        if let heap = leastConn { return heap.active[local] }
        if let state = ewma { return state.inFlight[local] }
        return 0
    }
}
