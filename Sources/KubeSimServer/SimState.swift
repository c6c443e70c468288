import KubeSim
import NIOConcurrencyHelpers
import NIOCore
import SluiceCore

/// The simulator's shared state: the object store behind a lock, and the open watches,
/// which every change is pushed to.
public final class SimState: Sendable {
    private let store: NIOLockedValueBox<ObjectStore>
    private let watchers = NIOLockedValueBox<[ObjectIdentifier: Watcher]>([:])
    public let resources: [ResourceType]

    struct Watcher: Sendable {
        let type: ResourceType
        let namespace: String?
        let selector: LabelSelector
        let fields: FieldSelector
        let push: @Sendable (WatchEvent) -> Void
    }

    /// Bearer tokens the server accepts; empty means any request is accepted. Changing
    /// them simulates a rotated service-account token.
    private let tokens = NIOLockedValueBox<Set<String>>([])

    public init(resources: [ResourceType] = SimState.defaultResources, historyLimit: Int = 10_000) {
        self.resources = resources
        self.store = NIOLockedValueBox(ObjectStore(historyLimit: historyLimit))
    }

    private let watchList = NIOLockedValueBox(true)
    /// Whether watches may ask for `sendInitialEvents` (the WatchList feature); when off they
    /// are refused with 422, as by a server without the feature gate.
    public var watchListEnabled: Bool {
        get { watchList.withLockedValue { $0 } }
        set { watchList.withLockedValue { $0 = newValue } }
    }

    public var acceptedTokens: Set<String> {
        get { tokens.withLockedValue { $0 } }
        set { tokens.withLockedValue { $0 = newValue } }
    }

    /// Whether a request with this `Authorization` header (or a verified client
    /// certificate) may proceed.
    func authorized(_ header: String?, clientCertificateVerified: Bool) -> Bool {
        let accepted = acceptedTokens
        if accepted.isEmpty || clientCertificateVerified { return true }
        guard let header, header.hasPrefix("Bearer ") else { return false }
        return accepted.contains(String(header.dropFirst(7)))
    }

    public static let defaultResources: [ResourceType] = [
        ResourceType(group: "", version: "v1", plural: "namespaces", kind: "Namespace", namespaced: false, shortNames: ["ns"]),
        ResourceType(group: "", version: "v1", plural: "services", kind: "Service", shortNames: ["svc"]),
        ResourceType(group: "", version: "v1", plural: "endpoints", kind: "Endpoints", shortNames: ["ep"]),
        ResourceType(group: "", version: "v1", plural: "secrets", kind: "Secret"),
        ResourceType(group: "", version: "v1", plural: "pods", kind: "Pod", shortNames: ["po"]),
        ResourceType(group: "discovery.k8s.io", version: "v1", plural: "endpointslices", kind: "EndpointSlice"),
        ResourceType(group: "networking.k8s.io", version: "v1", plural: "ingresses", kind: "Ingress", shortNames: ["ing"]),
        ResourceType(group: "networking.k8s.io", version: "v1", plural: "ingressclasses", kind: "IngressClass", namespaced: false),
        ResourceType(group: "coordination.k8s.io", version: "v1", plural: "leases", kind: "Lease"),
        ResourceType(group: "apisix.apache.org", version: "v2", plural: "apisixroutes", kind: "ApisixRoute", shortNames: ["ar"]),
        ResourceType(group: "apisix.apache.org", version: "v2", plural: "apisixupstreams", kind: "ApisixUpstream", shortNames: ["au"]),
        ResourceType(group: "apisix.apache.org", version: "v2", plural: "apisixtlses", kind: "ApisixTls", shortNames: ["atls"]),
        ResourceType(group: "apisix.apache.org", version: "v2", plural: "apisixconsumers", kind: "ApisixConsumer"),
        ResourceType(group: "apisix.apache.org", version: "v2", plural: "apisixpluginconfigs", kind: "ApisixPluginConfig", shortNames: ["apc"]),
        ResourceType(group: "apisix.apache.org", version: "v2", plural: "apisixglobalrules", kind: "ApisixGlobalRule"),
    ]

    public func read<T>(_ body: (ObjectStore) throws(APIError) -> T) throws(APIError) -> T {
        let result: Result<T, APIError> = store.withLockedValue { s in
            do throws(APIError) { return .success(try body(s)) } catch { return .failure(error) }
        }
        return try result.get()
    }

    /// Runs a mutation and pushes the events it produced to the matching watches.
    public func write<T>(_ body: (inout ObjectStore) throws(APIError) -> T) throws(APIError) -> T {
        let (result, events): (Result<T, APIError>, [(ResourceType, WatchEvent)]) = store.withLockedValue { s in
            let before = s.resourceVersion
            let r: Result<T, APIError>
            do throws(APIError) { r = .success(try body(&s)) } catch { r = .failure(error) }
            return (r, s.recentEvents(since: before).map { ($0.type, $0.event) })
        }
        if !events.isEmpty {
            let current = watchers.withLockedValue { $0 }
            for (type, event) in events {
                for w in current.values where w.type == type {
                    if let seen = event.seen(namespace: w.namespace, selector: w.selector, fields: w.fields) { w.push(seen) }
                }
            }
        }
        return try result.get()
    }

    /// Registers a watch and returns the events it missed since `since` (atomically with
    /// the registration, so nothing falls between them).
    func addWatcher(
        id: ObjectIdentifier, type: ResourceType, namespace: String?, selector: LabelSelector, fields: FieldSelector, since: Int64?,
        push: @escaping @Sendable (WatchEvent) -> Void
    ) throws(APIError) -> (missed: [WatchEvent], resourceVersion: Int64) {
        let result: Result<([WatchEvent], Int64), APIError> = store.withLockedValue { s in
            do throws(APIError) {
                let missed: [WatchEvent]
                if let since {
                    missed = try s.events(type, namespace: namespace, selector: selector, fields: fields, since: since)
                } else {
                    // No resourceVersion: the current state as ADDED events, then changes.
                    missed = try s.list(type, namespace: namespace, selector: selector, fields: fields).items.map {
                        WatchEvent(type: .ADDED, object: $0, resourceVersion: s.resourceVersion)
                    }
                }
                watchers.withLockedValue { $0[id] = Watcher(type: type, namespace: namespace, selector: selector, fields: fields, push: push) }
                return .success((missed, s.resourceVersion))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    func removeWatcher(_ id: ObjectIdentifier) {
        _ = watchers.withLockedValue { $0.removeValue(forKey: id) }
    }

    public var currentResourceVersion: Int64 { store.withLockedValue { $0.resourceVersion } }

    /// Drops the watch history: watches resuming from older versions get 410.
    public func compact() { store.withLockedValue { $0.compact() } }
}
