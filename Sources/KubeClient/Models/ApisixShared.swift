import SluiceCore

// Types shared by the apisix.apache.org/v2 resources. JSON field names are those of the
// APISIX ingress controller's v2 CRDs; Swift properties spell snake_case ones in camelCase
// (the JSON name is given in the comment), and error paths always use the JSON name.

/// `status` of every apisix.apache.org/v2 resource (a list of meta/v1 conditions).
public struct ApisixStatus: Sendable, Hashable {
    /// The condition type the controller reports.
    public static let conditionType = "ResourcesAvailable"
    /// Reason when the resource was translated and synced to the gateway.
    public static let syncedReason = "ResourcesSynced"
    /// Reason when it could not be (the message says why).
    public static let abortedReason = "ResourceSyncAborted"

    public var conditions: [KubeCondition]

    public init(conditions: [KubeCondition] = []) { self.conditions = conditions }

    init(_ f: KubeFields) throws(KubeDecodingError) {
        conditions = []
        for cf in try f.objects("conditions") { conditions.append(try KubeCondition(cf)) }
    }

    static func decode(_ object: KubeFields) throws(KubeDecodingError) -> ApisixStatus {
        try ApisixStatus(try object.objectOrEmpty("status"))
    }

    /// The `ResourcesAvailable` condition, if reported.
    public var resourcesAvailable: KubeCondition? { conditions.first { $0.type == Self.conditionType } }

    /// This status with `condition` put in place of the one of the same type. As with
    /// meta/v1 conditions, `lastTransitionTime` is kept from the old condition when the
    /// status did not change.
    public func setting(_ condition: KubeCondition) -> ApisixStatus {
        var out = self
        var c = condition
        if let i = out.conditions.firstIndex(where: { $0.type == condition.type }) {
            if out.conditions[i].status == condition.status, !out.conditions[i].lastTransitionTime.isEmpty {
                c.lastTransitionTime = out.conditions[i].lastTransitionTime
            }
            out.conditions[i] = c
        } else {
            out.conditions.append(c)
        }
        return out
    }

    public func json() -> JSONValue { Self.json(conditions: conditions) }

    /// `{"conditions": [...]}`: the value of `status` for a status subresource write.
    public static func json(conditions: [KubeCondition]) -> JSONValue {
        ["conditions": .array(conditions.map { $0.json() })]
    }

    /// The status with the single `ResourcesAvailable` condition: `True` with reason
    /// `ResourcesSynced` when `synced`, else `False` with `ResourceSyncAborted`.
    public static func json(synced: Bool, message: String, observedGeneration: Int?, at epochSeconds: Int64? = nil) -> JSONValue {
        json(conditions: [KubeCondition.resourcesAvailable(synced: synced, message: message, observedGeneration: observedGeneration, at: epochSeconds)])
    }
}

extension KubeCondition {
    /// A `ResourcesAvailable` condition as the APISIX controller reports it, stamped with
    /// `epochSeconds` (now when nil).
    public static func resourcesAvailable(synced: Bool, message: String, observedGeneration: Int?, at epochSeconds: Int64? = nil) -> KubeCondition {
        let seconds = epochSeconds ?? KubeTime.nowMicroseconds() / 1_000_000
        return KubeCondition(
            type: ApisixStatus.conditionType, status: synced ? .true : .false,
            reason: synced ? ApisixStatus.syncedReason : ApisixStatus.abortedReason, message: message,
            observedGeneration: observedGeneration, lastTransitionTime: KubeTime.time(epochSeconds: seconds))
    }
}

/// A plugin entry (`ApisixRoutePlugin`): used by routes, plugin configs and global rules.
public struct ApisixPlugin: Sendable, Hashable {
    public var name: String
    /// Defaults to true (the CRD's default) when absent.
    public var enable: Bool
    /// The plugin's own configuration, an object, kept as given.
    public var config: JSONValue?
    /// Name of a Secret in the resource's namespace whose keys are merged into `config`.
    public var secretRef: String?

    public init(name: String, enable: Bool = true, config: JSONValue? = nil, secretRef: String? = nil) {
        self.name = name
        self.enable = enable
        self.config = config
        self.secretRef = secretRef
    }

    init(_ f: KubeFields) throws(KubeDecodingError) {
        name = try f.requiredString("name")
        enable = try f.bool("enable") ?? true
        config = try f.object("config")?.value
        secretRef = try f.string("secretRef")
    }

    static func list(_ f: KubeFields, _ key: String) throws(KubeDecodingError) -> [ApisixPlugin] {
        var out: [ApisixPlugin] = []
        for pf in try f.objects(key) { out.append(try ApisixPlugin(pf)) }
        return out
    }
}

/// `UpstreamTimeout`: Go duration strings such as "5s" or "1m0s".
public struct ApisixTimeout: Sendable, Hashable {
    public var connect: String?
    public var send: String?
    public var read: String?

    public init(connect: String? = nil, send: String? = nil, read: String? = nil) {
        self.connect = connect
        self.send = send
        self.read = read
    }

    init(_ f: KubeFields) throws(KubeDecodingError) {
        connect = try f.string("connect")
        send = try f.string("send")
        read = try f.string("read")
    }

    public var connectSeconds: Double? { connect.flatMap(KubeDuration.seconds) }
    public var sendSeconds: Double? { send.flatMap(KubeDuration.seconds) }
    public var readSeconds: Double? { read.flatMap(KubeDuration.seconds) }
}

/// `ApisixSecret`: a Secret by name and namespace.
public struct ApisixSecretReference: Sendable, Hashable {
    public var name: String
    /// Required by the CRD; nil only if an object slipped past validation.
    public var namespace: String?

    public init(name: String, namespace: String?) {
        self.name = name
        self.namespace = namespace
    }

    init(_ f: KubeFields) throws(KubeDecodingError) {
        name = try f.requiredString("name")
        namespace = try f.string("namespace")
    }
}
