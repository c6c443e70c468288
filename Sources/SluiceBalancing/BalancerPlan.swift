import SluiceCore

/// The immutable part of a load balancer, built once per upstream version off the event
/// loops and shared by all of them: node list, priority groups, hash rings.
public final class BalancerPlan: Sendable {
    public let type: BalancerType
    public let nodes: [UpstreamNode]
    let groups: [Group]

    struct Group: Sendable {
        let priority: Int
        /// Indices into `nodes` of the members with weight > 0.
        let members: [Int32]
        let weights: [Int32]
        let equalWeights: Bool
        let ring: HashRing?
    }

    /// Upper bound on ring points per priority group: 2^21 points (24 MiB) keeps a
    /// 100,000-node ring at ~20 points a node, with lookups still O(log n).
    public static let maxRingPoints = 1 << 21
    public static let pointsPerNode = 160

    public init(type: BalancerType, nodes: [UpstreamNode]) {
        self.type = type
        self.nodes = nodes
        var byPriority: [Int: [Int]] = [:]
        for (i, n) in nodes.enumerated() where n.weight > 0 {
            byPriority[n.priority, default: []].append(i)
        }
        groups = byPriority.keys.sorted(by: >).map { priority in
            let members = byPriority[priority]!
            let weights = members.map { Int32(clamping: nodes[$0].weight) }
            let ring = type == .chash ? HashRing(nodes: nodes, members: members) : nil
            return Group(
                priority: priority, members: members.map { Int32($0) }, weights: weights,
                equalWeights: Set(weights).count <= 1, ring: ring)
        }
    }

    /// True when no node can take traffic (no nodes, or all weight 0).
    public var isEmpty: Bool { groups.isEmpty }
}

/// A consistent-hash ring: each node owns points in proportion to its weight; a key goes to
/// the first point at or after its hash. Adding or removing one node moves only the keys
/// that node gains or loses.
struct HashRing: Sendable {
    let points: [UInt64]
    let owners: [Int32]

    init(nodes: [UpstreamNode], members: [Int]) {
        let totalWeight = members.reduce(0) { $0 + nodes[$1].weight }
        let target = min(max(members.count * BalancerPlan.pointsPerNode, 1024), BalancerPlan.maxRingPoints)
        var pairs: [(UInt64, Int32)] = []
        pairs.reserveCapacity(target + members.count)
        for m in members {
            let node = nodes[m]
            let share = Double(target) * Double(node.weight) / Double(max(totalWeight, 1))
            let count = max(1, Int(share.rounded()))
            let base = StableHash.hash(node.address)
            for i in 0..<count {
                pairs.append((StableHash.mix(base ^ (UInt64(i) &* 0x9E37_79B9_7F4A_7C15)), Int32(m)))
            }
        }
        pairs.sort { $0.0 < $1.0 }
        points = pairs.map(\.0)
        owners = pairs.map(\.1)
    }

    /// Index of the first point >= hash (wrapping to 0).
    func firstPoint(atOrAfter hash: UInt64) -> Int {
        var lo = 0, hi = points.count
        while lo < hi {
            let mid = (lo + hi) >> 1
            if points[mid] < hash { lo = mid + 1 } else { hi = mid }
        }
        return lo == points.count ? 0 : lo
    }
}
