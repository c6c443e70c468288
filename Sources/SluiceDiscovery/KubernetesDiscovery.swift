import KubeClient
import Logging
import SluiceCore

/// New node sets, and the `service_name`s whose nodes changed since the last update.
public struct DiscoveryUpdate: Sendable {
    public var registry: DiscoveryRegistry
    public var changed: Set<String>
    /// Service `ns/name` → the newest `endpoints.kubernetes.io/last-change-trigger-time`
    /// among its slices (microseconds since 1970), for the Services recomputed: programming
    /// latency is measured from it.
    public var triggerTimes: [String: Int64]

    public init(registry: DiscoveryRegistry, changed: Set<String>, triggerTimes: [String: Int64] = [:]) {
        self.registry = registry
        self.changed = changed
        self.triggerTimes = triggerTimes
    }
}

/// `discovery_type: kubernetes` for one gateway replica: follows every namespace's
/// EndpointSlices and Services with two informers, as kube-proxy does, and turns them into
/// a `DiscoveryRegistry`. Nothing is written anywhere: each replica computes the same
/// node sets from the same API server.
///
/// Informer events only mark a Service dirty. One worker recomputes dirty Services (each
/// from its own slices, read through the informer's by-Service index) and reports the
/// changed `service_name`s. The worker coalesces: the first change after a quiet period
/// goes out at once, and while changes keep coming at most one update per
/// `minimumInterval` does, so a rolling update of 500 pods is a few recompiles, not 1,000.
/// Until both informers have listed everything the registry stays empty and nothing is
/// reported, so a half-read cluster never shows as missing endpoints.
public actor KubernetesDiscovery {
    /// The slice informer's index: `namespace/service` from the `kubernetes.io/service-name` label.
    public static let serviceIndex = "service"

    public nonisolated let slices: Informer
    public nonisolated let services: Informer
    public nonisolated let minimumInterval: Duration
    private let logger: Logger

    public private(set) var registry = DiscoveryRegistry()
    /// Updates handed to `run`'s callback so far.
    public private(set) var updates = 0
    private var serviceSpecs: [String: KubeClient.Service] = [:]
    private var dirty = Set<String>()
    /// Service → newest trigger time of the slice changes not yet recomputed.
    private var pendingTriggers: [String: Int64] = [:]
    /// Slices decoded so far, by `namespace/name`, with the resourceVersion decoded: a pod
    /// change decodes the one slice that changed, not every slice of the Service.
    private var decodedSlices: [String: [String: (resourceVersion: String, slice: EndpointSlice)]] = [:]
    private var synced = false
    private var running = false
    private let wakes: AsyncStream<Void>
    private let wake: AsyncStream<Void>.Continuation

    public init(api: KubeAPI, minimumInterval: Duration = .milliseconds(75), logger: Logger) {
        slices = Informer(api: api, resource: .endpointSlices(), indexers: [Self.serviceIndex: Self.serviceKeyOfSlice])
        services = Informer(api: api, resource: .services())
        self.minimumInterval = minimumInterval
        self.logger = logger
        // One pending wake-up is enough: the worker drains every dirty Service per round.
        (wakes, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    static let serviceKeyOfSlice: Informer.IndexFunction = { o in
        guard let ns = o["metadata"]?["namespace"]?.stringValue,
            let svc = o["metadata"]?["labels"]?["kubernetes.io/service-name"]?.stringValue
        else { return [] }
        return ["\(ns)/\(svc)"]
    }

    /// Follows the cluster until the task is cancelled, calling `onUpdate` (awaited, one at
    /// a time) whenever node sets changed. Call once.
    public func run(onUpdate: @escaping @Sendable (DiscoveryUpdate) async -> Void) async {
        guard !running else { return }
        running = true
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.slices.run { await self.sliceEvent($0) } }
            group.addTask { await self.services.run { await self.serviceEvent($0) } }
            group.addTask { await self.waitForSync() }
            group.addTask { await self.work(onUpdate) }
            await group.waitForAll()
        }
    }

    /// The node sets as the control API shows them.
    public func dump() -> JSONValue { registry.dump }

    private func sliceEvent(_ event: Informer.Event) {
        switch event {
        case .added(let o):
            noteTrigger(o)
            markDirty(Self.serviceKeyOfSlice(o))
        case .deleted(let o):
            // A deleted slice still carries the trigger time of its last change, not of its
            // deletion: no latency is measured from it.
            markDirty(Self.serviceKeyOfSlice(o))
        case .updated(let old, let new):
            noteTrigger(new)
            markDirty(Self.serviceKeyOfSlice(old) + Self.serviceKeyOfSlice(new))
        }
    }

    /// Remembers the newest `last-change-trigger-time` seen for the slice's Service since
    /// its last recompute.
    private func noteTrigger(_ o: JSONValue) {
        guard let key = Self.serviceKeyOfSlice(o).first,
            let t = EndpointSlice.lastChangeTriggerTime(o)
        else { return }
        pendingTriggers[key] = max(pendingTriggers[key] ?? 0, t)
    }

    private func serviceEvent(_ event: Informer.Event) {
        switch event {
        case .added(let o), .updated(_, let o):
            let key = Informer.key(o)
            do {
                serviceSpecs[key] = try KubeClient.Service(json: o)
            } catch {
                // A Service this client cannot read has no usable ports; say so once per change.
                logger.warning("kubernetes discovery: cannot read Service", metadata: ["service": "\(key)", "error": "\(error)"])
                serviceSpecs[key] = nil
            }
            markDirty([key])
        case .deleted(let o):
            let key = Informer.key(o)
            serviceSpecs[key] = nil
            markDirty([key])
        }
    }

    private func markDirty(_ keys: [String]) {
        guard !keys.isEmpty else { return }
        dirty.formUnion(keys)
        wake.yield()
    }

    /// The informers say when they have listed once only when asked; this asks until they
    /// have (startup only), then lets the worker publish the first full registry.
    private func waitForSync() async {
        while !Task.isCancelled {
            if await slices.hasSynced, await services.hasSynced {
                synced = true
                registry.synced = true
                logger.info("kubernetes discovery synced", metadata: ["services": "\(serviceSpecs.count)"])
                wake.yield()
                return
            }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    private func work(_ onUpdate: @Sendable (DiscoveryUpdate) async -> Void) async {
        let clock = ContinuousClock()
        var lastUpdate: ContinuousClock.Instant? = nil
        var first = true
        for await _ in wakes {
            guard synced else { continue }  // dirty keeps growing; the sync's wake-up drains it
            if let lastUpdate, clock.now < lastUpdate + minimumInterval {
                // In a burst: let more changes gather, then send them as one update.
                try? await Task.sleep(until: lastUpdate + minimumInterval, clock: clock)
            }
            let (changed, triggers) = await recomputeDirty()
            // The first update goes out even when empty: it says the registry is synced.
            guard !changed.isEmpty || first else { continue }
            let initial = first
            first = false
            lastUpdate = clock.now
            updates += 1
            await onUpdate(DiscoveryUpdate(registry: registry, changed: changed, triggerTimes: initial ? [:] : triggers))
        }
    }

    /// Recomputes each dirty Service from its own slices (through the index, never a scan of
    /// all slices) and returns the `service_name`s whose nodes changed.
    private func recomputeDirty() async -> (Set<String>, [String: Int64]) {
        var changed = Set<String>()
        var triggers: [String: Int64] = [:]
        while let key = dirty.popFirst() {
            let objects = await slices.byIndex(Self.serviceIndex, key)
            var decoded: [EndpointSlice] = []
            decoded.reserveCapacity(objects.count)
            let cache = decodedSlices[key] ?? [:]
            var kept: [String: (resourceVersion: String, slice: EndpointSlice)] = [:]
            for o in objects {
                let sliceKey = Informer.key(o)
                let rv = o["metadata"]?["resourceVersion"]?.stringValue ?? ""
                if let cached = cache[sliceKey], cached.resourceVersion == rv, !rv.isEmpty {
                    kept[sliceKey] = cached
                    decoded.append(cached.slice)
                    continue
                }
                do {
                    let slice = try EndpointSlice(json: o)
                    kept[sliceKey] = (rv, slice)
                    decoded.append(slice)
                } catch {
                    logger.warning("kubernetes discovery: cannot read EndpointSlice", metadata: ["slice": "\(Informer.key(o))", "error": "\(error)"])
                }
            }
            decodedSlices[key] = kept.isEmpty ? nil : kept  // deleted slices leave the cache
            // Read the Service after the await: events that arrived meanwhile are in it, and
            // those that touched this Service's slices marked it dirty again.
            let replaced = registry.replace(service: key, ports: ServiceNodeSets.ports(service: serviceSpecs[key], slices: decoded))
            if !replaced.isEmpty, let t = pendingTriggers[key] { triggers[key] = t }
            pendingTriggers[key] = nil
            changed.formUnion(replaced)
        }
        return (changed, triggers)
    }
}
