import SluiceCore

/// coordination.k8s.io/v1 Lease, as used for leader election. Times are `MicroTime`
/// strings (see `KubeTime.microTime(epochMicroseconds:)` and `KubeTime.parse`).
public struct Lease: Sendable, Hashable {
    public struct Spec: Sendable, Hashable {
        public var holderIdentity: String?
        public var leaseDurationSeconds: Int?
        public var acquireTime: String?
        public var renewTime: String?
        public var leaseTransitions: Int?
        /// Coordinated leader election (Kubernetes 1.31+): "OldestEmulationVersion", ...
        public var strategy: String?
        public var preferredHolder: String?

        public init(
            holderIdentity: String? = nil, leaseDurationSeconds: Int? = nil, acquireTime: String? = nil, renewTime: String? = nil,
            leaseTransitions: Int? = nil, strategy: String? = nil, preferredHolder: String? = nil
        ) {
            self.holderIdentity = holderIdentity
            self.leaseDurationSeconds = leaseDurationSeconds
            self.acquireTime = acquireTime
            self.renewTime = renewTime
            self.leaseTransitions = leaseTransitions
            self.strategy = strategy
            self.preferredHolder = preferredHolder
        }

        init(_ f: KubeFields) throws(KubeDecodingError) {
            holderIdentity = try f.string("holderIdentity")
            leaseDurationSeconds = try f.int("leaseDurationSeconds")
            acquireTime = try f.string("acquireTime")
            renewTime = try f.string("renewTime")
            leaseTransitions = try f.int("leaseTransitions")
            strategy = try f.string("strategy")
            preferredHolder = try f.string("preferredHolder")
        }

        /// The spec as JSON, written over `base`: fields set here replace, fields nil here
        /// are removed, fields this type does not know are kept.
        public func json(over base: JSONValue = .object([:])) -> JSONValue {
            var o = base.objectValue ?? [:]
            func put(_ key: String, _ value: JSONValue?) {
                if let value { o[key] = value } else { o.removeValue(forKey: key) }
            }
            put("holderIdentity", holderIdentity.map { .string($0) })
            put("leaseDurationSeconds", leaseDurationSeconds.map { .int(Int64($0)) })
            put("acquireTime", acquireTime.map { .string($0) })
            put("renewTime", renewTime.map { .string($0) })
            put("leaseTransitions", leaseTransitions.map { .int(Int64($0)) })
            put("strategy", strategy.map { .string($0) })
            put("preferredHolder", preferredHolder.map { .string($0) })
            return .object(o)
        }
    }

    public var metadata: ObjectMeta
    public var spec: Spec
    public var raw: JSONValue

    public init(json: JSONValue) throws(KubeDecodingError) {
        let f = try KubeFields(json, "")
        metadata = try ObjectMeta.decode(f)
        spec = try Spec(try f.objectOrEmpty("spec"))
        raw = json
    }

    /// The microseconds since 1970 at which the lease runs out (`renewTime` + duration), when
    /// both are set and readable.
    /// Whatever another controller wrote: an overflowing sum is nil (unknown), not a trap.
    public var expiresAtMicroseconds: Int64? {
        guard let renew = spec.renewTime.flatMap(KubeTime.parse), let d = spec.leaseDurationSeconds else { return nil }
        let (micros, o1) = Int64(d).multipliedReportingOverflow(by: 1_000_000)
        let (at, o2) = renew.addingReportingOverflow(micros)
        return o1 || o2 ? nil : at
    }

    /// The body for an update: the object as received, with `spec` replaced by `self.spec`.
    /// It carries the `resourceVersion` it was read at, so the API server rejects the write
    /// with 409 if someone else wrote in between.
    public func json() -> JSONValue {
        var o = raw.objectValue ?? [:]
        o["apiVersion"] = "coordination.k8s.io/v1"
        o["kind"] = "Lease"
        o["spec"] = spec.json(over: o["spec"] ?? .object([:]))
        return .object(o)
    }

    /// The body to create a new Lease.
    public static func json(name: String, namespace: String, labels: [String: String] = [:], spec: Spec) -> JSONValue {
        var meta: [String: JSONValue] = ["name": .string(name), "namespace": .string(namespace)]
        if !labels.isEmpty { meta["labels"] = .object(labels.mapValues { .string($0) }) }
        return ["apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": .object(meta), "spec": spec.json()]
    }
}
