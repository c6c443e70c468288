import KubeClient
import SluiceCore
import Testing

func slice(_ name: String, type: String = "IPv4", ports: String, endpoints: String) throws -> EndpointSlice {
    try EndpointSlice(
        json: try JSONValue.parse(
            #"{"metadata":{"name":"\#(name)","labels":{"kubernetes.io/service-name":"web"}},"addressType":"\#(type)","ports":\#(ports),"endpoints":\#(endpoints)}"#
        ))
}

@Suite struct EndpointMergerTests {
    let http = Service.Port(name: "http", port: 80, targetPort: .name("web"), protocol: "TCP", appProtocol: nil)

    @Test func mergesSlicesResolvesPortNamesAndDeduplicates() throws {
        let a = try slice("a", ports: #"[{"name":"http","port":8080},{"name":"metrics","port":9090}]"#,
                          endpoints: #"[{"addresses":["10.0.0.1"],"conditions":{"ready":true}},{"addresses":["10.0.0.2"]}]"#)
        // A second slice whose pods listen on another number for the same named port, and a
        // duplicate of 10.0.0.1:8080 (seen briefly while the controller moves endpoints).
        let b = try slice("b", ports: #"[{"name":"http","port":8081}]"#,
                          endpoints: #"[{"addresses":["10.0.0.3"],"conditions":{"ready":true}}]"#)
        let c = try slice("c", ports: #"[{"name":"http","port":8080}]"#,
                          endpoints: #"[{"addresses":["10.0.0.1"],"conditions":{"ready":true}},{"addresses":["10.0.0.9"],"conditions":{"ready":false}}]"#)
        let fqdn = try slice("d", type: "FQDN", ports: #"[{"name":"http","port":80}]"#, endpoints: #"[{"addresses":["example.com"]}]"#)
        let v6 = try slice("e", type: "IPv6", ports: #"[{"name":"http","port":8080}]"#, endpoints: #"[{"addresses":["fd00::1"]}]"#)
        let merged = EndpointMerger.endpoints(for: http, in: [a, b, c, fqdn, v6])
        #expect(merged == [
            BackendEndpoint(address: "10.0.0.1", port: 8080), BackendEndpoint(address: "10.0.0.2", port: 8080),
            BackendEndpoint(address: "10.0.0.3", port: 8081), BackendEndpoint(address: "fd00::1", port: 8080),
        ])
    }

    @Test func fallsBackToServingTerminatingWhenNothingIsReady() throws {
        let rolling = try slice("a", ports: #"[{"name":"http","port":8080}]"#, endpoints: #"""
            [{"addresses":["10.0.0.1"],"conditions":{"ready":false,"serving":true,"terminating":true}},
             {"addresses":["10.0.0.2"],"conditions":{"ready":false,"serving":false,"terminating":true}},
             {"addresses":["10.0.0.3"],"conditions":{"ready":false,"serving":false,"terminating":false}}]
            """#)
        #expect(EndpointMerger.endpoints(for: http, in: [rolling]) == [BackendEndpoint(address: "10.0.0.1", port: 8080)])
        // One ready endpoint anywhere: only ready ones are used.
        let fresh = try slice("b", ports: #"[{"name":"http","port":8080}]"#, endpoints: #"[{"addresses":["10.0.0.4"],"conditions":{"ready":true}}]"#)
        #expect(EndpointMerger.endpoints(for: http, in: [rolling, fresh]) == [BackendEndpoint(address: "10.0.0.4", port: 8080)])
    }

    @Test func noSlicesOrNoMatchingPortMeansNoEndpointsNotAnError() throws {
        #expect(EndpointMerger.endpoints(for: http, in: []).isEmpty)
        let other = try slice("a", ports: #"[{"name":"grpc","port":9000}]"#, endpoints: #"[{"addresses":["10.0.0.1"]}]"#)
        #expect(EndpointMerger.endpoints(for: http, in: [other]).isEmpty)
    }

    @Test func legacyEndpointsServeReadyAddressesOnly() throws {
        let e = try Endpoints(
            json: try JSONValue.parse(
                #"{"metadata":{"name":"web"},"subsets":[{"addresses":[{"ip":"10.0.0.1"},{"ip":"10.0.0.2"}],"notReadyAddresses":[{"ip":"10.0.0.3"}],"ports":[{"name":"http","port":8080}]}]}"#
            ))
        #expect(EndpointMerger.endpoints(for: http, in: e) == [
            BackendEndpoint(address: "10.0.0.1", port: 8080), BackendEndpoint(address: "10.0.0.2", port: 8080),
        ])
    }
}
