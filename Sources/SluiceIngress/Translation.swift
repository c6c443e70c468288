import KubeClient
import SluiceCore

/// A Kubernetes object the controller translates, by kind, namespace and name.
public struct SourceRef: Sendable, Hashable, Comparable, CustomStringConvertible {
    public enum Kind: String, Sendable, Hashable, CaseIterable, Comparable {
        case apisixRoute = "ApisixRoute"
        case apisixUpstream = "ApisixUpstream"
        case apisixTls = "ApisixTls"
        case apisixConsumer = "ApisixConsumer"
        case apisixPluginConfig = "ApisixPluginConfig"
        case apisixGlobalRule = "ApisixGlobalRule"
        case ingress = "Ingress"

        public static func < (a: Kind, b: Kind) -> Bool { a.rawValue < b.rawValue }

        /// Kinds with a `status.conditions` the controller reports on.
        public var hasStatus: Bool { self != .ingress }
    }

    public var kind: Kind
    public var namespace: String
    public var name: String

    public init(_ kind: Kind, _ namespace: String, _ name: String) {
        self.kind = kind
        self.namespace = namespace
        self.name = name
    }

    public var description: String { "\(kind.rawValue) \(namespace)/\(name)" }
    public static func < (a: SourceRef, b: SourceRef) -> Bool { (a.kind, a.namespace, a.name) < (b.kind, b.namespace, b.name) }
}

/// One gateway object: its kind and id.
public struct ObjectKey: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var kind: ResourceKind
    public var id: String

    public init(_ kind: ResourceKind, _ id: String) {
        self.kind = kind
        self.id = id
    }

    public var description: String { "\(kind.rawValue)/\(id)" }
    public static func < (a: ObjectKey, b: ObjectKey) -> Bool { (a.kind.rawValue, a.id) < (b.kind.rawValue, b.id) }
}

/// Where an upstream's nodes come from when they follow a Service's endpoints: the nodes
/// are filled in from the cached EndpointSlices (or Endpoints), so that a pod change
/// recomputes only the upstreams of that Service without translating anything again.
public struct EndpointSource: Sendable, Hashable {
    /// `namespace/name` of the Service.
    public var service: String
    public var port: KubeClient.Service.Port
    /// Pod labels a subset selects (nil: every endpoint).
    public var subsetLabels: [String: String]?

    public init(service: String, port: KubeClient.Service.Port, subsetLabels: [String: String]? = nil) {
        self.service = service
        self.port = port
        self.subsetLabels = subsetLabels
    }
}

/// The Kubernetes objects a translation reads: those the controller owns (after the
/// namespace and ingress-class filters) and what they refer to.
public struct ClusterState: Sendable {
    public var services: [String: KubeClient.Service] = [:]
    public var secrets: [String: Secret] = [:]
    public var apisixRoutes: [String: ApisixRoute] = [:]
    public var apisixUpstreams: [String: ApisixUpstream] = [:]
    public var apisixTlses: [String: ApisixTls] = [:]
    public var apisixConsumers: [String: ApisixConsumer] = [:]
    public var apisixPluginConfigs: [String: ApisixPluginConfig] = [:]
    public var apisixGlobalRules: [String: ApisixGlobalRule] = [:]
    public var ingresses: [String: Ingress] = [:]
    public var ingressClasses: [String: IngressClass] = [:]

    public init() {}

    public static func key(_ namespace: String?, _ name: String) -> String { "\(namespace ?? "")/\(name)" }
}

/// What a translation produced: gateway objects (upstreams that follow endpoints carry an
/// empty node list, filled from `endpointSources`), which Kubernetes object produced
/// which gateway objects, and why any object could not be translated.
public struct Translation: Sendable {
    public var objects: [ObjectKey: JSONValue] = [:]
    /// Upstream id → the Service endpoints its nodes follow.
    public var endpointSources: [String: EndpointSource] = [:]
    public var produced: [SourceRef: Set<ObjectKey>] = [:]
    /// `metadata.generation` of each translated object, for `observedGeneration`.
    public var generations: [SourceRef: Int] = [:]
    /// Objects that could not be translated, with the reason; they produce nothing.
    public var errors: [SourceRef: String] = [:]

    public init() {}

    /// Upstream ids whose nodes follow `service` (`ns/name`).
    public func upstreams(following service: String) -> [String] {
        endpointSources.compactMap { $0.value.service == service ? $0.key : nil }.sorted()
    }
}

/// Why a Kubernetes object could not be translated; the message names the field.
public struct TranslationError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
