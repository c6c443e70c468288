import KubeClient
import SluiceCore
import SluiceIngress
import Testing

/// Upstream nodes from EndpointSlices (or legacy Endpoints) of the Service port.
@Suite struct NodeResolverTests {
    /// One endpoint of a slice: address, ready, and the pod it belongs to.
    struct E {
        var address: String
        var ready: Bool = true
        var pod: String? = nil
        var podNamespace: String? = nil
        var kind: String? = "Pod"

        var json: String {
            var ref = ""
            if let pod {
                var fields = [#""name": "\#(pod)""#]
                if let kind { fields.append(#""kind": "\#(kind)""#) }
                if let podNamespace { fields.append(#""namespace": "\#(podNamespace)""#) }
                ref = #", "targetRef": {\#(fields.joined(separator: ", "))}"#
            }
            return #"{"addresses": ["\#(address)"], "conditions": {"ready": \#(ready)}\#(ref)}"#
        }
    }

    func slice(_ name: String, type: String = "IPv4", port: Int = 8080, portName: String = "http", _ endpoints: [E]) throws -> EndpointSlice {
        try EndpointSlice(json: json(#"""
            {"metadata": {"name": "\#(name)", "namespace": "default", "labels": {"kubernetes.io/service-name": "httpbin"}},
             "addressType": "\#(type)", "ports": [{"name": "\#(portName)", "port": \#(port), "protocol": "TCP"}],
             "endpoints": [\#(endpoints.map(\.json).joined(separator: ", "))]}
            """#))
    }

    let source = EndpointSource(service: "default/httpbin", port: httpbinPort)

    @Test func nodesAreTheReadyEndpointsInMapForm() throws {
        let slices = [
            try slice("a", [E(address: "10.0.0.1"), E(address: "10.0.0.2"), E(address: "10.0.0.3", ready: false)]),
            try slice("b", [E(address: "10.0.0.2"), E(address: "10.0.0.4")]),
        ]
        let nodes = NodeResolver.nodes(source, slices: slices)
        #expect(nodes == [
            BackendEndpoint(address: "10.0.0.1", port: 8080), BackendEndpoint(address: "10.0.0.2", port: 8080), BackendEndpoint(address: "10.0.0.4", port: 8080),
        ])
        #expect(NodeResolver.json(nodes) == ["10.0.0.1:8080": 100, "10.0.0.2:8080": 100, "10.0.0.4:8080": 100])
    }

    @Test func theSlicePortIsFoundByTheServicePortName() throws {
        let slices = [try slice("a", port: 9090, portName: "metrics", [E(address: "10.0.0.1")]), try slice("b", port: 8081, [E(address: "10.0.0.2")])]
        #expect(NodeResolver.json(NodeResolver.nodes(source, slices: slices)) == ["10.0.0.2:8081": 100])
    }

    @Test func ipv6AddressesAreBracketed() throws {
        let slices = [try slice("v6", type: "IPv6", [E(address: "fd00::1"), E(address: "fd00::2")]), try slice("v4", [E(address: "10.0.0.1")])]
        let nodes = NodeResolver.json(NodeResolver.nodes(source, slices: slices))
        #expect(nodes == ["[fd00::1]:8080": 100, "[fd00::2]:8080": 100, "10.0.0.1:8080": 100])
        // The gateway reads the map form back.
        let upstream = try Upstream.decode(["nodes": nodes], id: "u")
        #expect(Set(upstream.nodes.map(\.host)) == ["fd00::1", "fd00::2", "10.0.0.1"])
        #expect(upstream.nodes.allSatisfy { $0.port == 8080 && $0.weight == 100 })
    }

    @Test func noEndpointsIsAnEmptyMap() {
        #expect(NodeResolver.json(NodeResolver.nodes(source, slices: [])) == .object([:]))
    }

    @Test func withoutASubsetPodLabelsAreNotConsulted() throws {
        var asked: [String] = []
        let nodes = NodeResolver.nodes(source, slices: [try slice("a", [E(address: "10.0.0.1", pod: "p1")])]) { key in
            asked.append(key)
            return nil
        }
        #expect(nodes.count == 1)
        #expect(asked.isEmpty)
    }

    @Test func aSubsetKeepsEndpointsWhosePodHasAllItsLabels() throws {
        let pods: [String: [String: String]] = [
            "default/v1": ["version": "v1", "app": "httpbin"],
            "default/v2-a": ["version": "v2", "tier": "web", "app": "httpbin"],
            "default/v2-b": ["version": "v2", "app": "httpbin"],  // lacks tier
            "other/v2-c": ["version": "v2", "tier": "web"],
        ]
        let slices = [try slice("a", [
            E(address: "10.0.0.1", pod: "v1"),
            E(address: "10.0.0.2", pod: "v2-a"),
            E(address: "10.0.0.3", pod: "v2-b"),
            E(address: "10.0.0.4"),  // no targetRef
            E(address: "10.0.0.5", pod: "unknown"),
            E(address: "10.0.0.6", pod: "v2-c", podNamespace: "other"),
            E(address: "10.0.0.7", pod: "v2-a", kind: "Node"),
            E(address: "10.0.0.8", pod: "v2-a", kind: nil),
        ])]
        var asked: [String] = []
        let subset = EndpointSource(service: "default/httpbin", port: httpbinPort, subsetLabels: ["version": "v2", "tier": "web"])
        let nodes = NodeResolver.nodes(subset, slices: slices) { key in
            asked.append(key)
            return pods[key]
        }
        #expect(NodeResolver.json(nodes) == ["10.0.0.2:8080": 100, "10.0.0.6:8080": 100, "10.0.0.8:8080": 100])
        // The slice's namespace when the targetRef has none.
        #expect(asked.contains("default/v2-a"))
        #expect(asked.contains("other/v2-c"))
        #expect(asked.contains("default/unknown"))
        #expect(!asked.contains("default/v2-c"))
    }

    @Test func aSubsetWithNoMatchingPodHasNoNodes() throws {
        let subset = EndpointSource(service: "default/httpbin", port: httpbinPort, subsetLabels: ["version": "v3"])
        let nodes = NodeResolver.nodes(subset, slices: [try slice("a", [E(address: "10.0.0.1", pod: "p")])]) { _ in ["version": "v2"] }
        #expect(nodes.isEmpty)
    }

    // MARK: legacy Endpoints

    func endpoints() throws -> Endpoints {
        try Endpoints(json: json(#"""
            {"metadata": {"name": "httpbin", "namespace": "default"},
             "subsets": [{"addresses": [{"ip": "10.0.0.1", "targetRef": {"kind": "Pod", "name": "v1"}},
                                        {"ip": "10.0.0.2", "targetRef": {"kind": "Pod", "name": "v2", "namespace": "default"}},
                                        {"ip": "fd00::9", "targetRef": {"kind": "Pod", "name": "v2-six"}}],
                          "notReadyAddresses": [{"ip": "10.0.0.3", "targetRef": {"kind": "Pod", "name": "v2-starting"}}],
                          "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "metrics", "port": 9090, "protocol": "TCP"}]}]}
            """#))
    }

    @Test func legacyEndpointsGiveTheReadyAddresses() throws {
        let nodes = NodeResolver.nodes(source, endpoints: try endpoints())
        #expect(NodeResolver.json(nodes) == ["10.0.0.1:8080": 100, "10.0.0.2:8080": 100, "[fd00::9]:8080": 100])
    }

    @Test func legacyEndpointsWithASubset() throws {
        let labels: [String: [String: String]] = [
            "default/v1": ["version": "v1"], "default/v2": ["version": "v2"], "default/v2-six": ["version": "v2"], "default/v2-starting": ["version": "v2"],
        ]
        let subset = EndpointSource(service: "default/httpbin", port: httpbinPort, subsetLabels: ["version": "v2"])
        let nodes = NodeResolver.nodes(subset, endpoints: try endpoints()) { labels[$0] }
        #expect(NodeResolver.json(nodes) == ["10.0.0.2:8080": 100, "[fd00::9]:8080": 100])
    }
}
