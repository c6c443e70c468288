import KubeClient
import SluiceCore
@testable import SluiceIngress
import Testing

/// Numbers and strings at their extremes in every CRD, Ingress and Service field the
/// translator reads: each is refused with an error naming the field (or translated into an
/// object the gateway takes), never a trap.
@Suite struct HostileValueTests {
    struct Bad: Sendable, CustomTestStringConvertible {
        var spec: String
        var field: String
        var says: String = ""
        var testDescription: String { "\(field) \(spec.prefix(60))" }
    }

    var upstreamRef: SourceRef { SourceRef(.apisixUpstream, "default", "httpbin") }

    func upstreamCluster(_ upstreamSpec: String) throws -> ClusterState {
        var c = ClusterState()
        try c.addService("httpbin", ports: #"[{"name": "http", "port": 80}, {"name": "https", "port": 443}]"#)
        try c.addUpstream("httpbin", upstreamSpec)
        try c.addRoute("r", ruleSpec())
        return c
    }

    /// The issue's example: an interval of 10^20 hours (past Int64 nanoseconds, and past
    /// Int64 seconds once converted) used to trap in `Int64(seconds)`.
    @Test func anIntervalOfTenToTheTwentyHoursIsAnErrorNamingTheField() throws {
        let t = translate(try upstreamCluster(#"{"healthCheck": {"active": {"healthy": {"interval": "99999999999999999999h"}}}}"#))
        let e = try #require(t.errors[upstreamRef])
        #expect(e.hasPrefix("spec.healthCheck.active.healthy.interval: is out of range"), "\(e)")
        #expect(t.routeError("r").contains("healthCheck.active.healthy.interval"))
        #expect(t.objects.isEmpty)
    }

    @Test(arguments: [
        Bad(spec: #"{"healthCheck": {"active": {"healthy": {"interval": "25h"}}}}"#, field: "spec.healthCheck.active.healthy.interval", says: "must be at most 24h0m0s"),
        Bad(spec: #"{"healthCheck": {"active": {"healthy": {"interval": "2562047h47m16.854775807s"}}}}"#, field: "spec.healthCheck.active.healthy.interval", says: "at most"),
        Bad(spec: #"{"healthCheck": {"active": {"unhealthy": {"interval": "-1s"}}}}"#, field: "spec.healthCheck.active.unhealthy.interval", says: "at least 1s"),
        Bad(spec: #"{"healthCheck": {"active": {"unhealthy": {"interval": "1e19s"}}}}"#, field: "spec.healthCheck.active.unhealthy.interval"),
        Bad(spec: #"{"healthCheck": {"active": {"healthy": {"successes": 0}}}}"#, field: "spec.healthCheck.active.healthy.successes", says: "between 1 and 254"),
        Bad(spec: #"{"healthCheck": {"active": {"healthy": {"successes": 9223372036854775807}}}}"#, field: "spec.healthCheck.active.healthy.successes"),
        Bad(spec: #"{"healthCheck": {"active": {"healthy": {"httpCodes": [200, 99]}}}}"#, field: "spec.healthCheck.active.healthy.httpCodes[1]"),
        Bad(spec: #"{"healthCheck": {"active": {"unhealthy": {"httpCodes": [-9223372036854775808]}}}}"#, field: "spec.healthCheck.active.unhealthy.httpCodes[0]"),
        Bad(spec: #"{"healthCheck": {"active": {"unhealthy": {"httpFailures": 255}}}}"#, field: "spec.healthCheck.active.unhealthy.httpFailures"),
        Bad(spec: #"{"healthCheck": {"active": {"unhealthy": {"tcpFailures": -1}}}}"#, field: "spec.healthCheck.active.unhealthy.tcpFailures"),
        Bad(spec: #"{"healthCheck": {"active": {"unhealthy": {"timeout": 2147483648}}}}"#, field: "spec.healthCheck.active.unhealthy.timeout"),
        Bad(spec: #"{"healthCheck": {"active": {"port": 0}}}"#, field: "spec.healthCheck.active.port"),
        Bad(spec: #"{"healthCheck": {"active": {"port": 65536}}}"#, field: "spec.healthCheck.active.port"),
        Bad(spec: #"{"healthCheck": {"active": {"concurrency": 0}}}"#, field: "spec.healthCheck.active.concurrency"),
        Bad(spec: #"{"healthCheck": {"active": {"concurrency": 2147483648}}}"#, field: "spec.healthCheck.active.concurrency"),
        Bad(spec: #"{"healthCheck": {"active": {"timeout": 0}}}"#, field: "spec.healthCheck.active.timeout"),
        Bad(spec: #"{"healthCheck": {"active": {"timeout": -1e308}}}"#, field: "spec.healthCheck.active.timeout"),
        Bad(spec: #"{"healthCheck": {"active": {"timeout": 1e308}}}"#, field: "spec.healthCheck.active.timeout"),
        Bad(spec: #"{"healthCheck": {"active": {"type": "udp"}}}"#, field: "spec.healthCheck.active.type"),
        Bad(spec: #"{"healthCheck": {"active": {"httpPath": "/x\r\nHost: evil"}}}"#, field: "spec.healthCheck.active.httpPath"),
        Bad(spec: #"{"healthCheck": {"active": {"requestHeaders": ["X-A: 1\r\nX-B: 2"]}}}"#, field: "spec.healthCheck.active.requestHeaders[0]"),
        Bad(spec: #"{"healthCheck": {"active": {"host": "a b"}}}"#, field: "spec.healthCheck.active.host"),
        Bad(spec: #"{"retries": 2147483648}"#, field: "spec.retries", says: "between 0 and 2147483647"),
        Bad(spec: #"{"retries": -9223372036854775808}"#, field: "spec.retries"),
        Bad(spec: #"{"timeout": {"read": "99999999999999999999h"}}"#, field: "spec.timeout.read", says: "out of range"),
        Bad(spec: #"{"timeout": {"send": "25h"}}"#, field: "spec.timeout.send", says: "at most 24h0m0s"),
        Bad(spec: #"{"timeout": {"connect": "0"}}"#, field: "spec.timeout.connect", says: "more than 0s"),
        Bad(spec: #"{"timeout": {"connect": "-9223372036854775808ns"}}"#, field: "spec.timeout.connect"),
        Bad(spec: #"{"timeout": {"connect": "5s\u0000"}}"#, field: "spec.timeout.connect"),
        Bad(spec: #"{"upstreamHost": "a.example.com\r\nX-Injected: 1", "passHost": "rewrite"}"#, field: "spec.upstreamHost"),
        Bad(spec: #"{"portLevelSettings": [{"port": 80, "retries": 9223372036854775807}]}"#, field: "spec.portLevelSettings[0].retries"),
    ])
    func anOutOfRangeUpstreamSettingNamesItsField(_ b: Bad) throws {
        let t = translate(try upstreamCluster(b.spec))
        let e = try #require(t.errors[upstreamRef], "translated: \(t.objects)")
        #expect(e.hasPrefix(b.field + ":"), "\(e)")
        #expect(b.says.isEmpty || e.contains(b.says), "\(e)")
        #expect(t.objects.isEmpty)
    }

    @Test func settingsAtTheEdgesOfTheirRangesTranslateAndTheGatewayTakesThem() throws {
        let t = translate(try upstreamCluster(#"""
            {"retries": 2147483647, "timeout": {"connect": "1ns", "send": "24h", "read": "1h2m3.5s"}}
            """#))
        #expect(t.errors.isEmpty, "\(t.errors)")
        let u = try #require(t.upstream("default_httpbin_80"))
        #expect(u["timeout"] == ["connect": 1e-9, "send": 86_400, "read": 3_723.5])
        #expect(u["retries"] == 2_147_483_647)
        _ = try Upstream.decode(u, id: "default_httpbin_80")
        let checks = translate(try upstreamCluster(#"""
            {"healthCheck": {"active": {"port": 65535, "concurrency": 2147483647, "timeout": 86400,
              "healthy": {"interval": "24h", "successes": 254, "httpCodes": [200, 599]}, "unhealthy": {"interval": "1.9s", "httpFailures": 1}}}}
            """#))
        #expect(checks.errors.isEmpty, "\(checks.errors)")
        let active = try #require(checks.upstream("default_httpbin_80")?["checks"]?["active"])
        #expect(active["healthy"]?["interval"] == 86_400)
        #expect(active["unhealthy"]?["interval"] == 1)  // whole seconds, as APISIX takes them
    }

    @Test func externalNodesWithPortsOrWeightsOutOfRangeNameTheField() throws {
        for (node, field) in [
            (#"{"name": "a.example.com", "port": 0}"#, "spec.externalNodes[0].port"),
            (#"{"name": "a.example.com", "port": 9223372036854775807}"#, "spec.externalNodes[0].port"),
            (#"{"name": "a.example.com", "weight": -1}"#, "spec.externalNodes[0].weight"),
            (#"{"name": "a.example.com", "weight": 2147483648}"#, "spec.externalNodes[0].weight"),
            (#"{"name": "a.example.com\r\nHost: x"}"#, "spec.externalNodes[0].name"),
            (#"{"name": ""}"#, "spec.externalNodes[0].name"),
        ] {
            var c = try httpbinCluster()
            try c.addUpstream("ext", #"{"externalNodes": [\#(node)]}"#)
            try c.addRoute("r", ruleSpec(#""upstreams": [{"name": "ext"}]"#, backends: "[]"))
            let t = translate(c)
            #expect(t.routeError("r").hasPrefix("spec.http[0].upstreams[0].name: ApisixUpstream default/ext \(field):"), "\(node): \(t.routeError("r"))")
            // The ApisixUpstream itself says so too.
            #expect(t.errors[SourceRef(.apisixUpstream, "default", "ext")]?.hasPrefix(field + ":") == true, "\(node)")
        }
    }

    @Test(arguments: [
        Bad(spec: ruleSpec(#""priority": 2147483648"#), field: "spec.http[0].priority", says: "between -2147483648 and 2147483647"),
        Bad(spec: ruleSpec(#""priority": -9223372036854775808"#), field: "spec.http[0].priority"),
        Bad(spec: ruleSpec(backends: #"[{"serviceName": "httpbin", "servicePort": 80, "weight": -1}]"#), field: "spec.http[0].backends[0].weight"),
        Bad(spec: ruleSpec(backends: #"[{"serviceName": "httpbin", "servicePort": 80, "weight": 9223372036854775807}]"#), field: "spec.http[0].backends[0].weight"),
        Bad(spec: ruleSpec(#""timeout": {"read": "99999999999999999999h"}"#), field: "spec.http[0].timeout.read", says: "out of range"),
        Bad(spec: ruleSpec(#""timeout": {"connect": "2562047h47m16.854775808s"}"#), field: "spec.http[0].timeout.connect"),
        Bad(spec: ruleSpec(match: #"{"paths": ["/*"], "exprs": [{"subject": {"scope": "Query", "name": "n"}, "op": "GreaterThan", "value": "1e400"}]}"#),
            field: "spec.http[0].match.exprs[0].value"),
        Bad(spec: ruleSpec(match: #"{"paths": ["/*"], "exprs": [{"subject": {"scope": "Query", "name": "n"}, "op": "LessThan", "value": "nan"}]}"#),
            field: "spec.http[0].match.exprs[0].value"),
        Bad(spec: #"{"stream": [{"name": "s", "protocol": "TCP", "match": {"ingressPort": 9223372036854775807}, "backend": {"serviceName": "httpbin", "servicePort": 80}}]}"#,
            field: "spec.stream[0].match.ingressPort"),
        Bad(spec: ruleSpec(backends: #"[{"serviceName": "httpbin", "servicePort": 9223372036854775807}]"#), field: "spec.http[0].backends[0].servicePort"),
        Bad(spec: ruleSpec(backends: #"[{"serviceName": "httpbin", "servicePort": "99999999999999999999"}]"#), field: "spec.http[0].backends[0].servicePort"),
    ])
    func anOutOfRangeRouteFieldNamesItsField(_ b: Bad) throws {
        var c = try httpbinCluster()
        try c.addRoute("r", b.spec)
        let t = translate(c)
        #expect(t.routeError("r").hasPrefix(b.field + ":"), "\(t.routeError("r"))")
        #expect(b.says.isEmpty || t.routeError("r").contains(b.says))
    }

    @Test func weightsAtTheirLimitsSumWithoutOverflow() throws {
        var c = try httpbinCluster()
        try c.addService("v2")
        try c.addRoute("r", ruleSpec(backends: #"""
            [{"serviceName": "httpbin", "servicePort": 80, "weight": 2147483647}, {"serviceName": "v2", "servicePort": 80, "weight": 2147483647}]
            """#))
        let t = translate(c)
        #expect(t.errors.isEmpty)
        let route = try #require(t.route("default_r_rule1"))
        _ = try Route.decode(route, id: "default_r_rule1")
    }

    @Test func aServicePortOutOfRangeIsAnErrorNotANode() throws {
        var c = ClusterState()
        try c.addService("odd", ports: #"[{"name": "http", "port": 70000}, {"name": "neg", "port": -1}]"#)
        try c.addRoute("r", ruleSpec(backends: #"[{"serviceName": "odd", "servicePort": 70000}]"#))
        try c.addRoute("n", ruleSpec(backends: #"[{"serviceName": "odd", "servicePort": "neg"}]"#))
        let t = translate(c)
        #expect(t.routeError("r").contains("spec.http[0].backends[0].servicePort: Service default/odd port 70000 is not between 1 and 65535"))
        #expect(t.routeError("n").contains("spec.http[0].backends[0].servicePort"))
    }

    @Test func anExternalNameThatIsNoHostIsAnError() throws {
        var c = ClusterState()
        try c.addService("ext", clusterIP: nil, type: "ExternalName", externalName: "evil.example.com\r\nX: 1")
        try c.addRoute("r", ruleSpec(backends: #"[{"serviceName": "ext", "servicePort": 80}]"#))
        #expect(translate(c).routeError("r").contains("spec.http[0].backends[0].serviceName: ExternalName Service default/ext spec.externalName"))
    }

    @Test func consumerNumbersOutOfRangeNameTheField() throws {
        for (spec, field) in [
            (#"{"authParameter": {"jwtAuth": {"value": {"key": "k", "exp": 0}}}}"#, "spec.authParameter.jwtAuth.value.exp"),
            (#"{"authParameter": {"jwtAuth": {"value": {"key": "k", "exp": 9223372036854775807}}}}"#, "spec.authParameter.jwtAuth.value.exp"),
            (#"{"authParameter": {"jwtAuth": {"value": {"key": "k", "lifetime_grace_period": -1}}}}"#, "spec.authParameter.jwtAuth.value.lifetime_grace_period"),
            (#"{"authParameter": {"jwtAuth": {"secretRef": {"name": "jwt"}}}}"#, "spec.authParameter.jwtAuth.secretRef"),
        ] {
            var c = ClusterState()
            try c.addSecret("jwt", ["key": "k", "exp": "99999999999999999999"])
            try c.addConsumer("jack", spec)
            let e = translate(c).errors[SourceRef(.apisixConsumer, "default", "jack")] ?? ""
            #expect(e.hasPrefix(field), "\(e)")
        }
    }

    @Test func aTlsDepthOrHostOutOfRangeNamesTheField() throws {
        var c = ClusterState()
        try c.addSecret("cert", ["tls.crt": "C", "tls.key": "K", "ca.crt": "CA"])
        try c.addTls("deep", #"{"hosts": ["a.com"], "secret": {"name": "cert"}, "client": {"caSecret": {"name": "cert"}, "depth": 2147483648}}"#)
        try c.addTls("crlf", #"{"hosts": ["a.com\r\nb"], "secret": {"name": "cert"}}"#)
        let t = translate(c)
        #expect(t.errors[SourceRef(.apisixTls, "default", "deep")]?.hasPrefix("spec.client.depth:") == true)
        #expect(t.errors[SourceRef(.apisixTls, "default", "crlf")]?.hasPrefix("spec.hosts[0]:") == true)
    }

    @Test func integerFieldsGivenAsHugeFloatsAreDecodingErrorsNamingTheField() {
        for (json, field) in [
            (#"{"metadata": {"name": "u"}, "spec": {"retries": 1e19}}"#, "spec.retries"),
            (#"{"metadata": {"name": "u"}, "spec": {"retries": 1e308}}"#, "spec.retries"),
            (#"{"metadata": {"name": "u"}, "spec": {"externalNodes": [{"name": "a", "port": 9.3e18}]}}"#, "spec.externalNodes[0].port"),
            (#"{"metadata": {"name": "u"}, "spec": {"healthCheck": {"active": {"healthy": {"httpCodes": [1e300]}}}}}"#,
             "spec.healthCheck.active.healthy.httpCodes[0]"),
            (#"{"metadata": {"name": "u", "generation": 1e19}, "spec": {}}"#, "metadata.generation"),
        ] {
            do {
                _ = try ApisixUpstream(json: SluiceIngressTests.json(json))
                Issue.record("decoded: \(json)")
            } catch {
                #expect(error.path == field, "\(error)")
            }
        }
    }

    // MARK: - Secrets of other namespaces

    func tlsCluster(_ tlsSpec: String) throws -> ClusterState {
        var c = ClusterState()
        try c.addSecret("site-cert", ns: "certs", ["tls.crt": "OTHER-CERT", "tls.key": "OTHER-KEY", "ca.crt": "OTHER-CA"])
        try c.addSecret("site-cert", ["tls.crt": "OWN-CERT", "tls.key": "OWN-KEY", "ca.crt": "OWN-CA"])
        try c.addTls("site", tlsSpec)
        return c
    }

    @Test func aSecretInAnotherNamespaceIsNotCopiedWhenEveryNamespaceIsWatched() throws {
        let c = try tlsCluster(#"{"hosts": ["example.com"], "secret": {"name": "site-cert", "namespace": "certs"}}"#)
        let t = translate(c)
        let e = try #require(t.errors[SourceRef(.apisixTls, "default", "site")])
        #expect(e.hasPrefix("spec.secret.namespace: Secret certs/site-cert is in another namespace"), "\(e)")
        #expect(t.objects.isEmpty)
        #expect(!t.objects.values.contains { $0.serialized().contains("OTHER") })
        #expect(Translator().secretReferences(c).isEmpty)
    }

    @Test func aCASecretInAnotherNamespaceIsNotCopiedEither() throws {
        let c = try tlsCluster(#"{"hosts": ["example.com"], "secret": {"name": "site-cert", "namespace": "default"}, "client": {"caSecret": {"name": "site-cert", "namespace": "certs"}}}"#)
        let t = translate(c)
        #expect(t.errors[SourceRef(.apisixTls, "default", "site")]?.hasPrefix("spec.client.caSecret.namespace:") == true)
        #expect(!t.objects.values.contains { $0.serialized().contains("OTHER") })
        #expect(Translator().secretReferences(c) == ["default/site-cert": Translator.certificateKeys])
    }

    @Test func anUpstreamClientCertificateInAnotherNamespaceIsNotCopied() throws {
        var c = try upstreamCluster(#"{"scheme": "https", "tlsSecret": {"name": "client", "namespace": "certs"}}"#)
        try c.addSecret("client", ns: "certs", ["tls.crt": "OTHER-CERT", "tls.key": "OTHER-KEY"])
        let t = translate(c)
        #expect(t.errors[upstreamRef]?.hasPrefix("spec.tlsSecret.namespace: Secret certs/client is in another namespace") == true)
        #expect(t.routeError("r").contains("tlsSecret.namespace"))
        #expect(!t.objects.values.contains { $0.serialized().contains("OTHER") })
    }

    @Test func crossNamespaceSecretsAreReadOnlyBetweenNamespacesGivenWithNamespace() throws {
        let c = try tlsCluster(#"{"hosts": ["example.com"], "secret": {"name": "site-cert", "namespace": "certs"}}"#)
        // Both watched: allowed, as the APISIX controller reads ApisixTls secret.namespace.
        let both = Translator(secretNamespaces: ["default", "certs"])
        let t = both.translate(c)
        #expect(t.errors.isEmpty, "\(t.errors)")
        #expect(t.ssl("default_site")?["key"] == "OTHER-KEY")
        #expect(both.secretReferences(c) == ["certs/site-cert": Translator.certificateKeys])
        // The Secret's namespace is not watched: refused.
        let onlyOwn = Translator(secretNamespaces: ["default", "apps"])
        #expect(onlyOwn.translate(c).errors[SourceRef(.apisixTls, "default", "site")]?.contains("--namespace") == true)
        #expect(onlyOwn.secretReferences(c).isEmpty)
        // The same namespace, named explicitly, is always fine.
        let own = try tlsCluster(#"{"hosts": ["example.com"], "secret": {"name": "site-cert", "namespace": "default"}}"#)
        #expect(translate(own).ssl("default_site")?["key"] == "OWN-KEY")
    }

    @Test func pluginAndConsumerSecretRefsReadTheObjectsOwnNamespaceOnly() throws {
        var c = try httpbinCluster()
        try c.addSecret("conf", ns: "other", ["uri": "/other"])
        try c.addRoute("r", ruleSpec(#""plugins": [{"name": "proxy-rewrite", "enable": true, "secretRef": "conf"}]"#))
        try c.addConsumer("jack", #"{"authParameter": {"keyAuth": {"secretRef": {"name": "conf"}}}}"#)
        let t = translate(c)
        #expect(t.routeError("r").contains("Secret default/conf not found"))
        #expect(t.errors[SourceRef(.apisixConsumer, "default", "jack")]?.contains("Secret default/conf not found") == true)
        #expect(Translator().secretReferences(c) == ["default/conf": nil])  // a plugin reads every key
    }

    @Test func secretReferencesNameWhatTheTranslationReads() throws {
        var c = try httpbinCluster()
        try c.addRoute("r", ruleSpec(#""plugins": [{"name": "a", "enable": true, "secretRef": "p"}, {"name": "b", "enable": false, "secretRef": "off"}]"#))
        try c.addConsumer("jack", #"{"authParameter": {"basicAuth": {"secretRef": {"name": "cred"}}, "keyAuth": {"secretRef": {"name": "cred"}}}}"#)
        try c.addConsumer("inline", #"{"authParameter": {"keyAuth": {"value": {"key": "k"}, "secretRef": {"name": "unused"}}}}"#)
        try c.addTls("t", #"{"hosts": ["a.com"], "secret": {"name": "cert"}, "client": {"caSecret": {"name": "ca"}}}"#)
        try c.addIngress("ing", #"{"tls": [{"hosts": ["a.com"], "secretName": "ing-cert"}], "defaultBackend": {"service": {"name": "httpbin", "port": {"number": 80}}}}"#)
        try c.addIngressClass("sluice", isDefault: true)
        try c.addTls("foreign", #"{"ingressClassName": "nginx", "hosts": ["a.com"], "secret": {"name": "not-ours"}}"#)
        let refs = Translator().secretReferences(c)
        #expect(refs == [
            "default/p": nil, "default/cred": ["key", "username", "password"], "default/cert": Translator.certificateKeys,
            "default/ca": Translator.caKeys, "default/ing-cert": Translator.certificateKeys,
        ])
    }

    // MARK: - What the controller keeps of Secrets

    static func api() -> KubeAPI {
        KubeAPI(KubeConnection(
            server: "http://127.0.0.1:1", scheme: "http", host: "127.0.0.1", port: 1, basePath: "", certificateAuthorityPEM: nil,
            insecureSkipTLSVerify: false, auth: .bearer("t"), namespace: "default"))
    }

    static func secret(_ name: String, ns: String = "default", type: String = "kubernetes.io/tls", _ data: [String: String]) -> JSONValue {
        [
            "metadata": ["name": .string(name), "namespace": .string(ns), "resourceVersion": "1"], "type": .string(type),
            "data": .object(data.mapValues { .string(Base64.encode($0)) }),
        ]
    }

    @Test func theControllerHoldsOnlyReferencedSecretsAndOnlyTheKeysItReads() async throws {
        let controller = IngressController(api: Self.api(), writer: FakeGateway(), options: .init())
        let tls = kubeObject("site", spec: json(#"{"hosts": ["a.com"], "secret": {"name": "cert", "namespace": "default"}}"#))
        await controller.handle(.crd(.apisixTls), .added(tls))
        await controller.handle(.secret, .added(Self.secret("cert", ["tls.crt": "C", "tls.key": "K", "backup.key": "OLD-KEY"])))
        await controller.handle(.secret, .added(Self.secret("unrelated", ["tls.crt": "C2", "tls.key": "UNRELATED-KEY"])))
        await controller.handle(.secret, .added(Self.secret("cert", ns: "certs", ["tls.crt": "C3", "tls.key": "FOREIGN-KEY"])))
        var held = await controller.cluster.secrets
        #expect(Array(held.keys) == ["default/cert"])
        #expect(held["default/cert"]?.string("tls.key") == "K")
        #expect(held["default/cert"]?.value("backup.key") == nil)
        #expect(held["default/cert"]?.encodedData.isEmpty == true)
        #expect(await controller.knownSecrets == ["default/cert", "default/unrelated", "certs/cert"])
        // Changes of a Secret no one reads translate nothing.
        await controller.handle(.secret, .updated(old: Self.secret("unrelated", [:]), new: Self.secret("unrelated", ["tls.key": "NEW"])))
        #expect(await controller.cluster.secrets["default/unrelated"] == nil)
        // The ApisixTls is deleted: its Secret's data is let go before the next translation.
        await controller.handle(.crd(.apisixTls), .deleted(tls))
        await controller.refreshSecrets()
        held = await controller.cluster.secrets
        #expect(held.isEmpty)
        // A deleted Secret is forgotten altogether.
        await controller.handle(.secret, .deleted(Self.secret("unrelated", [:])))
        let known = await controller.knownSecrets
        #expect(known == ["default/cert", "certs/cert"], "\(known)")
    }

    @Test func theSecretListLeavesOutTypesNoReferenceReads() {
        let s = IngressController.secretFieldSelector
        #expect(s.contains("type!=kubernetes.io/service-account-token"))
        #expect(s.contains("type!=helm.sh/release.v1"))
        #expect(!s.contains("kubernetes.io/tls"))
        #expect(!s.contains("Opaque"))
        #expect(IngressController.Watched.secret.isStubbed)
        #expect(!IngressController.Watched.crd(.apisixRoute).isStubbed)
    }

    @Test func statusMessagesAreCutBelowWhatTheAPIServerTakes() {
        let long = "spec.http[0].name: duplicate rule name \"" + String(repeating: "é", count: 40_000) + "\""
        let m = IngressController.statusMessage(long)
        #expect(m.utf8.count <= IngressController.maxStatusMessage)
        #expect(m.hasPrefix("spec.http[0].name: duplicate rule name"))
        #expect(m.hasSuffix("..."))
        #expect(IngressController.statusMessage("short") == "short")
    }

    // MARK: - Timing: flags and Leases written by others

    @Test func leaseValuesAnotherControllerWroteAreBounded() {
        #expect(LeaderElector.observedDuration(Int.max, default: .seconds(15)) == .seconds(86_400))
        #expect(LeaderElector.observedDuration(Int.min, default: .seconds(15)) == .seconds(1))
        #expect(LeaderElector.observedDuration(0, default: .seconds(15)) == .seconds(1))
        #expect(LeaderElector.observedDuration(nil, default: .seconds(15)) == .seconds(15))
        #expect(LeaderElector.nextTransitions(Int.max) == Int(Int32.max))
        #expect(LeaderElector.nextTransitions(Int(Int32.max)) == Int(Int32.max))
        #expect(LeaderElector.nextTransitions(Int.min) == 1)
        #expect(LeaderElector.nextTransitions(nil) == 1)
        #expect(LeaderElector.nextTransitions(4) == 5)
    }

    @Test func anyTimingAnElectorIsGivenIsClamped() async {
        let huge = LeaderElector.Timing(leaseDuration: .seconds(Int64.max), renewDeadline: .seconds(Int64.min), retryPeriod: .zero)
        let e = LeaderElector(api: Self.api(), namespace: "default", name: "l", identity: "me", timing: huge, onChange: { _ in })
        #expect(await e.timing.leaseDuration == .seconds(86_400))
        #expect(await e.timing.renewDeadline == .milliseconds(1))
        #expect(await e.timing.retryPeriod == .milliseconds(1))
    }

    @Test(arguments: [
        (15.0, 10.0, 2.0, ""), (3, 2, 0.3, ""),
        (1e300, 10, 2, "--lease-duration"), (.infinity, 10, 2, "--lease-duration"), (.nan, 10, 2, "--lease-duration"), (0, 10, 2, "--lease-duration"),
        (15, -1, 2, "--renew-deadline"), (15, 1e19, 2, "--renew-deadline"), (15, 10, .infinity, "--retry-period"), (15, 10, -0.5, "--retry-period"),
        (15, 10, 9.2233720368547758e15, "--retry-period"), (10, 10, 2, "--lease-duration"), (15, 10, 10, "--retry-period"),
    ])
    func timingFlagsAreCheckedNamingTheFlag(_ lease: Double, _ renew: Double, _ retry: Double, _ flag: String) {
        do {
            let t = try LeaderElector.Timing(leaseDurationSeconds: lease, renewDeadlineSeconds: renew, retryPeriodSeconds: retry)
            #expect(flag == "", "accepted \(t)")
        } catch {
            #expect(error.flag == flag, "\(error)")
            #expect(error.description.hasPrefix(flag + ": "))
        }
    }

    @Test func controllerTimingFlagsAreCheckedAndOptionsClamped() async throws {
        #expect(try IngressFlags.coalesceWindow(milliseconds: 100) == .milliseconds(100))
        #expect(throws: IngressFlagError.self) { try IngressFlags.coalesceWindow(milliseconds: -1) }
        #expect(throws: IngressFlagError.self) { try IngressFlags.coalesceWindow(milliseconds: Int.max) }
        #expect(try IngressFlags.resyncInterval(seconds: 60) == .seconds(60))
        for bad in [0, -1, .infinity, .nan, 1e300, 9.3e15] {
            #expect(throws: IngressFlagError.self) { try IngressFlags.resyncInterval(seconds: bad) }
        }
        var options = IngressController.Options()
        options.resyncInterval = .seconds(Int64.max)
        options.coalesceWindow = .seconds(Int64.min)
        let c = IngressController(api: Self.api(), writer: FakeGateway(), options: options)
        #expect(await c.options.resyncInterval == .seconds(86_400))
        #expect(await c.options.coalesceWindow == .zero)
    }
}

/// A Secret that becomes referenced after it was seen (and dropped) is read with a GET; one
/// read for fewer keys than now needed is read again; a failed read is tried again.
@Suite struct SecretFetchTests {
    struct Boom: Error {}

    actor Reads {
        var calls: [String] = []
        var failing = false
        func record(_ key: String) throws {
            calls.append(key)
            if failing { throw Boom() }
        }
        func fail(_ f: Bool) { failing = f }
    }

    @Test func aSecretReferencedLaterIsReadWithAGetAndKeptWithTheKeysItsReadersNeed() async throws {
        let controller = IngressController(api: HostileValueTests.api(), writer: FakeGateway(), options: .init())
        let reads = Reads()
        let secret = HostileValueTests.secret("cert", ["tls.crt": "C", "tls.key": "K", "other": "O"])
        await controller.setSecretFetcher { ns, name in
            try await reads.record("\(ns)/\(name)")
            return secret
        }
        // Seen while nothing refers to it: only its name is kept.
        await controller.handle(.secret, .added(secret))
        #expect(await controller.cluster.secrets.isEmpty)
        await controller.refreshSecrets()
        #expect(await reads.calls.isEmpty)
        // An ApisixTls now refers to it: one GET, the certificate's keys kept.
        await controller.handle(.crd(.apisixTls), .added(kubeObject("site", spec: json(#"{"hosts": ["a.com"], "secret": {"name": "cert"}}"#))))
        await controller.refreshSecrets()
        #expect(await reads.calls == ["default/cert"])
        #expect(await controller.cluster.secrets["default/cert"]?.string("tls.key") == "K")
        #expect(await controller.cluster.secrets["default/cert"]?.value("other") == nil)
        await controller.refreshSecrets()
        #expect(await reads.calls.count == 1)  // held: not read again
        // A plugin reads every key of it: read again, kept whole.
        await controller.handle(.crd(.apisixGlobalRule), .added(kubeObject("g", spec: json(#"{"plugins": [{"name": "echo", "enable": true, "secretRef": "cert"}]}"#))))
        await controller.refreshSecrets()
        #expect(await reads.calls.count == 2)
        #expect(await controller.cluster.secrets["default/cert"]?.string("other") == "O")
        // A Secret that does not exist is not read at all; a failed read leaves nothing held.
        await controller.handle(.crd(.apisixTls), .added(kubeObject("ghost", spec: json(#"{"hosts": ["a.com"], "secret": {"name": "gone"}}"#))))
        await controller.handle(.secret, .added(HostileValueTests.secret("late", [:])))
        await reads.fail(true)
        await controller.handle(.crd(.apisixTls), .added(kubeObject("late", spec: json(#"{"hosts": ["a.com"], "secret": {"name": "late"}}"#))))
        await controller.refreshSecrets()
        #expect(await reads.calls.suffix(1) == ["default/late"])
        #expect(await controller.cluster.secrets["default/late"] == nil)
        await reads.fail(false)
        await controller.refreshSecrets()
        #expect(await controller.cluster.secrets["default/late"] != nil)
        #expect(await !reads.calls.contains("default/gone"))
    }
}
