import Crypto
import Synchronization
import SluiceCore

/// The key a limit plugin counts by: a variable (`remote_addr`, `http_x_user`), a
/// combination (`$remote_addr $http_x_user`), or a constant; the client address when the
/// variable is empty.
struct LimitKey: Sendable {
    enum Kind: Sendable {
        case variable(RequestVariable?)
        case combination(Template)
        case constant(String)
    }
    let kind: Kind

    init(_ c: JSONValue) {
        let key = c["key"]?.stringValue ?? "remote_addr"
        switch c["key_type"]?.stringValue ?? "var" {
        case "var_combination": kind = .combination(Template(key))
        case "constant": kind = .constant(key)
        default: kind = .variable(RequestVariable(name: key))
        }
    }

    func value(_ r: PluginRequest) -> String {
        switch kind {
        case .constant(let s): return s
        case .variable(let v):
            if let v, let s = r.value(of: v), !s.isEmpty { return TableKey.bounded(s) }
        case .combination(let t):
            let s = t.render(r)
            if !s.trimmingWhitespace().isEmpty { return TableKey.bounded(s) }
        }
        return r.remoteAddress
    }
}

/// Keys of state tables come from requests (a header may be 32 KiB): one longer than
/// `maxBytes` is stored by its SHA-256, so an entry's size is bounded and distinct keys stay
/// distinct.
enum TableKey {
    static let maxBytes = 256

    static func bounded(_ key: String) -> String {
        guard key.utf8.count > maxBytes else { return key }
        let digest = SHA256.hash(data: Array(key.utf8))
        return "sha256:" + digest.map { b in (b < 16 ? "0" : "") + String(b, radix: 16) }.joined()
    }
}

/// The counters of one limit-count config (or one `group`): fixed windows per key.
final class FixedWindowCounters: Sendable {
    struct Window: Sendable {
        var start: UInt64
        var count: Int
    }
    let table: ShardedTable<Window>
    let windowNanos: UInt64

    init(windowSeconds: Int, capacity: Int = PluginTableLimits.limitCount) {
        windowNanos = max(Nanos.perSecond, Nanos.from(seconds: windowSeconds))
        table = ShardedTable(capacity: capacity, plugin: "limit-count")
    }

    /// Counts one request: whether it is within `limit`, what remains, and seconds until
    /// the window resets.
    func take(_ key: String, limit: Int, now: UInt64) -> (allowed: Bool, remaining: Int, reset: Int) {
        let window = windowNanos
        return table.update(key, now: now, isExpired: { w, now in now >= Nanos.add(w.start, window) }) { entry in
            var w = entry ?? Window(start: now, count: 0)
            if now >= Nanos.add(w.start, window) { w = Window(start: now, count: 0) }
            // Whole seconds until the window ends, rounded up; at most the window.
            let left = min(window, Nanos.elapsed(from: now, to: Nanos.add(w.start, window)))
            let reset = Int(left / Nanos.perSecond + (left % Nanos.perSecond == 0 ? 0 : 1))
            if w.count >= limit {
                entry = w
                return (false, 0, reset)
            }
            w.count += 1
            entry = w
            return (true, limit - w.count, reset)
        }
    }
}

/// limit-count: at most `count` requests per `time_window` seconds per key, with the quota
/// in X-RateLimit-* headers. Counters belong to the route (or service, global rule,
/// consumer) and its config, or to a `group` shared by every config naming it; a change
/// elsewhere in the route keeps them.
final class LimitCountPlugin: HTTPPlugin {
    static let name = "limit-count"
    /// Decrements the key's remaining count, creating it with the window as its expiry:
    /// returns {remaining, seconds to reset}. One round trip, atomic in Redis.
    static let script = """
        local ttl = redis.call('ttl', KEYS[1])
        if ttl < 0 then
            redis.call('set', KEYS[1], ARGV[1] - ARGV[3], 'EX', ARGV[2])
            return {ARGV[1] - ARGV[3], ARGV[2]}
        end
        return {redis.call('incrby', KEYS[1], 0 - ARGV[3]), ttl}
        """

    let count: Int
    let window: Int
    let key: LimitKey
    /// Local counters, or nil with the redis policy.
    let counters: FixedWindowCounters?
    let redis: RedisClient?
    /// The counter's name: the group, or the owner and the config.
    let prefix: String
    let showHeaders: Bool
    let rejectedCode: Int
    let rejectedMessage: String?
    let allowDegradation: Bool

    init(_ c: JSONValue, _ ctx: PluginCompileContext) {
        count = PluginLimits.int(c["count"], 1...Int(Int32.max), default: 1)
        window = PluginLimits.int(c["time_window"], 1...Int(PluginLimits.maxWindowSeconds), default: 1)
        key = LimitKey(c)
        if let group = c["group"]?.stringValue {
            prefix = "group/\(group)"
        } else {
            prefix = "\(ctx.owner)/\(PluginFactory.fingerprint(c))"
        }
        if c["policy"] == "redis" {
            let options = RedisClient.Options(
                host: c["redis_host"]?.stringValue ?? "127.0.0.1", port: PluginLimits.int(c["redis_port"], 1...65535, default: 6379),
                username: c["redis_username"]?.stringValue, password: c["redis_password"]?.stringValue,
                database: PluginLimits.int(c["redis_database"], 0...Int(Int32.max), default: 0),
                timeout: .milliseconds(Int64(PluginLimits.int(c["redis_timeout"], 1...Int(PluginLimits.maxRedisTimeoutMs), default: 1000))))
            // One connection per Redis server and database, kept across snapshots.
            redis = ctx.state.state("redis/\(options.host):\(options.port)/\(options.database)/\(options.username ?? "")/\(options.password ?? "")") {
                RedisClient(options)
            }
            counters = nil
        } else {
            let window = self.window
            counters = ctx.state.state("limit-count/\(prefix)") { FixedWindowCounters(windowSeconds: window) }
            redis = nil
        }
        showHeaders = c["show_limit_quota_header"] != false
        rejectedCode = PluginLimits.status(c["rejected_code"], default: 503)
        rejectedMessage = c["rejected_msg"]?.stringValue
        allowDegradation = c["allow_degradation"] == true
    }

    func decide(allowed: Bool, remaining: Int, reset: Int) -> PluginDecision {
        var headers: [(String, String)] = []
        if showHeaders {
            headers = [("X-RateLimit-Limit", String(count)), ("X-RateLimit-Remaining", String(max(0, remaining))), ("X-RateLimit-Reset", String(reset))]
        }
        return PluginDecision(allowed ? .next : .respond(.errorMessage(rejectedCode, rejectedMessage)), responseHeaders: headers)
    }

    func access(_ r: PluginRequest) -> PluginAction {
        let k = key.value(r)
        if let counters {
            let (allowed, remaining, reset) = counters.take(k, limit: count, now: monotonicNanos())
            let d = decide(allowed: allowed, remaining: remaining, reset: reset)
            r.responseHeaders += d.responseHeaders
            return d.action
        }
        guard let redis else { return .next }
        let degrade = allowDegradation
        let f = redis.command(["EVAL", Self.script, "1", "plugin-limit-count:\(prefix):\(k)", String(count), String(window), "1"])
            .map { [self] reply -> PluginDecision in
                guard case .array(let items?) = reply, items.count == 2, let remaining = items[0].int, let ttl = items[1].int else {
                    return PluginDecision(degrade ? .next : .respond(.errorMessage(500, "failed to limit count")))
                }
                return self.decide(allowed: remaining >= 0, remaining: Int(clamping: remaining), reset: Int(clamping: max(0, ttl)))
            }
            .recover { _ in PluginDecision(degrade ? .next : .respond(.errorMessage(500, "failed to limit count"))) }
        return .wait(f)
    }
}

/// limit-req: a leaky bucket per key: `rate` requests per second, up to `burst` more
/// delayed until their turn (or let through at once with `nodelay`), the rest refused.
final class LimitReqPlugin: HTTPPlugin {
    static let name = "limit-req"
    struct Bucket: Sendable {
        /// Requests waiting, in thousandths.
        var excess: Double
        var last: UInt64
    }
    final class Buckets: Sendable { let table = ShardedTable<Bucket>(capacity: PluginTableLimits.limitReq, plugin: "limit-req") }

    let rate: Double
    let burst: Double
    let nodelay: Bool
    let key: LimitKey
    let buckets: Buckets
    let rejectedCode: Int
    let rejectedMessage: String?

    init(_ c: JSONValue, _ ctx: PluginCompileContext) {
        // Held to the schema's ranges: rate > 0 (the smallest positive double at worst: waits
        // saturate below), both at most 1e9.
        rate = PluginLimits.double(c["rate"], Double.leastNonzeroMagnitude...PluginLimits.maxRate, default: 1)
        burst = PluginLimits.double(c["burst"], 0...PluginLimits.maxRate, default: 0)
        nodelay = c["nodelay"] == true
        key = LimitKey(c)
        buckets = ctx.state.state("limit-req/\(ctx.owner)/\(PluginFactory.fingerprint(c))") { Buckets() }
        rejectedCode = PluginLimits.status(c["rejected_code"], default: 503)
        rejectedMessage = c["rejected_msg"]?.stringValue
    }

    func access(_ r: PluginRequest) -> PluginAction {
        let now = monotonicNanos()
        let rate = self.rate, burst = self.burst
        // Drained buckets (excess back to 0) are done.
        let drainNanos = { (b: Bucket) -> UInt64 in Nanos.add(Nanos.from(seconds: b.excess / (rate * 1000), limit: .max), Nanos.perSecond) }
        let excess: Double? = buckets.table.update(key.value(r), now: now, isExpired: { b, now in now > Nanos.add(b.last, drainNanos(b)) }) { entry in
            // The first request of a key waits for nothing; each later one adds one request
            // (1000 thousandths) less what drained at `rate` since the previous.
            var b = entry ?? Bucket(excess: 0, last: now)
            let elapsedMs = Double(Nanos.elapsed(from: b.last, to: now)) / 1e6
            let e = entry == nil ? 0 : max(b.excess - rate * elapsedMs + 1000, 0)
            if e > burst * 1000 { return nil }  // refused: the bucket is unchanged
            b.excess = e
            b.last = now
            entry = b
            return e
        }
        guard let excess else { return .respond(.errorMessage(rejectedCode, rejectedMessage)) }
        let waitSeconds = excess / (rate * 1000)
        if nodelay || waitSeconds <= 0 { return .next }
        return .delay(nanoseconds: Nanos.from(seconds: waitSeconds))
    }
}

/// limit-conn: at most `conn` requests in flight per key, `burst` more delayed, the rest
/// refused. The count drops when the request's log phase runs.
final class LimitConnPlugin: HTTPPlugin {
    static let name = "limit-conn"
    final class Counts: Sendable { let table = ShardedTable<Int>(capacity: PluginTableLimits.limitConn, plugin: "limit-conn") }

    let conn: Int
    let burst: Int
    let unitDelay: Double
    let key: LimitKey
    let counts: Counts
    let rejectedCode: Int
    let rejectedMessage: String?

    init(_ c: JSONValue, _ ctx: PluginCompileContext) {
        conn = PluginLimits.int(c["conn"], 1...Int(Int32.max), default: 1)
        burst = PluginLimits.int(c["burst"], 0...Int(Int32.max), default: 0)
        unitDelay = PluginLimits.double(c["default_conn_delay"], 0...PluginLimits.maxDelaySeconds, default: 0.1)
        key = LimitKey(c)
        counts = ctx.state.state("limit-conn/\(ctx.owner)/\(PluginFactory.fingerprint(c))") { Counts() }
        rejectedCode = PluginLimits.status(c["rejected_code"], default: 503)
        rejectedMessage = c["rejected_msg"]?.stringValue
    }

    var hasLogPhase: Bool { true }

    func access(_ r: PluginRequest) -> PluginAction {
        let k = key.value(r)
        // Both at most 2^31-1, so the sum and the in-flight count cannot overflow.
        let limit = conn + burst
        // nil: over the limit, or a new key while the table is full (refused, as NGINX's
        // limit_conn refuses when its zone is exhausted).
        let inFlight: Int? = counts.table.updateUnlessFull(k, now: 0, isExpired: { n, _ in n <= 0 }) { entry -> Int? in
            let n = (entry ?? 0) + 1
            if n > limit { return nil }
            entry = n
            return n
        } ?? nil
        guard let inFlight else { return .respond(.errorMessage(rejectedCode, rejectedMessage)) }
        r.scratch[ObjectIdentifier(self)] = k
        if inFlight > conn {
            return .delay(nanoseconds: Nanos.from(seconds: Double((inFlight - 1) / conn) * unitDelay))
        }
        return .next
    }

    func log(_ r: PluginRequest, _ info: PluginLogInfo) {
        guard let k = r.scratch.removeValue(forKey: ObjectIdentifier(self)) as? String else { return }
        counts.table.update(k, now: 0, isExpired: { n, _ in n <= 0 }) { entry in
            let n = (entry ?? 1) - 1
            entry = n > 0 ? n : nil
        }
    }
}
