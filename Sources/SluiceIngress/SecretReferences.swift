import KubeClient
import SluiceCore

extension Translator {
    /// The Secret keys a reference reads: some keys, or all of them (nil: a plugin's
    /// `secretRef` overlays every key on its config).
    public typealias SecretKeys = Set<String>?

    /// The APISIX controller's own Secret format for a certificate: `cert` and `key`.
    static let apisixCertificateKey = "cert"
    static let apisixPrivateKeyKey = "key"
    /// What `certificate` reads: either format's pair.
    static let certificateKeys: Set<String> = [Secret.tlsCertificateKey, Secret.tlsPrivateKeyKey, apisixCertificateKey, apisixPrivateKeyKey]
    /// What `caCertificate` reads: never a private key.
    static let caKeys: Set<String> = Set(caKeyOrder)
    static let keyAuthKeys: Set<String> = ["key"]
    static let basicAuthKeys: Set<String> = ["username", "password"]
    static let jwtAuthKeys: Set<String> = ["key", "secret", "public_key", "private_key", "algorithm", "exp", "lifetime_grace_period", "base64_secret"]
    static let hmacAuthKeys: Set<String> = ["key_id", "access_key", "secret_key"]
    static let wolfRBACKeys: Set<String> = ["server", "appid", "header_prefix"]
    static let ldapAuthKeys: Set<String> = ["user_dn"]

    /// Every Secret (`ns/name`) a translation of `c` may read, with the keys it reads: what
    /// the controller keeps of the cluster's Secrets. The same lookups the translation does,
    /// from the objects this controller owns, and only where the namespace rule lets the
    /// reference through (a cross-namespace reference that is refused reads nothing).
    public func secretReferences(_ c: ClusterState) -> [String: SecretKeys] {
        var out: [String: SecretKeys] = [:]
        func add(_ ns: String, _ name: String, _ keys: SecretKeys) {
            let key = ClusterState.key(ns, name)
            switch (out[key], keys) {
            case (.none, _): out[key] = keys
            case (.some(.none), _): break  // already every key
            case (.some(.some), .none): out[key] = .some(nil)
            case (.some(.some(let have)), .some(let more)): out[key] = .some(have.union(more))
            }
        }
        func plugins(_ list: [ApisixPlugin], _ ns: String) {
            for p in list where p.enable { if let ref = p.secretRef { add(ns, ref, nil) } }
        }
        func crossable(_ ref: ApisixSecretReference, _ ns: String) -> String? { try? secretNamespace(ref, of: ns, field: "") }
        func upstream(_ cfg: ApisixUpstream.Config, _ ns: String) {
            if let ref = cfg.tlsSecret, let secretNS = crossable(ref, ns) { add(secretNS, ref.name, Self.certificateKeys) }
        }
        for o in c.apisixRoutes.values where owns(className: o.ingressClassName) {
            let ns = o.metadata.namespace ?? ""
            for rule in o.http { plugins(rule.plugins, ns) }
            for rule in o.stream { plugins(rule.plugins, ns) }
        }
        for o in c.apisixPluginConfigs.values where owns(className: o.ingressClassName) { plugins(o.plugins, o.metadata.namespace ?? "") }
        for o in c.apisixGlobalRules.values where owns(className: o.ingressClassName) { plugins(o.plugins, o.metadata.namespace ?? "") }
        for o in c.apisixUpstreams.values where owns(className: o.ingressClassName) {
            let ns = o.metadata.namespace ?? ""
            upstream(o.config, ns)
            for p in o.portLevelSettings { upstream(p.config, ns) }
        }
        for o in c.apisixTlses.values where owns(className: o.ingressClassName) {
            let ns = o.metadata.namespace ?? ""
            if let secretNS = crossable(o.secret, ns) { add(secretNS, o.secret.name, Self.certificateKeys) }
            if let ref = o.client?.caSecret, let caNS = crossable(ref, ns) { add(caNS, ref.name, Self.caKeys) }
        }
        for o in c.apisixConsumers.values where owns(className: o.ingressClassName) {
            let ns = o.metadata.namespace ?? ""
            let a = o.authParameter
            func credential<V>(_ cred: ApisixConsumer.Credential<V>?, _ keys: Set<String>) {
                if let cred, cred.value == nil, let ref = cred.secretRef { add(ns, ref, keys) }
            }
            credential(a.keyAuth, Self.keyAuthKeys)
            credential(a.basicAuth, Self.basicAuthKeys)
            credential(a.jwtAuth, Self.jwtAuthKeys)
            credential(a.hmacAuth, Self.hmacAuthKeys)
            credential(a.wolfRBAC, Self.wolfRBACKeys)
            credential(a.ldapAuth, Self.ldapAuthKeys)
        }
        for o in c.ingresses.values where owns(o, classes: c.ingressClasses) {
            let ns = o.metadata.namespace ?? ""
            for t in o.tls { if let name = t.secretName, !name.isEmpty { add(ns, name, Self.certificateKeys) } }
        }
        return out
    }
}
