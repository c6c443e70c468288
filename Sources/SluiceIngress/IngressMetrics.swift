import Prometheus

/// The controller's Prometheus metrics.
public final class IngressMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    let isLeader: Gauge
    let puts: Counter
    let patches: Counter
    let deletes: Counter
    let writeBytes: Counter
    let syncFailures: Counter
    let sliceEvents: Counter
    let apiReadBytes: Counter
    let translationErrors: Gauge
    let managedObjects: Gauge
    /// Secrets whose data the controller holds: those the current objects refer to.
    let secretsHeld: Gauge
    /// From the EndpointSlice's `endpoints.kubernetes.io/last-change-trigger-time` (when
    /// Kubernetes saw the pod change) to the moment the gateway accepted the new nodes;
    /// kube-proxy's network_programming_duration measured the same way.
    let programmingLatency: ValueHistogram
    /// From the controller receiving the slice event to the gateway accepting the nodes:
    /// the controller's own share, in milliseconds.
    let eventToWrite: ValueHistogram

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        isLeader = registry.makeGauge(name: "sluice_ingress_leader", help: "1 when this controller is the leader and writes to the gateway")
        puts = registry.makeCounter(name: "sluice_ingress_gateway_writes_total", labels: [("op", "put")], help: "Writes to the gateway by operation")
        patches = registry.makeCounter(name: "sluice_ingress_gateway_writes_total", labels: [("op", "patch")], help: "Writes to the gateway by operation")
        deletes = registry.makeCounter(name: "sluice_ingress_gateway_writes_total", labels: [("op", "delete")], help: "Writes to the gateway by operation")
        writeBytes = registry.makeCounter(name: "sluice_ingress_gateway_write_bytes_total", help: "Request body bytes written to the gateway")
        syncFailures = registry.makeCounter(name: "sluice_ingress_sync_failures_total", help: "Syncs that failed because the gateway could not be reached or failed")
        sliceEvents = registry.makeCounter(name: "sluice_ingress_endpoint_events_total", help: "EndpointSlice or Endpoints events received")
        apiReadBytes = registry.makeCounter(name: "sluice_ingress_apiserver_read_bytes_total", help: "Bytes read from the Kubernetes API server")
        translationErrors = registry.makeGauge(name: "sluice_ingress_translation_errors", help: "Kubernetes objects that could not be translated")
        managedObjects = registry.makeGauge(name: "sluice_ingress_managed_objects", help: "Gateway objects this controller wants to exist")
        secretsHeld = registry.makeGauge(
            name: "sluice_ingress_secrets_held", help: "Secrets whose data the controller holds (only those ApisixTls, ApisixUpstream, ApisixConsumer, plugins and Ingress tls refer to)")
        programmingLatency = registry.makeValueHistogram(
            name: "sluice_ingress_programming_latency_seconds",
            buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120], help: "EndpointSlice last-change-trigger-time to gateway nodes updated")
        eventToWrite = registry.makeValueHistogram(
            name: "sluice_ingress_event_to_write_milliseconds",
            buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000], help: "Endpoint event received to gateway nodes updated")
    }

    public func text() -> String { registry.emitToString() }
}
