import KubeClient
import SluiceCore

extension Translator {
    /// A `networking.k8s.io/v1` Ingress: a route per host and path, an upstream per
    /// Service port, an SSL object per `tls` entry, a catch-all route for the default
    /// backend.
    ///
    /// Path types: `Exact` matches the path alone; `Prefix` matches it element-wise
    /// (`/foo` matches `/foo` and `/foo/bar`, not `/foobar`); `ImplementationSpecific` is a
    /// plain string prefix (`/foo` matches `/foobar` too), as APISIX treats it.
    func ingress(_ ing: Ingress, namespace ns: String, _ c: ClusterState, _ out: inout Output) throws(TranslationError) {
        // `ing_` keeps these apart from ApisixRoute and ApisixTls names (`ns_name_rule`).
        let base = "ing_\(ns)_\(ing.metadata.name)"
        let notes = try IngressAnnotations.parse(ing.metadata.annotations)
        var pluginConfigID: String? = nil
        if let pc = notes.pluginConfigName {
            guard c.apisixPluginConfigs[ClusterState.key(ns, pc)] != nil else {
                throw TranslationError("\(IngressAnnotations.field("plugin-config-name")): ApisixPluginConfig \(ns)/\(pc) not found")
            }
            pluginConfigID = IngressNaming.id(IngressNaming.objectName(namespace: ns, name: pc))
        }
        /// What the annotations add to every route of this Ingress.
        func annotate(_ o: inout [String: JSONValue]) {
            if !notes.plugins.isEmpty { o["plugins"] = .object(notes.plugins) }
            if let w = notes.enableWebsocket { o["enable_websocket"] = .bool(w) }
            if let pluginConfigID { o["plugin_config_id"] = .string(pluginConfigID) }
        }
        var used = Set<String>()
        for (i, rule) in ing.rules.enumerated() {
            let host = rule.host.flatMap { $0.isEmpty ? nil : $0 }
            if let host {
                do { try HostPattern.validate(host, path: "spec.rules[\(i)].host") } catch { throw TranslationError(error.description) }
            }
            for (j, p) in rule.paths.enumerated() {
                let path = "spec.rules[\(i)].http.paths[\(j)]"
                // use-regex: the path is a regular expression on the URI (a route on /* with vars).
                let uris = notes.useRegex ? ["/*"] : try Self.uris(p.path ?? "/", type: p.pathType, path: "\(path).path")
                let upstream = try Self.withSettings(
                    try ingressBackend(p.backend, namespace: ns, path: "\(path).backend", c, &out), notes, ingress: base, &out)
                // Named by what it matches, so reordering rules does not rename routes.
                var name = "\(base)_\(IngressNaming.hex(CRC32.checksum(Array("\(host ?? "")|\(p.path ?? "/")|\(p.pathType.rawValue)".utf8))))"
                if !used.insert(name).inserted { name += "_\(i)_\(j)" }
                var o: [String: JSONValue] = [
                    "name": .string(name), "uris": .array(uris.map { .string($0) }), "upstream_id": .string(upstream),
                    "labels": IngressNaming.managedBy,
                ]
                if let host { o["hosts"] = [.string(host)] }
                // Exact paths win over prefixes of the same length.
                if p.pathType == .Exact { o["priority"] = 1 }
                if notes.useRegex {
                    o["vars"] = try IngressAnnotations.regexVars(p.path ?? "/", exact: p.pathType == .Exact, field: "\(path).path")
                }
                annotate(&o)
                out.put(.routes, IngressNaming.id(name), .object(o))
            }
        }
        if let d = ing.defaultBackend {
            let upstream = try Self.withSettings(try ingressBackend(d, namespace: ns, path: "spec.defaultBackend", c, &out), notes, ingress: base, &out)
            let name = "\(base)_default-backend"
            var o: [String: JSONValue] = [
                "name": .string(name), "uris": ["/*"], "upstream_id": .string(upstream), "priority": -1, "labels": IngressNaming.managedBy,
            ]
            annotate(&o)
            out.put(.routes, IngressNaming.id(name), .object(o))
        }
        for (i, t) in ing.tls.enumerated() {
            guard let secretName = t.secretName, !secretName.isEmpty else { continue }
            let path = "spec.tls[\(i)]"
            let snis = try Self.snis(t.hosts, path: "\(path).hosts")
            // `secretName` has no namespace: always the Ingress's own.
            let (cert, key) = try Self.certificate(ns, secretName, field: "\(path).secretName", c)
            out.put(.ssls, IngressNaming.id("\(base)_tls_\(i)"), [
                "type": "server", "snis": snis, "cert": .string(cert), "key": .string(key), "labels": IngressNaming.managedBy,
            ])
        }
        guard !out.objects.isEmpty else { throw TranslationError("spec: no rules, paths or default backend") }
    }

    /// The upstream `id` with the Ingress's upstream annotations applied: a copy of its own
    /// (named after the Ingress), so another Ingress's routes to the same Service keep theirs.
    static func withSettings(_ id: String, _ notes: IngressAnnotations, ingress: String, _ out: inout Output) throws(TranslationError) -> String {
        guard !notes.upstream.isEmpty, case .object(var o)? = out.objects[ObjectKey(.upstreams, id)] else { return id }
        for (k, v) in notes.upstream { o[k] = v }
        let name = "\(o["name"]?.stringValue ?? id)_\(IngressNaming.hex(CRC32.checksum(Array(ingress.utf8))))"
        o["name"] = .string(name)
        let copy = IngressNaming.id(name)
        out.put(.upstreams, copy, .object(o))
        if let source = out.sources[id] { out.sources[copy] = source }
        return copy
    }

    static func uris(_ p: String, type: Ingress.PathType, path: String) throws(TranslationError) -> [String] {
        guard p.hasPrefix("/") else { throw TranslationError("\(path): must start with /, got \"\(p)\"") }
        guard !p.contains("*") && !p.contains(":") else { throw TranslationError("\(path): must not contain * or :, got \"\(p)\"") }
        let uris: [String]
        switch type {
        case .Exact: uris = [p]
        case .Prefix:
            var trimmed = Substring(p)
            while trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
            uris = trimmed.isEmpty ? ["/*"] : [String(trimmed), "\(trimmed)/*"]
        case .ImplementationSpecific: uris = [p + "*"]
        }
        for u in uris {
            do { try PathPattern.validate(u, path: path) } catch { throw TranslationError(error.description) }
        }
        return uris
    }

    func ingressBackend(_ b: Ingress.Backend, namespace ns: String, path: String, _ c: ClusterState, _ out: inout Output) throws(TranslationError) -> String {
        guard let svc = b.service else {
            if b.resource != nil { throw TranslationError("\(path).resource: resource backends are not supported; use a service backend") }
            throw TranslationError("\(path).service: is required")
        }
        return try backendUpstream(
            namespace: ns, serviceName: svc.name, port: svc.port, granularity: nil, subset: nil, path: "\(path).service", c, &out,
            nameField: "name", portField: "port")
    }
}
