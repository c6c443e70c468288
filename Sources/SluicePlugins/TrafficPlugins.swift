import Synchronization
import SluiceCore

/// traffic-split: sends a share of requests (all of them, or those matching a rule) to
/// other upstreams, by weight. An entry with only a weight means the route's own upstream.
/// Inline upstreams are compiled with the snapshot under `TrafficSplitPlugin.upstreamKey`.
final class TrafficSplitPlugin: HTTPPlugin {
    static let name = "traffic-split"

    struct Rule: Sendable {
        /// Any of these passes (each an AND of its conditions); none means always.
        let match: [VarsExpression]
        /// Upstream keys by smooth weighted round robin; nil is the route's own upstream.
        let schedule: [String?]
        let next: Counter
    }

    final class Counter: Sendable {
        let value = Atomic<Int>(0)
        func take() -> Int { value.wrappingAdd(1, ordering: .relaxed).oldValue }
    }

    let rules: [Rule]

    /// The snapshot key of an inline upstream of rule `rule`, entry `entry`.
    static func upstreamKey(owner: String, rule: Int, entry: Int) -> String { "\(owner)#traffic-split/\(rule)/\(entry)" }

    init(_ c: JSONValue, _ ctx: PluginCompileContext) {
        var rules: [Rule] = []
        for (i, rule) in (c["rules"]?.arrayValue ?? []).enumerated() {
            let match = (rule["match"]?.arrayValue ?? []).compactMap { m in m["vars"].flatMap { try? VarsExpression.parse($0, path: "") } }
            var weighted: [(String?, Int)] = []
            for (j, w) in (rule["weighted_upstreams"]?.arrayValue ?? []).enumerated() {
                let weight = Int(w["weight"]?.intValue ?? 1)
                guard weight > 0 else { continue }
                if let id = w["upstream_id"] {
                    weighted.append(("upstreams/\(id.stringValue ?? id.intValue.map(String.init) ?? "")", weight))
                } else if w["upstream"] != nil {
                    weighted.append((Self.upstreamKey(owner: ctx.owner, rule: i, entry: j), weight))
                } else {
                    weighted.append((nil, weight))
                }
            }
            rules.append(Rule(match: match, schedule: Self.smoothSchedule(weighted), next: Counter()))
        }
        self.rules = rules
    }

    /// One period of smooth weighted round robin (weights divided by their GCD).
    static func smoothSchedule(_ weighted: [(String?, Int)]) -> [String?] {
        guard !weighted.isEmpty else { return [nil] }
        func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }
        let g = weighted.map(\.1).reduce(0, gcd)
        let weights = weighted.map { $0.1 / max(g, 1) }
        let total = weights.reduce(0, +)
        var current = [Int](repeating: 0, count: weights.count)
        var out: [String?] = []
        out.reserveCapacity(total)
        for _ in 0..<min(total, 100_000) {
            var best = 0
            for k in weights.indices {
                current[k] += weights[k]
                if current[k] > current[best] { best = k }
            }
            current[best] -= total
            out.append(weighted[best].0)
        }
        return out
    }

    func access(_ r: PluginRequest) -> PluginAction {
        for rule in rules where rule.match.isEmpty || rule.match.contains(where: { $0.evaluate(r) }) {
            r.upstreamOverride = rule.schedule[rule.next.take() % rule.schedule.count]
            return .next
        }
        return .next
    }
}

/// api-breaker: after `unhealthy.failures` upstream answers with an unhealthy status for a
/// host and path, answers `break_response_code` itself for 2, 4, 8... seconds (at most
/// `max_breaker_sec`); `healthy.successes` healthy answers close the breaker again.
final class APIBreakerPlugin: HTTPPlugin {
    static let name = "api-breaker"
    struct Health: Sendable {
        var unhealthy = 0
        var healthy = 0
        /// When the breaker last opened (monotonic nanoseconds).
        var openedAt: UInt64?
    }
    final class States: Sendable { let table = ShardedTable<Health>() }

    let reply: PluginReply
    let maxBreakerNanos: UInt64
    let unhealthyStatuses: Set<Int>
    let failures: Int
    let healthyStatuses: Set<Int>
    let successes: Int
    let states: States

    init(_ c: JSONValue, _ ctx: PluginCompileContext) {
        let code = Int(c["break_response_code"]?.intValue ?? 502)
        if let body = c["break_response_body"]?.stringValue {
            let headers = (c["break_response_headers"]?.arrayValue ?? []).compactMap { h -> (String, String)? in
                guard let k = h["key"]?.stringValue, let v = h["value"]?.stringValue else { return nil }
                return (k, v)
            }
            reply = PluginReply(status: code, headers: headers, body: Array(body.utf8))
        } else {
            reply = PluginReply(status: code)
        }
        maxBreakerNanos = UInt64(c["max_breaker_sec"]?.intValue ?? 300) * 1_000_000_000
        unhealthyStatuses = Set((c["unhealthy"]?["http_statuses"]?.arrayValue ?? [500]).compactMap { $0.intValue.map(Int.init) })
        failures = max(1, Int(c["unhealthy"]?["failures"]?.intValue ?? 3))
        healthyStatuses = Set((c["healthy"]?["http_statuses"]?.arrayValue ?? [200]).compactMap { $0.intValue.map(Int.init) })
        successes = max(1, Int(c["healthy"]?["successes"]?.intValue ?? 3))
        states = ctx.state.state("api-breaker/\(ctx.owner)/\(PluginFactory.fingerprint(c))") { States() }
    }

    var hasLogPhase: Bool { true }

    func key(_ r: PluginRequest) -> String { (r.host ?? "") + r.path }

    func expired(_ h: Health, _ now: UInt64) -> Bool {
        guard let opened = h.openedAt else { return h.unhealthy == 0 }
        return now > opened + maxBreakerNanos
    }

    func access(_ r: PluginRequest) -> PluginAction {
        let now = monotonicNanos()
        let failures = self.failures, maxNanos = self.maxBreakerNanos
        let open: Bool = states.table.update(key(r), now: now, isExpired: expired) { entry in
            guard let h = entry, let opened = h.openedAt else { return false }
            let times = max(1, (h.unhealthy + failures - 1) / failures)
            let breakNanos = min(UInt64(1 << min(times, 40)) * 1_000_000_000, maxNanos)
            return now <= opened + breakNanos
        }
        return open ? .respond(reply) : .next
    }

    func log(_ r: PluginRequest, _ info: PluginLogInfo) {
        guard let status = info.upstreamStatus else { return }
        let now = monotonicNanos()
        let failures = self.failures, successes = self.successes
        if unhealthyStatuses.contains(status) {
            states.table.update(key(r), now: now, isExpired: expired) { entry in
                var h = entry ?? Health()
                h.unhealthy += 1
                h.healthy = 0
                if h.unhealthy % failures == 0 { h.openedAt = now }
                entry = h
            }
        } else if healthyStatuses.contains(status) {
            states.table.update(key(r), now: now, isExpired: expired) { entry in
                guard var h = entry else { return }
                h.healthy += 1
                entry = h.healthy >= successes ? nil : h
            }
        }
    }
}
