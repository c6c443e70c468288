import KubeClient
import SluiceCore
import SluiceIngress
import Testing

/// networking.k8s.io/v1 Ingress → routes, upstreams and SSLs.
@Suite struct IngressTranslationTests {
    static let backend = #"{"service": {"name": "httpbin", "port": {"number": 80}}}"#

    /// An Ingress of our class with one rule of the given paths.
    func ingressSpec(host: String? = nil, paths: [(path: String?, type: String)], extra: String = "") -> String {
        let items = paths.map { p in
            let path = p.path.map { #""path": "\#($0)", "# } ?? ""
            return #"{\#(path)"pathType": "\#(p.type)", "backend": \#(Self.backend)}"#
        }.joined(separator: ", ")
        let hostField = host.map { #""host": "\#($0)", "# } ?? ""
        let rest = extra.isEmpty ? "" : ", " + extra
        return #"{"ingressClassName": "sluice", "rules": [{\#(hostField)"http": {"paths": [\#(items)]}}]\#(rest)}"#
    }

    func routes(_ t: Translation) -> [JSONValue] { t.ids(.routes).compactMap { t.route($0) } }
    func ingressError(_ t: Translation, _ name: String = "ing") -> String { t.errors[SourceRef(.ingress, "default", name)] ?? "" }

    // MARK: class

    struct ClassCase: Sendable, CustomTestStringConvertible {
        var name: String
        var className: String? = nil
        var annotation: String? = nil
        /// IngressClass objects: name → marked default.
        var classes: [String: Bool] = [:]
        var ours: Bool
        var testDescription: String { name }
    }

    @Test(arguments: [
        ClassCase(name: "ingressClassName ours", className: "sluice", ours: true),
        ClassCase(name: "ingressClassName other", className: "nginx", classes: ["sluice": true], ours: false),
        ClassCase(name: "annotation ours", annotation: "sluice", ours: true),
        ClassCase(name: "annotation other", annotation: "nginx", classes: ["sluice": true], ours: false),
        ClassCase(name: "field wins over annotation", className: "nginx", annotation: "sluice", ours: false),
        ClassCase(name: "none, our class is the default", classes: ["sluice": true, "nginx": false], ours: true),
        ClassCase(name: "none, our class is not the default", classes: ["sluice": false, "nginx": true], ours: false),
        ClassCase(name: "none, no IngressClass", ours: false),
    ])
    func ingressClassDecidesWhetherItIsOurs(_ k: ClassCase) throws {
        var c = try httpbinCluster()
        for (name, isDefault) in k.classes { try c.addIngressClass(name, isDefault: isDefault) }
        let field = k.className.map { #""ingressClassName": "\#($0)", "# } ?? ""
        let annotations = k.annotation.map { [Ingress.classAnnotation: $0] } ?? [:]
        try c.addIngress("ing", annotations: annotations, #"""
            {\#(field)"rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": \#(Self.backend)}]}}]}
            """#)
        let t = translate(c)
        #expect(t.errors.isEmpty)
        #expect(t.ids(.routes).count == (k.ours ? 1 : 0))
        #expect((t.produced[SourceRef(.ingress, "default", "ing")] != nil) == k.ours)
        let ingress = try #require(c.ingresses["default/ing"])
        #expect(Translator(ingressClass: "sluice").owns(ingress, classes: c.ingressClasses) == k.ours)
    }

    // MARK: paths

    struct PathCase: Sendable, CustomTestStringConvertible {
        var type: String
        var path: String?
        var uris: [String]
        var priority: JSONValue?
        var testDescription: String { "\(type) \(path ?? "(none)")" }
    }

    @Test(arguments: [
        PathCase(type: "Exact", path: "/foo", uris: ["/foo"], priority: 1),
        PathCase(type: "Exact", path: "/foo/", uris: ["/foo/"], priority: 1),
        PathCase(type: "Prefix", path: "/foo", uris: ["/foo", "/foo/*"]),
        PathCase(type: "Prefix", path: "/foo/", uris: ["/foo", "/foo/*"]),
        PathCase(type: "Prefix", path: "/foo/bar//", uris: ["/foo/bar", "/foo/bar/*"]),
        PathCase(type: "Prefix", path: "/", uris: ["/*"]),
        PathCase(type: "ImplementationSpecific", path: "/foo", uris: ["/foo*"]),
        PathCase(type: "ImplementationSpecific", path: nil, uris: ["/*"]),
    ])
    func pathTypeDecidesTheURIs(_ p: PathCase) throws {
        var c = try httpbinCluster()
        try c.addIngress("ing", ingressSpec(paths: [(p.path, p.type)]))
        let t = translate(c)
        #expect(t.errors.isEmpty)
        let route = try #require(routes(t).first)
        #expect(route["uris"] == .array(p.uris.map { .string($0) }))
        #expect(route["priority"] == p.priority)
        #expect(route["upstream_id"] == "default_httpbin_80")
        #expect(throws: Never.self) { try Route.decode(route, id: "x") }
    }

    @Test(arguments: ["foo", "/foo*", "/users/:id"])
    func aPathTheGatewayCannotMatchLiterallyIsAnError(path: String) throws {
        var c = try httpbinCluster()
        try c.addIngress("ing", ingressSpec(paths: [("/ok", "Exact"), (path, "Prefix")]))
        let t = translate(c)
        #expect(ingressError(t).contains("spec.rules[0].http.paths[1].path"))
        #expect(t.objects.isEmpty)
    }

    @Test func theHostBecomesHosts() throws {
        var c = try httpbinCluster()
        try c.addIngress("ing", #"""
            {"ingressClassName": "sluice", "rules": [
              {"host": "foo.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": \#(Self.backend)}]}},
              {"host": "*.bar.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": \#(Self.backend)}]}},
              {"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": \#(Self.backend)}]}}]}
            """#)
        let t = translate(c)
        #expect(t.errors.isEmpty)
        let hosts = routes(t).map { $0["hosts"] }
        #expect(hosts.count == 3)
        #expect(hosts.contains(["foo.example.com"]))
        #expect(hosts.contains(["*.bar.com"]))
        #expect(hosts.contains(nil))
    }

    @Test func aRouteHasItsNameLabelsAndUpstream() throws {
        var c = try httpbinCluster()
        try c.addIngress("ing", ingressSpec(host: "a.com", paths: [("/api", "Exact")]))
        let t = translate(c)
        let id = try #require(t.ids(.routes).first)
        #expect(id.hasPrefix("ing_default_ing_"))
        #expect(t.route(id) == [
            "name": .string(id), "uris": ["/api"], "hosts": ["a.com"], "priority": 1, "upstream_id": "default_httpbin_80", "labels": managedBy,
        ])
        #expect(t.upstream("default_httpbin_80") == ["name": "default_httpbin_80", "labels": managedBy, "nodes": [:]])
        #expect(t.produced[SourceRef(.ingress, "default", "ing")] == [ObjectKey(.routes, id), ObjectKey(.upstreams, "default_httpbin_80")])
    }

    // MARK: backends

    @Test func backendServicePortByNumberOrByName() throws {
        var c = ClusterState()
        try c.addService("web", ports: #"[{"name": "http", "port": 8080, "targetPort": 80}, {"name": "admin", "port": 9000}]"#)
        try c.addIngress("ing", #"""
            {"ingressClassName": "sluice", "rules": [{"http": {"paths": [
              {"path": "/a", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 8080}}}},
              {"path": "/b", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"name": "admin"}}}}]}}]}
            """#)
        let t = translate(c)
        #expect(t.errors.isEmpty)
        #expect(t.ids(.upstreams) == ["default_web_8080", "default_web_9000"])
        #expect(t.endpointSources["default_web_8080"] == EndpointSource(
            service: "default/web", port: .init(name: "http", port: 8080, targetPort: .number(80), protocol: "TCP", appProtocol: nil)))
        #expect(t.endpointSources["default_web_9000"]?.port.name == "admin")
        let byURI = Dictionary(uniqueKeysWithValues: routes(t).map { ($0["uris"]?.arrayValue?.first?.stringValue ?? "", $0["upstream_id"]) })
        #expect(byURI["/a"] == "default_web_8080")
        #expect(byURI["/b"] == "default_web_9000")
    }

    @Test func aMissingServiceOrPortIsAnErrorForTheWholeIngress() throws {
        var c = try httpbinCluster()
        try c.addIngress("nosvc", #"""
            {"ingressClassName": "sluice", "rules": [{"http": {"paths": [
              {"path": "/ok", "pathType": "Prefix", "backend": \#(Self.backend)},
              {"path": "/x", "pathType": "Prefix", "backend": {"service": {"name": "gone", "port": {"number": 80}}}}]}}]}
            """#)
        try c.addIngress("noport", #"""
            {"ingressClassName": "sluice", "rules": [{"http": {"paths": [
              {"path": "/x", "pathType": "Prefix", "backend": {"service": {"name": "httpbin", "port": {"name": "grpc"}}}}]}}]}
            """#)
        let t = translate(c)
        #expect(ingressError(t, "nosvc").contains("spec.rules[0].http.paths[1].backend.service"))
        #expect(ingressError(t, "nosvc").contains("default/gone"))
        #expect(ingressError(t, "noport").contains("spec.rules[0].http.paths[0].backend.service"))
        #expect(ingressError(t, "noport").contains("grpc"))
        #expect(t.objects.isEmpty)
        #expect(ingressError(t, "nosvc").hasPrefix("spec.rules[0].http.paths[1].backend.service.name:"))
        #expect(ingressError(t, "noport").hasPrefix("spec.rules[0].http.paths[0].backend.service.port:"))
    }

    @Test func aResourceBackendIsAnError() throws {
        var c = try httpbinCluster()
        try c.addIngress("ing", #"""
            {"ingressClassName": "sluice", "rules": [{"http": {"paths": [
              {"path": "/static", "pathType": "Prefix", "backend": {"resource": {"apiGroup": "k8s.example.com", "kind": "StorageBucket", "name": "assets"}}}]}}]}
            """#)
        let t = translate(c)
        #expect(ingressError(t).contains("spec.rules[0].http.paths[0].backend.resource"))
        #expect(t.objects.isEmpty)
    }

    @Test func theDefaultBackendIsACatchAllOfLowestPriority() throws {
        var c = try httpbinCluster()
        try c.addIngress("ing", #"{"ingressClassName": "sluice", "defaultBackend": {"service": {"name": "httpbin", "port": {"name": "http"}}}}"#)
        let t = translate(c)
        #expect(t.errors.isEmpty)
        #expect(t.ids(.routes) == ["ing_default_ing_default-backend"])
        let route = try #require(t.route("ing_default_ing_default-backend"))
        #expect(route == [
            "name": "ing_default_ing_default-backend", "uris": ["/*"], "upstream_id": "default_httpbin_80", "priority": -1, "labels": managedBy,
        ])
        #expect(try Route.decode(route, id: "ing_default_ing_default-backend").priority == -1)
    }

    @Test func aResourceDefaultBackendIsAnError() throws {
        var c = try httpbinCluster()
        try c.addIngress("ing", #"{"ingressClassName": "sluice", "defaultBackend": {"resource": {"kind": "Bucket", "name": "b"}}}"#)
        #expect(ingressError(translate(c)).contains("spec.defaultBackend.resource"))
    }

    @Test func anIngressWithNothingToRouteIsAnError() throws {
        var c = try httpbinCluster()
        try c.addIngress("ing", #"{"ingressClassName": "sluice", "rules": [{"host": "a.com"}]}"#)
        #expect(ingressError(translate(c)).hasPrefix("spec"))
    }

    // MARK: TLS

    @Test func tlsEntriesBecomeSSLs() throws {
        var c = try httpbinCluster()
        try c.addSecret("a-cert", ["tls.crt": "CERT-A", "tls.key": "KEY-A"])
        try c.addSecret("b-cert", ["tls.crt": "CERT-B", "tls.key": "KEY-B"])
        try c.addIngress("ing", ingressSpec(paths: [("/", "Prefix")], extra: #"""
            "tls": [{"hosts": ["a.com", "www.a.com"], "secretName": "a-cert"}, {"hosts": ["b.com"]}, {"hosts": ["c.com"], "secretName": "b-cert"}]
            """#))
        let t = translate(c)
        #expect(t.errors.isEmpty)
        // An entry without a secret (TLS terminated elsewhere) makes no SSL.
        #expect(t.ids(.ssls) == ["ing_default_ing_tls_0", "ing_default_ing_tls_2"])
        #expect(t.ssl("ing_default_ing_tls_0") == ["type": "server", "snis": ["a.com", "www.a.com"], "cert": "CERT-A", "key": "KEY-A", "labels": managedBy])
        #expect(t.ssl("ing_default_ing_tls_2")?["snis"] == ["c.com"])
        #expect(t.ssl("ing_default_ing_tls_2")?["cert"] == "CERT-B")
    }

    @Test func tlsErrorsNameTheEntry() throws {
        var c = try httpbinCluster()
        try c.addSecret("nokey", ["tls.crt": "C"])
        try c.addIngress("missing", ingressSpec(paths: [("/", "Prefix")], extra: #""tls": [{"hosts": ["a.com"], "secretName": "gone"}]"#))
        try c.addIngress("incomplete", ingressSpec(paths: [("/", "Prefix")], extra: #""tls": [{"hosts": ["a.com"], "secretName": "nokey"}]"#))
        try c.addIngress("nohosts", ingressSpec(paths: [("/", "Prefix")], extra: #""tls": [{"secretName": "nokey"}]"#))
        let t = translate(c)
        #expect(ingressError(t, "missing").contains("spec.tls[0].secretName"))
        #expect(ingressError(t, "incomplete").contains("spec.tls[0].secretName"))
        #expect(ingressError(t, "nohosts").contains("spec.tls[0].hosts"))
        #expect(t.objects.isEmpty)
    }

    // MARK: ids

    @Test func routeIDsStayTheSameWhenRulesAreReordered() throws {
        let a = #"{"host": "a.com", "http": {"paths": [{"path": "/x", "pathType": "Prefix", "backend": \#(Self.backend)}, {"path": "/y", "pathType": "Exact", "backend": \#(Self.backend)}]}}"#
        let b = #"{"host": "b.com", "http": {"paths": [{"path": "/x", "pathType": "Prefix", "backend": \#(Self.backend)}]}}"#
        let bReordered = #"{"http": {"paths": [{"path": "/x", "pathType": "Prefix", "backend": \#(Self.backend)}]}, "host": "b.com"}"#
        let aReordered = #"{"host": "a.com", "http": {"paths": [{"path": "/y", "pathType": "Exact", "backend": \#(Self.backend)}, {"path": "/x", "pathType": "Prefix", "backend": \#(Self.backend)}]}}"#
        var first = try httpbinCluster()
        try first.addIngress("ing", #"{"ingressClassName": "sluice", "rules": [\#(a), \#(b)]}"#)
        var second = try httpbinCluster()
        try second.addIngress("ing", #"{"ingressClassName": "sluice", "rules": [\#(bReordered), \#(aReordered)]}"#)
        let t1 = translate(first)
        let t2 = translate(second)
        #expect(t1.ids(.routes).count == 3)
        #expect(t1.objects == t2.objects)
    }

    @Test func theSameMatchInTwoRulesGetsDistinctRoutes() throws {
        var c = try httpbinCluster()
        try c.addIngress("ing", #"""
            {"ingressClassName": "sluice", "rules": [
              {"host": "a.com", "http": {"paths": [{"path": "/x", "pathType": "Prefix", "backend": \#(Self.backend)}]}},
              {"host": "a.com", "http": {"paths": [{"path": "/x", "pathType": "Prefix", "backend": \#(Self.backend)}]}},
              {"host": "b.com", "http": {"paths": [{"path": "/x", "pathType": "Prefix", "backend": \#(Self.backend)}]}},
              {"host": "a.com", "http": {"paths": [{"path": "/x", "pathType": "Exact", "backend": \#(Self.backend)}]}}]}
            """#)
        let t = translate(c)
        #expect(t.errors.isEmpty)
        let ids = t.ids(.routes)
        #expect(ids.count == 4)
        #expect(ids.filter { $0.hasSuffix("_1_0") }.count == 1)
        for id in ids { #expect(t.route(id)?["name"] == .string(id)) }
    }

    @Test func ingressesInDifferentNamespacesDoNotCollide() throws {
        var c = try httpbinCluster()
        try c.addService("httpbin", ns: "prod")
        try c.addIngress("ing", ingressSpec(paths: [("/", "Prefix")]))
        try c.addIngress("ing", ns: "prod", ingressSpec(paths: [("/", "Prefix")]))
        let t = translate(c)
        #expect(t.ids(.routes).count == 2)
        #expect(t.ids(.upstreams) == ["default_httpbin_80", "prod_httpbin_80"])
        #expect(t.ids(.routes).filter { $0.hasPrefix("ing_prod_ing_") }.count == 1)
    }
}
