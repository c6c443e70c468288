import KubeClient
import SluiceCore
import SluiceIngress
import Testing

/// ApisixTls, ApisixConsumer, ApisixPluginConfig, ApisixGlobalRule, and what every
/// translated object has in common.
@Suite struct ResourceTranslationTests {
    // MARK: ApisixTls

    @Test func apisixTlsBecomesAnSSLWithTheSecretsCertificate() throws {
        var c = ClusterState()
        try c.addSecret("site-cert", ns: "certs", ["tls.crt": "-----CERT-----", "tls.key": "-----KEY-----"])
        try c.addTls("site", #"{"hosts": ["example.com", "*.example.com"], "secret": {"name": "site-cert", "namespace": "certs"}}"#)
        // A Secret of another namespace is read when both are watched (`--namespace`); see
        // HostileValueTests for the refusals.
        let t = Translator(secretNamespaces: ["default", "certs"]).translate(c)
        #expect(t.errors.isEmpty)
        #expect(t.ssl("default_site") == json(#"""
            {"type": "server", "snis": ["example.com", "*.example.com"], "cert": "-----CERT-----", "key": "-----KEY-----", "labels": {"managed-by": "sluice-ingress"}}
            """#))
        #expect(t.produced[SourceRef(.apisixTls, "default", "site")] == [ObjectKey(.ssls, "default_site")])
    }

    @Test func apisixTlsClientVerificationTakesTheCAFromItsSecret() throws {
        var c = ClusterState()
        try c.addSecret("site-cert", ["tls.crt": "C", "tls.key": "K"])
        try c.addSecret("client-ca", ["ca.crt": "CA"])
        try c.addTls("mtls", #"""
            {"hosts": ["api.example.com"], "secret": {"name": "site-cert", "namespace": "default"},
             "client": {"caSecret": {"name": "client-ca", "namespace": "default"}, "depth": 2, "skip_mtls_uri_regex": ["^/health"]}}
            """#)
        let t = translate(c)
        #expect(t.ssl("default_mtls")?["client"] == json(#"{"ca": "CA", "depth": 2, "skip_mtls_uri_regex": ["^/health"]}"#))
    }

    @Test func apisixTlsErrorsNameTheField() throws {
        var c = ClusterState()
        try c.addSecret("nokey", ["tls.crt": "C"])
        try c.addSecret("good", ["tls.crt": "C", "tls.key": "K"])
        try c.addSecret("opaque", ["password": "P"])
        try c.addTls("missing", #"{"hosts": ["a.com"], "secret": {"name": "gone", "namespace": "default"}}"#)
        try c.addTls("incomplete", #"{"hosts": ["a.com"], "secret": {"name": "nokey", "namespace": "default"}}"#)
        try c.addTls("nohosts", #"{"hosts": [], "secret": {"name": "good", "namespace": "default"}}"#)
        try c.addTls("noca", #"{"hosts": ["a.com"], "secret": {"name": "good", "namespace": "default"}, "client": {"caSecret": {"name": "opaque", "namespace": "default"}}}"#)
        let t = translate(c)
        func error(_ name: String) -> String { t.errors[SourceRef(.apisixTls, "default", name)] ?? "" }
        #expect(error("missing").contains("spec.secret"))
        #expect(error("missing").contains("default/gone"))
        #expect(error("incomplete").contains("spec.secret"))
        #expect(error("incomplete").contains("tls.key"))
        #expect(error("nohosts").contains("spec.hosts"))
        #expect(error("noca").contains("spec.client.caSecret"))
        #expect(t.objects.isEmpty)
    }

    // MARK: ApisixConsumer

    struct ConsumerCase: Sendable, CustomTestStringConvertible {
        var name: String
        var authParameter: String
        var secret: [String: String] = [:]
        var plugins: JSONValue
        var testDescription: String { name }
    }

    @Test(arguments: [
        ConsumerCase(name: "keyAuth value", authParameter: #"{"keyAuth": {"value": {"key": "k-123"}}}"#, plugins: ["key-auth": ["key": "k-123"]]),
        ConsumerCase(name: "keyAuth secret", authParameter: #"{"keyAuth": {"secretRef": {"name": "cred"}}}"#, secret: ["key": "from-secret"],
                     plugins: ["key-auth": ["key": "from-secret"]]),
        ConsumerCase(name: "basicAuth value", authParameter: #"{"basicAuth": {"value": {"username": "jack", "password": "pw"}}}"#,
                     plugins: ["basic-auth": ["username": "jack", "password": "pw"]]),
        ConsumerCase(name: "basicAuth secret", authParameter: #"{"basicAuth": {"secretRef": {"name": "cred"}}}"#,
                     secret: ["username": "jill", "password": "pw2"], plugins: ["basic-auth": ["username": "jill", "password": "pw2"]]),
        ConsumerCase(name: "jwtAuth value", authParameter: #"""
            {"jwtAuth": {"value": {"key": "user-key", "secret": "s", "algorithm": "HS512", "exp": 3600, "base64_secret": true, "lifetime_grace_period": 5}}}
            """#, plugins: ["jwt-auth": ["key": "user-key", "secret": "s", "algorithm": "HS512", "exp": 3600, "base64_secret": true, "lifetime_grace_period": 5]]),
        ConsumerCase(name: "jwtAuth RS256 value", authParameter: #"""
            {"jwtAuth": {"value": {"key": "k", "public_key": "PUB", "private_key": "PRIV", "algorithm": "RS256"}}}
            """#, plugins: ["jwt-auth": ["key": "k", "public_key": "PUB", "private_key": "PRIV", "algorithm": "RS256"]]),
        ConsumerCase(name: "jwtAuth secret", authParameter: #"{"jwtAuth": {"secretRef": {"name": "cred"}}}"#,
                     secret: ["key": "k", "secret": "s", "exp": "600", "base64_secret": "true", "unrelated": "x"],
                     plugins: ["jwt-auth": ["key": "k", "secret": "s", "exp": 600, "base64_secret": true]]),
        ConsumerCase(name: "hmacAuth value", authParameter: #"{"hmacAuth": {"value": {"key_id": "id1", "secret_key": "sk"}}}"#,
                     plugins: ["hmac-auth": ["key_id": "id1", "secret_key": "sk"]]),
        ConsumerCase(name: "hmacAuth legacy access_key", authParameter: #"{"hmacAuth": {"value": {"access_key": "ak", "secret_key": "sk"}}}"#,
                     plugins: ["hmac-auth": ["key_id": "ak", "secret_key": "sk"]]),
        ConsumerCase(name: "hmacAuth secret", authParameter: #"{"hmacAuth": {"secretRef": {"name": "cred"}}}"#,
                     secret: ["access_key": "ak", "secret_key": "sk"], plugins: ["hmac-auth": ["key_id": "ak", "secret_key": "sk"]]),
        ConsumerCase(name: "wolfRBAC value", authParameter: #"{"wolfRBAC": {"value": {"server": "http://wolf:12180", "appid": "app", "header_prefix": "X-"}}}"#,
                     plugins: ["wolf-rbac": ["server": "http://wolf:12180", "appid": "app", "header_prefix": "X-"]]),
        ConsumerCase(name: "wolfRBAC secret", authParameter: #"{"wolfRBAC": {"secretRef": {"name": "cred"}}}"#, secret: ["appid": "app2"],
                     plugins: ["wolf-rbac": ["appid": "app2"]]),
        ConsumerCase(name: "ldapAuth value", authParameter: #"{"ldapAuth": {"value": {"user_dn": "cn=jack,dc=example"}}}"#,
                     plugins: ["ldap-auth": ["user_dn": "cn=jack,dc=example"]]),
        ConsumerCase(name: "ldapAuth secret", authParameter: #"{"ldapAuth": {"secretRef": {"name": "cred"}}}"#, secret: ["user_dn": "cn=jill"],
                     plugins: ["ldap-auth": ["user_dn": "cn=jill"]]),
        ConsumerCase(name: "two methods", authParameter: #"{"keyAuth": {"value": {"key": "k"}}, "basicAuth": {"value": {"username": "u", "password": "p"}}}"#,
                     plugins: ["key-auth": ["key": "k"], "basic-auth": ["username": "u", "password": "p"]]),
    ])
    func consumerCredentialsBecomePlugins(_ k: ConsumerCase) throws {
        var c = ClusterState()
        if !k.secret.isEmpty { try c.addSecret("cred", k.secret) }
        try c.addConsumer("jack", #"{"authParameter": \#(k.authParameter)}"#)
        let t = translate(c)
        #expect(t.errors.isEmpty)
        #expect(t.consumer("default_jack") == ["username": "default_jack", "plugins": k.plugins, "labels": managedBy])
        #expect(t.produced[SourceRef(.apisixConsumer, "default", "jack")] == [ObjectKey(.consumers, "default_jack")])
    }

    @Test func consumerUsernamesReplaceInvalidCharacters() throws {
        var c = ClusterState()
        try c.addConsumer("jack.smith@corp", ns: "team-a", #"{"authParameter": {"keyAuth": {"value": {"key": "k"}}}}"#)
        let t = translate(c)
        #expect(t.ids(.consumers) == ["team-a_jack_smith_corp"])
        #expect(t.consumer("team-a_jack_smith_corp")?["username"] == "team-a_jack_smith_corp")
    }

    @Test func keyAuthAndBasicAuthConsumersAreAcceptedByTheGateway() throws {
        var c = ClusterState()
        try c.addSecret("cred", ["username": "jill", "password": "pw"])
        try c.addConsumer("jack.s", #"{"authParameter": {"keyAuth": {"value": {"key": "k-1"}}}}"#)
        try c.addConsumer("jill", #"{"authParameter": {"basicAuth": {"secretRef": {"name": "cred"}}}}"#)
        try c.addConsumer("jwt", #"{"authParameter": {"jwtAuth": {"value": {"key": "jk", "secret": "a-long-enough-secret"}}}}"#)
        let t = translate(c)
        #expect(t.errors.isEmpty)
        for id in t.ids(.consumers) {
            let consumer = try Consumer.decode(try #require(t.consumer(id)), id: id)
            #expect(consumer.username == id)
            #expect(consumer.labels == ["managed-by": "sluice-ingress"])
        }
        #expect(t.ids(.consumers) == ["default_jack_s", "default_jill", "default_jwt"])
    }

    @Test func consumerErrorsNameTheField() throws {
        var c = ClusterState()
        try c.addSecret("partial", ["username": "u"])
        try c.addConsumer("nothing", #"{"authParameter": {}}"#)
        try c.addConsumer("nosecret", #"{"authParameter": {"keyAuth": {"secretRef": {"name": "gone"}}}}"#)
        try c.addConsumer("nopassword", #"{"authParameter": {"basicAuth": {"secretRef": {"name": "partial"}}}}"#)
        try c.addConsumer("nouserdn", #"{"authParameter": {"ldapAuth": {"secretRef": {"name": "partial"}}}}"#)
        let t = translate(c)
        func error(_ name: String) -> String { t.errors[SourceRef(.apisixConsumer, "default", name)] ?? "" }
        #expect(error("nothing").contains("spec.authParameter"))
        #expect(error("nosecret").contains("spec.authParameter.keyAuth.secretRef"))
        #expect(error("nosecret").contains("default/gone"))
        #expect(error("nopassword").contains("spec.authParameter.basicAuth.secretRef"))
        #expect(error("nopassword").contains("\"password\""))
        #expect(error("nouserdn").contains("spec.authParameter.ldapAuth.secretRef"))
        #expect(t.objects.isEmpty)
    }

    // MARK: ApisixPluginConfig, ApisixGlobalRule

    @Test func apisixPluginConfigBecomesAPluginConfig() throws {
        var c = ClusterState()
        try c.addSecret("hdr", ["headers.set.X-Token": "t0k"])
        try c.addPluginConfig("shared", generation: 2, #"""
            {"plugins": [{"name": "request-id", "config": {"header_name": "X-Req"}}, {"name": "cors", "enable": false},
                         {"name": "proxy-rewrite", "config": {"uri": "/p"}, "secretRef": "hdr"}]}
            """#)
        let t = translate(c)
        #expect(t.errors.isEmpty)
        let value = try #require(t.objects[ObjectKey(.pluginConfigs, "default_shared")])
        #expect(value == json(#"""
            {"name": "default_shared", "labels": {"managed-by": "sluice-ingress"},
             "plugins": {"request-id": {"header_name": "X-Req"}, "proxy-rewrite": {"uri": "/p", "headers": {"set": {"X-Token": "t0k"}}}}}
            """#))
        let decoded = try PluginSet.decode(value, id: "default_shared")
        #expect(Set(decoded.plugins.keys) == ["request-id", "proxy-rewrite"])
        #expect(t.generations[SourceRef(.apisixPluginConfig, "default", "shared")] == 2)
    }

    @Test func apisixGlobalRuleBecomesAGlobalRule() throws {
        var c = ClusterState()
        try c.addGlobalRule("everywhere", ns: "ops", #"{"plugins": [{"name": "request-id"}, {"name": "prometheus", "enable": false}]}"#)
        let t = translate(c)
        let value = try #require(t.objects[ObjectKey(.globalRules, "ops_everywhere")])
        #expect(value == ["plugins": ["request-id": [:]], "labels": managedBy])
        #expect(try PluginSet.decode(value, id: "ops_everywhere").plugins.keys.sorted() == ["request-id"])
        #expect(t.produced[SourceRef(.apisixGlobalRule, "ops", "everywhere")] == [ObjectKey(.globalRules, "ops_everywhere")])
    }

    @Test func pluginErrorsInConfigsAndGlobalRulesNameTheField() throws {
        var c = ClusterState()
        try c.addPluginConfig("pc", #"{"plugins": [{"name": "request-id"}, {"name": "key-auth", "secretRef": "gone"}]}"#)
        try c.addGlobalRule("gr", #"{"plugins": [{"name": ""}]}"#)
        let t = translate(c)
        #expect(t.errors[SourceRef(.apisixPluginConfig, "default", "pc")]?.contains("spec.plugins[1].secretRef") == true)
        #expect(t.errors[SourceRef(.apisixGlobalRule, "default", "gr")]?.contains("spec.plugins[0].name") == true)
        #expect(t.objects.isEmpty)
    }

    @Test func resourcesOfAnotherIngressClassAreIgnored() throws {
        var c = ClusterState()
        try c.addSecret("cert", ["tls.crt": "C", "tls.key": "K"])
        try c.addTls("t", #"{"ingressClassName": "nginx", "hosts": ["a.com"], "secret": {"name": "cert", "namespace": "default"}}"#)
        try c.addConsumer("k", #"{"ingressClassName": "nginx", "authParameter": {"keyAuth": {"value": {"key": "k"}}}}"#)
        try c.addPluginConfig("p", #"{"ingressClassName": "nginx", "plugins": [{"name": "request-id"}]}"#)
        try c.addGlobalRule("g", #"{"ingressClassName": "nginx", "plugins": [{"name": "request-id"}]}"#)
        try c.addUpstream("u", #"{"ingressClassName": "nginx", "loadbalancer": {"type": "bogus"}}"#)
        let t = translate(c)
        #expect(t.objects.isEmpty)
        #expect(t.errors.isEmpty)
        #expect(t.produced.isEmpty)
        // The same objects are ours under that class.
        let nginx = translate(c, ingressClass: "nginx")
        #expect(nginx.objects.count == 4)
        #expect(nginx.errors.keys.sorted() == [SourceRef(.apisixUpstream, "default", "u")])
    }

    // MARK: every object

    @Test func everyTranslatedObjectIsLabelledManagedBy() throws {
        var c = ClusterState()
        try c.addService("httpbin")
        try c.addService("redis", ports: #"[{"name": "redis", "port": 6379}]"#)
        try c.addService("ext-name", clusterIP: nil, type: "ExternalName", externalName: "example.org")
        try c.addSecret("cert", ["tls.crt": "C", "tls.key": "K"])
        try c.addUpstream("httpbin", #"{"retries": 1, "subsets": [{"name": "v1", "labels": {"v": "1"}}]}"#)
        try c.addUpstream("ext", #"{"externalNodes": [{"name": "example.com"}]}"#)
        try c.addPluginConfig("pc", #"{"plugins": [{"name": "request-id"}]}"#)
        try c.addGlobalRule("gr", #"{"plugins": [{"name": "request-id"}]}"#)
        try c.addConsumer("jack", #"{"authParameter": {"keyAuth": {"value": {"key": "k"}}}}"#)
        try c.addTls("tls", #"{"hosts": ["a.com"], "secret": {"name": "cert", "namespace": "default"}}"#)
        try c.addRoute("r", #"""
            {"http": [{"name": "a", "match": {"paths": ["/a"]}, "backends": [{"serviceName": "httpbin", "servicePort": 80, "subset": "v1"},
                                                                              {"serviceName": "ext-name", "servicePort": 80}],
                       "upstreams": [{"name": "ext"}], "plugin_config_name": "pc"},
                      {"name": "b", "match": {"paths": ["/b"]}, "backends": [{"serviceName": "httpbin", "servicePort": 80, "resolveGranularity": "service"}]}],
             "stream": [{"name": "s", "protocol": "TCP", "match": {"ingressPort": 9000}, "backend": {"serviceName": "redis", "servicePort": 6379}}]}
            """#)
        try c.addIngress("ing", #"""
            {"ingressClassName": "sluice", "tls": [{"hosts": ["b.com"], "secretName": "cert"}],
             "rules": [{"host": "b.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "httpbin", "port": {"number": 80}}}}]}}],
             "defaultBackend": {"service": {"name": "httpbin", "port": {"name": "http"}}}}
            """#)
        let t = translate(c)
        #expect(t.errors.isEmpty)
        #expect(Set(t.objects.keys.map(\.kind)) == Set(ResourceKind.allCases).subtracting([.services]))
        #expect(t.objects.count == 16)
        for (key, value) in t.objects {
            #expect(value["labels"] == managedBy, "\(key)")
        }
    }

    @Test func translationIsDeterministic() throws {
        var c = ClusterState()
        try c.addService("httpbin")
        for i in 0..<20 { try c.addRoute("r\(i)", ruleSpec()) }
        try c.addIngress("ing", #"{"ingressClassName": "sluice", "rules": [{"http": {"paths": [{"path": "/x", "pathType": "Exact", "backend": {"service": {"name": "httpbin", "port": {"number": 80}}}}]}}]}"#)
        let a = translate(c)
        let b = translate(c)
        #expect(a.objects == b.objects)
        #expect(a.produced == b.produced)
        #expect(a.endpointSources == b.endpointSources)
        #expect(a.ids(.routes).count == 21)
    }
}
