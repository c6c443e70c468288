import KubeClient
import SluiceCore
import Testing

/// Decodes `json`, expecting a KubeDecodingError whose description is `expected`.
private func expectDecodingError<T>(_ expected: String, _ json: String, _ decode: (JSONValue) throws(KubeDecodingError) -> T,
                                    sourceLocation: SourceLocation = #_sourceLocation) throws {
    let value = try JSONValue.parse(json)
    do {
        _ = try decode(value)
        Issue.record("accepted \(json)", sourceLocation: sourceLocation)
    } catch {
        #expect(error.description == expected, sourceLocation: sourceLocation)
    }
}

@Suite struct CoreModelTests {
    @Test func secretDecodesDataAndKeepsTheEncodedForm() throws {
        let s = try Secret(
            json: try JSONValue.parse(
                #"""
                {"apiVersion":"v1","kind":"Secret",
                 "metadata":{"name":"web-tls","namespace":"shop","resourceVersion":"77","labels":{"app":"web"}},
                 "type":"kubernetes.io/tls",
                 "data":{"tls.crt":"LS0tLS1CRUdJTg==","tls.key":"a2V5","ca.crt":""},
                 "stringData":{"note":"hello"},
                 "immutable":true,
                 "futureField":[1,2]}
                """#))
        #expect(s.metadata.name == "web-tls")
        #expect(s.metadata.namespace == "shop")
        #expect(s.type == "kubernetes.io/tls")
        #expect(s.data[Secret.tlsCertificateKey] == Array("-----BEGIN".utf8))
        #expect(s.data["tls.key"] == Array("key".utf8))
        #expect(s.data["ca.crt"] == [])
        #expect(s.encodedData == ["tls.crt": "LS0tLS1CRUdJTg==", "tls.key": "a2V5", "ca.crt": ""])
        #expect(s.stringData == ["note": "hello"])
        #expect(s.string("note") == "hello")
        #expect(s.string("tls.key") == "key")
        #expect(s.value("missing") == nil)
        #expect(s.immutable == true)
        #expect(s.raw["futureField"] == [1, 2])
    }

    @Test func secretDefaultsToOpaque() throws {
        let s = try Secret(json: ["metadata": ["name": "x"]])
        #expect(s.type == "Opaque")
        #expect(s.data.isEmpty)
        #expect(s.immutable == nil)
    }

    @Test(arguments: [
        (#"{"metadata":{"name":"x"},"data":{"a":"!!notbase64"}}"#, "data.a: must be base64"),
        (#"{"metadata":{"name":"x"},"data":{"a":5}}"#, "data.a: must be a string"),
        (#"{"metadata":{"name":"x"},"type":1}"#, "type: must be a string"),
    ])
    func malformedSecrets(_ json: String, _ expected: String) throws {
        try expectDecodingError(expected, json) { v throws(KubeDecodingError) in try Secret(json: v) }
    }

    @Test func namespace() throws {
        let n = try Namespace(
            json: try JSONValue.parse(
                #"""
                {"metadata":{"name":"shop","uid":"ns-1","labels":{"kubernetes.io/metadata.name":"shop","team":"a"}},
                 "spec":{"finalizers":["kubernetes"]},"status":{"phase":"Active","conditions":[]},"extra":"kept"}
                """#))
        #expect(n.metadata.name == "shop")
        #expect(n.labels == ["kubernetes.io/metadata.name": "shop", "team": "a"])
        #expect(n.finalizers == ["kubernetes"])
        #expect(n.phase == "Active")
        #expect(!n.isTerminating)
        #expect(n.raw["extra"] == "kept")
        let gone = try Namespace(json: try JSONValue.parse(#"{"metadata":{"name":"old"},"status":{"phase":"Terminating"}}"#))
        #expect(gone.isTerminating)
        try expectDecodingError("status.phase: must be a string", #"{"metadata":{"name":"x"},"status":{"phase":3}}"#) { v throws(KubeDecodingError) in
            try Namespace(json: v)
        }
        try expectDecodingError("spec.finalizers[1]: must be a string", #"{"metadata":{"name":"x"},"spec":{"finalizers":["a",2]}}"#) {
            v throws(KubeDecodingError) in try Namespace(json: v)
        }
    }

    @Test func pod() throws {
        let p = try Pod(
            json: try JSONValue.parse(
                #"""
                {"apiVersion":"v1","kind":"Pod",
                 "metadata":{"name":"web-7d9f-abc","namespace":"shop","labels":{"app":"web","version":"v2"},
                   "deletionTimestamp":"2026-03-01T10:00:00Z","ownerReferences":[{"kind":"ReplicaSet","name":"web-7d9f"}]},
                 "spec":{"nodeName":"node-3","hostNetwork":false,"restartPolicy":"Always",
                   "containers":[{"name":"app","image":"web:2","ports":[{"name":"http","containerPort":8080,"protocol":"TCP"},{"containerPort":9090,"hostPort":19090}]},
                                 {"name":"sidecar","image":"proxy:1"}]},
                 "status":{"phase":"Running","podIP":"10.1.2.3","podIPs":[{"ip":"10.1.2.3"},{"ip":"fd00::3"}],"hostIP":"192.168.0.3",
                   "conditions":[{"type":"PodScheduled","status":"True"},
                                 {"type":"Ready","status":"True","lastTransitionTime":"2026-03-01T09:00:00Z"},
                                 {"type":"ContainersReady","status":"False","reason":"ContainersNotReady","message":"sidecar not ready"}],
                   "qosClass":"BestEffort"}}
                """#))
        #expect(p.metadata.name == "web-7d9f-abc")
        #expect(p.labels["version"] == "v2")
        #expect(p.metadata.deletionTimestamp == "2026-03-01T10:00:00Z")
        #expect(p.isTerminating)
        #expect(p.nodeName == "node-3")
        #expect(p.hostNetwork == false)
        #expect(p.containers.map(\.name) == ["app", "sidecar"])
        #expect(p.containers[0].ports == [
            Pod.ContainerPort(name: "http", containerPort: 8080, protocol: "TCP", hostPort: nil),
            Pod.ContainerPort(name: nil, containerPort: 9090, protocol: "TCP", hostPort: 19090),
        ])
        #expect(p.containerPort(named: "http") == 8080)
        #expect(p.containerPort(named: "grpc") == nil)
        #expect(p.phase == "Running")
        #expect(p.podIP == "10.1.2.3")
        #expect(p.podIPs == ["10.1.2.3", "fd00::3"])
        #expect(p.hostIP == "192.168.0.3")
        #expect(p.conditions.count == 3)
        #expect(p.conditions[1] == Pod.Condition(type: "Ready", status: .true, reason: nil, message: nil, lastTransitionTime: "2026-03-01T09:00:00Z"))
        #expect(p.conditions[2].status == .false)
        #expect(p.conditions[2].reason == "ContainersNotReady")
        #expect(p.isReady)
        #expect(p.raw["status"]?["qosClass"] == "BestEffort")
    }

    @Test func podNotReadyWithoutAReadyCondition() throws {
        let p = try Pod(json: try JSONValue.parse(#"{"metadata":{"name":"p"},"status":{"phase":"Pending","conditions":[{"type":"PodScheduled","status":"False"}]}}"#))
        #expect(!p.isReady)
        #expect(!p.isTerminating)
        #expect(p.podIPs.isEmpty)
        #expect(p.nodeName == nil)
    }

    @Test(arguments: [
        (#"{"metadata":{"name":"p"},"status":{"podIPs":["10.0.0.1"]}}"#, "status.podIPs[0]: must be an object"),
        (#"{"metadata":{"name":"p"},"status":{"conditions":[{"type":"Ready","status":true}]}}"#, "status.conditions[0].status: must be a string"),
        (#"{"metadata":{"name":"p"},"status":{"conditions":[{"type":"Ready","status":"Yes"}]}}"#,
         "status.conditions[0].status: must be True, False or Unknown, got \"Yes\""),
        (#"{"metadata":{"name":"p"},"spec":{"containers":[{"name":"a","ports":[{"containerPort":"80"}]}]}}"#,
         "spec.containers[0].ports[0].containerPort: must be an integer"),
        (#"{"metadata":{"name":"p"},"spec":{"nodeName":["n"]}}"#, "spec.nodeName: must be a string"),
    ])
    func malformedPods(_ json: String, _ expected: String) throws {
        try expectDecodingError(expected, json) { v throws(KubeDecodingError) in try Pod(json: v) }
    }
}

@Suite struct NetworkingModelTests {
    @Test func ingressWithEveryField() throws {
        let i = try Ingress(
            json: try JSONValue.parse(
                #"""
                {"apiVersion":"networking.k8s.io/v1","kind":"Ingress",
                 "metadata":{"name":"shop","namespace":"shop","generation":4,
                   "annotations":{"kubernetes.io/ingress.class":"legacy","nginx.ingress.kubernetes.io/rewrite-target":"/"}},
                 "spec":{"ingressClassName":"sluice",
                   "defaultBackend":{"service":{"name":"fallback","port":{"number":80}}},
                   "tls":[{"hosts":["shop.example.com","*.shop.example.com"],"secretName":"shop-tls"},{"hosts":["bare.example.com"]}],
                   "rules":[
                     {"host":"shop.example.com","http":{"paths":[
                       {"path":"/api","pathType":"Prefix","backend":{"service":{"name":"api","port":{"name":"http"}}}},
                       {"path":"/health","pathType":"Exact","backend":{"service":{"name":"api","port":{"number":8081}}}},
                       {"pathType":"ImplementationSpecific","backend":{"resource":{"apiGroup":"k8s.example.com","kind":"StorageBucket","name":"static"}}}]}},
                     {"http":{"paths":[{"path":"/","pathType":"Prefix","backend":{"service":{"name":"web","port":{"number":80}}}}]}},
                     {"host":"empty.example.com"}]},
                 "status":{"loadBalancer":{"ingress":[{"ip":"203.0.113.7"},{"hostname":"lb.example.net","ports":[{"port":443,"protocol":"TCP"}]}]}},
                 "somethingNew":{"a":1}}
                """#))
        #expect(i.metadata.generation == 4)
        #expect(i.ingressClassName == "sluice")
        #expect(i.classAnnotation == "legacy")
        #expect(i.className == "sluice")
        #expect(i.defaultBackend == Ingress.Backend(service: Ingress.ServiceBackend(name: "fallback", port: .number(80)), resource: nil))
        #expect(i.tls == [
            Ingress.TLS(hosts: ["shop.example.com", "*.shop.example.com"], secretName: "shop-tls"), Ingress.TLS(hosts: ["bare.example.com"], secretName: nil),
        ])
        #expect(i.rules.count == 3)
        #expect(i.rules[0].host == "shop.example.com")
        #expect(i.rules[0].paths.count == 3)
        #expect(i.rules[0].paths[0].path == "/api")
        #expect(i.rules[0].paths[0].pathType == .Prefix)
        #expect(i.rules[0].paths[0].backend.service == Ingress.ServiceBackend(name: "api", port: .name("http")))
        #expect(i.rules[0].paths[1].pathType == .Exact)
        #expect(i.rules[0].paths[1].backend.service?.port == .number(8081))
        #expect(i.rules[0].paths[2].path == nil)
        #expect(i.rules[0].paths[2].pathType == .ImplementationSpecific)
        #expect(i.rules[0].paths[2].backend.service == nil)
        #expect(i.rules[0].paths[2].backend.resource == Ingress.ResourceBackend(apiGroup: "k8s.example.com", kind: "StorageBucket", name: "static"))
        #expect(i.rules[1].host == nil)
        #expect(i.rules[1].paths.map(\.backend.service?.name) == ["web"])
        #expect(i.rules[2].paths.isEmpty)
        #expect(i.loadBalancer == [Ingress.LoadBalancerIngress(ip: "203.0.113.7", hostname: nil), Ingress.LoadBalancerIngress(ip: nil, hostname: "lb.example.net")])
        #expect(i.raw["somethingNew"]?["a"] == 1)
    }

    @Test func ingressClassFromTheAnnotationOnly() throws {
        let i = try Ingress(json: try JSONValue.parse(#"{"metadata":{"name":"old","annotations":{"kubernetes.io/ingress.class":"apisix"}},"spec":{}}"#))
        #expect(i.ingressClassName == nil)
        #expect(i.className == "apisix")
        let none = try Ingress(json: try JSONValue.parse(#"{"metadata":{"name":"plain"}}"#))
        #expect(none.className == nil)
        #expect(none.rules.isEmpty)
    }

    @Test(arguments: [
        (#"{"metadata":{"name":"i"},"spec":{"rules":[{"http":{"paths":[{"path":"/","pathType":"Regex","backend":{"service":{"name":"a","port":{"number":1}}}}]}}]}}"#,
         "spec.rules[0].http.paths[0].pathType: must be Exact, Prefix or ImplementationSpecific, got \"Regex\""),
        (#"{"metadata":{"name":"i"},"spec":{"rules":[{"http":{"paths":[{"path":"/","backend":{"service":{"name":"a","port":{"number":1}}}}]}}]}}"#,
         "spec.rules[0].http.paths[0].pathType: is required"),
        (#"{"metadata":{"name":"i"},"spec":{"rules":[{"http":{"paths":[{"pathType":"Prefix","backend":{"service":{"name":"a","port":{"number":"80"}}}}]}}]}}"#,
         "spec.rules[0].http.paths[0].backend.service.port.number: must be an integer"),
        (#"{"metadata":{"name":"i"},"spec":{"rules":[{"http":{"paths":[{"pathType":"Prefix","backend":{"service":{"name":"a","port":{}}}}]}}]}}"#,
         "spec.rules[0].http.paths[0].backend.service.port: must have a number or a name"),
        (#"{"metadata":{"name":"i"},"spec":{"defaultBackend":{}}}"#, "spec.defaultBackend: must have a service or a resource"),
        (#"{"metadata":{"name":"i"},"spec":{"tls":[{"hosts":"a.example.com"}]}}"#, "spec.tls[0].hosts: must be a list"),
        (#"{"metadata":{"name":"i"},"spec":{"ingressClassName":7}}"#, "spec.ingressClassName: must be a string"),
    ])
    func malformedIngresses(_ json: String, _ expected: String) throws {
        try expectDecodingError(expected, json) { v throws(KubeDecodingError) in try Ingress(json: v) }
    }

    @Test func ingressClass() throws {
        let c = try IngressClass(
            json: try JSONValue.parse(
                #"""
                {"apiVersion":"networking.k8s.io/v1","kind":"IngressClass",
                 "metadata":{"name":"sluice","annotations":{"ingressclass.kubernetes.io/is-default-class":"true"}},
                 "spec":{"controller":"apisix.apache.org/apisix-ingress-controller",
                   "parameters":{"apiGroup":"apisix.apache.org","kind":"GatewayProxy","name":"proxy","scope":"Namespace","namespace":"gateway"}},
                 "unknown":true}
                """#))
        #expect(c.metadata.name == "sluice")
        #expect(c.controller == "apisix.apache.org/apisix-ingress-controller")
        #expect(c.parameters == IngressClass.Parameters(apiGroup: "apisix.apache.org", kind: "GatewayProxy", name: "proxy", scope: "Namespace", namespace: "gateway"))
        #expect(c.isDefault)
        #expect(c.raw["unknown"] == true)
        let other = try IngressClass(
            json: try JSONValue.parse(#"{"metadata":{"name":"n","annotations":{"ingressclass.kubernetes.io/is-default-class":"false"}},"spec":{"controller":"k8s.io/nginx"}}"#))
        #expect(!other.isDefault)
        #expect(other.parameters == nil)
        try expectDecodingError("spec.parameters.kind: must be a string", #"{"metadata":{"name":"n"},"spec":{"parameters":{"kind":1,"name":"p"}}}"#) {
            v throws(KubeDecodingError) in try IngressClass(json: v)
        }
        try expectDecodingError("spec.controller: must be a string", #"{"metadata":{"name":"n"},"spec":{"controller":{}}}"#) { v throws(KubeDecodingError) in
            try IngressClass(json: v)
        }
    }
}

@Suite struct LeaseModelTests {
    static let document = #"""
        {"apiVersion":"coordination.k8s.io/v1","kind":"Lease",
         "metadata":{"name":"sluice-leader","namespace":"gateway","resourceVersion":"9001","uid":"l-1","managedFields":[{"manager":"x"}]},
         "spec":{"holderIdentity":"sluice-0_4f2a","leaseDurationSeconds":15,"acquireTime":"2026-02-03T04:05:06.000000Z",
           "renewTime":"2026-02-03T04:05:16.250000Z","leaseTransitions":3,"strategy":"OldestEmulationVersion","preferredHolder":"sluice-1",
           "futureSpecField":"kept"}}
        """#

    @Test func decodesEveryField() throws {
        let l = try Lease(json: try JSONValue.parse(Self.document))
        #expect(l.metadata.name == "sluice-leader")
        #expect(l.metadata.resourceVersion == "9001")
        #expect(l.spec == Lease.Spec(
            holderIdentity: "sluice-0_4f2a", leaseDurationSeconds: 15, acquireTime: "2026-02-03T04:05:06.000000Z", renewTime: "2026-02-03T04:05:16.250000Z",
            leaseTransitions: 3, strategy: "OldestEmulationVersion", preferredHolder: "sluice-1"))
        #expect(l.raw["spec"]?["futureSpecField"] == "kept")
        // 2026-02-03T04:05:16.25Z + 15 s
        #expect(l.expiresAtMicroseconds == KubeTime.parse("2026-02-03T04:05:31.250000Z"))
        #expect(l.expiresAtMicroseconds == 1_770_091_531_250_000)
    }

    @Test func updateBodyKeepsMetadataAndUnknownFields() throws {
        var l = try Lease(json: try JSONValue.parse(Self.document))
        l.spec.holderIdentity = "sluice-1_9c1e"
        l.spec.renewTime = KubeTime.microTime(epochMicroseconds: 1_770_091_600_000_001)
        l.spec.leaseTransitions = 4
        l.spec.preferredHolder = nil
        let body = l.json()
        #expect(body["metadata"]?["resourceVersion"] == "9001")  // conditional update
        #expect(body["metadata"]?["uid"] == "l-1")
        #expect(body["kind"] == "Lease")
        #expect(body["apiVersion"] == "coordination.k8s.io/v1")
        #expect(body["spec"]?["holderIdentity"] == "sluice-1_9c1e")
        #expect(body["spec"]?["renewTime"] == "2026-02-03T04:06:40.000001Z")
        #expect(body["spec"]?["leaseTransitions"] == 4)
        #expect(body["spec"]?["leaseDurationSeconds"] == 15)
        #expect(body["spec"]?["preferredHolder"] == nil)  // cleared
        #expect(body["spec"]?["futureSpecField"] == "kept")
        // What is written reads back the same.
        #expect(try Lease(json: body).spec == l.spec)
    }

    @Test func createBody() throws {
        let body = Lease.json(
            name: "sluice-leader", namespace: "gateway", labels: ["app": "sluice"],
            spec: Lease.Spec(holderIdentity: "me", leaseDurationSeconds: 15, acquireTime: "2026-01-01T00:00:00.000000Z", renewTime: "2026-01-01T00:00:00.000000Z",
                             leaseTransitions: 0))
        #expect(
            body.serialized()
                == #"{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"labels":{"app":"sluice"},"name":"sluice-leader","namespace":"gateway"},"spec":{"acquireTime":"2026-01-01T00:00:00.000000Z","holderIdentity":"me","leaseDurationSeconds":15,"leaseTransitions":0,"renewTime":"2026-01-01T00:00:00.000000Z"}}"#
        )
        let back = try Lease(json: body)
        #expect(back.metadata.namespace == "gateway")
        #expect(back.spec.holderIdentity == "me")
    }

    @Test(arguments: [
        (#"{"metadata":{"name":"l"},"spec":{"leaseDurationSeconds":"15"}}"#, "spec.leaseDurationSeconds: must be an integer"),
        (#"{"metadata":{"name":"l"},"spec":{"renewTime":1700000000}}"#, "spec.renewTime: must be a string"),
        (#"{"metadata":{"name":"l"},"spec":[]}"#, "spec: must be an object"),
    ])
    func malformedLeases(_ json: String, _ expected: String) throws {
        try expectDecodingError(expected, json) { v throws(KubeDecodingError) in try Lease(json: v) }
    }

    @Test func timeFormats() {
        #expect(KubeTime.time(epochSeconds: 0) == "1970-01-01T00:00:00Z")
        #expect(KubeTime.time(epochSeconds: 951_782_400) == "2000-02-29T00:00:00Z")  // leap day
        #expect(KubeTime.time(epochSeconds: -1) == "1969-12-31T23:59:59Z")
        #expect(KubeTime.microTime(epochMicroseconds: 1_700_000_000_123_456) == "2023-11-14T22:13:20.123456Z")
        #expect(KubeTime.microTime(epochMicroseconds: 5) == "1970-01-01T00:00:00.000005Z")
        #expect(KubeTime.parse("2023-11-14T22:13:20.123456Z") == 1_700_000_000_123_456)
        #expect(KubeTime.parse("2023-11-14T22:13:20Z") == 1_700_000_000_000_000)
        #expect(KubeTime.parse("2023-11-15T00:13:20.5+02:00") == 1_700_000_000_500_000)
        #expect(KubeTime.parse("2000-02-29T00:00:00Z") == 951_782_400_000_000)
        #expect(KubeTime.parse("2023-11-14 22:13:20") == nil)  // no zone
        #expect(KubeTime.parse("2023-13-14T22:13:20Z") == nil)
        #expect(KubeTime.parse("yesterday") == nil)
        let now = KubeTime.nowMicroseconds()
        #expect(now > 1_700_000_000_000_000)
        #expect(KubeTime.parse(KubeTime.microTime(epochMicroseconds: now)) == now)
    }

    @Test func goDurations() {
        #expect(KubeDuration.seconds("5s") == 5)
        #expect(KubeDuration.seconds("1m30s") == 90)
        #expect(KubeDuration.seconds("1h0m0s") == 3600)
        #expect(KubeDuration.seconds("500ms") == 0.5)
        #expect(KubeDuration.seconds("1.5s") == 1.5)
        #expect(KubeDuration.seconds("0") == 0)
        #expect(KubeDuration.seconds("5") == nil)
        #expect(KubeDuration.seconds("5 s") == nil)
        #expect(KubeDuration.seconds("") == nil)
    }
}

@Suite struct ApisixModelTests {
    @Test func routeWithEveryField() throws {
        let r = try ApisixRoute(
            json: try JSONValue.parse(
                #"""
                {"apiVersion":"apisix.apache.org/v2","kind":"ApisixRoute",
                 "metadata":{"name":"shop","namespace":"shop","generation":7},
                 "spec":{"ingressClassName":"apisix",
                  "http":[
                   {"name":"api","priority":10,"timeout":{"connect":"5s","send":"1m0s","read":"500ms"},
                    "match":{"hosts":["shop.example.com","*.shop.example.com"],"paths":["/api/*","/v2"],"methods":["GET","POST"],
                      "remoteAddrs":["10.0.0.0/8","::1"],
                      "exprs":[{"subject":{"scope":"Header","name":"X-Canary"},"op":"Equal","value":"yes"},
                               {"subject":{"scope":"Query","name":"region"},"op":"In","set":["eu","us"]},
                               {"subject":{"scope":"Path"},"op":"RegexMatch","value":"^/api/v[0-9]+"}],
                      "filter_func":"function(vars) return vars.arg_debug == nil end"},
                    "backends":[{"serviceName":"api","servicePort":8080,"resolveGranularity":"service","weight":80},
                                {"serviceName":"api-canary","servicePort":"http","weight":20,"subset":"canary"},
                                {"serviceName":"api-legacy","servicePort":"9090"}],
                    "upstreams":[{"name":"external-api","weight":5},{"name":"backup"}],
                    "websocket":true,
                    "plugin_config_name":"common","plugin_config_namespace":"shared",
                    "plugins":[{"name":"limit-count","enable":true,"config":{"count":100,"time_window":60,"key":"remote_addr"}},
                               {"name":"echo","enable":false,"config":{"body":"hi"},"secretRef":"echo-secret"},
                               {"name":"cors"}],
                    "authentication":{"enable":true,"type":"jwtAuth","keyAuth":{"header":"apikey"},
                      "jwtAuth":{"header":"Authorization","query":"jwt","cookie":"jwt"},
                      "ldapAuth":{"base_dn":"ou=users,dc=example,dc=org","ldap_uri":"ldap.example.org:389","use_tls":true,"uid":"cn"}}},
                   {"name":"plain","match":{"paths":["/*"]},"backends":[{"serviceName":"web","servicePort":80}]}],
                  "stream":[
                   {"name":"mysql","protocol":"TCP","match":{"ingressPort":3306,"host":"db.example.com"},
                    "backend":{"serviceName":"mysql","servicePort":3306,"resolveGranularity":"service","subset":"primary"},
                    "plugins":[{"name":"ip-restriction","enable":true,"config":{"whitelist":["10.0.0.0/8"]}}]},
                   {"name":"dns","protocol":"UDP","match":{"ingressPort":53},"backend":{"serviceName":"coredns","servicePort":"dns"}}]},
                 "status":{"conditions":[{"type":"ResourcesAvailable","status":"True","reason":"ResourcesSynced","message":"Sync Successfully",
                   "observedGeneration":7,"lastTransitionTime":"2026-01-05T06:07:08Z"}]},
                 "newTopLevel":"kept"}
                """#))
        #expect(r.metadata.generation == 7)
        #expect(r.ingressClassName == "apisix")
        #expect(r.http.count == 2)
        let h = r.http[0]
        #expect(h.name == "api")
        #expect(h.priority == 10)
        #expect(h.timeout == ApisixTimeout(connect: "5s", send: "1m0s", read: "500ms"))
        #expect(h.timeout?.connectSeconds == 5)
        #expect(h.timeout?.sendSeconds == 60)
        #expect(h.timeout?.readSeconds == 0.5)
        #expect(h.match.hosts == ["shop.example.com", "*.shop.example.com"])
        #expect(h.match.paths == ["/api/*", "/v2"])
        #expect(h.match.methods == ["GET", "POST"])
        #expect(h.match.remoteAddrs == ["10.0.0.0/8", "::1"])
        #expect(h.match.exprs == [
            ApisixRoute.Expr(subject: .init(scope: "Header", name: "X-Canary"), op: "Equal", value: "yes", set: []),
            ApisixRoute.Expr(subject: .init(scope: "Query", name: "region"), op: "In", value: nil, set: ["eu", "us"]),
            ApisixRoute.Expr(subject: .init(scope: "Path", name: ""), op: "RegexMatch", value: "^/api/v[0-9]+", set: []),
        ])
        #expect(h.match.filterFunc == "function(vars) return vars.arg_debug == nil end")
        #expect(h.backends == [
            ApisixRoute.Backend(serviceName: "api", servicePort: .number(8080), resolveGranularity: "service", weight: 80, subset: nil),
            ApisixRoute.Backend(serviceName: "api-canary", servicePort: .name("http"), resolveGranularity: nil, weight: 20, subset: "canary"),
            ApisixRoute.Backend(serviceName: "api-legacy", servicePort: .number(9090), resolveGranularity: nil, weight: nil, subset: nil),
        ])
        #expect(h.upstreams == [ApisixRoute.UpstreamReference(name: "external-api", weight: 5), ApisixRoute.UpstreamReference(name: "backup", weight: nil)])
        #expect(h.websocket)
        #expect(h.pluginConfigName == "common")
        #expect(h.pluginConfigNamespace == "shared")
        #expect(h.plugins == [
            ApisixPlugin(name: "limit-count", enable: true, config: ["count": 100, "time_window": 60, "key": "remote_addr"]),
            ApisixPlugin(name: "echo", enable: false, config: ["body": "hi"], secretRef: "echo-secret"),
            ApisixPlugin(name: "cors", enable: true, config: nil, secretRef: nil),
        ])
        let auth = try #require(h.authentication)
        #expect(auth.enable)
        #expect(auth.type == "jwtAuth")
        #expect(auth.keyAuth == ApisixRoute.Authentication.KeyAuth(header: "apikey"))
        #expect(auth.jwtAuth == ApisixRoute.Authentication.JwtAuth(header: "Authorization", query: "jwt", cookie: "jwt"))
        #expect(auth.ldapAuth == ApisixRoute.Authentication.LDAPAuth(baseDN: "ou=users,dc=example,dc=org", ldapURI: "ldap.example.org:389", useTLS: true, uid: "cn"))
        let plain = r.http[1]
        #expect(plain.priority == 0)
        #expect(plain.timeout == nil)
        #expect(!plain.websocket)
        #expect(plain.authentication == nil)
        #expect(plain.plugins.isEmpty)
        #expect(plain.match.exprs.isEmpty)
        #expect(r.stream.count == 2)
        #expect(r.stream[0].name == "mysql")
        #expect(r.stream[0].protocol == .TCP)
        #expect(r.stream[0].match == ApisixRoute.Stream.Match(ingressPort: 3306, host: "db.example.com"))
        #expect(r.stream[0].backend == ApisixRoute.Stream.Backend(serviceName: "mysql", servicePort: .number(3306), resolveGranularity: "service", subset: "primary"))
        #expect(r.stream[0].plugins.first?.config?["whitelist"] == ["10.0.0.0/8"])
        #expect(r.stream[1].protocol == .UDP)
        #expect(r.stream[1].match.host == nil)
        #expect(r.stream[1].backend.servicePort == .name("dns"))
        #expect(r.status.conditions == [
            KubeCondition(type: "ResourcesAvailable", status: .true, reason: "ResourcesSynced", message: "Sync Successfully", observedGeneration: 7,
                          lastTransitionTime: "2026-01-05T06:07:08Z")
        ])
        #expect(r.status.resourcesAvailable?.status == .true)
        #expect(r.raw["newTopLevel"] == "kept")
    }

    @Test(arguments: [
        (#"{"metadata":{"name":"r"},"spec":{"http":[{"name":"a","backends":[{"serviceName":"s","servicePort":80},{"serviceName":"t","servicePort":true}]}]}}"#,
         "spec.http[0].backends[1].servicePort: must be a port number or name"),
        (#"{"metadata":{"name":"r"},"spec":{"http":[{"name":"a","backends":[{"serviceName":"s"}]}]}}"#, "spec.http[0].backends[0].servicePort: is required"),
        (#"{"metadata":{"name":"r"},"spec":{"http":[{"name":"a","match":{"paths":"/"}}]}}"#, "spec.http[0].match.paths: must be a list"),
        (#"{"metadata":{"name":"r"},"spec":{"http":[{"name":"a","match":{"exprs":[{"subject":{"scope":"Header","name":"x"},"op":"In","set":[1]}]}}]}}"#,
         "spec.http[0].match.exprs[0].set[0]: must be a string"),
        (#"{"metadata":{"name":"r"},"spec":{"http":[{"name":"a","plugins":[{"name":"p","config":"x"}]}]}}"#, "spec.http[0].plugins[0].config: must be an object"),
        (#"{"metadata":{"name":"r"},"spec":{"http":[{"name":"a","plugins":[{"name":"p","enable":"yes"}]}]}}"#, "spec.http[0].plugins[0].enable: must be a boolean"),
        (#"{"metadata":{"name":"r"},"spec":{"http":[{"name":"a","priority":"high"}]}}"#, "spec.http[0].priority: must be an integer"),
        (#"{"metadata":{"name":"r"},"spec":{"http":[{"name":"a","authentication":{"enable":true,"ldapAuth":{"use_tls":"no"}}}]}}"#,
         "spec.http[0].authentication.ldapAuth.use_tls: must be a boolean"),
        (#"{"metadata":{"name":"r"},"spec":{"http":[{"priority":1}]}}"#, "spec.http[0].name: is required"),
        (#"{"metadata":{"name":"r"},"spec":{"stream":[{"name":"s","protocol":"SCTP","match":{"ingressPort":1},"backend":{"serviceName":"a","servicePort":1}}]}}"#,
         "spec.stream[0].protocol: must be TCP or UDP, got \"SCTP\""),
        (#"{"metadata":{"name":"r"},"spec":{"stream":[{"name":"s","protocol":"TCP","match":{"ingressPort":"9000"},"backend":{"serviceName":"a","servicePort":1}}]}}"#,
         "spec.stream[0].match.ingressPort: must be an integer"),
        (#"{"metadata":{"name":"r"},"status":{"conditions":[{"type":"ResourcesAvailable","status":"True","observedGeneration":"1"}]}}"#,
         "status.conditions[0].observedGeneration: must be an integer"),
    ])
    func malformedRoutes(_ json: String, _ expected: String) throws {
        try expectDecodingError(expected, json) { v throws(KubeDecodingError) in try ApisixRoute(json: v) }
    }

    @Test func upstreamWithEveryField() throws {
        let u = try ApisixUpstream(
            json: try JSONValue.parse(
                #"""
                {"apiVersion":"apisix.apache.org/v2","kind":"ApisixUpstream",
                 "metadata":{"name":"api","namespace":"shop"},
                 "spec":{"ingressClassName":"apisix",
                  "externalNodes":[{"name":"httpbin.org","type":"Domain","weight":10,"port":443},{"name":"ext-svc","type":"Service"},{"name":"1.2.3.4"}],
                  "loadbalancer":{"type":"chash","hashOn":"header","key":"X-User"},
                  "scheme":"https","retries":3,"timeout":{"connect":"1s","read":"30s"},
                  "healthCheck":{
                    "active":{"type":"http","timeout":5,"concurrency":10,"host":"api.internal","port":8081,"httpPath":"/healthz","strictTLS":false,
                      "requestHeaders":["User-Agent: probe"],
                      "healthy":{"interval":"2s","httpCodes":[200,204],"successes":2},
                      "unhealthy":{"interval":"1s","httpCodes":[500,502],"httpFailures":3,"tcpFailures":2,"timeout":4}},
                    "passive":{"type":"http","healthy":{"httpCodes":[200],"successes":3},"unhealthy":{"httpCodes":[502],"httpFailures":5,"tcpFailures":2,"timeout":7}}},
                  "tlsSecret":{"name":"client-cert","namespace":"shop"},
                  "subsets":[{"name":"canary","labels":{"version":"v2"}},{"name":"stable","labels":{"version":"v1","track":"main"}}],
                  "passHost":"rewrite","upstreamHost":"api.internal",
                  "discovery":{"serviceName":"api-svc","type":"dns","args":{"zone":"eu"}},
                  "portLevelSettings":[{"port":9090,"scheme":"grpc","loadbalancer":{"type":"ewma"}},{"port":8443,"scheme":"https","retries":1}]},
                 "status":{"conditions":[{"type":"ResourcesAvailable","status":"False","reason":"ResourceSyncAborted","message":"service not found",
                   "observedGeneration":2,"lastTransitionTime":"2026-01-05T06:07:08Z"}]},
                 "extra":{"x":1}}
                """#))
        #expect(u.metadata.name == "api")
        #expect(u.ingressClassName == "apisix")
        #expect(u.externalNodes == [
            ApisixUpstream.ExternalNode(name: "httpbin.org", type: .Domain, weight: 10, port: 443),
            ApisixUpstream.ExternalNode(name: "ext-svc", type: .Service, weight: nil, port: nil),
            ApisixUpstream.ExternalNode(name: "1.2.3.4", type: nil, weight: nil, port: nil),
        ])
        let c = u.config
        #expect(c.loadbalancer == ApisixUpstream.LoadBalancer(type: "chash", hashOn: "header", key: "X-User"))
        #expect(c.scheme == "https")
        #expect(c.retries == 3)
        #expect(c.timeout == ApisixTimeout(connect: "1s", send: nil, read: "30s"))
        let hc = try #require(c.healthCheck)
        let active = try #require(hc.active)
        #expect(active.type == "http")
        #expect(active.timeout == 5)
        #expect(active.concurrency == 10)
        #expect(active.host == "api.internal")
        #expect(active.port == 8081)
        #expect(active.httpPath == "/healthz")
        #expect(active.strictTLS == false)
        #expect(active.requestHeaders == ["User-Agent: probe"])
        #expect(active.healthy?.interval == "2s")
        #expect(active.healthy?.httpCodes == [200, 204])
        #expect(active.healthy?.successes == 2)
        #expect(active.unhealthy?.interval == "1s")
        #expect(active.unhealthy?.httpCodes == [500, 502])
        #expect(active.unhealthy?.httpFailures == 3)
        #expect(active.unhealthy?.tcpFailures == 2)
        #expect(active.unhealthy?.timeouts == 4)
        let passive = try #require(hc.passive)
        #expect(passive.type == "http")
        #expect(passive.healthy?.successes == 3)
        #expect(passive.unhealthy?.httpCodes == [502])
        #expect(passive.unhealthy?.timeouts == 7)
        #expect(passive.unhealthy?.interval == nil)
        #expect(hc.raw["active"]?["httpPath"] == "/healthz")
        #expect(c.tlsSecret == ApisixSecretReference(name: "client-cert", namespace: "shop"))
        #expect(c.subsets == [
            ApisixUpstream.Subset(name: "canary", labels: ["version": "v2"]), ApisixUpstream.Subset(name: "stable", labels: ["version": "v1", "track": "main"]),
        ])
        #expect(c.passHost == "rewrite")
        #expect(c.upstreamHost == "api.internal")
        #expect(c.discovery == ApisixUpstream.Discovery(serviceName: "api-svc", type: "dns", args: ["zone": "eu"]))
        #expect(u.portLevelSettings.map(\.port) == [9090, 8443])
        #expect(u.portLevelSettings[0].config.scheme == "grpc")
        #expect(u.portLevelSettings[0].config.loadbalancer?.type == "ewma")
        #expect(u.portLevelSettings[0].config.retries == nil)
        // Port-level settings override what they set and inherit the rest.
        let grpc = u.config(forPort: 9090)
        #expect(grpc.scheme == "grpc")
        #expect(grpc.loadbalancer == ApisixUpstream.LoadBalancer(type: "ewma", hashOn: nil, key: nil))
        #expect(grpc.retries == 3)
        #expect(grpc.upstreamHost == "api.internal")
        #expect(u.config(forPort: 8443).retries == 1)
        #expect(u.config(forPort: 80) == u.config)
        #expect(u.status.resourcesAvailable?.status == .false)
        #expect(u.status.resourcesAvailable?.message == "service not found")
        #expect(u.raw["extra"]?["x"] == 1)
    }

    @Test func upstreamLoadBalancerDefaultsToRoundRobin() throws {
        let u = try ApisixUpstream(json: try JSONValue.parse(#"{"metadata":{"name":"u"},"spec":{"loadbalancer":{}}}"#))
        #expect(u.config.loadbalancer?.type == "roundrobin")
        #expect(u.config.healthCheck == nil)
        #expect(u.status.conditions.isEmpty)
    }

    @Test(arguments: [
        (#"{"metadata":{"name":"u"},"spec":{"externalNodes":[{"name":"a","type":"IP"}]}}"#, "spec.externalNodes[0].type: must be Domain or Service, got \"IP\""),
        (#"{"metadata":{"name":"u"},"spec":{"externalNodes":[{"name":"a","weight":"10"}]}}"#, "spec.externalNodes[0].weight: must be an integer"),
        (#"{"metadata":{"name":"u"},"spec":{"retries":"3"}}"#, "spec.retries: must be an integer"),
        (#"{"metadata":{"name":"u"},"spec":{"healthCheck":{"active":{"healthy":{"httpCodes":[200,"204"]}}}}}"#,
         "spec.healthCheck.active.healthy.httpCodes[1]: must be an integer"),
        (#"{"metadata":{"name":"u"},"spec":{"healthCheck":{"active":{"timeout":"5s"}}}}"#, "spec.healthCheck.active.timeout: must be a number"),
        (#"{"metadata":{"name":"u"},"spec":{"subsets":[{"name":"a","labels":{"v":2}}]}}"#, "spec.subsets[0].labels.v: must be a string"),
        (#"{"metadata":{"name":"u"},"spec":{"portLevelSettings":[{"port":80,"timeout":{"read":30}}]}}"#, "spec.portLevelSettings[0].timeout.read: must be a string"),
        (#"{"metadata":{"name":"u"},"spec":{"portLevelSettings":[{"scheme":"grpc"}]}}"#, "spec.portLevelSettings[0].port: is required"),
    ])
    func malformedUpstreams(_ json: String, _ expected: String) throws {
        try expectDecodingError(expected, json) { v throws(KubeDecodingError) in try ApisixUpstream(json: v) }
    }

    @Test func tlsWithEveryField() throws {
        let t = try ApisixTls(
            json: try JSONValue.parse(
                #"""
                {"apiVersion":"apisix.apache.org/v2","kind":"ApisixTls",
                 "metadata":{"name":"shop-tls","namespace":"shop"},
                 "spec":{"ingressClassName":"apisix","hosts":["shop.example.com","*.shop.example.com"],
                  "secret":{"name":"shop-cert","namespace":"certs"},
                  "client":{"caSecret":{"name":"client-ca","namespace":"certs"},"depth":2,"skip_mtls_uri_regex":["^/public/.*","/healthz"]}},
                 "status":{"conditions":[]},
                 "later":"kept"}
                """#))
        #expect(t.metadata.name == "shop-tls")
        #expect(t.ingressClassName == "apisix")
        #expect(t.hosts == ["shop.example.com", "*.shop.example.com"])
        #expect(t.secret == ApisixSecretReference(name: "shop-cert", namespace: "certs"))
        #expect(t.client == ApisixTls.Client(caSecret: ApisixSecretReference(name: "client-ca", namespace: "certs"), depth: 2,
                                             skipMTLSURIRegex: ["^/public/.*", "/healthz"]))
        #expect(t.status.conditions.isEmpty)
        #expect(t.raw["later"] == "kept")
        let noClient = try ApisixTls(json: try JSONValue.parse(#"{"metadata":{"name":"t"},"spec":{"hosts":["a.example.com"],"secret":{"name":"s","namespace":"n"}}}"#))
        #expect(noClient.client == nil)
    }

    @Test(arguments: [
        (#"{"metadata":{"name":"t"},"spec":{"hosts":["a"]}}"#, "spec.secret: is required"),
        (#"{"metadata":{"name":"t"},"spec":{"hosts":["a"],"secret":{"name":"s","namespace":"n"},"client":{"depth":"1"}}}"#, "spec.client.depth: must be an integer"),
        (#"{"metadata":{"name":"t"},"spec":{"hosts":["a"],"secret":{"name":"s","namespace":"n"},"client":{"skip_mtls_uri_regex":"/x"}}}"#,
         "spec.client.skip_mtls_uri_regex: must be a list"),
        (#"{"metadata":{"name":"t"},"spec":{"hosts":[1],"secret":{"name":"s","namespace":"n"}}}"#, "spec.hosts[0]: must be a string"),
    ])
    func malformedTls(_ json: String, _ expected: String) throws {
        try expectDecodingError(expected, json) { v throws(KubeDecodingError) in try ApisixTls(json: v) }
    }

    @Test func consumerWithEveryAuthMethod() throws {
        let c = try ApisixConsumer(
            json: try JSONValue.parse(
                #"""
                {"apiVersion":"apisix.apache.org/v2","kind":"ApisixConsumer",
                 "metadata":{"name":"jack","namespace":"shop"},
                 "spec":{"ingressClassName":"apisix","authParameter":{
                   "basicAuth":{"value":{"username":"jack","password":"s3cret"}},
                   "keyAuth":{"secretRef":{"name":"jack-key"}},
                   "wolfRBAC":{"value":{"server":"http://wolf:12180","appid":"shop","header_prefix":"X-"}},
                   "jwtAuth":{"value":{"key":"jack-key","secret":"hs-secret","public_key":"PUB","private_key":"PRIV","algorithm":"RS256","exp":86400,
                     "base64_secret":false,"lifetime_grace_period":5}},
                   "hmacAuth":{"value":{"key_id":"jack-id","secret_key":"hmac-secret","access_key":"ak","algorithm":"hmac-sha256","clock_skew":300,
                     "signed_headers":["date","host"],"keep_headers":true,"encode_uri_params":false,"validate_request_body":true,"max_req_body":1024}},
                   "ldapAuth":{"value":{"user_dn":"cn=jack,ou=users,dc=example,dc=org"}}}},
                 "status":{"conditions":[{"type":"ResourcesAvailable","status":"Unknown","reason":"Pending","message":"","lastTransitionTime":"2026-01-01T00:00:00Z"}]},
                 "extra":1}
                """#))
        #expect(c.metadata.name == "jack")
        #expect(c.ingressClassName == "apisix")
        let a = c.authParameter
        #expect(a.basicAuth?.value == ApisixConsumer.BasicAuth(username: "jack", password: "s3cret"))
        #expect(a.basicAuth?.secretRef == nil)
        #expect(a.keyAuth?.value == nil)
        #expect(a.keyAuth?.secretRef == "jack-key")
        #expect(a.wolfRBAC?.value == ApisixConsumer.WolfRBAC(server: "http://wolf:12180", appid: "shop", headerPrefix: "X-"))
        #expect(a.jwtAuth?.value == ApisixConsumer.JwtAuth(
            key: "jack-key", secret: "hs-secret", publicKey: "PUB", privateKey: "PRIV", algorithm: "RS256", exp: 86400, base64Secret: false, lifetimeGracePeriod: 5))
        #expect(a.hmacAuth?.value == ApisixConsumer.HMACAuth(
            keyID: "jack-id", secretKey: "hmac-secret", accessKey: "ak", algorithm: "hmac-sha256", clockSkew: 300, signedHeaders: ["date", "host"],
            keepHeaders: true, encodeURIParams: false, validateRequestBody: true, maxReqBody: 1024))
        #expect(a.ldapAuth?.value == ApisixConsumer.LDAPAuth(userDN: "cn=jack,ou=users,dc=example,dc=org"))
        #expect(c.status.conditions.first?.status == .unknown)
        #expect(c.raw["extra"] == 1)
        let onlyKey = try ApisixConsumer(json: try JSONValue.parse(#"{"metadata":{"name":"k"},"spec":{"authParameter":{"keyAuth":{"value":{"key":"abc"}}}}}"#))
        #expect(onlyKey.authParameter.keyAuth?.value?.key == "abc")
        #expect(onlyKey.authParameter.basicAuth == nil)
        #expect(onlyKey.authParameter.jwtAuth == nil)
    }

    @Test(arguments: [
        (#"{"metadata":{"name":"c"},"spec":{"authParameter":{"keyAuth":{"value":{"key":42}}}}}"#, "spec.authParameter.keyAuth.value.key: must be a string"),
        (#"{"metadata":{"name":"c"},"spec":{"authParameter":{"basicAuth":{"value":{"username":"u"}}}}}"#, "spec.authParameter.basicAuth.value.password: is required"),
        (#"{"metadata":{"name":"c"},"spec":{"authParameter":{"jwtAuth":{"secretRef":"jwt"}}}}"#, "spec.authParameter.jwtAuth.secretRef: must be an object"),
        (#"{"metadata":{"name":"c"},"spec":{"authParameter":{"hmacAuth":{"value":{"clock_skew":"300"}}}}}"#,
         "spec.authParameter.hmacAuth.value.clock_skew: must be an integer"),
        (#"{"metadata":{"name":"c"},"spec":{"authParameter":{"wolfRBAC":{"value":{"appid":1}}}}}"#, "spec.authParameter.wolfRBAC.value.appid: must be a string"),
    ])
    func malformedConsumers(_ json: String, _ expected: String) throws {
        try expectDecodingError(expected, json) { v throws(KubeDecodingError) in try ApisixConsumer(json: v) }
    }

    @Test func pluginConfigAndGlobalRule() throws {
        let pc = try ApisixPluginConfig(
            json: try JSONValue.parse(
                #"""
                {"apiVersion":"apisix.apache.org/v2","kind":"ApisixPluginConfig","metadata":{"name":"common","namespace":"shared"},
                 "spec":{"ingressClassName":"apisix","plugins":[{"name":"cors","enable":true,"config":{"allow_origins":"*"}},{"name":"gzip","enable":false}]},
                 "status":{"conditions":[{"type":"ResourcesAvailable","status":"True","reason":"ResourcesSynced","message":"ok","observedGeneration":1,
                   "lastTransitionTime":"2026-01-01T00:00:00Z"}]},"x":"kept"}
                """#))
        #expect(pc.metadata.name == "common")
        #expect(pc.ingressClassName == "apisix")
        #expect(pc.plugins == [ApisixPlugin(name: "cors", config: ["allow_origins": "*"]), ApisixPlugin(name: "gzip", enable: false)])
        #expect(pc.status.resourcesAvailable?.observedGeneration == 1)
        #expect(pc.raw["x"] == "kept")

        let g = try ApisixGlobalRule(
            json: try JSONValue.parse(
                #"""
                {"apiVersion":"apisix.apache.org/v2","kind":"ApisixGlobalRule","metadata":{"name":"global","namespace":"gateway"},
                 "spec":{"ingressClassName":"apisix","plugins":[{"name":"prometheus","enable":true,"config":{"prefer_name":true}}]},"y":[]}
                """#))
        #expect(g.metadata.namespace == "gateway")
        #expect(g.ingressClassName == "apisix")
        #expect(g.plugins == [ApisixPlugin(name: "prometheus", config: ["prefer_name": true])])
        #expect(g.status.conditions.isEmpty)
        #expect(g.raw["y"] == [])

        try expectDecodingError("spec.plugins[0].name: must be a string", #"{"metadata":{"name":"p"},"spec":{"plugins":[{"name":5}]}}"#) {
            v throws(KubeDecodingError) in try ApisixPluginConfig(json: v)
        }
        try expectDecodingError("spec.plugins[1].secretRef: must be a string", #"{"metadata":{"name":"g"},"spec":{"plugins":[{"name":"a"},{"name":"b","secretRef":{}}]}}"#) {
            v throws(KubeDecodingError) in try ApisixGlobalRule(json: v)
        }
        try expectDecodingError("spec.plugins: must be a list", #"{"metadata":{"name":"g"},"spec":{"plugins":{"name":"a"}}}"#) { v throws(KubeDecodingError) in
            try ApisixGlobalRule(json: v)
        }
    }

    @Test func statusJSONForTheStatusSubresource() throws {
        let condition = KubeCondition.resourcesAvailable(synced: true, message: "Sync Successfully", observedGeneration: 3, at: 1_767_225_600)
        #expect(condition.lastTransitionTime == "2026-01-01T00:00:00Z")
        let json = ApisixStatus.json(conditions: [condition])
        #expect(
            json.serialized()
                == #"{"conditions":[{"lastTransitionTime":"2026-01-01T00:00:00Z","message":"Sync Successfully","observedGeneration":3,"reason":"ResourcesSynced","status":"True","type":"ResourcesAvailable"}]}"#
        )
        let failed = ApisixStatus.json(synced: false, message: "service shop/api not found", observedGeneration: nil, at: 0)
        #expect(failed["conditions"]?.arrayValue?.first?["status"] == "False")
        #expect(failed["conditions"]?.arrayValue?.first?["reason"] == "ResourceSyncAborted")
        #expect(failed["conditions"]?.arrayValue?.first?["observedGeneration"] == nil)
        // What is written decodes back as the status of a resource.
        let route = try ApisixRoute(json: ["metadata": ["name": "r"], "status": json])
        #expect(route.status.conditions == [condition])
        // A condition without a status change keeps its transition time.
        let later = KubeCondition.resourcesAvailable(synced: true, message: "again", observedGeneration: 4, at: 1_767_229_200)
        let kept = route.status.setting(later)
        #expect(kept.conditions.count == 1)
        #expect(kept.conditions[0].message == "again")
        #expect(kept.conditions[0].observedGeneration == 4)
        #expect(kept.conditions[0].lastTransitionTime == "2026-01-01T00:00:00Z")
        let flipped = route.status.setting(KubeCondition.resourcesAvailable(synced: false, message: "broken", observedGeneration: 4, at: 1_767_229_200))
        #expect(flipped.conditions[0].lastTransitionTime == "2026-01-01T01:00:00Z")
        #expect(flipped.json()["conditions"]?.arrayValue?.count == 1)
    }

    @Test func resourceCollections() {
        #expect(KubeResource.apisixRoutes(namespace: "shop").path(name: "r") == "/apis/apisix.apache.org/v2/namespaces/shop/apisixroutes/r")
        #expect(KubeResource.apisixTlses().path() == "/apis/apisix.apache.org/v2/apisixtlses")
        #expect(KubeResource.apisixUpstreams().plural == "apisixupstreams")
        #expect(KubeResource.apisixConsumers().plural == "apisixconsumers")
        #expect(KubeResource.apisixPluginConfigs().plural == "apisixpluginconfigs")
        #expect(KubeResource.apisixGlobalRules().plural == "apisixglobalrules")
        #expect(KubeResource.secrets(namespace: "a").path() == "/api/v1/namespaces/a/secrets")
        #expect(KubeResource.namespaces().path(name: "a") == "/api/v1/namespaces/a")
        #expect(KubeResource.pods().path() == "/api/v1/pods")
        #expect(KubeResource.ingresses(namespace: "a").path() == "/apis/networking.k8s.io/v1/namespaces/a/ingresses")
        #expect(KubeResource.ingressClasses().path(name: "c") == "/apis/networking.k8s.io/v1/ingressclasses/c")
        #expect(KubeResource.leases(namespace: "kube-system").path(name: "l") == "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/l")
    }
}
