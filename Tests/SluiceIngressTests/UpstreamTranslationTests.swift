import KubeClient
import SluiceCore
import SluiceIngress
import Testing

/// ApisixUpstream settings → the upstreams of its Service (and its external upstream).
@Suite struct UpstreamTranslationTests {
    /// httpbin (ports 80 "http" and 443 "https"), its ApisixUpstream `spec`, and a route
    /// on both ports.
    func translated(_ upstreamSpec: String, ports: [Int] = [80]) throws -> Translation {
        var c = ClusterState()
        try c.addService("httpbin", ports: #"[{"name": "http", "port": 80}, {"name": "https", "port": 443}]"#)
        try c.addUpstream("httpbin", generation: 5, upstreamSpec)
        let backends = ports.map { #"{"serviceName": "httpbin", "servicePort": \#($0)}"# }.joined(separator: ", ")
        try c.addRoute("r", ruleSpec(backends: "[\(backends)]"))
        return translate(c)
    }

    var upstreamRef: SourceRef { SourceRef(.apisixUpstream, "default", "httpbin") }

    @Test(arguments: ["roundrobin", "ewma", "least_conn"])
    func loadBalancerTypeIsCopied(type: String) throws {
        let t = try translated(#"{"loadbalancer": {"type": "\#(type)"}}"#)
        #expect(t.errors.isEmpty)
        #expect(t.upstream("default_httpbin_80")?["type"] == .string(type))
        #expect(t.upstream("default_httpbin_80")?["hash_on"] == nil)
    }

    @Test func chashCarriesHashOnAndKey() throws {
        let t = try translated(#"{"loadbalancer": {"type": "chash", "hashOn": "header", "key": "X-User"}}"#)
        let u = try #require(t.upstream("default_httpbin_80"))
        #expect(u["type"] == "chash")
        #expect(u["hash_on"] == "header")
        #expect(u["key"] == "X-User")
    }

    @Test func chashHashesOnVarsByDefaultAndTheGatewayAcceptsIt() throws {
        let t = try translated(#"{"loadbalancer": {"type": "chash", "key": "remote_addr"}}"#)
        let u = try #require(t.upstream("default_httpbin_80"))
        #expect(u["hash_on"] == "vars")
        let decoded = try Upstream.decode(u, id: "default_httpbin_80")
        #expect(decoded.type == .chash)
        #expect(decoded.key == "remote_addr")
    }

    @Test func chashWithoutAKeyIsAnErrorOnTheUpstreamAndOnTheRoute() throws {
        let t = try translated(#"{"loadbalancer": {"type": "chash", "hashOn": "header"}}"#)
        #expect(t.errors[upstreamRef]?.contains("spec.loadbalancer.key") == true)
        #expect(t.routeError("r").contains("spec.http[0].backends[0].serviceName"))
        #expect(t.routeError("r").contains("loadbalancer.key"))
        #expect(t.objects.isEmpty)
    }

    @Test func anUnknownLoadBalancerTypeIsAnError() throws {
        let t = try translated(#"{"loadbalancer": {"type": "random"}}"#)
        #expect(t.errors[upstreamRef]?.contains("spec.loadbalancer.type") == true)
        #expect(t.errors[upstreamRef]?.contains("random") == true)
        #expect(t.generations[upstreamRef] == nil)
    }

    @Test func schemeRetriesTimeoutAndPassHostAreCopied() throws {
        let t = try translated(#"""
            {"scheme": "https", "retries": 3, "timeout": {"connect": "2s", "send": "3s", "read": "4s"}, "passHost": "rewrite", "upstreamHost": "internal.example.com"}
            """#)
        #expect(t.errors.isEmpty)
        #expect(t.upstream("default_httpbin_80") == json(#"""
            {"name": "default_httpbin_80", "labels": {"managed-by": "sluice-ingress"}, "nodes": {}, "scheme": "https", "retries": 3,
             "timeout": {"connect": 2, "send": 3, "read": 4}, "pass_host": "rewrite", "upstream_host": "internal.example.com"}
            """#))
        #expect(t.produced[upstreamRef] == [ObjectKey(.upstreams, "default_httpbin_80")])
        #expect(t.generations[upstreamRef] == 5)
    }

    @Test func anUpstreamWithSettingsTheGatewayRunsIsAcceptedByItsDecoder() throws {
        let t = try translated(#"""
            {"scheme": "http", "retries": 2, "loadbalancer": {"type": "roundrobin"}, "timeout": {"read": "10s"}, "passHost": "rewrite", "upstreamHost": "a.example.com"}
            """#)
        let decoded = try Upstream.decode(try #require(t.upstream("default_httpbin_80")), id: "default_httpbin_80")
        #expect(decoded.retries == 2)
        #expect(decoded.passHost == .rewrite)
        #expect(decoded.upstreamHost == "a.example.com")
        #expect(decoded.timeout != nil)
        #expect(decoded.labels == ["managed-by": "sluice-ingress"])
    }

    @Test func passHostNodeAndAnUpstreamHostAlone() throws {
        #expect(try translated(#"{"passHost": "node"}"#).upstream("default_httpbin_80")?["pass_host"] == "node")
        let hostOnly = try translated(#"{"upstreamHost": "h.example.com"}"#).upstream("default_httpbin_80")
        #expect(hostOnly?["upstream_host"] == "h.example.com")
        #expect(hostOnly?["pass_host"] == nil)
    }

    struct BadSetting: Sendable, CustomTestStringConvertible {
        var spec: String
        var field: String
        var testDescription: String { field }
    }

    @Test(arguments: [
        BadSetting(spec: #"{"passHost": "rewrite"}"#, field: "spec.upstreamHost"),
        BadSetting(spec: #"{"passHost": "rewrite", "upstreamHost": ""}"#, field: "spec.upstreamHost"),
        BadSetting(spec: #"{"passHost": "keep"}"#, field: "spec.passHost"),
        BadSetting(spec: #"{"scheme": "ftp"}"#, field: "spec.scheme"),
        BadSetting(spec: #"{"retries": -1}"#, field: "spec.retries"),
        BadSetting(spec: #"{"timeout": {"connect": "fast"}}"#, field: "spec.timeout.connect"),
        BadSetting(spec: #"{"tlsSecret": {"name": "gone", "namespace": "default"}}"#, field: "spec.tlsSecret"),
        BadSetting(spec: #"{"healthCheck": {"passive": {"unhealthy": {"httpCodes": [502]}}}}"#, field: "spec.healthCheck.active"),
        BadSetting(spec: #"{"healthCheck": {"active": {"healthy": {"interval": "500ms"}}}}"#, field: "spec.healthCheck.active.healthy.interval"),
        BadSetting(spec: #"{"healthCheck": {"active": {"unhealthy": {"interval": "never"}}}}"#, field: "spec.healthCheck.active.unhealthy.interval"),
        BadSetting(spec: #"{"portLevelSettings": [{"port": 80, "scheme": "ftp"}]}"#, field: "spec.portLevelSettings[0].scheme"),
    ])
    func aBadSettingNamesItsField(_ b: BadSetting) throws {
        let t = try translated(b.spec)
        #expect(t.errors[upstreamRef]?.contains(b.field) == true, "\(t.errors[upstreamRef] ?? "no error")")
        // The route on its Service cannot be translated either.
        #expect(t.routeError("r").contains("spec.http[0].backends[0].serviceName"))
        #expect(t.objects.isEmpty)
    }

    @Test func healthCheckBecomesChecks() throws {
        let t = try translated(#"""
            {"healthCheck": {
              "active": {"type": "https", "timeout": 1.5, "concurrency": 4, "host": "probe.local", "port": 8081, "httpPath": "/healthz",
                         "strictTLS": false, "requestHeaders": ["User-Agent: probe"],
                         "healthy": {"httpCodes": [200, 204], "successes": 2, "interval": "2s"},
                         "unhealthy": {"httpCodes": [500], "httpFailures": 3, "tcpFailures": 2, "timeout": 4, "interval": "1m"}},
              "passive": {"healthy": {"httpCodes": [200], "successes": 5, "interval": "9s"},
                          "unhealthy": {"httpCodes": [502], "httpFailures": 1, "tcpFailures": 1, "timeout": 7}}}}
            """#)
        #expect(t.errors.isEmpty)
        #expect(t.upstream("default_httpbin_80")?["checks"] == json(#"""
            {"active": {"type": "https", "timeout": 1.5, "concurrency": 4, "host": "probe.local", "port": 8081, "http_path": "/healthz",
                        "https_verify_certificate": false, "req_headers": ["User-Agent: probe"],
                        "healthy": {"http_statuses": [200, 204], "successes": 2, "interval": 2},
                        "unhealthy": {"http_statuses": [500], "http_failures": 3, "tcp_failures": 2, "timeouts": 4, "interval": 60}},
             "passive": {"type": "http",
                         "healthy": {"http_statuses": [200], "successes": 5},
                         "unhealthy": {"http_statuses": [502], "http_failures": 1, "tcp_failures": 1, "timeouts": 7}}}
            """#))
        // The gateway takes what the controller writes, field for field.
        let upstream = try #require(t.upstream("default_httpbin_80"))
        let decoded = try Upstream.decode(upstream)
        #expect(decoded.checks?.active.type == .https && decoded.checks?.active.httpsVerifyCertificate == false)
        #expect(decoded.checks?.active.unhealthyInterval == 60 && decoded.checks?.passive?.timeouts == 7)
    }

    @Test func aMinimalActiveCheckIsHTTP() throws {
        let t = try translated(#"{"healthCheck": {"active": {"httpPath": "/"}}}"#)
        #expect(t.upstream("default_httpbin_80")?["checks"] == ["active": ["type": "http", "http_path": "/"]])
    }

    @Test func portLevelSettingsWinForTheirPortAndInheritTheRest() throws {
        let t = try translated(#"""
            {"retries": 2, "scheme": "http", "loadbalancer": {"type": "roundrobin"},
             "portLevelSettings": [{"port": 443, "scheme": "https", "loadbalancer": {"type": "ewma"}}]}
            """#, ports: [80, 443])
        #expect(t.errors.isEmpty)
        let http = try #require(t.upstream("default_httpbin_80"))
        let https = try #require(t.upstream("default_httpbin_443"))
        #expect(http["scheme"] == "http")
        #expect(http["type"] == "roundrobin")
        #expect(http["retries"] == 2)
        #expect(https["scheme"] == "https")
        #expect(https["type"] == "ewma")
        #expect(https["retries"] == 2)
        #expect(t.produced[upstreamRef] == [ObjectKey(.upstreams, "default_httpbin_80"), ObjectKey(.upstreams, "default_httpbin_443")])
    }

    @Test func tlsSecretGivesTheClientCertificate() throws {
        var c = ClusterState()
        try c.addService("httpbin")
        try c.addSecret("client", ns: "certs", ["tls.crt": "CERT", "tls.key": "KEY"])
        try c.addSecret("half", ["tls.crt": "CERT"])
        try c.addUpstream("httpbin", #"{"scheme": "https", "tlsSecret": {"name": "client", "namespace": "certs"}}"#)
        try c.addUpstream("half", #"{"tlsSecret": {"name": "half", "namespace": "default"}}"#)
        try c.addRoute("r", ruleSpec())
        let t = Translator(secretNamespaces: ["default", "certs"]).translate(c)
        #expect(t.upstream("default_httpbin_80")?["tls"] == ["client_cert": "CERT", "client_key": "KEY"])
        #expect(t.errors[SourceRef(.apisixUpstream, "default", "half")]?.contains("spec.tlsSecret") == true)
        #expect(t.errors[SourceRef(.apisixUpstream, "default", "half")]?.contains("tls.key") == true)
    }

    @Test func discoveryGivesDiscoveryTypeAndServiceNameInsteadOfNodes() throws {
        var c = ClusterState()
        try c.addUpstream("consul", #"{"discovery": {"type": "dns", "serviceName": "httpbin.default.svc.cluster.local", "args": {"zone": "a"}}}"#)
        try c.addRoute("r", ruleSpec(#""upstreams": [{"name": "consul"}]"#, backends: "[]"))
        let t = translate(c)
        #expect(t.errors.isEmpty)
        #expect(t.upstream("default_consul") == json(#"""
            {"name": "default_consul", "labels": {"managed-by": "sluice-ingress"}, "discovery_type": "dns",
             "service_name": "httpbin.default.svc.cluster.local", "discovery_args": {"zone": "a"}}
            """#))
        #expect(t.produced[SourceRef(.apisixUpstream, "default", "consul")] == [ObjectKey(.upstreams, "default_consul")])
    }

    @Test func externalUpstreamsCarryTheSettingsToo() throws {
        var c = ClusterState()
        try c.addUpstream("ext", #"{"externalNodes": [{"name": "httpbin.org", "port": 443}], "scheme": "https", "retries": 1, "loadbalancer": {"type": "least_conn"}}"#)
        try c.addRoute("r", ruleSpec(#""upstreams": [{"name": "ext"}]"#, backends: "[]"))
        let u = try #require(translate(c).upstream("default_ext"))
        #expect(u["scheme"] == "https")
        #expect(u["retries"] == 1)
        #expect(u["type"] == "least_conn")
        #expect(u["nodes"] == [["host": "httpbin.org", "port": 443, "weight": 100]])
    }

    @Test func anApisixUpstreamAloneProducesNothingButIsTranslated() throws {
        var c = ClusterState()
        try c.addUpstream("lonely", generation: 9, #"{"loadbalancer": {"type": "ewma"}}"#)
        let t = translate(c)
        let ref = SourceRef(.apisixUpstream, "default", "lonely")
        #expect(t.errors.isEmpty)
        #expect(t.objects.isEmpty)
        #expect(t.produced[ref] == [])
        #expect(t.generations[ref] == 9)
    }

    @Test func upstreamsOfOneServiceAreSharedAcrossRoutesAndAllCountForItsApisixUpstream() throws {
        var c = ClusterState()
        try c.addService("httpbin")
        try c.addUpstream("httpbin", #"{"subsets": [{"name": "v2", "labels": {"v": "2"}}], "retries": 4}"#)
        try c.addRoute("a", ruleSpec())
        try c.addRoute("b", ruleSpec(backends: #"[{"serviceName": "httpbin", "servicePort": 80, "subset": "v2"}]"#))
        try c.addRoute("c", ruleSpec(backends: #"[{"serviceName": "httpbin", "servicePort": 80, "resolveGranularity": "service"}]"#))
        let t = translate(c)
        #expect(t.errors.isEmpty)
        #expect(t.produced[SourceRef(.apisixUpstream, "default", "httpbin")] == [
            ObjectKey(.upstreams, "default_httpbin_80"), ObjectKey(.upstreams, "default_httpbin_v2_80"), ObjectKey(.upstreams, "default_httpbin_80_service"),
        ])
        for id in ["default_httpbin_80", "default_httpbin_v2_80", "default_httpbin_80_service"] {
            #expect(t.upstream(id)?["retries"] == 4, "\(id)")
        }
    }
}
