import KubeClient
import SluiceCore
@testable import SluiceIngress
import SluiceTesting
import Testing

/// Seeded random mutation of valid Kubernetes objects (the fixtures of the translator
/// tests): numbers replaced by extremes, strings by CR LF, NUL, 64 KiB or odd Unicode,
/// fields dropped or duplicated, types changed. Each mutant is decoded and the whole
/// cluster translated; nothing may trap, every error must name a field, and every gateway
/// object produced must pass the gateway's own decoders (what the `--etcd` writer checks)
/// or be refused by them naming a field.
///
/// Deterministic: a fixed seed and at most `iterations` mutants, stopped early after
/// `timeLimit`. A failure prints the seed, the iteration and the mutant to replay it.
@Suite struct TranslatorFuzzTests {
    static let seed: UInt64 = 0x5EED_0012_1A9E_55
    static let iterations = 2_000
    static let timeLimit: Duration = .seconds(10)

    // MARK: - Fixtures: a valid cluster using every field the translator reads

    static let namespace = "default"

    static let services: [String: String] = [
        "httpbin": #"{"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "https", "port": 443, "targetPort": "https"}]}"#,
        "echo": #"{"clusterIP": "10.96.0.11", "ports": [{"name": "http", "port": 8080}]}"#,
        "ext-svc": #"{"type": "ExternalName", "externalName": "api.example.com", "ports": [{"name": "http", "port": 80}]}"#,
    ]

    static let secrets: [String: [String: String]] = [
        // PEM-shaped (the gateway's ssls decoder checks the shape, not the contents).
        "cert": ["tls.crt": TLSTranslationTests.cert, "tls.key": TLSTranslationTests.key, "ca.crt": TLSTranslationTests.ca],
        "cred": ["key": "k2", "username": "jack", "password": "pw", "secret": "s3cret", "exp": "3600"],
        "conf": ["uri": "/from-secret", "headers.set.X-Api-Key": "abc"],
    ]

    static let slice = #"""
        {"metadata": {"name": "httpbin-abc", "namespace": "default", "labels": {"kubernetes.io/service-name": "httpbin"}},
         "addressType": "IPv4",
         "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "https", "port": 8443, "protocol": "TCP"}],
         "endpoints": [{"addresses": ["10.1.0.1"], "conditions": {"ready": true}, "targetRef": {"kind": "Pod", "name": "p1", "namespace": "default"}},
                       {"addresses": ["10.1.0.2"], "conditions": {"ready": false, "serving": true, "terminating": true}}]}
        """#

    /// Each fixture: its kind and spec (or, for Services and Secrets, the object's body).
    enum Kind: String, CaseIterable { case route, upstream, healthUpstream, externalUpstream, ingress, tls, consumer, pluginConfig, globalRule, service, secret, slice }

    static let specs: [Kind: String] = [
        .route: #"""
            {"http": [
              {"name": "rule1", "priority": 10, "websocket": true,
               "match": {"paths": ["/api/*", "/exact"], "hosts": ["api.example.com", "*.example.com"], "methods": ["GET", "post"],
                         "remoteAddrs": ["10.0.0.0/8"],
                         "exprs": [{"subject": {"scope": "Header", "name": "X-Foo"}, "op": "Equal", "value": "bar"},
                                   {"subject": {"scope": "Query", "name": "n"}, "op": "GreaterThan", "value": "5"},
                                   {"subject": {"scope": "Cookie", "name": "c"}, "op": "In", "set": ["a", "b"]},
                                   {"subject": {"scope": "Path"}, "op": "RegexMatch", "value": "^/api"}]},
               "timeout": {"connect": "5s", "send": "1500ms", "read": "1m30s"},
               "plugins": [{"name": "proxy-rewrite", "enable": true, "secretRef": "conf", "config": {"host": "internal.example.com"}},
                           {"name": "response-rewrite", "enable": true, "config": {"headers": {"set": {"X-Served-By": "sluice"}}}},
                           {"name": "cors", "enable": false}],
               "authentication": {"enable": true, "type": "keyAuth", "keyAuth": {"header": "apikey"}},
               "backends": [{"serviceName": "httpbin", "servicePort": 80, "weight": 30},
                            {"serviceName": "echo", "servicePort": "http", "weight": 70, "resolveGranularity": "service"}],
               "upstreams": [{"name": "ext", "weight": 10}]},
              {"name": "rule2", "plugin_config_name": "pc", "match": {"paths": ["/v1/*"]},
               "backends": [{"serviceName": "httpbin", "servicePort": 443, "subset": "v1"}]}
            ],
            "stream": [{"name": "tcp", "protocol": "TCP", "match": {"ingressPort": 9000, "host": "db.example.com"},
                        "backend": {"serviceName": "httpbin", "servicePort": 80}}]}
            """#,
        .upstream: #"""
            {"loadbalancer": {"type": "chash", "hashOn": "vars", "key": "remote_addr"}, "scheme": "http", "retries": 3,
             "timeout": {"connect": "2s", "send": "3s", "read": "4s"}, "passHost": "rewrite", "upstreamHost": "internal.example.com",
             "subsets": [{"name": "v1", "labels": {"version": "v1"}}],
             "portLevelSettings": [{"port": 443, "retries": 1, "loadbalancer": {"type": "roundrobin"}}]}
            """#,
        .healthUpstream: #"""
            {"retries": 2, "healthCheck": {
               "active": {"type": "http", "timeout": 1.5, "concurrency": 10, "host": "echo.local", "port": 8080, "httpPath": "/healthz",
                          "strictTLS": false, "requestHeaders": ["X-Probe: 1"],
                          "healthy": {"httpCodes": [200, 302], "successes": 2, "interval": "1m30s"},
                          "unhealthy": {"httpCodes": [500, 503], "httpFailures": 3, "tcpFailures": 2, "timeout": 3, "interval": "10s"}},
               "passive": {"type": "http", "healthy": {"httpCodes": [200], "successes": 3}, "unhealthy": {"httpCodes": [502], "httpFailures": 5}}}}
            """#,
        .externalUpstream: #"""
            {"externalNodes": [{"name": "httpbin.org", "type": "Domain", "port": 443, "weight": 5}, {"name": "ext-svc", "type": "Service"}],
             "timeout": {"read": "20s"}}
            """#,
        .ingress: #"""
            {"ingressClassName": "sluice",
             "rules": [{"host": "www.example.com", "http": {"paths": [
                 {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "httpbin", "port": {"number": 80}}}},
                 {"path": "/exact", "pathType": "Exact", "backend": {"service": {"name": "echo", "port": {"name": "http"}}}},
                 {"path": "/impl", "pathType": "ImplementationSpecific", "backend": {"service": {"name": "ext-svc", "port": {"number": 80}}}}]}}],
             "defaultBackend": {"service": {"name": "httpbin", "port": {"name": "http"}}},
             "tls": [{"hosts": ["www.example.com"], "secretName": "cert"}]}
            """#,
        .tls: #"""
            {"hosts": ["example.com", "*.example.com"], "secret": {"name": "cert", "namespace": "default"},
             "client": {"caSecret": {"name": "cert", "namespace": "default"}, "depth": 2, "skip_mtls_uri_regex": ["^/health"]}}
            """#,
        .consumer: #"""
            {"authParameter": {"keyAuth": {"value": {"key": "k1"}}, "basicAuth": {"secretRef": {"name": "cred"}},
                               "jwtAuth": {"value": {"key": "j1", "secret": "s", "exp": 86400, "lifetime_grace_period": 10, "base64_secret": false}}}}
            """#,
        .pluginConfig: #"{"plugins": [{"name": "limit-count", "enable": true, "config": {"count": 10, "time_window": 60, "key": "remote_addr"}}]}"#,
        .globalRule: #"{"plugins": [{"name": "prometheus", "enable": true, "config": {}}]}"#,
    ]

    static let names: [Kind: String] = [
        .route: "r", .upstream: "httpbin", .healthUpstream: "echo", .externalUpstream: "ext", .ingress: "ing", .tls: "site", .consumer: "jack",
        .pluginConfig: "pc", .globalRule: "g", .service: "httpbin", .secret: "conf", .slice: "httpbin-abc",
    ]

    static func document(_ kind: Kind) -> JSONValue {
        switch kind {
        case .service: return kubeObject("httpbin", spec: json(services["httpbin"]!))
        case .secret:
            return ["metadata": ["name": "conf", "namespace": "default"], "data": .object(secrets["conf"]!.mapValues { .string(Base64.encode($0)) })]
        case .slice: return json(slice)
        default: return kubeObject(names[kind]!, spec: json(specs[kind]!))
        }
    }

    /// The cluster every mutant is put in, and its slice.
    static func baseCluster() throws -> (ClusterState, [EndpointSlice]) {
        var c = ClusterState()
        for (name, spec) in services { c.services[ClusterState.key(namespace, name)] = try KubeClient.Service(json: kubeObject(name, spec: json(spec))) }
        for (name, data) in secrets { try c.addSecret(name, data) }
        try c.addIngressClass("sluice", isDefault: true)
        for kind in Kind.allCases { try insert(kind, document(kind), into: &c) }
        return (c, [try EndpointSlice(json: json(slice))])
    }

    /// Decodes `doc` as `kind` and puts it in place of that fixture.
    static func insert(_ kind: Kind, _ doc: JSONValue, into c: inout ClusterState) throws(KubeDecodingError) {
        let key = ClusterState.key(namespace, names[kind]!)
        switch kind {
        case .route: c.apisixRoutes[key] = try ApisixRoute(json: doc)
        case .upstream, .healthUpstream, .externalUpstream: c.apisixUpstreams[key] = try ApisixUpstream(json: doc)
        case .ingress: c.ingresses[key] = try Ingress(json: doc)
        case .tls: c.apisixTlses[key] = try ApisixTls(json: doc)
        case .consumer: c.apisixConsumers[key] = try ApisixConsumer(json: doc)
        case .pluginConfig: c.apisixPluginConfigs[key] = try ApisixPluginConfig(json: doc)
        case .globalRule: c.apisixGlobalRules[key] = try ApisixGlobalRule(json: doc)
        case .service: c.services[key] = try KubeClient.Service(json: doc)
        case .secret: c.secrets[key] = try Secret(json: doc)
        case .slice: _ = try EndpointSlice(json: doc)
        }
    }

    // MARK: - Mutations

    static let numbers: [JSONValue] = [
        .int(0), .int(-1), .int(1), .int(254), .int(255), .int(65_535), .int(65_536), .int(Int64(Int32.max)), .int(Int64(Int32.max) + 1),
        .int(Int64(Int32.min) - 1), .int(1 << 53), .int(Int64.max), .int(Int64.min), .double(1e19), .double(1e308), .double(-1e308),
        .double(1e-9), .double(0.5), .double(-0.0), .double(9.2233720368547758e18),
    ]

    static let strings: [String] = [
        "", "\r\n", "a\r\nX-Injected: 1", "\u{0}", "a\u{0}b", String(repeating: "a", count: 65_536), "ü日本🙂\u{202E}\u{FEFF}", "99999999999999999999h",
        "-1s", "0", "0s", "1ns", "1e19", "2562047h47m16.854775808s", "2562047h47m16.854775807s", "-9223372036854775808ns", "1h2m3.5s", "300ms",
        "1.5us", "*", "/", "/*", "/a/:id", "..", "http", "https", "chash", "vars", "Service", "Domain", "ExternalName", "In", "GreaterThan",
        "9223372036854775807", "-9223372036854775808", "65536", "default", "certs", "httpbin", "echo", "ext", "http", "sluice", "nginx",
        "keyAuth", "rewrite", "TCP", "UDP", "Prefix", "Exact", "$remote_addr", "${x}", "(a+)+$", "10.0.0.1", "::ffff:1.2.3.4", "[::1]:80",
    ]

    /// A path into a document: object keys and array indices.
    enum Step { case key(String), index(Int) }

    static func paths(_ v: JSONValue, _ prefix: [Step] = [], into out: inout [[Step]]) {
        if !prefix.isEmpty { out.append(prefix) }
        switch v {
        case .object(let o): for k in o.keys.sorted() { paths(o[k]!, prefix + [.key(k)], into: &out) }
        case .array(let a): for (i, x) in a.enumerated() { paths(x, prefix + [.index(i)], into: &out) }
        default: break
        }
    }

    static func get(_ v: JSONValue, _ path: ArraySlice<Step>) -> JSONValue? {
        guard let first = path.first else { return v }
        switch (first, v) {
        case (.key(let k), .object(let o)): return o[k].flatMap { get($0, path.dropFirst()) }
        case (.index(let i), .array(let a)): return i < a.count ? get(a[i], path.dropFirst()) : nil
        default: return nil
        }
    }

    /// `v` with the value at `path` replaced by `f` of it (nil: removed).
    static func update(_ v: JSONValue, _ path: ArraySlice<Step>, _ f: (JSONValue) -> JSONValue?) -> JSONValue {
        guard let first = path.first else { return f(v) ?? .null }
        switch (first, v) {
        case (.key(let k), .object(var o)):
            guard let child = o[k] else { return v }
            if path.count == 1 { o[k] = f(child) } else { o[k] = update(child, path.dropFirst(), f) }
            return .object(o)
        case (.index(let i), .array(var a)):
            guard i < a.count else { return v }
            if path.count == 1 {
                if let n = f(a[i]) { a[i] = n } else { a.remove(at: i) }
            } else {
                a[i] = update(a[i], path.dropFirst(), f)
            }
            return .array(a)
        default: return v
        }
    }

    static func pick<T>(_ list: [T], _ rng: inout SeededGenerator) -> T { list[Int(rng.next() % UInt64(list.count))] }

    static func anyValue(_ rng: inout SeededGenerator, like current: JSONValue) -> JSONValue {
        switch rng.next() % 8 {
        case 0: return .null
        case 1: return .bool(rng.next() % 2 == 0)
        case 2: return pick(numbers, &rng)
        case 3: return .string(pick(strings, &rng))
        case 4: return .array([])
        case 5: return .object([:])
        case 6: return .array([current, current])
        default: return .object(["x": current])
        }
    }

    /// One mutation at a random place of `doc`; describes what it did.
    static func mutate(_ doc: JSONValue, _ rng: inout SeededGenerator) -> (JSONValue, String) {
        var all: [[Step]] = []
        paths(doc, into: &all)
        // `metadata` and the top-level sections are mutated only now and then: most mutants
        // should get past decoding into the translator (and replace their fixture rather than
        // add a second object).
        let deep = all.filter { p in
            if case .key(let k) = p[0], k == "metadata" { return false }
            return p.count > 1 || doc["spec"] == nil
        }
        let path = deep.isEmpty || rng.next() % 20 == 0 ? pick(all, &rng) : pick(deep, &rng)
        let where_ = path.map { s -> String in if case .key(let k) = s { return ".\(k)" } else if case .index(let i) = s { return "[\(i)]" }; return "" }.joined()
        guard let current = get(doc, path[...]) else { return (doc, "nothing") }
        let roll = rng.next() % 10
        switch current {
        case .int where roll < 8, .double where roll < 8:
            let n = pick(numbers, &rng)
            return (update(doc, path[...]) { _ in n }, "\(where_) = \(n.serialized())")
        case .string where roll < 8:
            let s = pick(strings, &rng)
            return (update(doc, path[...]) { _ in .string(s) }, "\(where_) = \(String(s.prefix(40)).debugDescription)\(s.count > 40 ? "..." : "")")
        case .object(let o) where roll < 8 && !o.isEmpty:
            // Drop a member, or copy one member's value over another's.
            let keys = o.keys.sorted()
            let k = pick(keys, &rng)
            if rng.next() % 2 == 0 {
                return (update(doc, path[...] + [.key(k)]) { _ in nil }, "\(where_).\(k) dropped")
            }
            let other = pick(keys, &rng)
            return (update(doc, path[...] + [.key(other)]) { _ in o[k] }, "\(where_).\(other) = copy of .\(k)")
        case .array(let a) where roll < 8 && !a.isEmpty:
            let i = Int(rng.next() % UInt64(a.count))
            switch rng.next() % 3 {
            case 0: return (update(doc, path[...]) { _ in .array(a + [a[i]]) }, "\(where_)[\(i)] duplicated")
            case 1: return (update(doc, path[...]) { _ in .array(Array(repeating: a[i], count: 50)) }, "\(where_)[\(i)] x50")
            default: return (update(doc, path[...] + [.index(i)]) { _ in nil }, "\(where_)[\(i)] dropped")
            }
        default:
            if roll == 9, path.count > 1 {
                return (update(doc, path[...]) { _ in nil }, "\(where_) dropped")
            }
            let v = anyValue(&rng, like: current)
            return (update(doc, path[...]) { _ in v }, "\(where_) = \(String(v.serialized().prefix(40)))")
        }
    }

    // MARK: - Checks

    /// A translation error names the field: `spec...: why`.
    static func namesAField(_ message: String) -> Bool {
        guard message.hasPrefix("spec"), let colon = message.firstIndex(of: ":") else { return false }
        return !message[..<colon].contains(" ")
    }

    /// What the gateway's decoders say of one produced object: nil when it takes it, else
    /// the error (which must name a field). Kinds this build does not serve are not decoded.
    static func gatewayRefusal(_ key: ObjectKey, _ value: JSONValue) -> ConfigError? {
        guard key.kind.isSupported else { return nil }
        var scratch = ConfigState()
        do {
            try scratch.set(key.kind, id: key.id, value: value)
            return nil
        } catch {
            return error
        }
    }

    @Test func theBaseClusterTranslatesCleanlyAndTheGatewayTakesItsObjects() throws {
        let (c, slices) = try Self.baseCluster()
        let t = Translator().translate(c)
        #expect(t.errors.isEmpty, "\(t.errors)")
        #expect(t.objects.count > 10)
        for (key, value) in t.objects {
            var v = value
            if key.kind == .upstreams, let source = t.endpointSources[key.id], case .object(var o) = v {
                o["nodes"] = NodeResolver.json(NodeResolver.nodes(source, slices: slices))
                v = .object(o)
            }
            if let refusal = Self.gatewayRefusal(key, v) {
                // The gateway does not run health checks or stream (tcp) upstreams yet: it
                // refuses `checks` and `scheme`, by name.
                let expected = refusal.path == "checks" || (refusal.path == "scheme" && v["scheme"] == "tcp")
                #expect(expected, "\(key): \(refusal)")
            }
        }
    }

    @Test func mutatedObjectsNeverTrapAndEveryRefusalNamesAField() throws {
        let (base, baseSlices) = try Self.baseCluster()
        var rng = SeededGenerator(seed: Self.seed)
        let deadline = ContinuousClock.now + Self.timeLimit
        var stats = (mutants: 0, undecodable: 0, refusedByTranslator: 0, objects: 0, refusedByGateway: 0)
        var failures = 0
        var refusals: [String: Int] = [:]
        var undecodable: [String: Int] = [:]
        let translator = Translator(secretNamespaces: ["default", "certs"])
        for iteration in 0..<Self.iterations {
            if ContinuousClock.now > deadline { break }
            stats.mutants += 1
            let kind = Self.pick(Kind.allCases, &rng)
            var doc = Self.document(kind)
            var log: [String] = []
            for _ in 0..<(1 + rng.next() % 3) {
                let (d, what) = Self.mutate(doc, &rng)
                doc = d
                log.append(what)
            }
            func fail(_ why: String) {
                failures += 1
                if failures <= 20 {
                    Issue.record("seed \(Self.seed) iteration \(iteration) \(kind): \(log.joined(separator: "; ")): \(why)")
                }
            }
            var c = base
            var slices = baseSlices
            do {
                try Self.insert(kind, doc, into: &c)
                if kind == .slice { slices = [try EndpointSlice(json: doc)] }
            } catch {
                stats.undecodable += 1
                undecodable["\(kind) \(error.message.prefix(30))", default: 0] += 1
                if error.path.isEmpty { fail("a decoding error without a field: \(error)") }
                continue
            }
            let t = translator.translate(c)
            _ = translator.secretReferences(c)
            for (ref, message) in t.errors {
                stats.refusedByTranslator += 1
                if !Self.namesAField(message) { fail("\(ref): an error that names no field: \(String(message.prefix(300)))") }
            }
            for (key, value) in t.objects {
                stats.objects += 1
                var v = value
                if key.kind == .upstreams, let source = t.endpointSources[key.id], case .object(var o) = v {
                    o["nodes"] = NodeResolver.json(NodeResolver.nodes(source, slices: slices))
                    v = .object(o)
                }
                // What a write would send must serialize and read back as the same value.
                let text = v.serialized()
                if (try? JSONValue.parse(text)) == nil { fail("\(key) does not serialize to JSON: \(text.prefix(200))") }
                if let refusal = Self.gatewayRefusal(key, v) {
                    stats.refusedByGateway += 1
                    refusals[refusal.path, default: 0] += 1
                    if refusal.path.isEmpty { fail("\(key): the gateway refused it without naming a field: \(refusal)") }
                }
            }
        }
        print("translator fuzz: seed \(Self.seed), \(stats.mutants) mutants, \(stats.undecodable) not decodable, "
            + "\(stats.refusedByTranslator) translation errors, \(stats.objects) objects, \(stats.refusedByGateway) refused by the gateway's decoders")
        print("not decodable: " + undecodable.sorted { $0.value > $1.value }.prefix(25).map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        print("refused by the gateway, by field: " + refusals.sorted { $0.value > $1.value }.prefix(25).map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        #expect(stats.mutants >= 200, "the time limit left too few mutants to mean anything")
        #expect(failures == 0)
    }
}
