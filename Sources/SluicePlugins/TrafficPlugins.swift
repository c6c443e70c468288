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
        let picker: WeightedPicker
        let next: Counter
    }

    final class Counter: Sendable {
        let value = Atomic<UInt64>(0)
        func take() -> UInt64 { value.wrappingAdd(1, ordering: .relaxed).oldValue }
    }

    let rules: [Rule]

    /// The snapshot key of an inline upstream of rule `rule`, entry `entry`.
    static func upstreamKey(owner: String, rule: Int, entry: Int) -> String { "\(owner)#traffic-split/\(rule)/\(entry)" }

    init(_ c: JSONValue, _ ctx: PluginCompileContext) {
        var rules: [Rule] = []
        for (i, rule) in (c["rules"]?.arrayValue ?? []).enumerated() {
            let match = (rule["match"]?.arrayValue ?? []).compactMap { m in m["vars"].flatMap { try? VarsExpression.parse($0, path: "") } }
            var weighted: [(String?, UInt64)] = []
            for (j, w) in (rule["weighted_upstreams"]?.arrayValue ?? []).enumerated() {
                let weight = UInt64(PluginLimits.int(w["weight"], 0...Int(Int32.max), default: 1))
                guard weight > 0 else { continue }
                if let id = w["upstream_id"] {
                    weighted.append(("upstreams/\(id.stringValue ?? id.intValue.map(String.init) ?? "")", weight))
                } else if w["upstream"] != nil {
                    weighted.append((Self.upstreamKey(owner: ctx.owner, rule: i, entry: j), weight))
                } else {
                    weighted.append((nil, weight))
                }
            }
            rules.append(Rule(match: match, picker: WeightedPicker(weighted), next: Counter()))
        }
        self.rules = rules
    }

    func access(_ r: PluginRequest) -> PluginAction {
        for rule in rules where rule.match.isEmpty || rule.match.contains(where: { $0.evaluate(r) }) {
            r.upstreamOverride = rule.picker.pick(rule.next.take())
            return .next
        }
        return .next
    }
}

/// Picks targets in proportion to their weights from a request counter, exactly over each
/// period of `total` picks. Small totals (the usual weights, 1 to a few hundred) use one
/// period of NGINX's smooth weighted round robin, precomputed; large ones (weights up to
/// 2^31-1, at most 20 of them) use cumulative weights and a binary search, the counter
/// first spread over the period by a multiplier coprime with it (so one target's share
/// comes interleaved, not in one run). Memory is bounded either way.
struct WeightedPicker: Sendable {
    static let maxSchedule: UInt64 = 4096

    enum Plan: Sendable {
        /// One SWRR period.
        case schedule([String?])
        /// Upper bounds of each target's range in 0..<total, ascending.
        case cumulative(bounds: [UInt64], targets: [String?], total: UInt64, stride: UInt64)
    }
    let plan: Plan

    init(_ weighted: [(String?, UInt64)]) {
        guard !weighted.isEmpty else {
            plan = .schedule([nil])
            return
        }
        func gcd(_ a: UInt64, _ b: UInt64) -> UInt64 { b == 0 ? a : gcd(b, a % b) }
        let g = max(1, weighted.map(\.1).reduce(0, gcd))
        let weights = weighted.map { $0.1 / g }
        // At most 2^31 per weight and a few thousand entries: no overflow.
        let total = weights.reduce(0, { Nanos.add($0, $1) })
        if total <= Self.maxSchedule {
            let w = weights.map { Int($0) }
            let sum = Int(total)
            var current = [Int](repeating: 0, count: w.count)
            var out: [String?] = []
            out.reserveCapacity(sum)
            for _ in 0..<sum {
                var best = 0
                for k in w.indices {
                    current[k] += w[k]
                    if current[k] > current[best] { best = k }
                }
                current[best] -= sum
                out.append(weighted[best].0)
            }
            plan = .schedule(out)
        } else {
            var bounds: [UInt64] = []
            var running: UInt64 = 0
            for w in weights {
                running = Nanos.add(running, w)
                bounds.append(running)
            }
            // Near total/phi, and coprime with total: multiplying by it permutes 0..<total.
            var stride = UInt64(Double(total) * 0.618_033_988_75) | 1
            while gcd(stride, total) != 1 { stride += 1 }
            plan = .cumulative(bounds: bounds, targets: weighted.map(\.0), total: total, stride: stride % total)
        }
    }

    func pick(_ n: UInt64) -> String? {
        switch plan {
        case .schedule(let s):
            guard !s.isEmpty else { return nil }
            return s[Int(n % UInt64(s.count))]
        case .cumulative(let bounds, let targets, let total, let stride):
            // (n mod total) * stride mod total, without overflow.
            let product = (n % total).multipliedFullWidth(by: stride)
            let position = total.dividingFullWidth(product).remainder
            // The first range whose upper bound is above the position.
            var lo = 0
            var hi = bounds.count - 1
            while lo < hi {
                let mid = lo + (hi - lo) / 2
                if bounds[mid] > position { hi = mid } else { lo = mid + 1 }
            }
            return lo < targets.count ? targets[lo] : nil
        }
    }
}

/// api-breaker: after `unhealthy.failures` upstream answers with an unhealthy status for a
/// host and path, answers `break_response_code` itself for 2, 4, 8... seconds (at most
/// `max_breaker_sec`); `healthy.successes` healthy answers close the breaker again. An entry
/// not updated for `max_breaker_sec` is done (APISIX keeps its counters in a shared dict
/// with that expiry), and the table holds at most `PluginTableLimits.apiBreaker` keys.
final class APIBreakerPlugin: HTTPPlugin {
    static let name = "api-breaker"
    struct Health: Sendable {
        var unhealthy = 0
        var healthy = 0
        /// When the breaker last opened (monotonic nanoseconds).
        var openedAt: UInt64?
        /// When a response last changed the entry.
        var updatedAt: UInt64 = 0
    }
    final class States: Sendable { let table = ShardedTable<Health>(capacity: PluginTableLimits.apiBreaker, plugin: "api-breaker") }

    let reply: PluginReply
    let maxBreakerSeconds: UInt64
    let maxBreakerNanos: UInt64
    let unhealthyStatuses: Set<Int>
    let failures: Int
    let healthyStatuses: Set<Int>
    let successes: Int
    let states: States

    init(_ c: JSONValue, _ ctx: PluginCompileContext) {
        let code = PluginLimits.status(c["break_response_code"], default: 502)
        if let body = c["break_response_body"]?.stringValue {
            // The body goes out as text (NGINX's default type) unless a configured header
            // names the type; of several Content-Type entries the last one is sent, alone.
            var headers: [(String, String)] = [("Content-Type", "text/plain; charset=utf-8")]
            for h in c["break_response_headers"]?.arrayValue ?? [] {
                guard let k = h["key"]?.stringValue, let v = h["value"]?.stringValue, HeaderSyntax.isToken(k), HeaderSyntax.isSafeValue(v) else { continue }
                if k.lowercased() == "content-type" { headers.removeAll { $0.0.lowercased() == "content-type" } }
                headers.append((k, v))
            }
            reply = PluginReply(status: code, headers: headers, body: Array(body.utf8))
        } else {
            reply = PluginReply(status: code)
        }
        maxBreakerSeconds = UInt64(PluginLimits.int(c["max_breaker_sec"], 3...Int(PluginLimits.maxWindowSeconds), default: 300))
        maxBreakerNanos = maxBreakerSeconds * Nanos.perSecond  // at most a year: 3.2e16
        unhealthyStatuses = Set((c["unhealthy"]?["http_statuses"]?.arrayValue ?? [500]).compactMap { $0.intValue.map { Int(clamping: $0) } })
        failures = PluginLimits.int(c["unhealthy"]?["failures"], 1...Int(Int32.max), default: 3)
        healthyStatuses = Set((c["healthy"]?["http_statuses"]?.arrayValue ?? [200]).compactMap { $0.intValue.map { Int(clamping: $0) } })
        successes = PluginLimits.int(c["healthy"]?["successes"], 1...Int(Int32.max), default: 3)
        states = ctx.state.state("api-breaker/\(ctx.owner)/\(PluginFactory.fingerprint(c))") { States() }
    }

    var hasLogPhase: Bool { true }

    func key(_ r: PluginRequest) -> String { TableKey.bounded((r.host ?? "") + r.path) }

    /// Done: not updated for `max_breaker_sec`, which is longer than the breaker can stay
    /// open after its last update.
    func expired(_ h: Health, _ now: UInt64) -> Bool { Nanos.elapsed(from: h.updatedAt, to: now) > maxBreakerNanos }

    /// How long the breaker stays open after the `unhealthy`-th failure: 2^(opened times)
    /// seconds, at most `max_breaker_sec`. The exponent is capped before shifting and the
    /// product is at most a year in nanoseconds: nothing overflows.
    static func breakNanos(unhealthy: Int, failures: Int, maxSeconds: UInt64) -> UInt64 {
        let times = unhealthy <= 0 ? 1 : max(1, (unhealthy - 1) / max(1, failures) + 1)
        let seconds = min(UInt64(1) << UInt64(min(times, 40)), maxSeconds)
        return seconds * Nanos.perSecond
    }

    func access(_ r: PluginRequest) -> PluginAction {
        let now = monotonicNanos()
        let failures = self.failures, maxSeconds = self.maxBreakerSeconds
        let open: Bool = states.table.update(key(r), now: now, isExpired: expired) { entry in
            guard let h = entry, let opened = h.openedAt else { return false }
            return now <= Nanos.add(opened, Self.breakNanos(unhealthy: h.unhealthy, failures: failures, maxSeconds: maxSeconds))
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
                h.unhealthy = h.unhealthy < Int(Int32.max) ? h.unhealthy + 1 : failures  // keeps the breaker cycling
                h.healthy = 0
                h.updatedAt = now
                if h.unhealthy % failures == 0 { h.openedAt = now }
                entry = h
            }
        } else if healthyStatuses.contains(status) {
            states.table.update(key(r), now: now, isExpired: expired) { entry in
                guard var h = entry else { return }
                h.healthy += 1
                h.updatedAt = now
                entry = h.healthy >= successes ? nil : h
            }
        }
    }
}
