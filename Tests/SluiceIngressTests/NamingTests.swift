import SluiceIngress
import Testing

@Suite struct NamingTests {
    @Test func upstreamNamesAreThoseAPISIXUsersKnow() {
        #expect(IngressNaming.upstreamName(namespace: "default", service: "httpbin", subset: nil, port: 80, serviceGranularity: false) == "default_httpbin_80")
        #expect(IngressNaming.upstreamName(namespace: "default", service: "httpbin", subset: "v2", port: 80, serviceGranularity: false) == "default_httpbin_v2_80")
        #expect(IngressNaming.upstreamName(namespace: "ns", service: "svc", subset: nil, port: 8080, serviceGranularity: true) == "ns_svc_8080_service")
    }

    @Test func idsAreTheNameWhenValidElseAStableShortForm() {
        #expect(IngressNaming.id("default_httpbin_80") == "default_httpbin_80")
        let long = String(repeating: "a", count: 70)
        let id = IngressNaming.id(long)
        #expect(id.count == 64)
        #expect(id == IngressNaming.id(long))
        #expect(id != IngressNaming.id(long + "b"))
        #expect(IngressNaming.id("a/b").hasPrefix("a_b-"))
    }
}
