import KubeClient
import SluiceCore

/// Fills an upstream's nodes from the endpoints of its Service port. Pure: it reads the
/// slices (or the legacy Endpoints object) it is given.
public enum NodeResolver {
    /// Every endpoint node weighs 100, as the APISIX ingress controller writes them.
    public static let defaultWeight: Int64 = 100

    /// Nodes from the Service's EndpointSlices. A subset keeps only endpoints whose pod
    /// (`targetRef`) carries all the subset's labels; `podLabels` maps `ns/pod` to labels.
    public static func nodes(
        _ source: EndpointSource, slices: [EndpointSlice], podLabels: (String) -> [String: String]? = { _ in nil }
    ) -> [BackendEndpoint] {
        guard let labels = source.subsetLabels else { return EndpointMerger.endpoints(for: source.port, in: slices) }
        let filtered = slices.map { s -> EndpointSlice in
            var s = s
            s.endpoints = s.endpoints.filter { e in
                guard let ref = e.targetRef, ref.kind == nil || ref.kind == "Pod", let pod = ref.name,
                    let have = podLabels("\(ref.namespace ?? s.metadata.namespace ?? "")/\(pod)")
                else { return false }
                return labels.allSatisfy { have[$0.key] == $0.value }
            }
            return s
        }
        return EndpointMerger.endpoints(for: source.port, in: filtered)
    }

    /// Nodes from a legacy Endpoints object (`--watch-endpointslice false`).
    public static func nodes(
        _ source: EndpointSource, endpoints: Endpoints, podLabels: (String) -> [String: String]? = { _ in nil }
    ) -> [BackendEndpoint] {
        guard let labels = source.subsetLabels else { return EndpointMerger.endpoints(for: source.port, in: endpoints) }
        var e = endpoints
        for i in e.subsets.indices {
            e.subsets[i].addresses = e.subsets[i].addresses.filter { a in
                guard let ref = a.targetRef, let pod = ref.name, let have = podLabels("\(ref.namespace ?? endpoints.metadata.namespace ?? "")/\(pod)") else {
                    return false
                }
                return labels.allSatisfy { have[$0.key] == $0.value }
            }
        }
        return EndpointMerger.endpoints(for: source.port, in: e)
    }

    /// The `nodes` of an upstream as APISIX's map form `{"10.0.0.5:8080": 100}`: a pod
    /// change is then a merge patch of one key (see `GatewaySync.nodesPatch`).
    public static func json(_ endpoints: [BackendEndpoint]) -> JSONValue {
        var nodes: [String: JSONValue] = [:]
        nodes.reserveCapacity(endpoints.count)
        for e in endpoints {
            let host = e.address.contains(":") ? "[\(e.address)]" : e.address
            nodes["\(host):\(e.port)"] = .int(defaultWeight)
        }
        return .object(nodes)
    }
}
