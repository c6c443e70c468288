import KubeClient
import SluiceCore
import SluiceIngress
import Testing

/// `k8s.apisix.apache.org/*` annotations on Ingress objects, as the APISIX ingress
/// controller reads them: the routes they produce, and bad values refused naming them.
@Suite struct IngressAnnotationTests {
    static let spec = #"""
        {"ingressClassName": "sluice", "rules": [{"host": "a.example.com", "http": {"paths": [
          {"path": "/api", "pathType": "Prefix", "backend": {"service": {"name": "httpbin", "port": {"number": 80}}}}]}}]}
        """#

    func translated(_ annotations: [String: String], spec: String = spec, setup: (inout ClusterState) throws -> Void = { _ in }) throws -> Translation {
        var c = try httpbinCluster()
        try setup(&c)
        var full: [String: String] = [:]
        for (k, v) in annotations { full["k8s.apisix.apache.org/" + k] = v }
        try c.addIngress("ing", annotations: full, spec)
        return translate(c)
    }

    func route(_ t: Translation) throws -> JSONValue {
        let id = try #require(t.ids(.routes).first)
        return try #require(t.route(id))
    }

    func error(_ t: Translation) -> String { t.errors[SourceRef(.ingress, "default", "ing")] ?? "" }

    struct Case: Sendable, CustomTestStringConvertible {
        var annotations: [String: String]
        var plugins: String
        var testDescription: String { annotations.keys.sorted().joined(separator: ",") }
    }

    @Test(arguments: [
        Case(annotations: ["rewrite-target": "/ip"], plugins: #"{"proxy-rewrite":{"uri":"/ip"}}"#),
        Case(annotations: ["rewrite-target-regex": "/api/(.*)", "rewrite-target-regex-template": "/v2/$1"],
             plugins: #"{"proxy-rewrite":{"regex_uri":["/api/(.*)","/v2/$1"]}}"#),
        Case(annotations: ["http-to-https": "true"], plugins: #"{"redirect":{"http_to_https":true}}"#),
        Case(annotations: ["http-redirect": "https://b.example.com/new", "http-redirect-code": "308"],
             plugins: #"{"redirect":{"uri":"https://b.example.com/new","ret_code":308}}"#),
        Case(annotations: ["http-redirect": "/moved"], plugins: #"{"redirect":{"uri":"/moved","ret_code":301}}"#),
        Case(annotations: ["enable-cors": "true", "cors-allow-origin": "https://a.example.com", "cors-allow-methods": "GET,POST", "cors-allow-headers": "X-A"],
             plugins: #"{"cors":{"allow_origins":"https://a.example.com","allow_methods":"GET,POST","allow_headers":"X-A"}}"#),
        Case(annotations: ["enable-cors": "true"], plugins: #"{"cors":{}}"#),
        Case(annotations: ["allowlist-source-range": "10.0.0.0/8, 192.168.1.1"], plugins: #"{"ip-restriction":{"whitelist":["10.0.0.0/8","192.168.1.1"]}}"#),
        Case(annotations: ["whitelist-source-range": "10.0.0.0/8"], plugins: #"{"ip-restriction":{"whitelist":["10.0.0.0/8"]}}"#),
        Case(annotations: ["blocklist-source-range": "1.2.3.4"], plugins: #"{"ip-restriction":{"blacklist":["1.2.3.4"]}}"#),
        Case(annotations: ["blacklist-source-range": "1.2.3.4"], plugins: #"{"ip-restriction":{"blacklist":["1.2.3.4"]}}"#),
        Case(annotations: ["auth-type": "keyAuth"], plugins: #"{"key-auth":{}}"#),
        Case(annotations: ["auth-type": "basicAuth"], plugins: #"{"basic-auth":{}}"#),
    ])
    func annotationsBecomePlugins(_ k: Case) throws {
        let t = try translated(k.annotations)
        #expect(error(t).isEmpty, "\(error(t))")
        let r = try route(t)
        #expect(r["plugins"] == (try JSONValue.parse(k.plugins)), "\(r)")
        // What the controller writes, the gateway takes.
        _ = try Route.decode(r)
    }

    @Test func useRegexMatchesThePathAsARegexAndWebsocketIsEnabled() throws {
        let spec = #"""
            {"ingressClassName": "sluice", "rules": [{"http": {"paths": [
              {"path": "/v[0-9]+/users/.*", "pathType": "ImplementationSpecific", "backend": {"service": {"name": "httpbin", "port": {"number": 80}}}}]}}]}
            """#
        let t = try translated(["use-regex": "true", "enable-websocket": "true"], spec: spec)
        #expect(error(t).isEmpty, "\(error(t))")
        let r = try route(t)
        #expect(r["uris"] == ["/*"])
        #expect(r["vars"] == [["uri", "~~", "^/v[0-9]+/users/.*"]])
        #expect(r["enable_websocket"] == true)
        let decoded = try Route.decode(r)
        final class Vars: RequestVariableSource {
            let uri: String
            init(_ uri: String) { self.uri = uri }
            func value(of v: RequestVariable) -> String? { v == .uri ? uri : nil }
        }
        #expect(decoded.vars?.evaluate(Vars("/v2/users/7")) == true)
        #expect(decoded.vars?.evaluate(Vars("/x/v2/users/7")) == false)
    }

    @Test func upstreamAnnotationsMakeAnUpstreamOfTheIngresssOwn() throws {
        let t = try translated(["upstream-scheme": "https", "upstream-retries": "2", "upstream-read-timeout": "15s", "upstream-connect-timeout": "500ms"])
        #expect(error(t).isEmpty, "\(error(t))")
        let id = try #require(try route(t)["upstream_id"]?.stringValue)
        let u = try #require(t.upstream(id))
        #expect(u["scheme"] == "https" && u["retries"] == .int(2), "\(u)")
        #expect(u["timeout"]?["connect"]?.doubleValue == 0.5 && u["timeout"]?["read"]?.doubleValue == 15, "\(u)")
        #expect(u["timeout"]?["send"]?.doubleValue == 60, "\(u)")
        // It follows the Service's endpoints as the shared one does.
        #expect(t.endpointSources[id]?.service == "default/httpbin")
        _ = try Upstream.decode(u)
        let bad = try translated(["upstream-read-timeout": "forever"])
        #expect(error(bad).contains("upstream-read-timeout]"), "\(error(bad))")
        let badScheme = try translated(["upstream-scheme": "grpc"])
        #expect(error(badScheme).contains("upstream-scheme]: must be http or https"))
    }

    @Test func pluginConfigNameNamesAnApisixPluginConfigOfTheNamespace() throws {
        let t = try translated(["plugin-config-name": "echo-pc"]) { c in
            try c.addPluginConfig("echo-pc", #"{"plugins": [{"name": "echo", "enable": true, "config": {"body": "hi"}}]}"#)
        }
        #expect(error(t).isEmpty, "\(error(t))")
        #expect(try route(t)["plugin_config_id"] == .string(IngressNaming.id(IngressNaming.objectName(namespace: "default", name: "echo-pc"))))
        let missing = try translated(["plugin-config-name": "nope"])
        #expect(error(missing).contains("metadata.annotations[k8s.apisix.apache.org/plugin-config-name]: ApisixPluginConfig default/nope not found"))
    }

    @Test(arguments: [
        (["use-regex": "yes"], "use-regex]: must be \"true\" or \"false\""),
        (["use-regex": "true"], ""),  // a valid one, for contrast (the default path "/api" is a fine regex)
        (["rewrite-target": "ip"], "rewrite-target]"),
        (["rewrite-target-regex": "(", "rewrite-target-regex-template": "/$1"], "rewrite-target-regex]: is not a usable regular expression"),
        (["rewrite-target-regex": "/(.*)"], "rewrite-target-regex-template]: is required"),
        (["rewrite-target-regex": "/(.*)", "rewrite-target-regex-template": "/$name"], "rewrite-target-regex-template]: must be a path"),
        (["http-redirect": "/x", "http-redirect-code": "200"], "http-redirect-code]: must be a 3xx status"),
        (["enable-cors": "true", "cors-max-age": "soon"], "cors-max-age]"),
        (["allowlist-source-range": "10.0.0.0/33"], "allowlist-source-range]: \"10.0.0.0/33\" is not an IP address or CIDR"),
        (["allowlist-source-range": "10.0.0.0/8", "blocklist-source-range": "1.2.3.4"], "cannot be used with blocklist-source-range"),
        (["auth-type": "jwtAuth"], "auth-type]: must be keyAuth or basicAuth"),
    ] as [([String: String], String)])
    func badValuesNameTheAnnotation(_ annotations: [String: String], _ says: String) throws {
        let t = try translated(annotations)
        if says.isEmpty {
            #expect(error(t).isEmpty, "\(error(t))")
        } else {
            #expect(error(t).contains(says), "\(error(t))")
            #expect(t.ids(.routes).isEmpty)
        }
    }
}
