import SluiceCore

/// A Kubernetes object that does not have the shape its kind requires; names the field.
public struct KubeDecodingError: Error, Sendable, CustomStringConvertible {
    public var path: String
    public var message: String
    public init(_ path: String, _ message: String) {
        self.path = path
        self.message = message
    }
    public var description: String { "\(path): \(message)" }
}

/// Reading fields leniently, as Kubernetes clients must: unknown fields are ignored (and
/// kept in `raw`), absent optional fields are nil, wrong types are errors naming the field.
struct KubeFields {
    let value: JSONValue
    let path: String

    init(_ value: JSONValue, _ path: String) throws(KubeDecodingError) {
        guard case .object = value else { throw KubeDecodingError(path, "must be an object") }
        self.value = value
        self.path = path
    }

    func sub(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    func string(_ key: String) throws(KubeDecodingError) -> String? {
        guard let v = value[key], v != .null else { return nil }
        guard case .string(let s) = v else { throw KubeDecodingError(sub(key), "must be a string") }
        return s
    }

    func requiredString(_ key: String) throws(KubeDecodingError) -> String {
        guard let s = try string(key) else { throw KubeDecodingError(sub(key), "is required") }
        return s
    }

    func int(_ key: String) throws(KubeDecodingError) -> Int? {
        guard let v = value[key], v != .null else { return nil }
        guard let i = v.intValue else { throw KubeDecodingError(sub(key), "must be an integer") }
        return Int(i)
    }

    func bool(_ key: String) throws(KubeDecodingError) -> Bool? {
        guard let v = value[key], v != .null else { return nil }
        guard case .bool(let b) = v else { throw KubeDecodingError(sub(key), "must be a boolean") }
        return b
    }

    func array(_ key: String) throws(KubeDecodingError) -> [JSONValue] {
        guard let v = value[key], v != .null else { return [] }
        guard case .array(let a) = v else { throw KubeDecodingError(sub(key), "must be a list") }
        return a
    }

    func strings(_ key: String) throws(KubeDecodingError) -> [String] {
        var out: [String] = []
        for (i, item) in try array(key).enumerated() {
            guard case .string(let s) = item else { throw KubeDecodingError("\(sub(key))[\(i)]", "must be a string") }
            out.append(s)
        }
        return out
    }

    func stringMap(_ key: String) throws(KubeDecodingError) -> [String: String] {
        guard let v = value[key], v != .null else { return [:] }
        guard case .object(let o) = v else { throw KubeDecodingError(sub(key), "must be a map") }
        var out: [String: String] = [:]
        for (k, item) in o {
            guard case .string(let s) = item else { throw KubeDecodingError("\(sub(key)).\(k)", "must be a string") }
            out[k] = s
        }
        return out
    }

    func object(_ key: String) throws(KubeDecodingError) -> KubeFields? {
        guard let v = value[key], v != .null else { return nil }
        return try KubeFields(v, sub(key))
    }
}

/// `metadata` of any object. `resourceVersion` is opaque: compared for equality only.
public struct ObjectMeta: Sendable, Hashable {
    public var name: String
    public var namespace: String?
    public var uid: String?
    public var resourceVersion: String?
    public var generation: Int?
    public var labels: [String: String]
    public var annotations: [String: String]
    public var deletionTimestamp: String?

    init(_ f: KubeFields) throws(KubeDecodingError) {
        name = try f.requiredString("name")
        namespace = try f.string("namespace")
        uid = try f.string("uid")
        resourceVersion = try f.string("resourceVersion")
        generation = try f.int("generation")
        labels = try f.stringMap("labels")
        annotations = try f.stringMap("annotations")
        deletionTimestamp = try f.string("deletionTimestamp")
    }

    static func decode(_ object: KubeFields) throws(KubeDecodingError) -> ObjectMeta {
        guard let m = try object.object("metadata") else { throw KubeDecodingError(object.sub("metadata"), "is required") }
        return try ObjectMeta(m)
    }
}

/// A reference to the object an endpoint belongs to (usually a Pod).
public struct ObjectReference: Sendable, Hashable {
    public var kind: String?
    public var namespace: String?
    public var name: String?
    public var uid: String?

    init(_ f: KubeFields) throws(KubeDecodingError) {
        kind = try f.string("kind")
        namespace = try f.string("namespace")
        name = try f.string("name")
        uid = try f.string("uid")
    }
}

/// discovery.k8s.io/v1 EndpointSlice, every field.
public struct EndpointSlice: Sendable, Hashable {
    public enum AddressType: String, Sendable, Hashable { case IPv4, IPv6, FQDN }

    public struct Conditions: Sendable, Hashable {
        /// nil means unknown, which consumers treat as ready.
        public var ready: Bool?
        public var serving: Bool?
        public var terminating: Bool?

        public init(ready: Bool?, serving: Bool?, terminating: Bool?) {
            self.ready = ready
            self.serving = serving
            self.terminating = terminating
        }
    }

    public struct Endpoint: Sendable, Hashable {
        public var addresses: [String]
        public var conditions: Conditions
        public var hostname: String?
        public var nodeName: String?
        public var zone: String?
        public var hintsForZones: [String]
        public var hintsForNodes: [String]
        public var targetRef: ObjectReference?
    }

    public struct Port: Sendable, Hashable {
        /// "" when the Service port is unnamed.
        public var name: String
        public var port: Int?
        public var `protocol`: String
        public var appProtocol: String?

        public init(name: String, port: Int?, protocol: String, appProtocol: String?) {
            self.name = name
            self.port = port
            self.protocol = `protocol`
            self.appProtocol = appProtocol
        }
    }

    public var metadata: ObjectMeta
    public var addressType: AddressType
    public var endpoints: [Endpoint]
    public var ports: [Port]
    /// The object as received, unknown fields included.
    public var raw: JSONValue

    /// The Service this slice belongs to (label `kubernetes.io/service-name`).
    public var serviceName: String? { metadata.labels["kubernetes.io/service-name"] }

    /// `endpoints.kubernetes.io/last-change-trigger-time` of a slice or Endpoints object
    /// (as received, undecoded), in microseconds since 1970: when the change it carries
    /// was triggered, the start of programming latency.
    public static func lastChangeTriggerTime(_ object: JSONValue) -> Int64? {
        object["metadata"]?["annotations"]?["endpoints.kubernetes.io/last-change-trigger-time"]?.stringValue.flatMap(KubeTime.parse)
    }

    public init(json: JSONValue) throws(KubeDecodingError) {
        let f = try KubeFields(json, "")
        metadata = try ObjectMeta.decode(f)
        let type = try f.requiredString("addressType")
        guard let t = AddressType(rawValue: type) else { throw KubeDecodingError("addressType", "must be IPv4, IPv6 or FQDN, got \"\(type)\"") }
        addressType = t
        endpoints = []
        for (i, e) in try f.array("endpoints").enumerated() {
            let ef = try KubeFields(e, "endpoints[\(i)]")
            let c = try ef.object("conditions")
            var zones: [String] = []
            var nodes: [String] = []
            if let hints = try ef.object("hints") {
                for (j, z) in try hints.array("forZones").enumerated() { zones.append(try KubeFields(z, "\(hints.sub("forZones"))[\(j)]").requiredString("name")) }
                for (j, n) in try hints.array("forNodes").enumerated() { nodes.append(try KubeFields(n, "\(hints.sub("forNodes"))[\(j)]").requiredString("name")) }
            }
            endpoints.append(
                Endpoint(
                    addresses: try ef.strings("addresses"),
                    conditions: Conditions(ready: try c?.bool("ready"), serving: try c?.bool("serving"), terminating: try c?.bool("terminating")),
                    hostname: try ef.string("hostname"), nodeName: try ef.string("nodeName"), zone: try ef.string("zone"),
                    hintsForZones: zones, hintsForNodes: nodes, targetRef: try ef.object("targetRef").map { r throws(KubeDecodingError) in try ObjectReference(r) }))
        }
        ports = []
        for (i, p) in try f.array("ports").enumerated() {
            let pf = try KubeFields(p, "ports[\(i)]")
            ports.append(
                Port(name: try pf.string("name") ?? "", port: try pf.int("port"), protocol: try pf.string("protocol") ?? "TCP",
                     appProtocol: try pf.string("appProtocol")))
        }
        raw = json
    }
}

/// core/v1 Service: the fields a gateway needs.
public struct Service: Sendable, Hashable {
    public enum TargetPort: Sendable, Hashable {
        case number(Int)
        case name(String)
    }

    public struct Port: Sendable, Hashable {
        public var name: String
        public var port: Int
        /// Defaults to `port` when absent.
        public var targetPort: TargetPort
        public var `protocol`: String
        public var appProtocol: String?

        public init(name: String, port: Int, targetPort: TargetPort, protocol: String, appProtocol: String?) {
            self.name = name
            self.port = port
            self.targetPort = targetPort
            self.protocol = `protocol`
            self.appProtocol = appProtocol
        }
    }

    public var metadata: ObjectMeta
    public var type: String
    public var clusterIP: String?
    public var selector: [String: String]
    public var ports: [Port]
    public var externalName: String?
    public var raw: JSONValue

    public init(json: JSONValue) throws(KubeDecodingError) {
        let f = try KubeFields(json, "")
        metadata = try ObjectMeta.decode(f)
        let spec: KubeFields
        if let given = try f.object("spec") { spec = given } else { spec = try KubeFields(.object([:]), "spec") }
        type = try spec.string("type") ?? "ClusterIP"
        clusterIP = try spec.string("clusterIP")
        selector = try spec.stringMap("selector")
        externalName = try spec.string("externalName")
        ports = []
        for (i, p) in try spec.array("ports").enumerated() {
            let pf = try KubeFields(p, "spec.ports[\(i)]")
            guard let port = try pf.int("port") else { throw KubeDecodingError(pf.sub("port"), "is required") }
            let target: TargetPort
            switch p["targetPort"] {
            case nil, .null?: target = .number(port)
            case .int(let n)?: target = .number(Int(n))
            case .string(let s)?: target = Int(s).map { .number($0) } ?? .name(s)
            default: throw KubeDecodingError(pf.sub("targetPort"), "must be a number or a name")
            }
            ports.append(
                Port(name: try pf.string("name") ?? "", port: port, targetPort: target, protocol: try pf.string("protocol") ?? "TCP",
                     appProtocol: try pf.string("appProtocol")))
        }
        raw = json
    }
}

/// core/v1 Endpoints (legacy): the fields a gateway needs.
public struct Endpoints: Sendable, Hashable {
    public struct Address: Sendable, Hashable {
        public var ip: String
        public var hostname: String?
        public var nodeName: String?
        public var targetRef: ObjectReference?
    }

    public struct Subset: Sendable, Hashable {
        public var addresses: [Address]
        public var notReadyAddresses: [Address]
        public var ports: [EndpointSlice.Port]
    }

    public var metadata: ObjectMeta
    public var subsets: [Subset]
    public var raw: JSONValue

    /// The API server cut this object to 1,000 addresses
    /// (`endpoints.kubernetes.io/over-capacity: truncated`).
    public var isTruncated: Bool { metadata.annotations["endpoints.kubernetes.io/over-capacity"] == "truncated" }

    public init(json: JSONValue) throws(KubeDecodingError) {
        let f = try KubeFields(json, "")
        metadata = try ObjectMeta.decode(f)
        subsets = []
        for (i, s) in try f.array("subsets").enumerated() {
            let sf = try KubeFields(s, "subsets[\(i)]")
            func addresses(_ key: String) throws(KubeDecodingError) -> [Address] {
                var out: [Address] = []
                for (j, a) in try sf.array(key).enumerated() {
                    let af = try KubeFields(a, "\(sf.sub(key))[\(j)]")
                    out.append(
                        Address(ip: try af.requiredString("ip"), hostname: try af.string("hostname"), nodeName: try af.string("nodeName"),
                                targetRef: try af.object("targetRef").map { r throws(KubeDecodingError) in try ObjectReference(r) }))
                }
                return out
            }
            var ports: [EndpointSlice.Port] = []
            for (j, p) in try sf.array("ports").enumerated() {
                let pf = try KubeFields(p, "\(sf.sub("ports"))[\(j)]")
                ports.append(
                    EndpointSlice.Port(name: try pf.string("name") ?? "", port: try pf.int("port"), protocol: try pf.string("protocol") ?? "TCP",
                                       appProtocol: try pf.string("appProtocol")))
            }
            subsets.append(Subset(addresses: try addresses("addresses"), notReadyAddresses: try addresses("notReadyAddresses"), ports: ports))
        }
        raw = json
    }
}
