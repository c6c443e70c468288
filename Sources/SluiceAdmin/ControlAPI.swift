import SluiceCore
import SluiceStore

/// The control API (`--control-listen`): what this gateway is serving right now.
public struct ControlAPI: APIHandler {
    public let service: ConfigService
    /// The node sets of `discovery_type: kubernetes`, when the gateway follows a cluster.
    public let kubernetesDiscoveryDump: (@Sendable () async -> JSONValue)?
    /// What the TLS listeners serve (names, certificate types, validity, never keys).
    public let certificates: (@Sendable () async -> JSONValue)?
    /// Health checks' view: every checked upstream (nil), or the one of that name.
    public let healthcheck: (@Sendable (String?) async -> JSONValue?)?

    public init(
        service: ConfigService, kubernetesDiscoveryDump: (@Sendable () async -> JSONValue)? = nil,
        certificates: (@Sendable () async -> JSONValue)? = nil, healthcheck: (@Sendable (String?) async -> JSONValue?)? = nil
    ) {
        self.service = service
        self.healthcheck = healthcheck
        self.kubernetesDiscoveryDump = kubernetesDiscoveryDump
        self.certificates = certificates
    }

    public func handle(_ request: APIRequest) async -> APIResponse {
        guard request.method == "GET" else { return .error(405, "method \(request.method) is not allowed") }
        let parts = request.path.split(separator: "/").map(String.init)
        guard parts.count >= 2, parts[0] == "v1" else { return .error(404, "not found") }
        switch (parts[1], parts.count) {
        case ("routes", 2): return await values(.routes)
        case ("route", 3): return await value(.routes, parts[2])
        case ("upstreams", 2): return await values(.upstreams)
        case ("upstream", 3): return await value(.upstreams, parts[2])
        case ("services", 2): return await values(.services)
        case ("service", 3): return await value(.services, parts[2])
        case ("ssls", 2), ("certificates", 2):
            guard let certificates else { return APIResponse(status: 200, body: ["ssls": .array([]), "failed": .array([])]) }
            return APIResponse(status: 200, body: await certificates())
        case ("healthcheck", 2):
            return APIResponse(status: 200, body: await healthcheck?(nil) ?? .array([]))
        case ("healthcheck", 4) where ["upstreams", "routes", "services"].contains(parts[2]):
            // APISIX's /v1/healthcheck/upstreams/1 (and routes/2 for an inline upstream).
            guard let h = await healthcheck?("/apisix/\(parts[2])/\(parts[3])") ?? nil else {
                return .error(404, "no checker for /apisix/\(parts[2])/\(parts[3])")
            }
            return APIResponse(status: 200, body: h)
        case ("discovery", 4) where parts[2] == "kubernetes" && parts[3] == "dump":
            guard let dump = kubernetesDiscoveryDump else {
                return .error(404, "kubernetes discovery is off: start the gateway with --kubernetes-discovery")
            }
            return APIResponse(status: 200, body: await dump())
        case ("schema", 2):
            var all: [String: JSONValue] = [:]
            for kind in ResourceKind.allCases { if let s = Schemas.schema(for: kind) { all[kind.rawValue] = s } }
            return APIResponse(status: 200, body: .object(all))
        default:
            return .error(404, "not found")
        }
    }

    private func values(_ kind: ResourceKind) async -> APIResponse {
        APIResponse(status: 200, body: .array(await service.list(kind).map(\.value)))
    }

    private func value(_ kind: ResourceKind, _ id: String) async -> APIResponse {
        guard let e = await service.get(kind, id) else { return .error(404, "not found") }
        return APIResponse(status: 200, body: e.value)
    }
}
