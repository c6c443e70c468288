import SluiceCore

/// What the config store side reports to metrics: set by the store's sync loop.
public protocol StoreHealth: Sendable {
    /// Whether the store answered its last contact (the watch is up).
    var reachable: Bool { get }
    /// The sync loop's own metrics (Prometheus text), after `apisix_etcd_reachable`.
    var metricsText: String { get }
}

extension StoreHealth {
    public var metricsText: String { "" }
}

/// `--metrics-listen`: Prometheus text at `/apisix/prometheus/metrics`. For now the config
/// store's gauges, under APISIX's names so existing dashboards find them:
/// `apisix_etcd_reachable` and `apisix_etcd_modify_indexes{key=...}` (the applied revision as
/// `x_etcd_index`, and the highest mod revision per resource kind).
public struct MetricsAPI: APIHandler {
    public let service: ConfigService
    public let storeHealth: (any StoreHealth)?
    /// The data plane's metrics (connections, and the prometheus plugin's request metrics).
    public let dataPlane: (@Sendable () async -> String)?

    public init(service: ConfigService, storeHealth: (any StoreHealth)?, dataPlane: (@Sendable () async -> String)? = nil) {
        self.service = service
        self.storeHealth = storeHealth
        self.dataPlane = dataPlane
    }

    public func handle(_ request: APIRequest) async -> APIResponse {
        guard request.method == "GET" || request.method == "HEAD" else { return .error(405, "method not allowed") }
        guard request.path == "/apisix/prometheus/metrics" else { return .error(404, "not found") }
        var out = ""
        if let storeHealth {
            out += "# HELP apisix_etcd_reachable Config is being supplied by etcd or not\n"
            out += "# TYPE apisix_etcd_reachable gauge\n"
            out += "apisix_etcd_reachable \(storeHealth.reachable ? 1 : 0)\n"
            out += storeHealth.metricsText
        }
        out += "# HELP apisix_etcd_modify_indexes Etcd modify index for APISIX keys\n"
        out += "# TYPE apisix_etcd_modify_indexes gauge\n"
        for kind in ResourceKind.allCases {
            let highest = await service.list(kind).map(\.modifiedIndex).max() ?? 0
            out += "apisix_etcd_modify_indexes{key=\"\(kind.rawValue)\"} \(highest)\n"
        }
        out += "apisix_etcd_modify_indexes{key=\"x_etcd_index\"} \(await service.revision)\n"
        out += "# HELP sluice_config_objects_skipped_total Stored objects skipped at load or on a store change because they do not validate\n"
        out += "# TYPE sluice_config_objects_skipped_total counter\n"
        out += "sluice_config_objects_skipped_total \(await service.skippedObjects)\n"
        if let dataPlane { out += await dataPlane() }
        return APIResponse(status: 200, text: out, contentType: "text/plain; version=0.0.4")
    }
}
