import KubeClient
import SluiceCore
import SluiceIngress
import Testing

/// ApisixRoute `spec.http[]` → routes and upstreams.
@Suite struct ApisixRouteTranslationTests {
    @Test func aRuleBecomesARouteNamedNamespaceRouteRuleWithTheServiceUpstream() throws {
        var c = try httpbinCluster()
        try c.addRoute("httpbin-route", generation: 3, ruleSpec(match: #"{"paths": ["/ip", "/get*"]}"#))
        let t = translate(c)
        #expect(t.errors.isEmpty)
        #expect(t.route("default_httpbin-route_rule1") == json(#"""
            {"name": "default_httpbin-route_rule1", "labels": {"managed-by": "sluice-ingress"}, "uris": ["/ip", "/get*"],
             "upstream_id": "default_httpbin_80"}
            """#))
        #expect(t.upstream("default_httpbin_80") == json(#"{"name": "default_httpbin_80", "labels": {"managed-by": "sluice-ingress"}, "nodes": {}}"#))
        #expect(t.endpointSources == ["default_httpbin_80": EndpointSource(service: "default/httpbin", port: httpbinPort)])
        #expect(t.upstreams(following: "default/httpbin") == ["default_httpbin_80"])
        let ref = SourceRef(.apisixRoute, "default", "httpbin-route")
        #expect(t.produced[ref] == [ObjectKey(.routes, "default_httpbin-route_rule1"), ObjectKey(.upstreams, "default_httpbin_80")])
        #expect(t.generations[ref] == 3)
        #expect(t.objects.count == 2)
    }

    @Test func translatedRouteAndUpstreamAreAcceptedByTheGatewayDecoders() throws {
        var c = try httpbinCluster()
        try c.addService("echo")
        try c.addRoute("r", ruleSpec(
            #""priority": 7, "timeout": {"connect": "3s", "read": "2m"}, "websocket": true,"#
                + #""plugins": [{"name": "proxy-rewrite", "config": {"uri": "/anything"}}]"#,
            match: #"{"paths": ["/api/*"], "hosts": ["*.example.com"], "methods": ["get", "POST"], "remoteAddrs": ["10.0.0.0/8"],"#
                + #""exprs": [{"subject": {"scope": "Header", "name": "X-Env"}, "op": "Equal", "value": "prod"}]}"#,
            backends: #"[{"serviceName": "httpbin", "servicePort": 80, "weight": 30}, {"serviceName": "echo", "servicePort": "http", "weight": 70}]"#))
        let t = translate(c)
        #expect(t.errors.isEmpty)
        let value = try #require(t.route("default_r_rule1"))
        let route = try Route.decode(value, id: "default_r_rule1")
        #expect(route.uris == ["/api/*"])
        #expect(route.hosts == ["*.example.com"])
        #expect(route.methods == ["GET", "POST"])
        #expect(route.priority == 7)
        #expect(route.upstreamID == "default_httpbin_80")
        #expect(route.enableWebsocket == true)
        #expect(route.timeout != nil)
        #expect(route.varsSource == json(#"[["http_x_env", "==", "prod"]]"#))
        #expect(Set(route.plugins.keys) == ["proxy-rewrite", "traffic-split"])
        #expect(route.labels == ["managed-by": "sluice-ingress"])
        for id in ["default_httpbin_80", "default_echo_80"] {
            let upstream = try Upstream.decode(try #require(t.upstream(id)), id: id)
            #expect(upstream.name == id)
            #expect(upstream.nodes.isEmpty)
        }
    }

    @Test func priorityIsCopiedAndZeroIsLeftOut() throws {
        var c = try httpbinCluster()
        try c.addRoute("high", ruleSpec(#""priority": 10"#))
        try c.addRoute("low", ruleSpec(#""priority": -2"#))
        try c.addRoute("none", ruleSpec())
        let t = translate(c)
        #expect(t.route("default_high_rule1")?["priority"] == 10)
        #expect(t.route("default_low_rule1")?["priority"] == -2)
        #expect(t.route("default_none_rule1")?["priority"] == nil)
    }

    @Test func timeoutsAreSecondsWithSixtyForTheMissingOnes() throws {
        var c = try httpbinCluster()
        try c.addRoute("r", ruleSpec(#""timeout": {"connect": "5s", "read": "1m30s"}"#))
        try c.addRoute("fractional", ruleSpec(#""timeout": {"send": "1500ms"}"#))
        let t = translate(c)
        #expect(t.route("default_r_rule1")?["timeout"] == ["connect": 5, "send": 60, "read": 90])
        #expect(t.route("default_fractional_rule1")?["timeout"] == ["connect": 60, "send": 1.5, "read": 60])
    }

    @Test(arguments: ["connect", "send", "read"])
    func aBadDurationNamesItsField(field: String) throws {
        var c = try httpbinCluster()
        try c.addRoute("r", ruleSpec(#""timeout": {"\#(field)": "soon"}"#))
        let t = translate(c)
        #expect(t.routeError("r").contains("spec.http[0].timeout.\(field)"))
        #expect(t.routeError("r").contains("\"soon\""))
        #expect(t.objects.isEmpty)
    }

    @Test func zeroOrNegativeTimeoutIsAnError() throws {
        var c = try httpbinCluster()
        try c.addRoute("zero", ruleSpec(#""timeout": {"read": "0s"}"#))
        try c.addRoute("negative", ruleSpec(#""timeout": {"connect": "-1s"}"#))
        let t = translate(c)
        #expect(t.routeError("zero").contains("spec.http[0].timeout.read"))
        #expect(t.routeError("negative").contains("spec.http[0].timeout.connect"))
    }

    @Test func matchHostsPathsMethodsAndRemoteAddressesAreCopied() throws {
        var c = try httpbinCluster()
        try c.addRoute("r", ruleSpec(match: #"""
            {"paths": ["/a", "/b/*"], "hosts": ["foo.com", "*.bar.com"], "methods": ["get", "Put"], "remoteAddrs": ["10.0.0.1", "192.168.0.0/16"]}
            """#))
        let route = try #require(translate(c).route("default_r_rule1"))
        #expect(route["uris"] == ["/a", "/b/*"])
        #expect(route["hosts"] == ["foo.com", "*.bar.com"])
        #expect(route["methods"] == ["GET", "PUT"])
        #expect(route["remote_addrs"] == ["10.0.0.1", "192.168.0.0/16"])
        #expect(route["vars"] == nil)
    }

    @Test func emptyMatchListsAreLeftOut() throws {
        var c = try httpbinCluster()
        try c.addRoute("r", ruleSpec())
        let route = try #require(translate(c).route("default_r_rule1"))
        #expect(route["hosts"] == nil)
        #expect(route["methods"] == nil)
        #expect(route["remote_addrs"] == nil)
    }

    @Test func badMatchFieldsNameTheirPath() throws {
        var c = try httpbinCluster()
        try c.addRoute("nopaths", ruleSpec(match: #"{"hosts": ["a.com"]}"#))
        try c.addRoute("badpath", ruleSpec(match: #"{"paths": ["/ok", "relative"]}"#))
        try c.addRoute("lua", ruleSpec(match: #"{"paths": ["/"], "filter_func": "function(vars) return true end"}"#))
        let t = translate(c)
        #expect(t.routeError("nopaths").contains("spec.http[0].match.paths"))
        #expect(t.routeError("badpath").contains("spec.http[0].match.paths[1]"))
        #expect(t.routeError("lua").contains("spec.http[0].match.filter_func"))
        #expect(t.objects.isEmpty)
    }

    // MARK: exprs

    struct ScopeCase: Sendable, CustomTestStringConvertible {
        var scope: String
        var name: String
        var variable: String
        var testDescription: String { "\(scope) \(name) → \(variable)" }
    }

    @Test(arguments: [
        ScopeCase(scope: "Header", name: "X-Foo-Bar", variable: "http_x_foo_bar"),
        ScopeCase(scope: "Query", name: "userId", variable: "arg_userId"),
        ScopeCase(scope: "Cookie", name: "session", variable: "cookie_session"),
        ScopeCase(scope: "Path", name: "", variable: "uri"),
        ScopeCase(scope: "Path", name: "ignored", variable: "uri"),
        ScopeCase(scope: "Variable", name: "remote_addr", variable: "remote_addr"),
    ])
    func exprScopeBecomesTheVariable(_ s: ScopeCase) throws {
        var c = try httpbinCluster()
        try c.addRoute("r", ruleSpec(
            match: #"{"paths": ["/*"], "exprs": [{"subject": {"scope": "\#(s.scope)", "name": "\#(s.name)"}, "op": "Equal", "value": "v"}]}"#))
        let t = translate(c)
        let vars = try #require(t.route("default_r_rule1")?["vars"])
        #expect(vars == [[.string(s.variable), "==", "v"]])
        // The gateway parses it.
        #expect(throws: Never.self) { try Route.decode(t.route("default_r_rule1")!, id: "default_r_rule1") }
    }

    struct OpCase: Sendable, CustomTestStringConvertible {
        var op: String
        /// `"value": ...` or `"set": [...]`.
        var operand: String
        var expected: JSONValue
        var testDescription: String { op }
    }

    @Test(arguments: [
        OpCase(op: "Equal", operand: #""value": "a""#, expected: ["arg_q", "==", "a"]),
        OpCase(op: "NotEqual", operand: #""value": "a""#, expected: ["arg_q", "~=", "a"]),
        OpCase(op: "GreaterThan", operand: #""value": "10""#, expected: ["arg_q", ">", 10]),
        OpCase(op: "GreaterThanEqual", operand: #""value": "2.5""#, expected: ["arg_q", ">=", 2.5]),
        OpCase(op: "LessThan", operand: #""value": "-3""#, expected: ["arg_q", "<", -3]),
        OpCase(op: "LessThanEqual", operand: #""value": "7""#, expected: ["arg_q", "<=", 7]),
        OpCase(op: "RegexMatch", operand: #""value": "^a.*""#, expected: ["arg_q", "~~", "^a.*"]),
        OpCase(op: "RegexNotMatch", operand: #""value": "^a.*""#, expected: ["arg_q", "!", "~~", "^a.*"]),
        OpCase(op: "RegexMatchCaseInsensitive", operand: #""value": "^a""#, expected: ["arg_q", "~*", "^a"]),
        OpCase(op: "RegexNotMatchCaseInsensitive", operand: #""value": "^a""#, expected: ["arg_q", "!", "~*", "^a"]),
        OpCase(op: "In", operand: #""set": ["a", "b"]"#, expected: ["arg_q", "in", ["a", "b"]]),
        OpCase(op: "NotIn", operand: #""set": ["a"]"#, expected: ["arg_q", "!", "in", ["a"]]),
    ])
    func exprOperatorBecomesTheVarsOperator(_ o: OpCase) throws {
        var c = try httpbinCluster()
        try c.addRoute("r", ruleSpec(
            match: #"{"paths": ["/*"], "exprs": [{"subject": {"scope": "Query", "name": "q"}, "op": "\#(o.op)", \#(o.operand)}]}"#))
        let t = translate(c)
        #expect(t.errors.isEmpty)
        let route = try #require(t.route("default_r_rule1"))
        #expect(route["vars"] == [o.expected])
        #expect(throws: Never.self) { try Route.decode(route, id: "default_r_rule1") }
    }

    @Test func severalExprsAreAndedInOrder() throws {
        var c = try httpbinCluster()
        try c.addRoute("r", ruleSpec(match: #"""
            {"paths": ["/*"], "exprs": [
              {"subject": {"scope": "Header", "name": "X-A"}, "op": "Equal", "value": "1"},
              {"subject": {"scope": "Cookie", "name": "b"}, "op": "In", "set": ["x", "y"]}]}
            """#))
        #expect(translate(c).route("default_r_rule1")?["vars"] == json(#"[["http_x_a", "==", "1"], ["cookie_b", "in", ["x", "y"]]]"#))
    }

    struct BadExprCase: Sendable, CustomTestStringConvertible {
        var expr: String
        var field: String
        var testDescription: String { field }
    }

    @Test(arguments: [
        BadExprCase(expr: #"{"subject": {"scope": "Body", "name": "x"}, "op": "Equal", "value": "1"}"#, field: "spec.http[0].match.exprs[1].subject.scope"),
        BadExprCase(expr: #"{"subject": {"scope": "Header"}, "op": "Equal", "value": "1"}"#, field: "spec.http[0].match.exprs[1].subject.name"),
        BadExprCase(expr: #"{"subject": {"scope": "Query", "name": "a"}, "op": "Like", "value": "1"}"#, field: "spec.http[0].match.exprs[1].op"),
        BadExprCase(expr: #"{"subject": {"scope": "Query", "name": "a"}, "op": "GreaterThan", "value": "ten"}"#, field: "spec.http[0].match.exprs[1].value"),
        BadExprCase(expr: #"{"subject": {"scope": "Query", "name": "a"}, "op": "Equal"}"#, field: "spec.http[0].match.exprs[1].value"),
        BadExprCase(expr: #"{"subject": {"scope": "Query", "name": "a"}, "op": "In", "value": "x"}"#, field: "spec.http[0].match.exprs[1].set"),
    ])
    func aBadExprNamesItsField(_ b: BadExprCase) throws {
        var c = try httpbinCluster()
        let ok = #"{"subject": {"scope": "Query", "name": "ok"}, "op": "Equal", "value": "1"}"#
        try c.addRoute("r", ruleSpec(match: #"{"paths": ["/*"], "exprs": [\#(ok), \#(b.expr)]}"#))
        let t = translate(c)
        #expect(t.routeError("r").contains(b.field), "\(t.routeError("r"))")
        #expect(t.objects.isEmpty)
    }

    // MARK: backends

    @Test func servicePortByNameIsNamedByThePortNumber() throws {
        var c = ClusterState()
        try c.addService("httpbin", ports: #"[{"name": "metrics", "port": 9090}, {"name": "web", "port": 8000, "targetPort": "http-web"}]"#)
        try c.addRoute("r", ruleSpec(backends: #"[{"serviceName": "httpbin", "servicePort": "web"}]"#))
        let t = translate(c)
        #expect(t.route("default_r_rule1")?["upstream_id"] == "default_httpbin_8000")
        #expect(t.ids(.upstreams) == ["default_httpbin_8000"])
        #expect(t.endpointSources["default_httpbin_8000"] == EndpointSource(
            service: "default/httpbin", port: .init(name: "web", port: 8000, targetPort: .name("http-web"), protocol: "TCP", appProtocol: nil)))
    }

    @Test func servicePortByNumberPicksThatPort() throws {
        var c = ClusterState()
        try c.addService("httpbin", ports: #"[{"name": "a", "port": 81}, {"name": "b", "port": 82, "targetPort": 9000}]"#)
        try c.addRoute("r", ruleSpec(backends: #"[{"serviceName": "httpbin", "servicePort": 82}]"#))
        let t = translate(c)
        #expect(t.route("default_r_rule1")?["upstream_id"] == "default_httpbin_82")
        #expect(t.endpointSources["default_httpbin_82"]?.port == .init(name: "b", port: 82, targetPort: .number(9000), protocol: "TCP", appProtocol: nil))
    }

    @Test func anUnknownServicePortNamesTheField() throws {
        var c = try httpbinCluster()
        try c.addRoute("bynumber", ruleSpec(backends: #"[{"serviceName": "httpbin", "servicePort": 8080}]"#))
        try c.addRoute("byname", ruleSpec(backends: #"[{"serviceName": "httpbin", "servicePort": "grpc"}]"#))
        let t = translate(c)
        #expect(t.routeError("bynumber").contains("spec.http[0].backends[0].servicePort"))
        #expect(t.routeError("bynumber").contains("8080"))
        #expect(t.routeError("byname").contains("spec.http[0].backends[0].servicePort"))
        #expect(t.routeError("byname").contains("grpc"))
    }

    @Test func resolveGranularityServiceUsesTheClusterIP() throws {
        var c = ClusterState()
        try c.addService("httpbin", clusterIP: "10.96.1.2")
        try c.addRoute("r", ruleSpec(backends: #"[{"serviceName": "httpbin", "servicePort": 80, "resolveGranularity": "service"}]"#))
        let t = translate(c)
        #expect(t.route("default_r_rule1")?["upstream_id"] == "default_httpbin_80_service")
        let upstream = try #require(t.upstream("default_httpbin_80_service"))
        #expect(upstream == json(#"""
            {"name": "default_httpbin_80_service", "labels": {"managed-by": "sluice-ingress"}, "nodes": [{"host": "10.96.1.2", "port": 80, "weight": 100}]}
            """#))
        #expect(t.endpointSources.isEmpty)
        let decoded = try Upstream.decode(upstream, id: "default_httpbin_80_service")
        #expect(decoded.nodes.map(\.host) == ["10.96.1.2"])
        #expect(decoded.nodes.map(\.port) == [80])
    }

    @Test(arguments: ["None", ""])
    func resolveGranularityServiceOnAHeadlessServiceIsAnError(clusterIP: String) throws {
        var c = ClusterState()
        try c.addService("httpbin", clusterIP: clusterIP)
        try c.addRoute("r", ruleSpec(backends: #"[{"serviceName": "httpbin", "servicePort": 80, "resolveGranularity": "service"}]"#))
        let t = translate(c)
        #expect(t.routeError("r").contains("spec.http[0].backends[0].resolveGranularity"))
        #expect(t.routeError("r").contains("headless"))
        #expect(t.objects.isEmpty)
    }

    @Test func resolveGranularityEndpointFollowsEndpointsAndUnknownIsAnError() throws {
        var c = try httpbinCluster()
        try c.addRoute("r", ruleSpec(backends: #"[{"serviceName": "httpbin", "servicePort": 80, "resolveGranularity": "endpoint"}]"#))
        try c.addRoute("bad", ruleSpec(backends: #"[{"serviceName": "httpbin", "servicePort": 80, "resolveGranularity": "pod"}]"#))
        let t = translate(c)
        #expect(t.upstream("default_httpbin_80")?["nodes"] == .object([:]))
        #expect(t.endpointSources["default_httpbin_80"] == EndpointSource(service: "default/httpbin", port: httpbinPort))
        #expect(t.routeError("bad").contains("spec.http[0].backends[0].resolveGranularity"))
    }

    @Test func anExternalNameServiceBackendIsItsHost() throws {
        var c = ClusterState()
        try c.addService("ext", clusterIP: nil, type: "ExternalName", externalName: "httpbin.org")
        try c.addRoute("r", ruleSpec(backends: #"[{"serviceName": "ext", "servicePort": 80}]"#))
        let t = translate(c)
        #expect(t.upstream("default_ext_80")?["nodes"] == [["host": "httpbin.org", "port": 80, "weight": 100]])
        #expect(t.endpointSources.isEmpty)
    }

    @Test func extraBackendsSplitTrafficByWeight() throws {
        var c = try httpbinCluster()
        try c.addService("v2")
        try c.addService("v3")
        try c.addRoute("r", ruleSpec(backends: #"""
            [{"serviceName": "httpbin", "servicePort": 80, "weight": 10},
             {"serviceName": "v2", "servicePort": 80, "weight": 30},
             {"serviceName": "v3", "servicePort": 80}]
            """#))
        let t = translate(c)
        let route = try #require(t.route("default_r_rule1"))
        #expect(route["upstream_id"] == "default_httpbin_80")
        #expect(route["plugins"] == json(#"""
            {"traffic-split": {"rules": [{"weighted_upstreams": [
                {"upstream_id": "default_v2_80", "weight": 30}, {"upstream_id": "default_v3_80", "weight": 100}, {"weight": 10}]}]}}
            """#))
        #expect(t.ids(.upstreams) == ["default_httpbin_80", "default_v2_80", "default_v3_80"])
        #expect(throws: Never.self) { try Route.decode(route, id: "default_r_rule1") }
    }

    @Test func aSingleBackendHasNoTrafficSplit() throws {
        var c = try httpbinCluster()
        try c.addRoute("r", ruleSpec(backends: #"[{"serviceName": "httpbin", "servicePort": 80, "weight": 5}]"#))
        #expect(translate(c).route("default_r_rule1")?["plugins"] == nil)
    }

    @Test func aSubsetSelectsLabelsFromTheApisixUpstream() throws {
        var c = try httpbinCluster()
        try c.addUpstream("httpbin", #"{"subsets": [{"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2", "tier": "web"}}]}"#)
        try c.addRoute("r", ruleSpec(backends: #"[{"serviceName": "httpbin", "servicePort": 80, "subset": "v2"}]"#))
        let t = translate(c)
        #expect(t.errors.isEmpty)
        #expect(t.route("default_r_rule1")?["upstream_id"] == "default_httpbin_v2_80")
        #expect(t.upstream("default_httpbin_v2_80")?["name"] == "default_httpbin_v2_80")
        #expect(t.endpointSources["default_httpbin_v2_80"] == EndpointSource(
            service: "default/httpbin", port: httpbinPort, subsetLabels: ["version": "v2", "tier": "web"]))
        #expect(t.produced[SourceRef(.apisixUpstream, "default", "httpbin")] == [ObjectKey(.upstreams, "default_httpbin_v2_80")])
    }

    @Test func aMissingSubsetNamesTheField() throws {
        var c = try httpbinCluster()
        try c.addUpstream("httpbin", #"{"subsets": [{"name": "v1", "labels": {"version": "v1"}}]}"#)
        try c.addRoute("r", ruleSpec(backends: #"[{"serviceName": "httpbin", "servicePort": 80, "subset": "v9"}]"#))
        try c.addRoute("noupstream", ns: "other", ruleSpec(backends: #"[{"serviceName": "httpbin", "servicePort": 80, "subset": "v1"}]"#))
        try c.addService("httpbin", ns: "other")
        let t = translate(c)
        #expect(t.routeError("r").contains("spec.http[0].backends[0].subset"))
        #expect(t.routeError("r").contains("v9"))
        // No ApisixUpstream for other/httpbin: no subsets at all.
        #expect(t.routeError("noupstream", ns: "other").contains("spec.http[0].backends[0].subset"))
        #expect(t.route("default_r_rule1") == nil)
    }

    // MARK: upstreams (ApisixUpstream with external nodes)

    @Test func upstreamsReferToExternalNodes() throws {
        var c = ClusterState()
        try c.addService("ext-svc", clusterIP: nil, type: "ExternalName", externalName: "api.example.com")
        try c.addUpstream("ext", generation: 2, #"""
            {"externalNodes": [{"name": "httpbin.org", "type": "Domain"}, {"name": "ext-svc", "type": "Service", "port": 8443, "weight": 5},
                               {"name": "10.1.2.3"}]}
            """#)
        try c.addRoute("r", ruleSpec(#""upstreams": [{"name": "ext"}]"#, backends: "[]"))
        let t = translate(c)
        #expect(t.errors.isEmpty)
        #expect(t.route("default_r_rule1")?["upstream_id"] == "default_ext")
        #expect(t.upstream("default_ext") == json(#"""
            {"name": "default_ext", "labels": {"managed-by": "sluice-ingress"}, "nodes": [
              {"host": "httpbin.org", "port": 80, "weight": 100}, {"host": "api.example.com", "port": 8443, "weight": 5},
              {"host": "10.1.2.3", "port": 80, "weight": 100}]}
            """#))
        #expect(t.endpointSources.isEmpty)
        #expect(t.produced[SourceRef(.apisixUpstream, "default", "ext")] == [ObjectKey(.upstreams, "default_ext")])
        #expect(t.generations[SourceRef(.apisixUpstream, "default", "ext")] == 2)
        let decoded = try Upstream.decode(try #require(t.upstream("default_ext")), id: "default_ext")
        #expect(decoded.nodes.map(\.weight) == [100, 5, 100])
    }

    @Test func backendsAndUpstreamsTogetherSplitTraffic() throws {
        var c = try httpbinCluster()
        try c.addUpstream("ext", #"{"externalNodes": [{"name": "httpbin.org"}]}"#)
        try c.addRoute("r", ruleSpec(#""upstreams": [{"name": "ext", "weight": 20}]"#,
                                     backends: #"[{"serviceName": "httpbin", "servicePort": 80, "weight": 80}]"#))
        let route = try #require(translate(c).route("default_r_rule1"))
        #expect(route["upstream_id"] == "default_httpbin_80")
        #expect(route["plugins"]?["traffic-split"]?["rules"] == json(#"[{"weighted_upstreams": [{"upstream_id": "default_ext", "weight": 20}, {"weight": 80}]}]"#))
    }

    @Test func badExternalUpstreamsNameTheField() throws {
        var c = ClusterState()
        try c.addService("cluster-ip")
        try c.addUpstream("notexternal", #"{"externalNodes": [{"name": "cluster-ip", "type": "Service"}]}"#)
        try c.addUpstream("empty", #"{"scheme": "http"}"#)
        try c.addRoute("missing", ruleSpec(#""upstreams": [{"name": "nope"}]"#, backends: "[]"))
        try c.addRoute("svc", ruleSpec(#""upstreams": [{"name": "notexternal"}]"#, backends: "[]"))
        try c.addRoute("empty", ruleSpec(#""upstreams": [{"name": "empty"}]"#, backends: "[]"))
        try c.addRoute("neither", ruleSpec(backends: "[]"))
        let t = translate(c)
        #expect(t.routeError("missing").contains("spec.http[0].upstreams[0].name"))
        #expect(t.routeError("svc").contains("externalNodes[0].name"))
        #expect(t.routeError("svc").contains("ExternalName"))
        #expect(t.routeError("empty").contains("spec.http[0].upstreams[0].name"))
        #expect(t.routeError("neither").contains("spec.http[0]"))
        #expect(t.ids(.routes).isEmpty)
    }

    // MARK: websocket, plugins, plugin configs, authentication

    @Test func websocketEnablesWebsocket() throws {
        var c = try httpbinCluster()
        try c.addRoute("ws", ruleSpec(#""websocket": true"#))
        try c.addRoute("plain", ruleSpec(#""websocket": false"#))
        let t = translate(c)
        #expect(t.route("default_ws_rule1")?["enable_websocket"] == true)
        #expect(t.route("default_plain_rule1")?["enable_websocket"] == nil)
    }

    @Test func enabledPluginsAreKeptAndDisabledOnesDropped() throws {
        var c = try httpbinCluster()
        try c.addRoute("r", ruleSpec(#"""
            "plugins": [{"name": "proxy-rewrite", "enable": true, "config": {"uri": "/x"}},
                        {"name": "cors", "enable": false, "config": {"allow_origins": "*"}},
                        {"name": "request-id"}]
            """#))
        let route = try #require(translate(c).route("default_r_rule1"))
        #expect(route["plugins"] == ["proxy-rewrite": ["uri": "/x"], "request-id": [:]])
        #expect(throws: Never.self) { try Route.decode(route, id: "default_r_rule1") }
    }

    @Test func aPluginSecretRefOverlaysTheSecretKeysIncludingDottedOnes() throws {
        var c = try httpbinCluster()
        try c.addSecret("rewrite-conf", ["host": "internal.local", "headers.add.X-Api-Key": "s3cret", "uri": "/from-secret"])
        try c.addRoute("r", ruleSpec(#"""
            "plugins": [{"name": "proxy-rewrite", "config": {"uri": "/x", "headers": {"add": {"X-Other": "1"}}}, "secretRef": "rewrite-conf"}]
            """#))
        let t = translate(c)
        #expect(t.errors.isEmpty)
        let route = try #require(t.route("default_r_rule1"))
        #expect(route["plugins"]?["proxy-rewrite"] == json(#"""
            {"uri": "/from-secret", "host": "internal.local", "headers": {"add": {"X-Other": "1", "X-Api-Key": "s3cret"}}}
            """#))
        let decoded = try Route.decode(route, id: "default_r_rule1")
        #expect(decoded.plugins["proxy-rewrite"]?["host"] == "internal.local")
    }

    @Test func aPluginSecretRefToAMissingSecretIsAnError() throws {
        var c = try httpbinCluster()
        try c.addRoute("r", ruleSpec(#""plugins": [{"name": "request-id"}, {"name": "key-auth", "secretRef": "gone"}]"#))
        let t = translate(c)
        #expect(t.routeError("r").contains("spec.http[0].plugins[1].secretRef"))
        #expect(t.routeError("r").contains("default/gone"))
        #expect(t.objects.isEmpty)
    }

    @Test func pluginConfigNameBecomesPluginConfigID() throws {
        var c = try httpbinCluster()
        try c.addPluginConfig("shared", #"{"plugins": [{"name": "request-id"}]}"#)
        try c.addPluginConfig("shared", ns: "infra", #"{"plugins": [{"name": "request-id"}]}"#)
        try c.addRoute("local", ruleSpec(#""plugin_config_name": "shared""#))
        try c.addRoute("remote", ruleSpec(#""plugin_config_name": "shared", "plugin_config_namespace": "infra""#))
        let t = translate(c)
        #expect(t.errors.isEmpty)
        #expect(t.route("default_local_rule1")?["plugin_config_id"] == "default_shared")
        #expect(t.route("default_remote_rule1")?["plugin_config_id"] == "infra_shared")
        #expect(t.objects[ObjectKey(.pluginConfigs, "infra_shared")] != nil)
        #expect(throws: Never.self) { try Route.decode(t.route("default_local_rule1")!, id: "x") }
    }

    @Test func aMissingPluginConfigIsAnError() throws {
        var c = try httpbinCluster()
        try c.addPluginConfig("other-class", #"{"ingressClassName": "nginx", "plugins": [{"name": "request-id"}]}"#)
        try c.addRoute("r", ruleSpec(#""plugin_config_name": "nope""#))
        let t = translate(c)
        #expect(t.routeError("r").contains("spec.http[0].plugin_config_name"))
        #expect(t.routeError("r").contains("default/nope"))
    }

    struct AuthCase: Sendable, CustomTestStringConvertible {
        var authentication: String
        var plugin: String
        var config: JSONValue
        var testDescription: String { plugin }
    }

    @Test(arguments: [
        AuthCase(authentication: #"{"enable": true, "type": "keyAuth", "keyAuth": {"header": "apikey"}}"#, plugin: "key-auth", config: ["header": "apikey"]),
        AuthCase(authentication: #"{"enable": true, "type": "keyAuth"}"#, plugin: "key-auth", config: [:]),
        AuthCase(authentication: #"{"enable": true, "type": "jwtAuth", "jwtAuth": {"header": "Authorization", "query": "jwt", "cookie": "tok"}}"#,
                 plugin: "jwt-auth", config: ["header": "Authorization", "query": "jwt", "cookie": "tok"]),
        AuthCase(authentication: #"{"enable": true, "type": "basicAuth"}"#, plugin: "basic-auth", config: [:]),
        AuthCase(authentication: #"{"enable": true, "type": "hmacAuth"}"#, plugin: "hmac-auth", config: [:]),
        AuthCase(authentication: #"{"enable": true, "type": "wolfRBAC"}"#, plugin: "wolf-rbac", config: [:]),
        AuthCase(authentication: #"""
            {"enable": true, "type": "ldapAuth", "ldapAuth": {"base_dn": "ou=users,dc=example,dc=org", "ldap_uri": "ldap:389", "use_tls": false, "uid": "cn"}}
            """#, plugin: "ldap-auth", config: ["base_dn": "ou=users,dc=example,dc=org", "ldap_uri": "ldap:389", "use_tls": false, "uid": "cn"]),
    ])
    func authenticationBecomesItsPlugin(_ a: AuthCase) throws {
        var c = try httpbinCluster()
        try c.addRoute("r", ruleSpec(#""plugins": [{"name": "request-id"}], "authentication": \#(a.authentication)"#))
        let t = translate(c)
        #expect(t.errors.isEmpty)
        #expect(t.route("default_r_rule1")?["plugins"] == .object(["request-id": [:], a.plugin: a.config]))
    }

    @Test func disabledAuthenticationAddsNothingAndAnUnknownTypeIsAnError() throws {
        var c = try httpbinCluster()
        try c.addRoute("off", ruleSpec(#""authentication": {"enable": false, "type": "keyAuth"}"#))
        try c.addRoute("bad", ruleSpec(#""authentication": {"enable": true, "type": "oauth"}"#))
        let t = translate(c)
        #expect(t.route("default_off_rule1")?["plugins"] == nil)
        #expect(t.routeError("bad").contains("spec.http[0].authentication.type"))
    }

    @Test func keyAuthRouteIsAcceptedByTheGateway() throws {
        var c = try httpbinCluster()
        try c.addRoute("r", ruleSpec(#""authentication": {"enable": true, "type": "keyAuth", "keyAuth": {"header": "apikey"}}"#))
        let route = try Route.decode(try #require(translate(c).route("default_r_rule1")), id: "default_r_rule1")
        #expect(route.plugins["key-auth"]?["header"] == "apikey")
    }

    // MARK: rule names

    @Test func aDuplicateRuleNameIsAnError() throws {
        var c = try httpbinCluster()
        try c.addRoute("r", #"""
            {"http": [{"name": "a", "match": {"paths": ["/a"]}, "backends": [{"serviceName": "httpbin", "servicePort": 80}]},
                      {"name": "a", "match": {"paths": ["/b"]}, "backends": [{"serviceName": "httpbin", "servicePort": 80}]}]}
            """#)
        let t = translate(c)
        #expect(t.routeError("r").contains("spec.http[1].name"))
        #expect(t.objects.isEmpty)
    }

    @Test func everyRuleIsItsOwnRouteSharingTheUpstream() throws {
        var c = try httpbinCluster()
        try c.addRoute("r", #"""
            {"http": [{"name": "a", "match": {"paths": ["/a"]}, "backends": [{"serviceName": "httpbin", "servicePort": 80}]},
                      {"name": "b", "match": {"paths": ["/b"]}, "backends": [{"serviceName": "httpbin", "servicePort": "http"}]}]}
            """#)
        let t = translate(c)
        #expect(t.ids(.routes) == ["default_r_a", "default_r_b"])
        #expect(t.ids(.upstreams) == ["default_httpbin_80"])
        #expect(t.route("default_r_b")?["upstream_id"] == "default_httpbin_80")
    }

    // MARK: stream rules

    @Test func streamRulesBecomeStreamRoutes() throws {
        var c = ClusterState()
        try c.addService("redis", ports: #"[{"name": "redis", "port": 6379}]"#)
        try c.addService("dns", ports: #"[{"name": "dns", "port": 53, "protocol": "UDP"}]"#)
        try c.addRoute("r", #"""
            {"stream": [
              {"name": "tcp", "protocol": "TCP", "match": {"ingressPort": 9100}, "backend": {"serviceName": "redis", "servicePort": 6379}},
              {"name": "udp", "protocol": "UDP", "match": {"ingressPort": 9200, "host": "dns.example.com"},
               "backend": {"serviceName": "dns", "servicePort": "dns"}, "plugins": [{"name": "ip-restriction", "config": {"whitelist": ["10.0.0.0/8"]}}]}]}
            """#)
        let t = translate(c)
        #expect(t.errors.isEmpty)
        #expect(t.streamRoute("default_r_tcp") == json(#"""
            {"name": "default_r_tcp", "server_port": 9100, "upstream_id": "default_redis_6379_tcp", "labels": {"managed-by": "sluice-ingress"}}
            """#))
        #expect(t.streamRoute("default_r_udp") == json(#"""
            {"name": "default_r_udp", "server_port": 9200, "upstream_id": "default_dns_53_udp", "sni": "dns.example.com",
             "plugins": {"ip-restriction": {"whitelist": ["10.0.0.0/8"]}}, "labels": {"managed-by": "sluice-ingress"}}
            """#))
        #expect(t.upstream("default_redis_6379_tcp")?["scheme"] == "tcp")
        #expect(t.upstream("default_dns_53_udp")?["scheme"] == "udp")
        #expect(t.endpointSources["default_dns_53_udp"]?.port.protocol == "UDP")
        #expect(t.ids(.routes).isEmpty)
    }

    @Test func aStreamRuleNeedsAValidIngressPortAndAService() throws {
        var c = ClusterState()
        try c.addService("redis", ports: #"[{"name": "redis", "port": 6379}]"#)
        try c.addRoute("port", #"{"stream": [{"name": "s", "protocol": "TCP", "match": {"ingressPort": 70000}, "backend": {"serviceName": "redis", "servicePort": 6379}}]}"#)
        try c.addRoute("svc", #"{"stream": [{"name": "s", "protocol": "TCP", "match": {"ingressPort": 9100}, "backend": {"serviceName": "nope", "servicePort": 6379}}]}"#)
        let t = translate(c)
        #expect(t.routeError("port").contains("spec.stream[0].match.ingressPort"))
        #expect(t.routeError("svc").contains("spec.stream[0].backend.serviceName"))
        #expect(t.objects.isEmpty)
    }

    @Test func httpAndStreamRuleNamesMustDiffer() throws {
        var c = ClusterState()
        try c.addService("redis", ports: #"[{"name": "redis", "port": 6379}]"#)
        try c.addRoute("r", #"""
            {"http": [{"name": "x", "match": {"paths": ["/"]}, "backends": [{"serviceName": "redis", "servicePort": 6379}]}],
             "stream": [{"name": "x", "protocol": "TCP", "match": {"ingressPort": 9100}, "backend": {"serviceName": "redis", "servicePort": 6379}}]}
            """#)
        #expect(translate(c).routeError("r").contains("spec.stream[0].name"))
    }

    @Test func anHTTPRuleAndAStreamRuleOnTheSameServicePortKeepTheirOwnUpstreams() throws {
        var c = ClusterState()
        try c.addService("redis", ports: #"[{"name": "redis", "port": 6379}]"#)
        try c.addRoute("both", #"""
            {"http": [{"name": "h", "match": {"paths": ["/"]}, "backends": [{"serviceName": "redis", "servicePort": 6379}]}],
             "stream": [{"name": "s", "protocol": "TCP", "match": {"ingressPort": 9100}, "backend": {"serviceName": "redis", "servicePort": 6379}}]}
            """#)
        let one = translate(c)
        let httpUpstream = one.route("default_both_h")?["upstream_id"]?.stringValue ?? ""
        #expect(one.upstream(httpUpstream)?["scheme"] == nil)

        var d = ClusterState()
        try d.addService("redis", ports: #"[{"name": "redis", "port": 6379}]"#)
        try d.addRoute("a-stream", #"{"stream": [{"name": "s", "protocol": "UDP", "match": {"ingressPort": 9100}, "backend": {"serviceName": "redis", "servicePort": 6379}}]}"#)
        try d.addRoute("b-http", ruleSpec(backends: #"[{"serviceName": "redis", "servicePort": 6379}]"#))
        let two = translate(d)
        let streamUpstream = two.streamRoute("default_a-stream_s")?["upstream_id"]?.stringValue ?? ""
        #expect(two.upstream(streamUpstream)?["scheme"] == "udp")
    }

    // MARK: errors

    @Test func aMissingServiceProducesNothingForThatRouteOnly() throws {
        var c = try httpbinCluster()
        try c.addRoute("good", generation: 1, ruleSpec())
        try c.addRoute("broken", generation: 4, #"""
            {"http": [{"name": "ok", "match": {"paths": ["/ok"]}, "backends": [{"serviceName": "httpbin", "servicePort": 80}]},
                      {"name": "bad", "match": {"paths": ["/bad"]}, "backends": [{"serviceName": "httpbin", "servicePort": 80}, {"serviceName": "missing", "servicePort": 80}]}]}
            """#)
        let t = translate(c)
        let broken = SourceRef(.apisixRoute, "default", "broken")
        #expect(t.errors.keys.sorted() == [broken])
        #expect(t.errors[broken]?.contains("spec.http[1].backends[1].serviceName") == true)
        #expect(t.errors[broken]?.contains("default/missing") == true)
        #expect(t.produced[broken] == nil)
        #expect(t.generations[broken] == nil)
        // Not even its first, valid rule.
        #expect(t.route("default_broken_ok") == nil)
        #expect(t.ids(.routes) == ["default_good_rule1"])
        #expect(t.produced[SourceRef(.apisixRoute, "default", "good")] == [ObjectKey(.routes, "default_good_rule1"), ObjectKey(.upstreams, "default_httpbin_80")])
    }

    @Test func aServiceInAnotherNamespaceIsNotFound() throws {
        var c = ClusterState()
        try c.addService("httpbin", ns: "other")
        try c.addRoute("r", ruleSpec())
        #expect(translate(c).routeError("r").contains("spec.http[0].backends[0].serviceName: Service default/httpbin not found"))
    }

    // MARK: ingress class

    @Test func apisixResourcesOfAnotherClassAreIgnoredAndEmptyOrOurClassAreOurs() throws {
        var c = try httpbinCluster()
        try c.addRoute("other", #"{"ingressClassName": "nginx", "http": [{"name": "r", "match": {"paths": ["/"]}, "backends": [{"serviceName": "missing", "servicePort": 80}]}]}"#)
        try c.addRoute("empty", #"{"ingressClassName": "", "http": [{"name": "r", "match": {"paths": ["/"]}, "backends": [{"serviceName": "httpbin", "servicePort": 80}]}]}"#)
        try c.addRoute("ours", #"{"ingressClassName": "sluice", "http": [{"name": "r", "match": {"paths": ["/"]}, "backends": [{"serviceName": "httpbin", "servicePort": 80}]}]}"#)
        try c.addRoute("unset", ruleSpec())
        let t = translate(c)
        #expect(t.errors.isEmpty)  // the other class's broken route is not even looked at
        #expect(t.ids(.routes) == ["default_empty_r", "default_ours_r", "default_unset_rule1"])
        #expect(t.produced[SourceRef(.apisixRoute, "default", "other")] == nil)

        let apisix = translate(c, ingressClass: "apisix")
        #expect(apisix.ids(.routes) == ["default_empty_r", "default_unset_rule1"])
        #expect(Translator(ingressClass: "apisix").owns(className: "apisix"))
        #expect(!Translator(ingressClass: "apisix").owns(className: "sluice"))
    }

    @Test func anApisixUpstreamOfAnotherClassDoesNotConfigureOurUpstreams() throws {
        var c = try httpbinCluster()
        try c.addUpstream("httpbin", #"{"ingressClassName": "nginx", "scheme": "https", "loadbalancer": {"type": "ewma"}}"#)
        try c.addRoute("r", ruleSpec())
        let t = translate(c)
        #expect(t.upstream("default_httpbin_80") == json(#"{"name": "default_httpbin_80", "labels": {"managed-by": "sluice-ingress"}, "nodes": {}}"#))
        #expect(t.produced[SourceRef(.apisixUpstream, "default", "httpbin")] == nil)
    }
}
