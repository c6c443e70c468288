import Prometheus
import Synchronization
import SluiceCore

/// The gateway's Prometheus metrics, under APISIX's names and labels so that existing
/// dashboards work: `apisix_http_status`, `apisix_http_latency`, `apisix_bandwidth`.
///
/// A request's labels (route, service, consumer, upstream node, status) select one `Series`:
/// its status counter, latency histograms and bandwidth counters. Label values come from
/// config and from discovery (nodes come and go with pods), so the number of series is
/// capped at `PluginTableLimits.metricsSeries`: a new one past the cap evicts the least
/// recently used eighth, whose metrics leave the registry (a metric shared with a live series
/// stays); an evicted series that is used again starts from 0, which Prometheus reads as a
/// counter reset. Finding a series takes this object's lock only when a prometheus plugin
/// meets a label set for the first time; the plugins cache what they found.
public final class HTTPMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    /// APISIX's default buckets for `apisix_http_latency`, in milliseconds.
    public static let latencyBuckets: [Double] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000]
    let maxSeries: Int

    /// The labels of one series.
    struct Labels: Hashable, Sendable {
        var code: Int
        var route: String
        var matchedURI: String
        var matchedHost: String
        var service: String
        var consumer: String
        var node: String
    }

    struct Table: @unchecked Sendable {
        // Counter and ValueHistogram are Sendable classes; the dictionaries holding them are
        // only touched under the mutex.
        var series: [Labels: Series] = [:]
        /// Each registered metric, by name and labels, with the number of series using it.
        var counters: [String: (metric: Prometheus.Counter, users: Int)] = [:]
        var histograms: [String: (metric: ValueHistogram, users: Int)] = [:]
    }
    private let table = Mutex(Table())

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry(), maxSeries: Int = PluginTableLimits.metricsSeries) {
        self.registry = registry
        self.maxSeries = max(1, maxSeries)
    }

    static func key(_ name: String, _ labels: [(String, String)]) -> String {
        name + "\u{1}" + labels.map { $0.0 + "\u{2}" + $0.1 }.joined(separator: "\u{1}")
    }

    /// The series of `labels`, made (with its metrics) the first time.
    func series(_ labels: Labels, now: UInt64 = monotonicNanos()) -> Series {
        let registry = self.registry
        let maxSeries = self.maxSeries
        return table.withLock { t in
            if let s = t.series[labels] {
                s.touch(now)
                return s
            }
            if t.series.count >= maxSeries { Self.evict(&t, registry) }
            func counter(_ name: String, _ help: String, _ l: [(String, String)]) -> Prometheus.Counter {
                let k = Self.key(name, l)
                if let found = t.counters[k] {
                    t.counters[k] = (found.metric, found.users + 1)
                    return found.metric
                }
                let c = registry.makeCounter(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: l)
                t.counters[k] = (c, 1)
                return c
            }
            func histogram(_ name: String, _ help: String, _ l: [(String, String)]) -> ValueHistogram {
                let k = Self.key(name, l)
                if let found = t.histograms[k] {
                    t.histograms[k] = (found.metric, found.users + 1)
                    return found.metric
                }
                let h = registry.makeValueHistogram(
                    descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: l, buckets: Self.latencyBuckets)
                t.histograms[k] = (h, 1)
                return h
            }
            let s = Series(labels: labels, now: now, counter: counter, histogram: histogram)
            t.series[labels] = s
            return s
        }
    }

    /// Drops one user of each metric in `keys`; a metric no series uses any more leaves the
    /// registry (metrics shared with a live series stay).
    private static func release<M>(_ keys: [String], from table: inout [String: (metric: M, users: Int)], unregister: (M) -> Void) {
        for k in keys {
            guard let entry = table[k] else { continue }
            if entry.users > 1 {
                table[k] = (entry.metric, entry.users - 1)
            } else {
                table.removeValue(forKey: k)
                unregister(entry.metric)
            }
        }
    }

    /// Drops the least recently used eighth of the series; unregisters the metrics no
    /// remaining series uses.
    private static func evict(_ t: inout Table, _ registry: PrometheusCollectorRegistry) {
        let n = max(1, t.series.count / 8)
        let victims = t.series.values.sorted { $0.lastUsed < $1.lastUsed }.prefix(n)
        for s in victims {
            s.evicted.store(true, ordering: .relaxed)
            t.series.removeValue(forKey: s.labels)
            Self.release(s.counterKeys, from: &t.counters) { registry.unregisterCounter($0) }
            Self.release(s.histogramKeys, from: &t.histograms) { registry.unregisterValueHistogram($0) }
        }
        PluginTableStats.counter("prometheus")?.evict(victims.count)
    }

    var seriesCount: Int { table.withLock { $0.series.count } }
    var registeredMetrics: Int { table.withLock { $0.counters.count + $0.histograms.count } }

    /// The series one route's requests with one status, consumer and node go to.
    final class Series: Sendable {
        let labels: Labels
        let status: Prometheus.Counter
        let request: ValueHistogram
        let upstream: ValueHistogram
        let apisix: ValueHistogram
        let ingress: Prometheus.Counter
        let egress: Prometheus.Counter
        /// The registry keys of its metrics, for eviction.
        let counterKeys: [String]
        let histogramKeys: [String]
        /// Set when the series was evicted: its metrics may be out of the registry, and a
        /// plugin that cached it looks it up again.
        let evicted = Atomic<Bool>(false)
        /// When it last recorded a request (monotonic nanoseconds): the eviction order.
        private let used: Atomic<UInt64>

        var lastUsed: UInt64 { used.load(ordering: .relaxed) }
        var isLive: Bool { !evicted.load(ordering: .relaxed) }
        func touch(_ now: UInt64) { used.store(now, ordering: .relaxed) }

        init(
            labels l: Labels, now: UInt64, counter: (String, String, [(String, String)]) -> Prometheus.Counter,
            histogram: (String, String, [(String, String)]) -> ValueHistogram
        ) {
            labels = l
            used = Atomic(now)
            let statusLabels = [
                ("code", String(l.code)), ("route", l.route), ("matched_uri", l.matchedURI), ("matched_host", l.matchedHost), ("service", l.service),
                ("consumer", l.consumer), ("node", l.node),
            ]
            let base = [("route", l.route), ("service", l.service), ("consumer", l.consumer), ("node", l.node)]
            let latency = "HTTP request latency in milliseconds per service in APISIX"
            let bandwidth = "Total bandwidth in bytes consumed per service in APISIX"
            status = counter("apisix_http_status", "HTTP status codes per service in APISIX", statusLabels)
            request = histogram("apisix_http_latency", latency, [("type", "request")] + base)
            upstream = histogram("apisix_http_latency", latency, [("type", "upstream")] + base)
            apisix = histogram("apisix_http_latency", latency, [("type", "apisix")] + base)
            ingress = counter("apisix_bandwidth", bandwidth, [("type", "ingress")] + base)
            egress = counter("apisix_bandwidth", bandwidth, [("type", "egress")] + base)
            counterKeys = [
                HTTPMetrics.key("apisix_http_status", statusLabels), HTTPMetrics.key("apisix_bandwidth", [("type", "ingress")] + base),
                HTTPMetrics.key("apisix_bandwidth", [("type", "egress")] + base),
            ]
            histogramKeys = ["request", "upstream", "apisix"].map { HTTPMetrics.key("apisix_http_latency", [("type", $0)] + base) }
        }

        func record(latencyMs: Double, upstreamLatencyMs: Double?, requestBytes: Int, responseBytes: Int, now: UInt64) {
            touch(now)
            status.increment()
            request.record(latencyMs)
            if let upstreamLatencyMs {
                upstream.record(upstreamLatencyMs)
                apisix.record(max(0, latencyMs - upstreamLatencyMs))
            }
            // Counter.increment(by:) traps on a negative amount.
            ingress.increment(by: Int64(max(0, requestBytes)))
            egress.increment(by: Int64(max(0, responseBytes)))
        }
    }

    /// The metrics as Prometheus text, with the plugin state tables' eviction counters.
    public func text() -> String { registry.emitToString() + PluginTableStats.prometheusText() }
}

/// prometheus: reports each request of its route (or of every route, as a global rule) to
/// the gateway's metrics, served on `--metrics-listen` at `/apisix/prometheus/metrics`.
final class PrometheusPlugin: HTTPPlugin {
    static let name = "prometheus"
    let metrics: HTTPMetrics?
    let preferName: Bool

    /// The series this instance found, by their labels: a cache in front of HTTPMetrics,
    /// emptied when it reaches `PluginTableLimits.prometheusCache` entries.
    let series = Mutex<[HTTPMetrics.Labels: HTTPMetrics.Series]>([:])

    init(_ c: JSONValue, _ ctx: PluginCompileContext) {
        metrics = ctx.metrics
        preferName = c["prefer_name"] == true
    }

    var hasLogPhase: Bool { true }

    func log(_ r: PluginRequest, _ info: PluginLogInfo) {
        guard let metrics else { return }
        let route = preferName ? (r.routeName ?? r.routeID) : r.routeID
        let service = preferName ? (r.serviceName ?? r.serviceID ?? "") : (r.serviceID ?? "")
        let labels = HTTPMetrics.Labels(
            code: info.status, route: route, matchedURI: r.matchedURI, matchedHost: r.matchedHost, service: service,
            consumer: r.consumer?.username ?? "", node: info.node ?? "")
        let now = monotonicNanos()
        let s: HTTPMetrics.Series
        if let found = series.withLock({ $0[labels] }), found.isLive {
            s = found
        } else {
            // First use here, or HTTPMetrics evicted it: look it up (again).
            s = metrics.series(labels, now: now)
            series.withLock { cache in
                if cache[labels] == nil, cache.count >= PluginTableLimits.prometheusCache { cache.removeAll(keepingCapacity: true) }
                cache[labels] = s
            }
        }
        s.record(
            latencyMs: Double(info.latencyNanos) / 1e6, upstreamLatencyMs: info.upstreamLatencyNanos.map { Double($0) / 1e6 },
            requestBytes: info.requestBytes, responseBytes: info.responseBytes, now: now)
    }
}
