import Synchronization
import SluiceCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: Checked time arithmetic

/// Nanosecond arithmetic on configured and measured durations: saturating, never trapping.
enum Nanos {
    static let perSecond: UInt64 = 1_000_000_000

    /// `seconds` in nanoseconds, at most `limit`: NaN, zero and negatives are 0.
    static func from(seconds: Double, limit: UInt64 = PluginLimits.maxDelayNanos) -> UInt64 {
        guard seconds > 0 else { return 0 }  // false for NaN too
        let n = seconds * 1e9
        // Double(UInt64.max) rounds up to 2^64, so every smaller n converts exactly.
        return n >= Double(limit) ? limit : UInt64(n)
    }

    /// Whole `seconds` in nanoseconds, at most `limit`.
    static func from(seconds: Int, limit: UInt64 = .max) -> UInt64 {
        guard seconds > 0 else { return 0 }
        let (n, overflow) = UInt64(seconds).multipliedReportingOverflow(by: perSecond)
        return overflow ? limit : min(n, limit)
    }

    /// `a + b`, or UInt64.max past it.
    static func add(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let (s, overflow) = a.addingReportingOverflow(b)
        return overflow ? .max : s
    }

    /// `a - b`, or 0 when `b` is later (two loops can read the clock in one order and take a
    /// shard lock in the other).
    static func elapsed(from b: UInt64, to a: UInt64) -> UInt64 { a > b ? a - b : 0 }
}

func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Nanos.add(Nanos.from(seconds: Int(ts.tv_sec)), UInt64(clamping: ts.tv_nsec))
}

// MARK: Table capacities and their metrics

/// The caps of the plugin state tables keyed by client input (a client address, a header,
/// a Host and path): with them, no sequence of requests grows the gateway's memory without
/// bound. Each table of one plugin config (one route's limit-count, say) holds at most this
/// many keys; NGINX's `limit_req_zone`/`limit_conn_zone` are the model.
/// - limit-count, limit-req, api-breaker: when a new key finds its table full, the entries
///   whose time is up go first, then the least recently used eighth of the shard (NGINX's
///   limit_req does the same with its LRU queue). A limit on an evicted key starts over.
/// - limit-conn: its entries are requests in flight, gone when each ends; a new key that
///   finds the table full is refused with `rejected_code`, as NGINX's limit_conn does, since
///   forgetting a count would let more requests in than configured.
/// - prometheus: at most `metricsSeries` label sets of `apisix_http_status` (and their
///   latency and bandwidth series); past that the least recently used go, and come back
///   (from 0) if they are used again.
/// Evictions and refusals are counted in `sluice_plugin_table_evictions_total{plugin}` and
/// `sluice_plugin_table_full_rejections_total{plugin}`, served with the other metrics.
public enum PluginTableLimits {
    public static let limitCount = 100_000
    public static let limitReq = 100_000
    public static let limitConn = 100_000
    public static let apiBreaker = 50_000
    public static let metricsSeries = 10_000
    /// A prometheus plugin's own cache of the series it found: cleared when full.
    public static let prometheusCache = 4_096
}

/// Counts what the capped tables dropped, per plugin, for the metrics endpoint.
public enum PluginTableStats {
    public static let plugins = ["api-breaker", "limit-conn", "limit-count", "limit-req", "prometheus"]

    final class Counter: Sendable {
        let evicted = Atomic<Int>(0)
        let refused = Atomic<Int>(0)
        func evict(_ n: Int) { evicted.wrappingAdd(n, ordering: .relaxed) }
        func refuse() { refused.wrappingAdd(1, ordering: .relaxed) }
    }

    static let counters: [String: Counter] = Dictionary(uniqueKeysWithValues: plugins.map { ($0, Counter()) })
    static func counter(_ plugin: String) -> Counter? { counters[plugin] }

    /// Entries of `plugin`'s tables evicted because a table was full, since the process started.
    public static func evictions(_ plugin: String) -> Int { counters[plugin]?.evicted.load(ordering: .relaxed) ?? 0 }
    /// New keys `plugin` refused because its table was full (limit-conn).
    public static func refusals(_ plugin: String) -> Int { counters[plugin]?.refused.load(ordering: .relaxed) ?? 0 }

    /// The two counter families in Prometheus text format.
    public static func prometheusText() -> String {
        var out = "# HELP sluice_plugin_table_evictions_total Plugin state entries (keyed by client input) evicted because their table was full\n"
        out += "# TYPE sluice_plugin_table_evictions_total counter\n"
        for p in plugins { out += "sluice_plugin_table_evictions_total{plugin=\"\(p)\"} \(evictions(p))\n" }
        out += "# HELP sluice_plugin_table_full_rejections_total Requests refused because a plugin state table was full\n"
        out += "# TYPE sluice_plugin_table_full_rejections_total counter\n"
        out += "sluice_plugin_table_full_rejections_total{plugin=\"limit-conn\"} \(refusals("limit-conn"))\n"
        return out
    }
}

// MARK: The table

/// Per-key state shared by every event loop, split into shards so that loops rarely wait
/// on each other. Every 1,024 operations on a shard, entries whose time is up are dropped;
/// a shard also holds at most `capacity / shards` keys (see `PluginTableLimits`): a new key
/// that finds it full first drops the expired entries, then the least recently used eighth.
final class ShardedTable<Value: Sendable>: Sendable {
    struct Entry {
        var value: Value
        /// The shard's clock at the last use: distinct per entry, so the least recently used
        /// are found by it exactly.
        var used: UInt64
    }
    struct Shard {
        var entries: [String: Entry] = [:]
        var clock: UInt64 = 0
    }
    final class Locked: Sendable {
        let mutex = Mutex(Shard())
    }

    private let shards: [Locked]
    let shardCapacity: Int
    private let stats: PluginTableStats.Counter?

    init(shards: Int = 16, capacity: Int = .max, plugin: String? = nil) {
        let n = max(1, shards)
        self.shards = (0..<n).map { _ in Locked() }
        shardCapacity = max(1, capacity / n)
        stats = plugin.flatMap(PluginTableStats.counter)
    }

    private func shard(_ key: String) -> Locked {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in key.utf8 {
            h ^= UInt64(b)
            h &*= 0x0000_0100_0000_01B3
        }
        return shards[Int(h % UInt64(shards.count))]
    }

    /// Runs `body` on the key's entry (nil when absent; set it to nil to remove it).
    func update<R>(_ key: String, now: UInt64, isExpired: (Value, UInt64) -> Bool, _ body: (inout Value?) -> R) -> R {
        shard(key).mutex.withLock { s in
            let existing = tick(&s, key, now, isExpired)
            var v = existing
            let result = body(&v)
            store(&s, key, v, existed: existing != nil, now, isExpired)
            return result
        }
    }

    /// As `update`, but a key that is not in the table and finds it full (after its expired
    /// entries went) is not admitted: `body` does not run and the answer is nil.
    func updateUnlessFull<R>(_ key: String, now: UInt64, isExpired: (Value, UInt64) -> Bool, _ body: (inout Value?) -> R) -> R? {
        shard(key).mutex.withLock { s -> R? in
            let existing = tick(&s, key, now, isExpired)
            if existing == nil, s.entries.count >= shardCapacity {
                sweep(&s, now, isExpired)
                if s.entries.count >= shardCapacity {
                    stats?.refuse()
                    return nil
                }
            }
            var v = existing
            let result = body(&v)
            store(&s, key, v, existed: existing != nil, now, isExpired)
            return result
        }
    }

    /// Advances the shard's clock, sweeps every 1,024 operations, and reads the key.
    private func tick(_ s: inout Shard, _ key: String, _ now: UInt64, _ isExpired: (Value, UInt64) -> Bool) -> Value? {
        s.clock &+= 1
        if s.clock & 1023 == 0 { sweep(&s, now, isExpired) }
        return s.entries[key]?.value
    }

    private func store(_ s: inout Shard, _ key: String, _ value: Value?, existed: Bool, _ now: UInt64, _ isExpired: (Value, UInt64) -> Bool) {
        guard let value else {
            if existed { s.entries.removeValue(forKey: key) }
            return
        }
        if !existed, s.entries.count >= shardCapacity {
            sweep(&s, now, isExpired)
            if s.entries.count >= shardCapacity { evictLeastRecentlyUsed(&s) }
        }
        s.entries[key] = Entry(value: value, used: s.clock)
    }

    private func sweep(_ s: inout Shard, _ now: UInt64, _ isExpired: (Value, UInt64) -> Bool) {
        s.entries = s.entries.filter { !isExpired($0.value.value, now) }
    }

    /// Drops the least recently used eighth of the shard (at least one entry): O(n log n)
    /// once per n/8 new keys.
    private func evictLeastRecentlyUsed(_ s: inout Shard) {
        let n = max(1, s.entries.count / 8)
        var used = s.entries.values.map(\.used)
        used.sort()
        guard let threshold = used.prefix(n).last else { return }
        let before = s.entries.count
        s.entries = s.entries.filter { $0.value.used > threshold }
        stats?.evict(before - s.entries.count)
    }

    var count: Int { shards.reduce(0) { sum, s in sum + s.mutex.withLock { $0.entries.count } } }
}
