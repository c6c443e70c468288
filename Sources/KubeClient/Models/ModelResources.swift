/// The collections of the kinds in Models/. Namespaces, IngressClasses are cluster-scoped.
extension KubeResource {
    /// The API group of the APISIX custom resources.
    public static let apisixGroup = "apisix.apache.org"

    public static func secrets(namespace: String? = nil) -> KubeResource { .init(group: "", version: "v1", plural: "secrets", namespace: namespace) }
    public static func endpoints(namespace: String? = nil) -> KubeResource { .init(group: "", version: "v1", plural: "endpoints", namespace: namespace) }
    public static func namespaces() -> KubeResource { .init(group: "", version: "v1", plural: "namespaces") }
    public static func pods(namespace: String? = nil) -> KubeResource { .init(group: "", version: "v1", plural: "pods", namespace: namespace) }

    public static func ingresses(namespace: String? = nil) -> KubeResource {
        .init(group: "networking.k8s.io", version: "v1", plural: "ingresses", namespace: namespace)
    }
    public static func ingressClasses() -> KubeResource { .init(group: "networking.k8s.io", version: "v1", plural: "ingressclasses") }

    public static func leases(namespace: String? = nil) -> KubeResource {
        .init(group: "coordination.k8s.io", version: "v1", plural: "leases", namespace: namespace)
    }

    public static func apisixRoutes(namespace: String? = nil) -> KubeResource { apisix("apisixroutes", namespace) }
    public static func apisixUpstreams(namespace: String? = nil) -> KubeResource { apisix("apisixupstreams", namespace) }
    /// Plural `apisixtlses`.
    public static func apisixTlses(namespace: String? = nil) -> KubeResource { apisix("apisixtlses", namespace) }
    public static func apisixConsumers(namespace: String? = nil) -> KubeResource { apisix("apisixconsumers", namespace) }
    public static func apisixPluginConfigs(namespace: String? = nil) -> KubeResource { apisix("apisixpluginconfigs", namespace) }
    public static func apisixGlobalRules(namespace: String? = nil) -> KubeResource { apisix("apisixglobalrules", namespace) }

    static func apisix(_ plural: String, _ namespace: String?) -> KubeResource {
        .init(group: apisixGroup, version: "v2", plural: plural, namespace: namespace)
    }
}
