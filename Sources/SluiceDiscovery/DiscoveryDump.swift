import SluiceCore

extension DiscoveryRegistry {
    /// The node sets as the control API shows them at `/v1/discovery/kubernetes/dump`:
    /// `{"synced":…, "endpoints":[{"name":"ns/name","value":{"http":[{"host","port","weight"}]}}]}`,
    /// sorted so the output is stable.
    public var dump: JSONValue {
        let endpoints: [JSONValue] = services.keys.sorted().map { key in
            var ports: [String: JSONValue] = [:]
            for (port, nodes) in services[key] ?? [:] {
                ports[port] = .array(nodes.map { ["host": .string($0.host), "port": .int(Int64($0.port)), "weight": .int(Int64($0.weight))] })
            }
            return ["name": .string(key), "value": .object(ports)]
        }
        return ["synced": .bool(synced), "endpoints": .array(endpoints)]
    }
}
