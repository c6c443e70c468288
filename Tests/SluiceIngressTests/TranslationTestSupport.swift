import KubeClient
import SluiceCore
import SluiceIngress
import Testing

// Builders for translator inputs: every object is decoded from JSON by the KubeClient
// models, as the controller receives it from the API server.

/// JSON text → value; a malformed literal in a test is a test bug, reported as a failure.
func json(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) -> JSONValue {
    do {
        return try JSONValue.parse(text)
    } catch {
        Issue.record("bad test JSON: \(error)\n\(text)", sourceLocation: sourceLocation)
        return .null
    }
}

/// `{"metadata": {...}, "spec": spec}`.
func kubeObject(
    _ name: String, namespace: String? = "default", generation: Int? = nil, annotations: [String: String] = [:], spec: JSONValue
) -> JSONValue {
    var meta: [String: JSONValue] = ["name": .string(name)]
    if let namespace { meta["namespace"] = .string(namespace) }
    if let generation { meta["generation"] = .int(Int64(generation)) }
    if !annotations.isEmpty { meta["annotations"] = .object(annotations.mapValues { .string($0) }) }
    return ["metadata": .object(meta), "spec": spec]
}

let managedBy: JSONValue = ["managed-by": "sluice-ingress"]

extension ClusterState {
    mutating func addService(
        _ name: String, ns: String = "default", clusterIP: String? = "10.96.0.10", type: String? = nil, externalName: String? = nil,
        ports: String = #"[{"name": "http", "port": 80, "targetPort": 8080}]"#
    ) throws {
        var spec: [String: JSONValue] = ["ports": json(ports)]
        if let clusterIP { spec["clusterIP"] = .string(clusterIP) }
        if let type { spec["type"] = .string(type) }
        if let externalName { spec["externalName"] = .string(externalName) }
        services[ClusterState.key(ns, name)] = try KubeClient.Service(json: kubeObject(name, namespace: ns, spec: .object(spec)))
    }

    /// A Secret whose `data` is the base64 of each value, as the API server serves it.
    mutating func addSecret(_ name: String, ns: String = "default", _ data: [String: String]) throws {
        let object: JSONValue = [
            "metadata": ["name": .string(name), "namespace": .string(ns)],
            "data": .object(data.mapValues { .string(Base64.encode($0)) }),
        ]
        secrets[ClusterState.key(ns, name)] = try Secret(json: object)
    }

    mutating func addRoute(_ name: String, ns: String = "default", generation: Int? = nil, _ spec: String) throws {
        apisixRoutes[ClusterState.key(ns, name)] = try ApisixRoute(json: kubeObject(name, namespace: ns, generation: generation, spec: json(spec)))
    }

    mutating func addUpstream(_ name: String, ns: String = "default", generation: Int? = nil, _ spec: String) throws {
        apisixUpstreams[ClusterState.key(ns, name)] = try ApisixUpstream(json: kubeObject(name, namespace: ns, generation: generation, spec: json(spec)))
    }

    mutating func addTls(_ name: String, ns: String = "default", _ spec: String) throws {
        apisixTlses[ClusterState.key(ns, name)] = try ApisixTls(json: kubeObject(name, namespace: ns, spec: json(spec)))
    }

    mutating func addConsumer(_ name: String, ns: String = "default", _ spec: String) throws {
        apisixConsumers[ClusterState.key(ns, name)] = try ApisixConsumer(json: kubeObject(name, namespace: ns, spec: json(spec)))
    }

    mutating func addPluginConfig(_ name: String, ns: String = "default", generation: Int? = nil, _ spec: String) throws {
        apisixPluginConfigs[ClusterState.key(ns, name)] = try ApisixPluginConfig(
            json: kubeObject(name, namespace: ns, generation: generation, spec: json(spec)))
    }

    mutating func addGlobalRule(_ name: String, ns: String = "default", _ spec: String) throws {
        apisixGlobalRules[ClusterState.key(ns, name)] = try ApisixGlobalRule(json: kubeObject(name, namespace: ns, spec: json(spec)))
    }

    mutating func addIngress(_ name: String, ns: String = "default", annotations: [String: String] = [:], _ spec: String) throws {
        ingresses[ClusterState.key(ns, name)] = try Ingress(json: kubeObject(name, namespace: ns, annotations: annotations, spec: json(spec)))
    }

    mutating func addIngressClass(_ name: String, isDefault: Bool) throws {
        let annotations = isDefault ? [IngressClass.defaultClassAnnotation: "true"] : [:]
        ingressClasses[ClusterState.key(nil, name)] = try IngressClass(
            json: kubeObject(name, namespace: nil, annotations: annotations, spec: ["controller": "apisix.apache.org/apisix-ingress-controller"]))
    }
}

extension Translation {
    func route(_ id: String) -> JSONValue? { objects[ObjectKey(.routes, id)] }
    func upstream(_ id: String) -> JSONValue? { objects[ObjectKey(.upstreams, id)] }
    func streamRoute(_ id: String) -> JSONValue? { objects[ObjectKey(.streamRoutes, id)] }
    func ssl(_ id: String) -> JSONValue? { objects[ObjectKey(.ssls, id)] }
    func consumer(_ id: String) -> JSONValue? { objects[ObjectKey(.consumers, id)] }

    /// Keys of the objects of one kind, sorted.
    func ids(_ kind: ResourceKind) -> [String] { objects.keys.filter { $0.kind == kind }.map(\.id).sorted() }

    /// The error for an ApisixRoute, "" when it translated.
    func routeError(_ name: String, ns: String = "default") -> String { errors[SourceRef(.apisixRoute, ns, name)] ?? "" }
}

func translate(_ c: ClusterState, ingressClass: String = "sluice") -> Translation {
    Translator(ingressClass: ingressClass).translate(c)
}

/// The cluster most route tests start from: Service default/httpbin with port 80 ("http",
/// target 8080).
func httpbinCluster() throws -> ClusterState {
    var c = ClusterState()
    try c.addService("httpbin")
    return c
}

/// A one-rule ApisixRoute spec on default/httpbin:80 with `extra` fields merged into the rule.
func ruleSpec(_ extra: String = "", match: String = #"{"paths": ["/*"]}"#, backends: String = #"[{"serviceName": "httpbin", "servicePort": 80}]"#)
    -> String
{
    let rest = extra.isEmpty ? "" : ", " + extra
    return #"{"http": [{"name": "rule1", "match": \#(match), "backends": \#(backends)\#(rest)}]}"#
}

/// The httpbin port as `EndpointSource` carries it.
let httpbinPort = KubeClient.Service.Port(name: "http", port: 80, targetPort: .number(8080), protocol: "TCP", appProtocol: nil)
