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
        var used = Set<String>()
        for (i, rule) in ing.rules.enumerated() {
            let host = rule.host.flatMap { $0.isEmpty ? nil : $0 }
            if let host {
                do { try HostPattern.validate(host, path: "spec.rules[\(i)].host") } catch { throw TranslationError(error.description) }
            }
            for (j, p) in rule.paths.enumerated() {
                let path = "spec.rules[\(i)].http.paths[\(j)]"
                let uris = try Self.uris(p.path ?? "/", type: p.pathType, path: "\(path).path")
                let upstream = try ingressBackend(p.backend, namespace: ns, path: "\(path).backend", c, &out)
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
                out.put(.routes, IngressNaming.id(name), .object(o))
            }
        }
        if let d = ing.defaultBackend {
            let upstream = try ingressBackend(d, namespace: ns, path: "spec.defaultBackend", c, &out)
            let name = "\(base)_default-backend"
            out.put(.routes, IngressNaming.id(name), [
                "name": .string(name), "uris": ["/*"], "upstream_id": .string(upstream), "priority": -1, "labels": IngressNaming.managedBy,
            ])
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
