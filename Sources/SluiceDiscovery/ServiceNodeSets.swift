import KubeClient
import SluiceCore

/// One Service's node sets, by port: what `service_name`s `ns/name:PORTNAME` and
/// `ns/name:PORTNUMBER` resolve to. Pure, so it is tested without an API server.
public enum ServiceNodeSets {
    /// APISIX's weight for a discovered node.
    public static let weight = 100

    /// Port key (the Service port's name when it has one, and its number) → nodes, weight
    /// 100 each. Only TCP ports: an HTTP gateway cannot use the others, and skipping them
    /// keeps a UDP port of the same number from shadowing the TCP one.
    public static func ports(service: KubeClient.Service?, slices: [EndpointSlice]) -> [String: [UpstreamNode]] {
        guard let service else { return [:] }
        var out: [String: [UpstreamNode]] = [:]
        for port in service.ports where port.protocol == "TCP" {
            let nodes = EndpointMerger.endpoints(for: port, in: slices).map {
                UpstreamNode(host: $0.address, port: $0.port, weight: weight)
            }
            if nodes.isEmpty { continue }
            if !port.name.isEmpty { out[port.name] = nodes }
            out[String(port.port)] = nodes
        }
        return out
    }
}
