import SluiceCore

/// core/v1 Secret. `data` arrives base64-encoded; both forms are kept.
public struct Secret: Sendable, Hashable {
    public static let tlsCertificateKey = "tls.crt"
    public static let tlsPrivateKeyKey = "tls.key"
    public static let caCertificateKey = "ca.crt"

    public var metadata: ObjectMeta
    /// "Opaque" when absent; also "kubernetes.io/tls", "kubernetes.io/basic-auth", ...
    public var type: String
    /// `data`, base64-decoded.
    public var data: [String: [UInt8]]
    /// `data` as received (base64 text).
    public var encodedData: [String: String]
    /// `stringData`: write-only on the server, so only seen in manifests not yet applied.
    public var stringData: [String: String]
    public var immutable: Bool?
    public var raw: JSONValue

    public init(json: JSONValue) throws(KubeDecodingError) {
        let f = try KubeFields(json, "")
        metadata = try ObjectMeta.decode(f)
        type = try f.string("type") ?? "Opaque"
        encodedData = try f.stringMap("data")
        data = [:]
        for (key, text) in encodedData {
            guard let bytes = Base64.decode(text) else { throw KubeDecodingError("\(f.sub("data")).\(key)", "must be base64") }
            data[key] = bytes
        }
        stringData = try f.stringMap("stringData")
        immutable = try f.bool("immutable")
        raw = json
    }

    /// The value under `key`, with `stringData` taking precedence as the API server applies it.
    public func value(_ key: String) -> [UInt8]? {
        if let s = stringData[key] { return Array(s.utf8) }
        return data[key]
    }

    /// The value under `key` as UTF-8 text.
    public func string(_ key: String) -> String? {
        value(key).map { String(decoding: $0, as: UTF8.self) }
    }

    /// The same Secret holding only what a consumer reads: the decoded values of `keys`
    /// (all of them when nil), no base64 copy, and for `raw` only the metadata.
    public func retaining(keys: Set<String>?) -> Secret {
        var s = self
        if let keys {
            s.data = data.filter { keys.contains($0.key) }
            s.stringData = stringData.filter { keys.contains($0.key) }
        }
        s.encodedData = [:]
        var meta: [String: JSONValue] = [:]
        for k in ["name", "namespace", "uid", "resourceVersion"] { if let v = raw["metadata"]?[k] { meta[k] = v } }
        s.raw = ["metadata": .object(meta), "type": .string(type)]
        return s
    }
}

/// core/v1 Namespace.
public struct Namespace: Sendable, Hashable {
    public var metadata: ObjectMeta
    /// `status.phase`: "Active" or "Terminating".
    public var phase: String?
    /// `spec.finalizers`.
    public var finalizers: [String]
    public var raw: JSONValue

    public var labels: [String: String] { metadata.labels }
    public var isTerminating: Bool { phase == "Terminating" || metadata.deletionTimestamp != nil }

    public init(json: JSONValue) throws(KubeDecodingError) {
        let f = try KubeFields(json, "")
        metadata = try ObjectMeta.decode(f)
        finalizers = try f.objectOrEmpty("spec").strings("finalizers")
        phase = try f.objectOrEmpty("status").string("phase")
        raw = json
    }
}

/// core/v1 Pod: what a gateway or controller needs (placement, addresses, readiness,
/// container ports for resolving named target ports).
public struct Pod: Sendable, Hashable {
    public struct ContainerPort: Sendable, Hashable {
        public var name: String?
        public var containerPort: Int
        public var `protocol`: String
        public var hostPort: Int?

        public init(name: String? = nil, containerPort: Int, `protocol`: String = "TCP", hostPort: Int? = nil) {
            self.name = name
            self.containerPort = containerPort
            self.`protocol` = `protocol`
            self.hostPort = hostPort
        }
    }

    public struct Container: Sendable, Hashable {
        public var name: String
        public var ports: [ContainerPort]

        public init(name: String, ports: [ContainerPort] = []) {
            self.name = name
            self.ports = ports
        }
    }

    /// core/v1 PodCondition.
    public struct Condition: Sendable, Hashable {
        /// "Ready", "ContainersReady", "PodScheduled", "Initialized", ...
        public var type: String
        public var status: ConditionStatus
        public var reason: String?
        public var message: String?
        public var lastTransitionTime: String?

        public init(type: String, status: ConditionStatus, reason: String? = nil, message: String? = nil, lastTransitionTime: String? = nil) {
            self.type = type
            self.status = status
            self.reason = reason
            self.message = message
            self.lastTransitionTime = lastTransitionTime
        }
    }

    public var metadata: ObjectMeta
    public var nodeName: String?
    public var hostNetwork: Bool
    public var containers: [Container]
    /// `status.phase`: Pending, Running, Succeeded, Failed or Unknown.
    public var phase: String?
    public var podIP: String?
    /// `status.podIPs[].ip`: one per address family.
    public var podIPs: [String]
    public var hostIP: String?
    public var conditions: [Condition]
    public var raw: JSONValue

    public var labels: [String: String] { metadata.labels }
    /// Condition `Ready` is `True`.
    public var isReady: Bool { conditions.first { $0.type == "Ready" }?.status == .true }
    /// Deletion has been requested (`metadata.deletionTimestamp` is set).
    public var isTerminating: Bool { metadata.deletionTimestamp != nil }

    /// The number of the container port called `name`, as a Service `targetPort` name resolves.
    public func containerPort(named name: String) -> Int? {
        for c in containers { for p in c.ports where p.name == name { return p.containerPort } }
        return nil
    }

    public init(json: JSONValue) throws(KubeDecodingError) {
        let f = try KubeFields(json, "")
        metadata = try ObjectMeta.decode(f)
        let spec = try f.objectOrEmpty("spec")
        nodeName = try spec.string("nodeName")
        hostNetwork = try spec.bool("hostNetwork") ?? false
        containers = []
        for cf in try spec.objects("containers") {
            var ports: [ContainerPort] = []
            for pf in try cf.objects("ports") {
                ports.append(
                    ContainerPort(name: try pf.string("name"), containerPort: try pf.requiredInt("containerPort"),
                                  protocol: try pf.string("protocol") ?? "TCP", hostPort: try pf.int("hostPort")))
            }
            containers.append(Container(name: try cf.requiredString("name"), ports: ports))
        }
        let status = try f.objectOrEmpty("status")
        phase = try status.string("phase")
        podIP = try status.string("podIP")
        hostIP = try status.string("hostIP")
        podIPs = []
        for pf in try status.objects("podIPs") { podIPs.append(try pf.requiredString("ip")) }
        conditions = []
        for cf in try status.objects("conditions") {
            guard let s = try cf.enumeration("status", ConditionStatus.self) else { throw KubeDecodingError(cf.sub("status"), "is required") }
            conditions.append(
                Condition(type: try cf.requiredString("type"), status: s, reason: try cf.string("reason"), message: try cf.string("message"),
                          lastTransitionTime: try cf.string("lastTransitionTime")))
        }
        raw = json
    }
}
