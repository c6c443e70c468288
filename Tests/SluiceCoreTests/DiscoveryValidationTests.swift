import SluiceCore
import Testing

/// `discovery_type` / `service_name` on upstreams, and the registry their nodes come from.
@Suite struct DiscoveryValidationTests {
    func upstreamError(_ json: String, path: String = "") -> ConfigError? { decodeError(json) { _ = try Upstream.decode($0, path: path) } }

    @Test func acceptsPortByNameAndByNumber() throws {
        let named = try Upstream.decode(try JSONValue.parse(#"{"discovery_type":"kubernetes","service_name":"default/httpbin:http"}"#))
        #expect(named.discoveryType == "kubernetes")
        #expect(named.serviceName == "default/httpbin:http")
        #expect(named.nodes.isEmpty)
        let numbered = try Upstream.decode(try JSONValue.parse(#"{"type":"chash","key":"remote_addr","discovery_type":"kubernetes","service_name":"kube-system/dns-1:53"}"#))
        #expect(numbered.serviceName == "kube-system/dns-1:53")
        #expect(numbered.type == .chash)
        #expect(try KubernetesServiceName.parse("default/httpbin:http").get() == KubernetesServiceName(namespace: "default", name: "httpbin", port: .name("http")))
        #expect(try KubernetesServiceName.parse("default/httpbin:8080").get().port == .number(8080))
        #expect(try KubernetesServiceName.parse("default/httpbin:8080").get().serviceKey == "default/httpbin")
    }

    @Test(arguments: [
        "httpbin:http", "default/httpbin", "default/httpbin:", "default/:http", "/httpbin:http", "default/Httpbin:http",
        "default/httpbin:0", "default/httpbin:65536", "default/httpbin:HTTP", "default/http_bin:http", "a/b/c:http",
        "default/-httpbin:http", "default/httpbin:http-",
    ])
    func badServiceNamesNameTheField(_ name: String) {
        let e = upstreamError(#"{"discovery_type":"kubernetes","service_name":"\#(name)"}"#, path: "upstream")
        #expect(e?.path == "upstream.service_name", "\(name): \(String(describing: e))")
    }

    @Test func serviceNameMustBeAString() {
        #expect(upstreamError(#"{"discovery_type":"kubernetes","service_name":7}"#)?.path == "service_name")
        #expect(upstreamError(#"{"discovery_type":"kubernetes"}"#)?.description == "service_name: is required when discovery_type is set")
    }

    @Test func nodesTogetherWithDiscoveryAreRefused() {
        let e = upstreamError(#"{"discovery_type":"kubernetes","service_name":"default/httpbin:http","nodes":{"10.0.0.1:80":1}}"#, path: "upstream")
        #expect(e?.path == "upstream.nodes")
        #expect(e?.message.contains("discovery_type") == true)
        // An empty node list is still a node list.
        #expect(upstreamError(#"{"discovery_type":"kubernetes","service_name":"default/httpbin:http","nodes":[]}"#)?.path == "nodes")
    }

    @Test func otherDiscoveryTypesAreRefused() {
        for type in ["consul", "dns", "nacos", "eureka", "Kubernetes"] {
            let e = upstreamError(#"{"discovery_type":"\#(type)","service_name":"default/httpbin:http"}"#)
            #expect(e?.path == "discovery_type", "\(type)")
        }
        #expect(upstreamError(#"{"discovery_type":1,"service_name":"default/httpbin:http"}"#)?.path == "discovery_type")
    }

    @Test func serviceNameWithoutDiscoveryTypeIsRefused() {
        #expect(upstreamError(#"{"service_name":"default/httpbin:http","nodes":{"10.0.0.1:80":1}}"#)?.path == "service_name")
        #expect(upstreamError(#"{"service_name":"default/httpbin:http"}"#)?.path == "service_name")
    }

    @Test func theOtherRulesStillHold() {
        #expect(upstreamError(#"{}"#)?.path == "nodes")
        #expect(upstreamError(#"{"discovery_type":"kubernetes","service_name":"default/a:http","type":"chash"}"#)?.path == "key")
        #expect(upstreamError(#"{"discovery_type":"kubernetes","service_name":"default/a:http","checks":{}}"#)?.path == "checks.active")
        #expect(upstreamError(#"{"discovery_type":"kubernetes","service_name":"default/a:http","discovery_args":{}}"#)?.path == "discovery_args")
    }

    @Test func inlineRouteUpstreamsNameTheirPath() throws {
        let e: ConfigError?
        do {
            _ = try Route.decode(try JSONValue.parse(#"{"uri":"/a","upstream":{"discovery_type":"consul","service_name":"x"}}"#))
            e = nil
        } catch let error as ConfigError {
            e = error
        }
        #expect(e?.path == "upstream.discovery_type")
    }

    @Test func registryReportsChangedNamesInBothSpellings() {
        var r = DiscoveryRegistry()
        let a = [UpstreamNode(host: "10.0.0.1", port: 8080, weight: 100)]
        let changed = r.replace(service: "default/httpbin", ports: ["http": a, "80": a])
        #expect(changed == ["default/httpbin:http", "default/httpbin:80"])
        #expect(r.nodes(for: "default/httpbin:http") == a)
        #expect(r.nodes(for: "default/httpbin:80") == a)
        #expect(r.nodes(for: "default/httpbin:81").isEmpty)
        #expect(r.nodes(for: "other/httpbin:http").isEmpty)
        // The same again: nothing changed.
        #expect(r.replace(service: "default/httpbin", ports: ["http": a, "80": a]).isEmpty)
        // Ports without nodes count as absent.
        #expect(r.replace(service: "default/httpbin", ports: ["http": a, "80": a, "metrics": []]).isEmpty)
        #expect(r.replace(service: "default/httpbin", ports: nil) == ["default/httpbin:http", "default/httpbin:80"])
        #expect(r.services.isEmpty)
    }
}
