import KubeClient
import SluiceCore

/// Turns the Kubernetes objects this controller owns into gateway objects. A pure function
/// of its input: no cluster, no gateway, no clock. Each source object translates on its own;
/// one that fails (a missing Service, an unknown port, a bad field) produces nothing and
/// its error names the field, while every other object still translates.
public struct Translator: Sendable {
    /// `--ingress-class`: Ingress objects of this class, and APISIX resources whose
    /// `ingressClassName` is this or empty, are this controller's.
    public var ingressClass: String
    /// `--namespace`: the namespaces a Secret reference that names its `namespace`
    /// (ApisixTls `secret` and `client.caSecret`, ApisixUpstream `tlsSecret`) may cross
    /// between. Every other Secret is read from the referring object's own namespace; with
    /// no `--namespace` (every namespace watched) none may cross.
    public var secretNamespaces: Set<String>

    public init(ingressClass: String = "sluice", secretNamespaces: Set<String> = []) {
        self.ingressClass = ingressClass
        self.secretNamespaces = secretNamespaces
    }

    /// Whether an APISIX resource with this `spec.ingressClassName` is ours.
    public func owns(className: String?) -> Bool { className == nil || className == "" || className == ingressClass }

    /// Whether an Ingress is ours: its class (field or legacy annotation) is ours, or it has
    /// none and our IngressClass is marked the cluster default.
    public func owns(_ ingress: Ingress, classes: [String: IngressClass]) -> Bool {
        if let name = ingress.className { return name == ingressClass }
        return classes[ClusterState.key(nil, ingressClass)]?.isDefault == true
    }

    public func translate(_ cluster: ClusterState) -> Translation {
        var t = Translation()
        func run(_ ref: SourceRef, generation: Int?, _ body: (inout Output) throws(TranslationError) -> Void) {
            var out = Output()
            do {
                try body(&out)
            } catch {
                t.errors[ref] = error.message
                return
            }
            if let generation { t.generations[ref] = generation }
            for (k, v) in out.objects { t.objects[k] = v }
            for (k, v) in out.sources { t.endpointSources[k] = v }
            t.produced[ref] = Set(out.objects.keys)
            for (upstreamRef, ids) in out.fromApisixUpstream { t.produced[upstreamRef, default: []].formUnion(ids) }
        }
        for (_, o) in cluster.apisixUpstreams.sorted(by: { $0.key < $1.key }) where owns(className: o.ingressClassName) {
            let ns = o.metadata.namespace ?? ""
            run(SourceRef(.apisixUpstream, ns, o.metadata.name), generation: o.metadata.generation) { out throws(TranslationError) in
                // On its own an ApisixUpstream only configures the upstreams of its Service;
                // translating its settings here reports a bad field on the object itself.
                _ = try upstreamSettings(o.config, namespace: ns, path: "spec", cluster)
                for (i, n) in o.externalNodes.enumerated() { _ = try Self.externalNode(n, "spec.externalNodes[\(i)]") }
                for (i, p) in o.portLevelSettings.enumerated() {
                    _ = try upstreamSettings(p.config, namespace: ns, path: "spec.portLevelSettings[\(i)]", cluster)
                }
            }
        }
        for (_, o) in cluster.apisixPluginConfigs.sorted(by: { $0.key < $1.key }) where owns(className: o.ingressClassName) {
            let ns = o.metadata.namespace ?? ""
            run(SourceRef(.apisixPluginConfig, ns, o.metadata.name), generation: o.metadata.generation) { out throws(TranslationError) in
                let name = IngressNaming.objectName(namespace: ns, name: o.metadata.name)
                out.put(.pluginConfigs, IngressNaming.id(name), [
                    "name": .string(name), "plugins": try plugins(o.plugins, namespace: ns, path: "spec.plugins", cluster),
                    "labels": IngressNaming.managedBy,
                ])
            }
        }
        for (_, o) in cluster.apisixGlobalRules.sorted(by: { $0.key < $1.key }) where owns(className: o.ingressClassName) {
            let ns = o.metadata.namespace ?? ""
            run(SourceRef(.apisixGlobalRule, ns, o.metadata.name), generation: o.metadata.generation) { out throws(TranslationError) in
                out.put(.globalRules, IngressNaming.id(IngressNaming.objectName(namespace: ns, name: o.metadata.name)), [
                    "plugins": try plugins(o.plugins, namespace: ns, path: "spec.plugins", cluster), "labels": IngressNaming.managedBy,
                ])
            }
        }
        for (_, o) in cluster.apisixConsumers.sorted(by: { $0.key < $1.key }) where owns(className: o.ingressClassName) {
            let ns = o.metadata.namespace ?? ""
            run(SourceRef(.apisixConsumer, ns, o.metadata.name), generation: o.metadata.generation) { out throws(TranslationError) in
                let username = IngressNaming.consumerName(namespace: ns, name: o.metadata.name)
                out.put(.consumers, username, [
                    "username": .string(username), "plugins": try consumerPlugins(o, namespace: ns, cluster), "labels": IngressNaming.managedBy,
                ])
            }
        }
        for (_, o) in cluster.apisixTlses.sorted(by: { $0.key < $1.key }) where owns(className: o.ingressClassName) {
            let ns = o.metadata.namespace ?? ""
            run(SourceRef(.apisixTls, ns, o.metadata.name), generation: o.metadata.generation) { out throws(TranslationError) in
                try tls(o, namespace: ns, cluster, &out)
            }
        }
        for (_, o) in cluster.apisixRoutes.sorted(by: { $0.key < $1.key }) where owns(className: o.ingressClassName) {
            let ns = o.metadata.namespace ?? ""
            run(SourceRef(.apisixRoute, ns, o.metadata.name), generation: o.metadata.generation) { out throws(TranslationError) in
                try route(o, namespace: ns, cluster, &out)
            }
        }
        for (_, o) in cluster.ingresses.sorted(by: { $0.key < $1.key }) where owns(o, classes: cluster.ingressClasses) {
            let ns = o.metadata.namespace ?? ""
            run(SourceRef(.ingress, ns, o.metadata.name), generation: o.metadata.generation) { out throws(TranslationError) in
                try ingress(o, namespace: ns, cluster, &out)
            }
        }
        return t
    }

    /// What one source object produces.
    struct Output {
        var objects: [ObjectKey: JSONValue] = [:]
        var sources: [String: EndpointSource] = [:]
        /// Upstreams built with an ApisixUpstream's settings, so its status covers them.
        var fromApisixUpstream: [SourceRef: Set<ObjectKey>] = [:]

        mutating func put(_ kind: ResourceKind, _ id: String, _ value: JSONValue) { objects[ObjectKey(kind, id)] = value }
    }

    // MARK: - ApisixRoute

    func route(_ r: ApisixRoute, namespace ns: String, _ c: ClusterState, _ out: inout Output) throws(TranslationError) {
        var names = Set<String>()
        for (i, rule) in r.http.enumerated() {
            let path = "spec.http[\(i)]"
            guard names.insert(rule.name).inserted else { throw TranslationError("\(path).name: duplicate rule name \"\(rule.name)\"") }
            let name = IngressNaming.routeName(namespace: ns, route: r.metadata.name, rule: rule.name)
            var o: [String: JSONValue] = ["name": .string(name), "labels": IngressNaming.managedBy]
            guard !rule.match.paths.isEmpty else { throw TranslationError("\(path).match.paths: at least one path is required") }
            for (j, p) in rule.match.paths.enumerated() {
                do { try PathPattern.validate(p, path: "\(path).match.paths[\(j)]") } catch { throw TranslationError(error.description) }
            }
            o["uris"] = .array(rule.match.paths.map { .string($0) })
            if !rule.match.hosts.isEmpty {
                for (j, h) in rule.match.hosts.enumerated() {
                    do { try HostPattern.validate(h, path: "\(path).match.hosts[\(j)]") } catch { throw TranslationError(error.description) }
                }
                o["hosts"] = .array(rule.match.hosts.map { .string($0) })
            }
            if !rule.match.methods.isEmpty { o["methods"] = .array(rule.match.methods.map { .string($0.uppercased()) }) }
            if !rule.match.remoteAddrs.isEmpty { o["remote_addrs"] = .array(rule.match.remoteAddrs.map { .string($0) }) }
            if rule.match.filterFunc != nil {
                throw TranslationError("\(path).match.filter_func: Lua filter functions are not supported by Sluice")
            }
            if !rule.match.exprs.isEmpty {
                var vars: [JSONValue] = []
                for (j, e) in rule.match.exprs.enumerated() { vars.append(try Self.expression(e, path: "\(path).match.exprs[\(j)]")) }
                o["vars"] = .array(vars)
            }
            if rule.priority != 0 { o["priority"] = .int(try FieldBounds.int(rule.priority, FieldBounds.int32, "\(path).priority")) }
            if let timeout = rule.timeout { o["timeout"] = try Self.timeouts(timeout, path: "\(path).timeout") }
            if rule.websocket { o["enable_websocket"] = true }
            var routePlugins = try plugins(rule.plugins, namespace: ns, path: "\(path).plugins", c).objectValue ?? [:]
            if let auth = rule.authentication, auth.enable {
                let (pluginName, config) = try Self.authentication(auth, path: "\(path).authentication")
                routePlugins[pluginName] = config
            }
            if let pc = rule.pluginConfigName {
                let pcNamespace = rule.pluginConfigNamespace ?? ns
                guard c.apisixPluginConfigs[ClusterState.key(pcNamespace, pc)] != nil else {
                    throw TranslationError("\(path).plugin_config_name: ApisixPluginConfig \(pcNamespace)/\(pc) not found")
                }
                o["plugin_config_id"] = .string(IngressNaming.id(IngressNaming.objectName(namespace: pcNamespace, name: pc)))
            }
            // Backends first, then ApisixUpstream references; the first is the route's
            // upstream and the others share the traffic by weight (traffic-split).
            var targets: [(id: String, weight: Int)] = []
            for (j, b) in rule.backends.enumerated() {
                let id = try backendUpstream(
                    namespace: ns, serviceName: b.serviceName, port: b.servicePort, granularity: b.resolveGranularity, subset: b.subset,
                    path: "\(path).backends[\(j)]", c, &out)
                targets.append((id, Int(try FieldBounds.int(b.weight ?? 100, FieldBounds.nonNegativeInt32, "\(path).backends[\(j)].weight"))))
            }
            for (j, u) in rule.upstreams.enumerated() {
                let id = try externalUpstream(namespace: ns, name: u.name, path: "\(path).upstreams[\(j)].name", c, &out)
                targets.append((id, Int(try FieldBounds.int(u.weight ?? 100, FieldBounds.nonNegativeInt32, "\(path).upstreams[\(j)].weight"))))
            }
            guard let primary = targets.first else { throw TranslationError("\(path): needs at least one of backends or upstreams") }
            o["upstream_id"] = .string(primary.id)
            if targets.count > 1 {
                var weighted: [JSONValue] = targets.dropFirst().map { ["upstream_id": .string($0.id), "weight": .int(Int64($0.weight))] }
                weighted.append(["weight": .int(Int64(primary.weight))])
                routePlugins["traffic-split"] = ["rules": [["weighted_upstreams": .array(weighted)]]]
            }
            if !routePlugins.isEmpty { o["plugins"] = .object(routePlugins) }
            out.put(.routes, IngressNaming.id(name), .object(o))
        }
        for (i, rule) in r.stream.enumerated() {
            let path = "spec.stream[\(i)]"
            guard names.insert(rule.name).inserted else { throw TranslationError("\(path).name: duplicate rule name \"\(rule.name)\"") }
            let name = IngressNaming.routeName(namespace: ns, route: r.metadata.name, rule: rule.name)
            let upstream = try backendUpstream(
                namespace: ns, serviceName: rule.backend.serviceName, port: rule.backend.servicePort, granularity: rule.backend.resolveGranularity,
                subset: rule.backend.subset, path: "\(path).backend", c, &out, scheme: rule.protocol == .UDP ? "udp" : "tcp")
            guard (1...65535).contains(rule.match.ingressPort) else { throw TranslationError("\(path).match.ingressPort: must be 1-65535") }
            var o: [String: JSONValue] = [
                "name": .string(name), "server_port": .int(Int64(rule.match.ingressPort)), "upstream_id": .string(upstream),
                "labels": IngressNaming.managedBy,
            ]
            if let host = rule.match.host { o["sni"] = .string(host) }
            let p = try plugins(rule.plugins, namespace: ns, path: "\(path).plugins", c)
            if p.objectValue?.isEmpty == false { o["plugins"] = p }
            out.put(.streamRoutes, IngressNaming.id(name), .object(o))
        }
    }

    /// `match.exprs[]` → one `vars` condition. Header names become `http_*` as nginx
    /// names them (lower case, `-` → `_`).
    static func expression(_ e: ApisixRoute.Expr, path: String) throws(TranslationError) -> JSONValue {
        let variable: String
        switch e.subject.scope {
        case "Header":
            variable = "http_" + e.subject.name.lowercased().replacingOccurrences(of: "-", with: "_")
        case "Query": variable = "arg_" + e.subject.name
        case "Cookie": variable = "cookie_" + e.subject.name
        case "Path": variable = "uri"
        case "Variable": variable = e.subject.name
        default: throw TranslationError("\(path).subject.scope: must be Header, Query, Cookie, Path or Variable, got \"\(e.subject.scope)\"")
        }
        if e.subject.scope != "Path" && e.subject.name.isEmpty { throw TranslationError("\(path).subject.name: is required") }
        let ops: [String: [String]] = [
            "Equal": ["=="], "NotEqual": ["~="], "GreaterThan": [">"], "GreaterThanEqual": [">="], "LessThan": ["<"], "LessThanEqual": ["<="],
            "RegexMatch": ["~~"], "RegexNotMatch": ["!", "~~"], "RegexMatchCaseInsensitive": ["~*"], "RegexNotMatchCaseInsensitive": ["!", "~*"],
            "In": ["in"], "NotIn": ["!", "in"],
        ]
        guard let op = ops[e.op] else { throw TranslationError("\(path).op: unknown operator \"\(e.op)\"") }
        let operand: JSONValue
        if e.op == "In" || e.op == "NotIn" {
            guard !e.set.isEmpty else { throw TranslationError("\(path).set: is required for \(e.op)") }
            operand = .array(e.set.map { .string($0) })
        } else {
            guard let v = e.value else { throw TranslationError("\(path).value: is required for \(e.op)") }
            if ["GreaterThan", "GreaterThanEqual", "LessThan", "LessThanEqual"].contains(e.op) {
                guard let n = Double(v), n.isFinite else {
                    throw TranslationError("\(path).value: must be a number for \(e.op), got \"\(FieldBounds.shown(v))\"")
                }
                operand = Int64(exactly: n).map { .int($0) } ?? .double(n)
            } else {
                operand = .string(v)
            }
        }
        return .array([.string(variable)] + op.map { .string($0) } + [operand])
    }

    static func timeouts(_ t: ApisixTimeout, path: String) throws(TranslationError) -> JSONValue {
        func seconds(_ text: String?, _ key: String) throws(TranslationError) -> JSONValue {
            guard let text else { return 60 }
            let ns = try FieldBounds.duration(text, "\(path).\(key)", min: 0, minExclusive: true, max: FieldBounds.maxTimeout)
            return FieldBounds.seconds(nanoseconds: ns)
        }
        return ["connect": try seconds(t.connect, "connect"), "send": try seconds(t.send, "send"), "read": try seconds(t.read, "read")]
    }

    /// `authentication` of a rule → the plugin that checks it.
    static func authentication(_ a: ApisixRoute.Authentication, path: String) throws(TranslationError) -> (String, JSONValue) {
        switch a.type {
        case "keyAuth", "key-auth":
            var o: [String: JSONValue] = [:]
            if let h = a.keyAuth?.header { o["header"] = .string(h) }
            return ("key-auth", .object(o))
        case "jwtAuth", "jwt-auth":
            var o: [String: JSONValue] = [:]
            if let h = a.jwtAuth?.header { o["header"] = .string(h) }
            if let q = a.jwtAuth?.query { o["query"] = .string(q) }
            if let ck = a.jwtAuth?.cookie { o["cookie"] = .string(ck) }
            return ("jwt-auth", .object(o))
        case "basicAuth", "basic-auth": return ("basic-auth", [:])
        case "hmacAuth", "hmac-auth": return ("hmac-auth", [:])
        case "wolfRBAC", "wolf-rbac": return ("wolf-rbac", [:])
        case "ldapAuth", "ldap-auth":
            var o: [String: JSONValue] = [:]
            if let v = a.ldapAuth?.baseDN { o["base_dn"] = .string(v) }
            if let v = a.ldapAuth?.ldapURI { o["ldap_uri"] = .string(v) }
            if let v = a.ldapAuth?.useTLS { o["use_tls"] = .bool(v) }
            if let v = a.ldapAuth?.uid { o["uid"] = .string(v) }
            return ("ldap-auth", .object(o))
        default:
            throw TranslationError("\(path).type: must be keyAuth, basicAuth, jwtAuth, hmacAuth, wolfRBAC or ldapAuth, got \"\(a.type)\"")
        }
    }

    // MARK: - Upstreams

    /// The upstream for a Service backend (created in `out` if new) and its id.
    func backendUpstream(
        namespace ns: String, serviceName: String, port ref: ServicePortReference, granularity: String?, subset: String?, path: String,
        _ c: ClusterState, _ out: inout Output, scheme: String? = nil, nameField: String = "serviceName", portField: String = "servicePort"
    ) throws(TranslationError) -> String {
        let key = ClusterState.key(ns, serviceName)
        guard let svc = c.services[key] else { throw TranslationError("\(path).\(nameField): Service \(key) not found") }
        let port: KubeClient.Service.Port
        switch ref {
        case .number(let n):
            guard let p = svc.ports.first(where: { $0.port == n }) else {
                throw TranslationError("\(path).\(portField): Service \(key) has no port \(n)")
            }
            port = p
        case .name(let name):
            guard let p = svc.ports.first(where: { $0.name == name }) else {
                throw TranslationError("\(path).\(portField): Service \(key) has no port named \"\(name)\"")
            }
            port = p
        }
        // The API server keeps Service ports in range; whatever it serves must not become a
        // node the gateway refuses (or an upstream name that collides).
        guard FieldBounds.port.contains(port.port) else {
            throw TranslationError("\(path).\(portField): Service \(key) port \(port.port) is not between 1 and 65535")
        }
        let byService: Bool
        switch granularity ?? "endpoint" {
        case "endpoint", "": byService = false
        case "service": byService = true
        case let g: throw TranslationError("\(path).resolveGranularity: must be endpoint or service, got \"\(g)\"")
        }
        let settingsSource = c.apisixUpstreams[key].flatMap { owns(className: $0.ingressClassName) ? $0 : nil }
        var subsetLabels: [String: String]? = nil
        if let subset, !subset.isEmpty {
            guard let s = settingsSource?.config.subsets.first(where: { $0.name == subset }) else {
                throw TranslationError("\(path).subset: ApisixUpstream \(key) has no subset \"\(subset)\"")
            }
            subsetLabels = s.labels
        }
        var name = IngressNaming.upstreamName(namespace: ns, service: serviceName, subset: subset, port: port.port, serviceGranularity: byService)
        // A stream rule's upstream is a different object from an HTTP rule's on the same
        // Service port (it carries the L4 scheme): it gets its own name.
        if let scheme { name += "_\(scheme)" }
        let id = IngressNaming.id(name)
        var o: [String: JSONValue] = [:]
        if let au = settingsSource {
            let ref = SourceRef(.apisixUpstream, ns, au.metadata.name)
            do {
                o = try upstreamSettings(au.config(forPort: port.port), namespace: ns, path: "ApisixUpstream \(key) spec", c)
            } catch {
                throw TranslationError("\(path).\(nameField): \(error.message)")
            }
            out.fromApisixUpstream[ref, default: []].insert(ObjectKey(.upstreams, id))
        }
        o["name"] = .string(name)
        o["labels"] = IngressNaming.managedBy
        if let scheme { o["scheme"] = .string(scheme) }
        if svc.type == "ExternalName" {
            guard let host = svc.externalName, !host.isEmpty else { throw TranslationError("\(path).serviceName: ExternalName Service \(key) has no externalName") }
            try FieldBounds.host(host, "\(path).\(nameField): ExternalName Service \(key) spec.externalName")
            o["nodes"] = [["host": .string(host), "port": .int(Int64(port.port)), "weight": 100]]
        } else if byService {
            guard let ip = svc.clusterIP, !ip.isEmpty, ip != "None" else {
                throw TranslationError("\(path).resolveGranularity: Service \(key) is headless; use endpoint")
            }
            o["nodes"] = [["host": .string(ip), "port": .int(Int64(port.port)), "weight": 100]]
        } else {
            o["nodes"] = .object([:])
            out.sources[id] = EndpointSource(service: key, port: port, subsetLabels: subsetLabels)
        }
        out.put(.upstreams, id, .object(o))
        return id
    }

    /// The upstream of an ApisixUpstream with `externalNodes` (or `discovery`), by name.
    func externalUpstream(namespace ns: String, name: String, path: String, _ c: ClusterState, _ out: inout Output) throws(TranslationError) -> String {
        let key = ClusterState.key(ns, name)
        guard let au = c.apisixUpstreams[key], owns(className: au.ingressClassName) else { throw TranslationError("\(path): ApisixUpstream \(key) not found") }
        let upstreamName = IngressNaming.externalUpstreamName(namespace: ns, name: name)
        let id = IngressNaming.id(upstreamName)
        var o: [String: JSONValue]
        do {
            o = try upstreamSettings(au.config, namespace: ns, path: "ApisixUpstream \(key) spec", c)
        } catch {
            throw TranslationError("\(path): \(error.message)")
        }
        o["name"] = .string(upstreamName)
        o["labels"] = IngressNaming.managedBy
        if au.config.discovery == nil {
            guard !au.externalNodes.isEmpty else { throw TranslationError("\(path): ApisixUpstream \(key) has neither externalNodes nor discovery") }
            var nodes: [JSONValue] = []
            for (i, n) in au.externalNodes.enumerated() {
                var host = n.name
                if n.type == .Service {
                    let svcKey = ClusterState.key(ns, n.name)
                    guard let svc = c.services[svcKey], svc.type == "ExternalName", let external = svc.externalName else {
                        throw TranslationError("\(path): ApisixUpstream \(key) spec.externalNodes[\(i)].name: \(svcKey) is not an ExternalName Service")
                    }
                    host = external
                }
                let field = "\(path): ApisixUpstream \(key) spec.externalNodes[\(i)]"
                if n.type == .Service { try FieldBounds.host(host, "\(field).name: ExternalName Service \(ns)/\(n.name) spec.externalName") }
                let (port, weight) = try Self.externalNode(n, field)
                nodes.append(["host": .string(host), "port": .int(port), "weight": .int(weight)])
            }
            o["nodes"] = .array(nodes)
        }
        out.fromApisixUpstream[SourceRef(.apisixUpstream, ns, name), default: []].insert(ObjectKey(.upstreams, id))
        out.put(.upstreams, id, .object(o))
        return id
    }

    /// An external node's own fields, checked: a Domain node's name is a host, its port and
    /// weight in range. `field` is the node's path.
    static func externalNode(_ n: ApisixUpstream.ExternalNode, _ field: String) throws(TranslationError) -> (port: Int64, weight: Int64) {
        if n.type != .Service { try FieldBounds.host(n.name, "\(field).name") }
        let port = try FieldBounds.int(n.port ?? 80, FieldBounds.port, "\(field).port")
        let weight = try FieldBounds.int(n.weight ?? 100, FieldBounds.nonNegativeInt32, "\(field).weight")
        return (port, weight)
    }

    /// The upstream fields an ApisixUpstream sets (without nodes).
    func upstreamSettings(_ cfg: ApisixUpstream.Config, namespace ns: String, path: String, _ c: ClusterState) throws(TranslationError) -> [String: JSONValue] {
        var o: [String: JSONValue] = [:]
        if let lb = cfg.loadbalancer {
            switch lb.type {
            case "roundrobin", "ewma", "least_conn": o["type"] = .string(lb.type)
            case "chash":
                o["type"] = "chash"
                o["hash_on"] = .string(lb.hashOn ?? "vars")
                guard let key = lb.key, !key.isEmpty else { throw TranslationError("\(path).loadbalancer.key: is required for chash") }
                o["key"] = .string(key)
            default:
                throw TranslationError("\(path).loadbalancer.type: must be roundrobin, chash, ewma or least_conn, got \"\(lb.type)\"")
            }
        }
        if let s = cfg.scheme {
            guard ["http", "https", "grpc", "grpcs"].contains(s) else { throw TranslationError("\(path).scheme: must be http, https, grpc or grpcs, got \"\(s)\"") }
            o["scheme"] = .string(s)
        }
        if let r = cfg.retries { o["retries"] = .int(try FieldBounds.int(r, FieldBounds.nonNegativeInt32, "\(path).retries")) }
        if let t = cfg.timeout { o["timeout"] = try Self.timeouts(t, path: "\(path).timeout") }
        if let hc = cfg.healthCheck { o["checks"] = try Self.checks(hc, path: "\(path).healthCheck") }
        if let p = cfg.passHost {
            guard ["pass", "node", "rewrite"].contains(p) else { throw TranslationError("\(path).passHost: must be pass, node or rewrite, got \"\(p)\"") }
            o["pass_host"] = .string(p)
            if p == "rewrite" && (cfg.upstreamHost ?? "").isEmpty { throw TranslationError("\(path).upstreamHost: is required when passHost is rewrite") }
        }
        if let h = cfg.upstreamHost, !h.isEmpty {
            try FieldBounds.host(h, "\(path).upstreamHost")
            o["upstream_host"] = .string(h)
        }
        if let ref = cfg.tlsSecret {
            let secretNS = try secretNamespace(ref, of: ns, field: "\(path).tlsSecret")
            let (cert, key) = try Self.certificate(secretNS, ref.name, field: "\(path).tlsSecret", c)
            o["tls"] = ["client_cert": .string(cert), "client_key": .string(key)]
        }
        if let d = cfg.discovery {
            o["discovery_type"] = .string(d.type)
            o["service_name"] = .string(d.serviceName)
            if !d.args.isEmpty { o["discovery_args"] = .object(d.args.mapValues { .string($0) }) }
        }
        return o
    }

    /// `healthCheck` → APISIX `checks`.
    static func checks(_ hc: ApisixUpstream.HealthCheck, path: String) throws(TranslationError) -> JSONValue {
        /// APISIX takes whole seconds: a fraction is dropped, as the APISIX controller does.
        func interval(_ text: String?, _ p: String) throws(TranslationError) -> JSONValue? {
            guard let text else { return nil }
            let ns = try FieldBounds.duration(text, p, min: FieldBounds.minInterval, max: FieldBounds.maxInterval)
            return .int(ns / 1_000_000_000)
        }
        func statuses(_ codes: [Int], _ p: String) throws(TranslationError) -> JSONValue {
            var out: [JSONValue] = []
            for (i, code) in codes.enumerated() { out.append(.int(try FieldBounds.int(code, FieldBounds.httpStatus, "\(p)[\(i)]"))) }
            return .array(out)
        }
        func counter(_ v: Int, _ p: String) throws(TranslationError) -> JSONValue { .int(try FieldBounds.int(v, FieldBounds.healthCounter, p)) }
        func healthy(_ h: ApisixUpstream.HealthCheck.Healthy, _ p: String, active: Bool) throws(TranslationError) -> JSONValue {
            var o: [String: JSONValue] = [:]
            if !h.httpCodes.isEmpty { o["http_statuses"] = try statuses(h.httpCodes, "\(p).httpCodes") }
            if let s = h.successes { o["successes"] = try counter(s, "\(p).successes") }
            if active, let i = try interval(h.interval, "\(p).interval") { o["interval"] = i }
            return .object(o)
        }
        func unhealthy(_ h: ApisixUpstream.HealthCheck.Unhealthy, _ p: String, active: Bool) throws(TranslationError) -> JSONValue {
            var o: [String: JSONValue] = [:]
            if !h.httpCodes.isEmpty { o["http_statuses"] = try statuses(h.httpCodes, "\(p).httpCodes") }
            if let v = h.httpFailures { o["http_failures"] = try counter(v, "\(p).httpFailures") }
            if let v = h.tcpFailures { o["tcp_failures"] = try counter(v, "\(p).tcpFailures") }
            if let v = h.timeouts { o["timeouts"] = try counter(v, "\(p).timeout") }
            if active, let i = try interval(h.interval, "\(p).interval") { o["interval"] = i }
            return .object(o)
        }
        var out: [String: JSONValue] = [:]
        if let a = hc.active {
            let p = "\(path).active"
            var o: [String: JSONValue] = ["type": .string(a.type ?? "http")]
            if let t = a.type, !["http", "https", "tcp"].contains(t) {
                throw TranslationError("\(p).type: must be http, https or tcp, got \"\(FieldBounds.shown(t))\"")
            }
            if let v = a.timeout { o["timeout"] = .double(try FieldBounds.positiveSeconds(v, "\(p).timeout", max: 86_400)) }
            if let v = a.concurrency { o["concurrency"] = .int(try FieldBounds.int(v, FieldBounds.positiveInt32, "\(p).concurrency")) }
            if let v = a.host {
                try FieldBounds.host(v, "\(p).host")
                o["host"] = .string(v)
            }
            if let v = a.port { o["port"] = .int(try FieldBounds.int(v, FieldBounds.port, "\(p).port")) }
            if let v = a.httpPath {
                guard v.hasPrefix("/"), !FieldBounds.hasControlOrSpace(v) else {
                    throw TranslationError("\(p).httpPath: must be a path starting with / without spaces or control characters, got \"\(FieldBounds.shown(v))\"")
                }
                o["http_path"] = .string(v)
            }
            if let v = a.strictTLS { o["https_verify_certificate"] = .bool(v) }
            for (i, h) in a.requestHeaders.enumerated() where FieldBounds.hasControl(h) {
                throw TranslationError("\(p).requestHeaders[\(i)]: must not contain control characters (CR, LF, NUL), got \"\(FieldBounds.shown(h))\"")
            }
            if !a.requestHeaders.isEmpty { o["req_headers"] = .array(a.requestHeaders.map { .string($0) }) }
            if let h = a.healthy { o["healthy"] = try healthy(h, "\(path).active.healthy", active: true) }
            if let u = a.unhealthy { o["unhealthy"] = try unhealthy(u, "\(path).active.unhealthy", active: true) }
            out["active"] = .object(o)
        } else if hc.passive != nil {
            throw TranslationError("\(path).active: passive health checks need an active one too")
        }
        if let p = hc.passive {
            if let t = p.type, !["http", "https", "tcp"].contains(t) {
                throw TranslationError("\(path).passive.type: must be http, https or tcp, got \"\(FieldBounds.shown(t))\"")
            }
            var o: [String: JSONValue] = ["type": .string(p.type ?? "http")]
            if let h = p.healthy { o["healthy"] = try healthy(h, "\(path).passive.healthy", active: false) }
            if let u = p.unhealthy { o["unhealthy"] = try unhealthy(u, "\(path).passive.unhealthy", active: false) }
            out["passive"] = .object(o)
        }
        return .object(out)
    }

    // MARK: - Plugins, consumers, TLS

    /// Enabled plugins with their config; a `secretRef` overlays the Secret's keys on the
    /// config (a dotted key such as `headers.add.X-Key` sets a nested field).
    func plugins(_ list: [ApisixPlugin], namespace ns: String, path: String, _ c: ClusterState) throws(TranslationError) -> JSONValue {
        var out: [String: JSONValue] = [:]
        for (i, p) in list.enumerated() where p.enable {
            guard !p.name.isEmpty else { throw TranslationError("\(path)[\(i)].name: is required") }
            var config = p.config ?? [:]
            guard case .object = config else { throw TranslationError("\(path)[\(i)].config: must be an object") }
            if let ref = p.secretRef {
                guard let secret = c.secrets[ClusterState.key(ns, ref)] else {
                    throw TranslationError("\(path)[\(i)].secretRef: Secret \(ns)/\(ref) not found")
                }
                for key in secret.data.keys.sorted() {
                    guard let value = secret.string(key) else { throw TranslationError("\(path)[\(i)].secretRef: Secret \(ns)/\(ref) key \(key) is not UTF-8") }
                    config = Self.setting(config, path: key.split(separator: ".").map(String.init), to: .string(value))
                }
            }
            out[p.name] = config
        }
        return .object(out)
    }

    static func setting(_ object: JSONValue, path: [String], to value: JSONValue) -> JSONValue {
        guard let first = path.first else { return value }
        var o = object.objectValue ?? [:]
        o[first] = setting(o[first] ?? .object([:]), path: Array(path.dropFirst()), to: value)
        return .object(o)
    }

    func consumerPlugins(_ consumer: ApisixConsumer, namespace ns: String, _ c: ClusterState) throws(TranslationError) -> JSONValue {
        let a = consumer.authParameter
        var out: [String: JSONValue] = [:]
        func fromSecret(_ ref: String, _ path: String) throws(TranslationError) -> Secret {
            guard let s = c.secrets[ClusterState.key(ns, ref)] else { throw TranslationError("\(path).secretRef: Secret \(ns)/\(ref) not found") }
            return s
        }
        func required(_ s: Secret, _ key: String, _ path: String) throws(TranslationError) -> String {
            guard let v = s.string(key) else { throw TranslationError("\(path).secretRef: Secret \(s.metadata.namespace ?? "")/\(s.metadata.name) has no key \"\(key)\"") }
            return v
        }
        if let cred = a.keyAuth {
            let p = "spec.authParameter.keyAuth"
            if let v = cred.value { out["key-auth"] = ["key": .string(v.key)] } else if let ref = cred.secretRef {
                out["key-auth"] = ["key": .string(try required(try fromSecret(ref, p), "key", p))]
            }
        }
        if let cred = a.basicAuth {
            let p = "spec.authParameter.basicAuth"
            if let v = cred.value { out["basic-auth"] = ["username": .string(v.username), "password": .string(v.password)] } else if let ref = cred.secretRef {
                let s = try fromSecret(ref, p)
                out["basic-auth"] = ["username": .string(try required(s, "username", p)), "password": .string(try required(s, "password", p))]
            }
        }
        if let cred = a.jwtAuth {
            let p = "spec.authParameter.jwtAuth"
            var o: [String: JSONValue] = [:]
            if let v = cred.value {
                o["key"] = .string(v.key)
                if let x = v.secret { o["secret"] = .string(x) }
                if let x = v.publicKey { o["public_key"] = .string(x) }
                if let x = v.privateKey { o["private_key"] = .string(x) }
                if let x = v.algorithm { o["algorithm"] = .string(x) }
                if let x = v.exp { o["exp"] = .int(try FieldBounds.int(x, FieldBounds.positiveInt32, "\(p).value.exp")) }
                if let x = v.base64Secret { o["base64_secret"] = .bool(x) }
                if let x = v.lifetimeGracePeriod {
                    o["lifetime_grace_period"] = .int(try FieldBounds.int(x, FieldBounds.nonNegativeInt32, "\(p).value.lifetime_grace_period"))
                }
            } else if let ref = cred.secretRef {
                let s = try fromSecret(ref, p)
                o["key"] = .string(try required(s, "key", p))
                for k in ["secret", "public_key", "private_key", "algorithm"] { if let v = s.string(k) { o[k] = .string(v) } }
                for (k, range) in [("exp", FieldBounds.positiveInt32), ("lifetime_grace_period", FieldBounds.nonNegativeInt32)] {
                    guard let text = s.string(k) else { continue }
                    guard let v = Int(text), range.contains(v) else {
                        throw TranslationError(
                            "\(p).secretRef: Secret \(ns)/\(ref) key \"\(k)\" must be an integer between \(range.lowerBound) and \(range.upperBound), got \"\(FieldBounds.shown(text))\"")
                    }
                    o[k] = .int(Int64(v))
                }
                if let v = s.string("base64_secret") { o["base64_secret"] = .bool(v == "true") }
            }
            if !o.isEmpty { out["jwt-auth"] = .object(o) }
        }
        if let cred = a.hmacAuth {
            let p = "spec.authParameter.hmacAuth"
            var o: [String: JSONValue] = [:]
            if let v = cred.value {
                if let x = v.keyID ?? v.accessKey { o["key_id"] = .string(x) }
                if let x = v.secretKey { o["secret_key"] = .string(x) }
            } else if let ref = cred.secretRef {
                let s = try fromSecret(ref, p)
                if let id = s.string("key_id") { o["key_id"] = .string(id) } else { o["key_id"] = .string(try required(s, "access_key", p)) }
                o["secret_key"] = .string(try required(s, "secret_key", p))
            }
            if !o.isEmpty { out["hmac-auth"] = .object(o) }
        }
        if let cred = a.wolfRBAC {
            var o: [String: JSONValue] = [:]
            if let v = cred.value {
                if let x = v.server { o["server"] = .string(x) }
                if let x = v.appid { o["appid"] = .string(x) }
                if let x = v.headerPrefix { o["header_prefix"] = .string(x) }
            } else if let ref = cred.secretRef {
                let s = try fromSecret(ref, "spec.authParameter.wolfRBAC")
                for k in ["server", "appid", "header_prefix"] { if let v = s.string(k) { o[k] = .string(v) } }
            }
            out["wolf-rbac"] = .object(o)
        }
        if let cred = a.ldapAuth {
            let p = "spec.authParameter.ldapAuth"
            if let v = cred.value { out["ldap-auth"] = ["user_dn": .string(v.userDN)] } else if let ref = cred.secretRef {
                out["ldap-auth"] = ["user_dn": .string(try required(try fromSecret(ref, p), "user_dn", p))]
            }
        }
        guard !out.isEmpty else { throw TranslationError("spec.authParameter: at least one authentication method is required") }
        return .object(out)
    }

    /// A certificate and its key from a Secret, read as the APISIX controller reads one:
    /// `cert` and `key` (its own format) when the Secret has `cert`, else `tls.crt` and
    /// `tls.key` (a `kubernetes.io/tls` Secret, as cert-manager writes it). A Secret that is
    /// missing, or lacks either half (or has it empty), is an error naming `field`, the
    /// Secret and the key.
    static func certificate(_ namespace: String, _ name: String, field: String, _ c: ClusterState) throws(TranslationError) -> (cert: String, key: String) {
        let shown = "Secret \(namespace)/\(name)"
        guard let secret = c.secrets[ClusterState.key(namespace, name)] else { throw TranslationError("\(field): \(shown) not found") }
        let (certKey, keyKey) = secret.value(Self.apisixCertificateKey) != nil
            ? (Self.apisixCertificateKey, Self.apisixPrivateKeyKey) : (Secret.tlsCertificateKey, Secret.tlsPrivateKeyKey)
        let cert = secret.string(certKey).flatMap { $0.isEmpty ? nil : $0 }
        let key = secret.string(keyKey).flatMap { $0.isEmpty ? nil : $0 }
        switch (cert, key) {
        case (let cert?, let key?): return (cert, key)
        case (.some, nil): throw TranslationError("\(field): \(shown) has \(certKey) but no \(keyKey)")
        case (nil, .some): throw TranslationError("\(field): \(shown) has \(keyKey) but no \(certKey)")
        case (nil, nil): throw TranslationError("\(field): \(shown) needs \(Secret.tlsCertificateKey) and \(Secret.tlsPrivateKeyKey)")
        }
    }

    /// The CA certificate(s) of a Secret named by `client.caSecret`: `ca.crt`, else `cert`
    /// (the APISIX controller's format), else `tls.crt` (a CA's own `kubernetes.io/tls`
    /// Secret). `ca.crt` comes first: in a Secret cert-manager issued it is the CA, while
    /// `tls.crt` may be a certificate the CA signed. A CA's private key is never read.
    static func caCertificate(_ namespace: String, _ name: String, field: String, _ c: ClusterState) throws(TranslationError) -> String {
        let shown = "Secret \(namespace)/\(name)"
        guard let secret = c.secrets[ClusterState.key(namespace, name)] else { throw TranslationError("\(field): \(shown) not found") }
        for k in caKeyOrder { if let v = secret.string(k), !v.isEmpty { return v } }
        throw TranslationError("\(field): \(shown) has no \(Secret.caCertificateKey) (nor \(Self.apisixCertificateKey) or \(Secret.tlsCertificateKey))")
    }

    static let caKeyOrder = [Secret.caCertificateKey, Self.apisixCertificateKey, Secret.tlsCertificateKey]

    /// Host names as an `ssls` object's `snis`: lower case without a trailing dot, each a
    /// host name or `*.suffix` as the gateway takes them, duplicates dropped; at least one.
    static func snis(_ hosts: [String], path: String) throws(TranslationError) -> JSONValue {
        guard !hosts.isEmpty else { throw TranslationError("\(path): at least one host is required for an SSL certificate") }
        guard hosts.count <= SSLObject.maxSNIs else { throw TranslationError("\(path): must have at most \(SSLObject.maxSNIs) hosts, got \(hosts.count)") }
        var seen = Set<String>()
        var out: [JSONValue] = []
        for (i, h) in hosts.enumerated() {
            let name: String
            do {
                name = try SSLObject.normalizedSNI(h, path: "\(path)[\(i)]")
            } catch {
                throw TranslationError("\(path)[\(i)]: must be a host name or *.suffix (letters, digits, - _ .), got \"\(FieldBounds.shown(h))\"")
            }
            if seen.insert(name).inserted { out.append(.string(name)) }
        }
        return .array(out)
    }

    /// The namespace a Secret reference that may name one (`ApisixSecret`: ApisixTls
    /// `secret` and `client.caSecret`, ApisixUpstream `tlsSecret`) reads from: the object's
    /// own, or another only when both are among `secretNamespaces` (`--namespace`), as the
    /// APISIX controller reads only the namespaces it watches. Otherwise an error naming the
    /// field: a Secret of another tenant is never copied into the gateway.
    func secretNamespace(_ ref: ApisixSecretReference, of ns: String, field: String) throws(TranslationError) -> String {
        guard let given = ref.namespace, !given.isEmpty, given != ns else { return ns }
        guard secretNamespaces.contains(given), secretNamespaces.contains(ns) else {
            let why = secretNamespaces.isEmpty
                ? "the controller watches every namespace, so a Secret is read only from the object's own namespace (\(ns))"
                : "a Secret is read only from the object's own namespace (\(ns)) or from another namespace given with --namespace"
            throw TranslationError("\(field).namespace: Secret \(given)/\(ref.name) is in another namespace; \(why)")
        }
        return given
    }

    /// An ApisixTls → one `ssls` object of type server: its hosts as `snis`, the certificate
    /// and key of `secret`, and with `client` the CA client certificates must chain to.
    func tls(_ t: ApisixTls, namespace ns: String, _ c: ClusterState, _ out: inout Output) throws(TranslationError) {
        let snis = try Self.snis(t.hosts, path: "spec.hosts")
        let (cert, key) = try Self.certificate(try secretNamespace(t.secret, of: ns, field: "spec.secret"), t.secret.name, field: "spec.secret", c)
        var o: [String: JSONValue] = [
            "type": "server", "snis": snis, "cert": .string(cert), "key": .string(key), "labels": IngressNaming.managedBy,
        ]
        if let client = t.client {
            // Asking for client certificates without saying whose is no verification at all:
            // refused rather than served without mTLS.
            guard let ref = client.caSecret else { throw TranslationError("spec.client.caSecret: is required to verify client certificates") }
            let caNS = try secretNamespace(ref, of: ns, field: "spec.client.caSecret")
            var co: [String: JSONValue] = ["ca": .string(try Self.caCertificate(caNS, ref.name, field: "spec.client.caSecret", c))]
            // The gateway's bound on intermediate certificates (APISIX's default is 1).
            if let d = client.depth { co["depth"] = .int(try FieldBounds.int(d, 0...16, "spec.client.depth")) }
            for (i, re) in client.skipMTLSURIRegex.enumerated() {
                do throws(RegexSyntaxError) {
                    _ = try LinearRegex(re)
                } catch {
                    throw TranslationError("spec.client.skip_mtls_uri_regex[\(i)]: is not a valid regex: \(error.description)")
                }
            }
            if !client.skipMTLSURIRegex.isEmpty { co["skip_mtls_uri_regex"] = .array(client.skipMTLSURIRegex.map { .string($0) }) }
            o["client"] = .object(co)
        }
        out.put(.ssls, IngressNaming.id(IngressNaming.objectName(namespace: ns, name: t.metadata.name)), .object(o))
    }
}
