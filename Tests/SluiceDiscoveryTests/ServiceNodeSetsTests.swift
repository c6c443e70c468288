import KubeClient
import SluiceCore
import SluiceDiscovery
import Testing

@Suite struct ServiceNodeSetsTests {
    func service(_ ports: [(String, Int, String)]) throws -> KubeClient.Service {
        try KubeClient.Service(json: [
            "metadata": ["name": "web", "namespace": "default"],
            "spec": ["ports": .array(ports.map { ["name": .string($0.0), "port": .int(Int64($0.1)), "targetPort": 8080, "protocol": .string($0.2)] })],
        ])
    }

    func slice(_ name: String, port: (String, Int), _ endpoints: [(String, Bool?)]) throws -> EndpointSlice {
        try EndpointSlice(json: [
            "metadata": ["name": .string(name), "namespace": "default", "labels": ["kubernetes.io/service-name": "web"]],
            "addressType": "IPv4",
            "ports": [["name": .string(port.0), "port": .int(Int64(port.1)), "protocol": "TCP"]],
            "endpoints": .array(endpoints.map { e in
                ["addresses": [.string(e.0)], "conditions": e.1.map { ["ready": .bool($0)] } ?? [:]]
            }),
        ])
    }

    @Test func keyedByPortNameAndNumberWithWeight100() throws {
        let svc = try service([("http", 80, "TCP"), ("", 9090, "TCP"), ("dns", 53, "UDP")])
        let slices = [
            try slice("a", port: ("http", 8080), [("10.0.0.2", true), ("10.0.0.1", nil), ("10.0.0.9", false)]),
            try slice("b", port: ("http", 8080), [("10.0.0.1", true), ("10.0.0.3", true)]),
            try slice("c", port: ("", 9999), [("10.0.0.4", true)]),
        ]
        let ports = ServiceNodeSets.ports(service: svc, slices: slices)
        // In slice-name order, each endpoint where it first appears (no sort: see EndpointMerger).
        let web = ["10.0.0.2", "10.0.0.1", "10.0.0.3"].map { UpstreamNode(host: $0, port: 8080, weight: 100) }
        #expect(ports["http"] == web)
        #expect(ports["80"] == web)
        #expect(ports["9090"] == [UpstreamNode(host: "10.0.0.4", port: 9999, weight: 100)])
        #expect(ports["53"] == nil && ports["dns"] == nil)  // UDP is not for an HTTP gateway
        #expect(ports.count == 3)
    }

    @Test func noServiceMeansNoNodes() throws {
        #expect(ServiceNodeSets.ports(service: nil, slices: [try slice("a", port: ("http", 8080), [("10.0.0.1", true)])]).isEmpty)
        #expect(ServiceNodeSets.ports(service: try service([("http", 80, "TCP")]), slices: []).isEmpty)
    }
}
