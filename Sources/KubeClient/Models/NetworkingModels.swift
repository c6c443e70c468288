import SluiceCore

/// networking.k8s.io/v1 Ingress.
public struct Ingress: Sendable, Hashable {
    /// The annotation that named the class before `spec.ingressClassName` existed.
    public static let classAnnotation = "kubernetes.io/ingress.class"

    public enum PathType: String, Sendable, Hashable, CaseIterable {
        case Exact, Prefix, ImplementationSpecific
    }

    /// `backend.service`.
    public struct ServiceBackend: Sendable, Hashable {
        public var name: String
        /// `port.number` or `port.name`.
        public var port: ServicePortReference

        public init(name: String, port: ServicePortReference) {
            self.name = name
            self.port = port
        }
    }

    /// `backend.resource`: an object of another kind (TypedLocalObjectReference).
    public struct ResourceBackend: Sendable, Hashable {
        public var apiGroup: String?
        public var kind: String
        public var name: String

        public init(apiGroup: String? = nil, kind: String, name: String) {
            self.apiGroup = apiGroup
            self.kind = kind
            self.name = name
        }
    }

    /// IngressBackend: exactly one of `service` and `resource` is set.
    public struct Backend: Sendable, Hashable {
        public var service: ServiceBackend?
        public var resource: ResourceBackend?

        public init(service: ServiceBackend? = nil, resource: ResourceBackend? = nil) {
            self.service = service
            self.resource = resource
        }
    }

    public struct TLS: Sendable, Hashable {
        public var hosts: [String]
        public var secretName: String?

        public init(hosts: [String] = [], secretName: String? = nil) {
            self.hosts = hosts
            self.secretName = secretName
        }
    }

    /// `rules[].http.paths[]`.
    public struct Path: Sendable, Hashable {
        /// Absent means every path (allowed for ImplementationSpecific).
        public var path: String?
        public var pathType: PathType
        public var backend: Backend

        public init(path: String? = nil, pathType: PathType, backend: Backend) {
            self.path = path
            self.pathType = pathType
            self.backend = backend
        }
    }

    public struct Rule: Sendable, Hashable {
        /// Absent means every host.
        public var host: String?
        /// `http.paths`; empty when the rule has no `http`.
        public var paths: [Path]

        public init(host: String? = nil, paths: [Path] = []) {
            self.host = host
            self.paths = paths
        }
    }

    /// `status.loadBalancer.ingress[]`.
    public struct LoadBalancerIngress: Sendable, Hashable {
        public var ip: String?
        public var hostname: String?

        public init(ip: String? = nil, hostname: String? = nil) {
            self.ip = ip
            self.hostname = hostname
        }
    }

    public var metadata: ObjectMeta
    public var ingressClassName: String?
    public var defaultBackend: Backend?
    public var tls: [TLS]
    public var rules: [Rule]
    public var loadBalancer: [LoadBalancerIngress]
    public var raw: JSONValue

    /// The legacy `kubernetes.io/ingress.class` annotation.
    public var classAnnotation: String? { metadata.annotations[Self.classAnnotation] }
    /// `spec.ingressClassName`, else the legacy annotation; nil means the default class.
    public var className: String? { ingressClassName ?? classAnnotation }

    public init(json: JSONValue) throws(KubeDecodingError) {
        let f = try KubeFields(json, "")
        metadata = try ObjectMeta.decode(f)
        let spec = try f.objectOrEmpty("spec")
        ingressClassName = try spec.string("ingressClassName")
        defaultBackend = try spec.object("defaultBackend").map { b throws(KubeDecodingError) in try Self.backend(b) }
        tls = []
        for tf in try spec.objects("tls") {
            tls.append(TLS(hosts: try tf.strings("hosts"), secretName: try tf.string("secretName")))
        }
        rules = []
        for rf in try spec.objects("rules") {
            var paths: [Path] = []
            for pf in try rf.objectOrEmpty("http").objects("paths") {
                guard let type = try pf.enumeration("pathType", PathType.self) else { throw KubeDecodingError(pf.sub("pathType"), "is required") }
                paths.append(Path(path: try pf.string("path"), pathType: type, backend: try Self.backend(try pf.requiredObject("backend"))))
            }
            rules.append(Rule(host: try rf.string("host"), paths: paths))
        }
        loadBalancer = []
        for lf in try f.objectOrEmpty("status").objectOrEmpty("loadBalancer").objects("ingress") {
            loadBalancer.append(LoadBalancerIngress(ip: try lf.string("ip"), hostname: try lf.string("hostname")))
        }
        raw = json
    }

    static func backend(_ f: KubeFields) throws(KubeDecodingError) -> Backend {
        var backend = Backend(service: nil, resource: nil)
        if let sf = try f.object("service") {
            let pf = try sf.requiredObject("port")
            let port: ServicePortReference
            let number = try pf.int("number")
            let name = try pf.string("name")
            switch (number, name) {
            case (let n?, nil): port = .number(n)
            case (nil, let name?): port = .name(name)
            case (nil, nil): throw KubeDecodingError(pf.path, "must have a number or a name")
            case (_?, _?): throw KubeDecodingError(pf.path, "must have a number or a name, not both")
            }
            backend.service = ServiceBackend(name: try sf.requiredString("name"), port: port)
        }
        if let rf = try f.object("resource") {
            backend.resource = ResourceBackend(apiGroup: try rf.string("apiGroup"), kind: try rf.requiredString("kind"), name: try rf.requiredString("name"))
        }
        switch (backend.service, backend.resource) {
        case (nil, nil): throw KubeDecodingError(f.path, "must have a service or a resource")
        case (_?, _?): throw KubeDecodingError(f.path, "must have a service or a resource, not both")
        default: return backend
        }
    }
}

/// networking.k8s.io/v1 IngressClass (cluster-scoped).
public struct IngressClass: Sendable, Hashable {
    /// Set to "true" on the class used by Ingresses that name none.
    public static let defaultClassAnnotation = "ingressclass.kubernetes.io/is-default-class"

    /// `spec.parameters`: an object holding controller-specific configuration.
    public struct Parameters: Sendable, Hashable {
        public var apiGroup: String?
        public var kind: String
        public var name: String
        /// "Cluster" or "Namespace".
        public var scope: String?
        public var namespace: String?

        public init(apiGroup: String? = nil, kind: String, name: String, scope: String? = nil, namespace: String? = nil) {
            self.apiGroup = apiGroup
            self.kind = kind
            self.name = name
            self.scope = scope
            self.namespace = namespace
        }
    }

    public var metadata: ObjectMeta
    /// `spec.controller`, e.g. "apisix.apache.org/apisix-ingress-controller".
    public var controller: String?
    public var parameters: Parameters?
    public var raw: JSONValue

    public var isDefault: Bool { metadata.annotations[Self.defaultClassAnnotation] == "true" }

    public init(json: JSONValue) throws(KubeDecodingError) {
        let f = try KubeFields(json, "")
        metadata = try ObjectMeta.decode(f)
        let spec = try f.objectOrEmpty("spec")
        controller = try spec.string("controller")
        if let pf = try spec.object("parameters") {
            parameters = Parameters(
                apiGroup: try pf.string("apiGroup"), kind: try pf.requiredString("kind"), name: try pf.requiredString("name"),
                scope: try pf.string("scope"), namespace: try pf.string("namespace"))
        } else {
            parameters = nil
        }
        raw = json
    }
}
