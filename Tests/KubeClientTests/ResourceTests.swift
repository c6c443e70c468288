import KubeClient
import SluiceCore
import Testing

@Suite struct ResourceTests {
    @Test func endpointSliceWithEveryField() throws {
        let json = try JSONValue.parse(
            #"""
            {"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice",
             "metadata":{"name":"httpbin-abc12","namespace":"default","uid":"u-1","resourceVersion":"1234","generation":3,
               "labels":{"kubernetes.io/service-name":"httpbin","endpointslice.kubernetes.io/managed-by":"endpointslice-controller.k8s.io"},
               "annotations":{"endpoints.kubernetes.io/last-change-trigger-time":"2026-11-22T03:00:00Z"},
               "ownerReferences":[{"kind":"Service","name":"httpbin"}]},
             "addressType":"IPv4",
             "endpoints":[
               {"addresses":["10.1.0.5"],"conditions":{"ready":true,"serving":true,"terminating":false},
                "hostname":"pod-a","nodeName":"node-1","zone":"eu-1a",
                "hints":{"forZones":[{"name":"eu-1a"}],"forNodes":[{"name":"node-1"}]},
                "targetRef":{"kind":"Pod","namespace":"default","name":"httpbin-5d9f-a","uid":"p-1"}},
               {"addresses":["10.1.0.6"],"conditions":{"serving":true,"terminating":true}},
               {"addresses":["10.1.0.7"]}],
             "ports":[{"name":"http","port":8080,"protocol":"TCP","appProtocol":"http"},{"port":9090}],
             "futureField":{"kept":true}}
            """#)
        let s = try EndpointSlice(json: json)
        #expect(s.metadata.name == "httpbin-abc12")
        #expect(s.metadata.resourceVersion == "1234")
        #expect(s.serviceName == "httpbin")
        #expect(s.addressType == .IPv4)
        #expect(s.endpoints.count == 3)
        #expect(s.endpoints[0].conditions.ready == true)
        #expect(s.endpoints[0].hintsForZones == ["eu-1a"])
        #expect(s.endpoints[0].hintsForNodes == ["node-1"])
        #expect(s.endpoints[0].targetRef?.name == "httpbin-5d9f-a")
        #expect(s.endpoints[1].conditions.ready == nil)  // unknown: consumers treat it as ready
        #expect(s.endpoints[1].conditions.terminating == true)
        #expect(s.endpoints[2].conditions == EndpointSlice.Conditions(ready: nil, serving: nil, terminating: nil))
        #expect(s.ports[0] == EndpointSlice.Port(name: "http", port: 8080, protocol: "TCP", appProtocol: "http"))
        #expect(s.ports[1] == EndpointSlice.Port(name: "", port: 9090, protocol: "TCP", appProtocol: nil))
        #expect(s.raw["futureField"]?["kept"] == true)  // unknown fields are kept
    }

    @Test func serviceTargetPortsByNumberAndName() throws {
        let s = try Service(
            json: try JSONValue.parse(
                #"{"metadata":{"name":"httpbin","namespace":"default"},"spec":{"type":"ClusterIP","clusterIP":"10.96.1.2","selector":{"app":"httpbin"},"ports":[{"name":"http","port":80,"targetPort":"web"},{"name":"metrics","port":9090,"targetPort":9091},{"port":8443}]}}"#
            ))
        #expect(s.selector == ["app": "httpbin"])
        #expect(s.ports.map(\.targetPort) == [.name("web"), .number(9091), .number(8443)])
        #expect(s.ports[2].name == "")
    }

    @Test func legacyEndpointsAndTheTruncationAnnotation() throws {
        let e = try Endpoints(
            json: try JSONValue.parse(
                #"{"metadata":{"name":"big","namespace":"default","annotations":{"endpoints.kubernetes.io/over-capacity":"truncated"}},"subsets":[{"addresses":[{"ip":"10.0.0.1","nodeName":"n1","targetRef":{"kind":"Pod","name":"p1"}}],"notReadyAddresses":[{"ip":"10.0.0.2"}],"ports":[{"name":"http","port":8080,"protocol":"TCP"}]}]}"#
            ))
        #expect(e.isTruncated)
        #expect(e.subsets[0].addresses.map(\.ip) == ["10.0.0.1"])
        #expect(e.subsets[0].notReadyAddresses.map(\.ip) == ["10.0.0.2"])
        #expect(e.subsets[0].ports.first?.port == 8080)
    }

    @Test(arguments: [
        (#"{"addressType":"IPv4"}"#, "metadata: is required"),
        (#"{"metadata":{},"addressType":"IPv4"}"#, "metadata.name: is required"),
        (#"{"metadata":{"name":"x"},"addressType":"IPv5"}"#, "addressType: must be IPv4, IPv6 or FQDN, got \"IPv5\""),
        (#"{"metadata":{"name":"x"},"addressType":"IPv4","endpoints":[{"addresses":"10.0.0.1"}]}"#, "endpoints[0].addresses: must be a list"),
        (#"{"metadata":{"name":"x"},"addressType":"IPv4","endpoints":[{"addresses":[],"conditions":{"ready":"yes"}}]}"#, "endpoints[0].conditions.ready: must be a boolean"),
        (#"{"metadata":{"name":"x"},"addressType":"IPv4","ports":[{"port":"80"}]}"#, "ports[0].port: must be an integer"),
    ])
    func malformedSlicesNameTheField(_ json: String, _ expected: String) throws {
        do {
            _ = try EndpointSlice(json: try JSONValue.parse(json))
            Issue.record("accepted \(json)")
        } catch let error as KubeDecodingError {
            #expect(error.description == expected)
        }
    }
}
