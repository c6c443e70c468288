import Prometheus
import Synchronization
import SluiceCore

/// The gateway's Prometheus metrics, under APISIX's names and labels so that existing
/// dashboards work: `apisix_http_status`, `apisix_http_latency`, `apisix_bandwidth`. The
/// series objects (atomic counters, histograms) are found through a sharded cache keyed by
/// label values, so a request takes a shard lock only to look its series up.
public final class HTTPMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    /// APISIX's default buckets for `apisix_http_latency`, in milliseconds.
    public static let latencyBuckets: [Double] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000]
    private let counters = ShardedTable<Prometheus.Counter>()
    private let histograms = ShardedTable<ValueHistogram>()

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
    }

    func counter(_ name: String, _ help: String, _ labels: [(String, String)]) -> Prometheus.Counter {
        let key = name + "\u{1}" + labels.map(\.1).joined(separator: "\u{1}")
        let registry = self.registry
        return counters.update(key, now: 0, isExpired: { _, _ in false }) { entry in
            if let c = entry { return c }
            let c = registry.makeCounter(name: name, labels: labels, help: help)
            entry = c
            return c
        }
    }

    func histogram(_ name: String, _ help: String, _ labels: [(String, String)]) -> ValueHistogram {
        let key = name + "\u{1}" + labels.map(\.1).joined(separator: "\u{1}")
        let registry = self.registry
        return histograms.update(key, now: 0, isExpired: { _, _ in false }) { entry in
            if let h = entry { return h }
            let h = registry.makeValueHistogram(
                descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: labels, buckets: Self.latencyBuckets)
            entry = h
            return h
        }
    }

    /// The series one route's requests with one status, consumer and node go to: found once,
    /// then reused, so a request does one lookup instead of six.
    final class Series: Sendable {
        let status: Prometheus.Counter
        let request: ValueHistogram
        let upstream: ValueHistogram
        let apisix: ValueHistogram
        let ingress: Prometheus.Counter
        let egress: Prometheus.Counter

        init(_ m: HTTPMetrics, code: Int, route: String, matchedURI: String, matchedHost: String, service: String, consumer: String, node: String) {
            status = m.counter("apisix_http_status", "HTTP status codes per service in APISIX", [
                ("code", String(code)), ("route", route), ("matched_uri", matchedURI), ("matched_host", matchedHost), ("service", service),
                ("consumer", consumer), ("node", node),
            ])
            let base = [("route", route), ("service", service), ("consumer", consumer), ("node", node)]
            let help = "HTTP request latency in milliseconds per service in APISIX"
            request = m.histogram("apisix_http_latency", help, [("type", "request")] + base)
            upstream = m.histogram("apisix_http_latency", help, [("type", "upstream")] + base)
            apisix = m.histogram("apisix_http_latency", help, [("type", "apisix")] + base)
            let bandwidth = "Total bandwidth in bytes consumed per service in APISIX"
            ingress = m.counter("apisix_bandwidth", bandwidth, [("type", "ingress")] + base)
            egress = m.counter("apisix_bandwidth", bandwidth, [("type", "egress")] + base)
        }

        func record(latencyMs: Double, upstreamLatencyMs: Double?, requestBytes: Int, responseBytes: Int) {
            status.increment()
            request.record(latencyMs)
            if let upstreamLatencyMs {
                upstream.record(upstreamLatencyMs)
                apisix.record(max(0, latencyMs - upstreamLatencyMs))
            }
            ingress.increment(by: Int64(requestBytes))
            egress.increment(by: Int64(responseBytes))
        }
    }

    /// The metrics as Prometheus text.
    public func text() -> String { registry.emitToString() }
}

/// prometheus: reports each request of its route (or of every route, as a global rule) to
/// the gateway's metrics, served on `--metrics-listen` at `/apisix/prometheus/metrics`.
final class PrometheusPlugin: HTTPPlugin {
    static let name = "prometheus"
    let metrics: HTTPMetrics?
    let preferName: Bool

    /// What varies between requests of one route (and, as a global rule, the route too).
    struct SeriesKey: Hashable, Sendable {
        var code: Int
        var route: String
        var consumer: String
        var node: String
    }
    let series = Mutex<[SeriesKey: HTTPMetrics.Series]>([:])

    init(_ c: JSONValue, _ ctx: PluginCompileContext) {
        metrics = ctx.metrics
        preferName = c["prefer_name"] == true
    }

    var hasLogPhase: Bool { true }

    func log(_ r: PluginRequest, _ info: PluginLogInfo) {
        guard let metrics else { return }
        let key = SeriesKey(code: info.status, route: r.routeID, consumer: r.consumer?.username ?? "", node: info.node ?? "")
        let found = series.withLock { $0[key] }
        let s: HTTPMetrics.Series
        if let found {
            s = found
        } else {
            let route = preferName ? (r.routeName ?? r.routeID) : r.routeID
            let service = preferName ? (r.serviceName ?? r.serviceID ?? "") : (r.serviceID ?? "")
            s = HTTPMetrics.Series(
                metrics, code: key.code, route: route, matchedURI: r.matchedURI, matchedHost: r.matchedHost, service: service,
                consumer: key.consumer, node: key.node)
            series.withLock { $0[key] = s }
        }
        s.record(
            latencyMs: Double(info.latencyNanos) / 1e6, upstreamLatencyMs: info.upstreamLatencyNanos.map { Double($0) / 1e6 },
            requestBytes: info.requestBytes, responseBytes: info.responseBytes)
    }
}
