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
            if let v, let s = r.value(of: v), !s.isEmpty { return s }
        case .combination(let t):
            let s = t.render(r)
            if !s.trimmingWhitespace().isEmpty { return s }
        }
        return r.remoteAddress
    }
}

/// Per-key state shared by every event loop, split into shards so that loops rarely wait
/// on each other; entries whose time is up are dropped as shards are used, so memory is
/// bounded by the keys active within one window.
final class ShardedTable<Value: Sendable>: Sendable {
    private let shards: [Locked]
    struct Shard {
        var entries: [String: Value] = [:]
        var operations = 0
    }
    final class Locked: Sendable {
        let mutex = Mutex(Shard())
    }

    init(shards: Int = 16) {
        self.shards = (0..<shards).map { _ in Locked() }
    }

    /// Runs `body` on the key's entry (nil when absent; set it to nil to remove it). Every
    /// 1,024 operations on a shard, entries `isExpired` says are done are removed.
    func update<R>(_ key: String, now: UInt64, isExpired: (Value, UInt64) -> Bool, _ body: (inout Value?) -> R) -> R {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in key.utf8 {
            h ^= UInt64(b)
            h &*= 0x0000_0100_0000_01B3
        }
        return shards[Int(h % UInt64(shards.count))].mutex.withLock { shard in
            shard.operations &+= 1
            if shard.operations & 1023 == 0 {
                shard.entries = shard.entries.filter { !isExpired($0.value, now) }
            }
            var v = shard.entries[key]
            let result = body(&v)
            shard.entries[key] = v
            return result
        }
    }

    var count: Int { shards.reduce(0) { sum, s in sum + s.mutex.withLock { $0.entries.count } } }
}

func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The counters of one limit-count config (or one `group`): fixed windows per key.
final class FixedWindowCounters: Sendable {
    struct Window: Sendable {
        var start: UInt64
        var count: Int
    }
    let table = ShardedTable<Window>()
    let windowNanos: UInt64

    init(windowSeconds: Int) { windowNanos = UInt64(windowSeconds) * 1_000_000_000 }

    /// Counts one request: whether it is within `limit`, what remains, and seconds until
    /// the window resets.
    func take(_ key: String, limit: Int, now: UInt64) -> (allowed: Bool, remaining: Int, reset: Int) {
        let window = windowNanos
        return table.update(key, now: now, isExpired: { w, now in now >= w.start + window }) { entry in
            var w = entry ?? Window(start: now, count: 0)
            if now >= w.start + window { w = Window(start: now, count: 0) }
            let reset = Int((w.start + window - now + 999_999_999) / 1_000_000_000)
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
        count = Int(c["count"]?.intValue ?? 1)
        window = Int(c["time_window"]?.intValue ?? 1)
        key = LimitKey(c)
        if let group = c["group"]?.stringValue {
            prefix = "group/\(group)"
        } else {
            prefix = "\(ctx.owner)/\(PluginFactory.fingerprint(c))"
        }
        if c["policy"] == "redis" {
            let options = RedisClient.Options(
                host: c["redis_host"]?.stringValue ?? "127.0.0.1", port: Int(c["redis_port"]?.intValue ?? 6379),
                username: c["redis_username"]?.stringValue, password: c["redis_password"]?.stringValue,
                database: Int(c["redis_database"]?.intValue ?? 0), timeout: .milliseconds(c["redis_timeout"]?.intValue ?? 1000))
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
        rejectedCode = Int(c["rejected_code"]?.intValue ?? 503)
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
                return self.decide(allowed: remaining >= 0, remaining: Int(remaining), reset: Int(ttl))
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
    final class Buckets: Sendable { let table = ShardedTable<Bucket>() }

    let rate: Double
    let burst: Double
    let nodelay: Bool
    let key: LimitKey
    let buckets: Buckets
    let rejectedCode: Int
    let rejectedMessage: String?

    init(_ c: JSONValue, _ ctx: PluginCompileContext) {
        rate = c["rate"]?.doubleValue ?? 1
        burst = c["burst"]?.doubleValue ?? 0
        nodelay = c["nodelay"] == true
        key = LimitKey(c)
        buckets = ctx.state.state("limit-req/\(ctx.owner)/\(PluginFactory.fingerprint(c))") { Buckets() }
        rejectedCode = Int(c["rejected_code"]?.intValue ?? 503)
        rejectedMessage = c["rejected_msg"]?.stringValue
    }

    func access(_ r: PluginRequest) -> PluginAction {
        let now = monotonicNanos()
        let rate = self.rate, burst = self.burst
        // Drained buckets (excess back to 0) are done.
        let drainNanos = { (b: Bucket) -> UInt64 in UInt64(b.excess / (rate * 1000) * 1e9) + 1_000_000_000 }
        let excess: Double? = buckets.table.update(key.value(r), now: now, isExpired: { b, now in now > b.last + drainNanos(b) }) { entry in
            // The first request of a key waits for nothing; each later one adds one request
            // (1000 thousandths) less what drained at `rate` since the previous.
            var b = entry ?? Bucket(excess: 0, last: now)
            let elapsedMs = Double(now &- b.last) / 1e6
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
        return .delay(nanoseconds: UInt64(waitSeconds * 1e9))
    }
}

/// limit-conn: at most `conn` requests in flight per key, `burst` more delayed, the rest
/// refused. The count drops when the request's log phase runs.
final class LimitConnPlugin: HTTPPlugin {
    static let name = "limit-conn"
    final class Counts: Sendable { let table = ShardedTable<Int>() }

    let conn: Int
    let burst: Int
    let unitDelay: Double
    let key: LimitKey
    let counts: Counts
    let rejectedCode: Int
    let rejectedMessage: String?

    init(_ c: JSONValue, _ ctx: PluginCompileContext) {
        conn = Int(c["conn"]?.intValue ?? 1)
        burst = Int(c["burst"]?.intValue ?? 0)
        unitDelay = c["default_conn_delay"]?.doubleValue ?? 0.1
        key = LimitKey(c)
        counts = ctx.state.state("limit-conn/\(ctx.owner)/\(PluginFactory.fingerprint(c))") { Counts() }
        rejectedCode = Int(c["rejected_code"]?.intValue ?? 503)
        rejectedMessage = c["rejected_msg"]?.stringValue
    }

    var hasLogPhase: Bool { true }

    func access(_ r: PluginRequest) -> PluginAction {
        let k = key.value(r)
        let limit = conn + burst
        let inFlight: Int? = counts.table.update(k, now: 0, isExpired: { n, _ in n <= 0 }) { entry in
            let n = (entry ?? 0) + 1
            if n > limit { return nil }
            entry = n
            return n
        }
        guard let inFlight else { return .respond(.errorMessage(rejectedCode, rejectedMessage)) }
        r.scratch[ObjectIdentifier(self)] = k
        if inFlight > conn {
            return .delay(nanoseconds: UInt64(Double((inFlight - 1) / conn) * unitDelay * 1e9))
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
