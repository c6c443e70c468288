#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KubeSim
import NIOConcurrencyHelpers
import SluiceCore

/// The simulated control plane for scenarios: a Deployment-like set of pods behind each
/// Service, scaled and rolled, with the EndpointSlices and the legacy Endpoints object kept
/// as Kubernetes' controllers keep them.
public final class SimControlPlane: Sendable {
    public let state: SimState
    private let services: NIOLockedValueBox<[String: Workload]>
    private let nextIP = NIOLockedValueBox(1)
    public let maxPerSlice: Int
    /// Pod addresses are taken from this list in turn when it is not empty (e.g. loopback
    /// addresses where tests run real servers); otherwise from 10.100.0.0/14.
    public let podAddresses: [String]

    struct Workload: Sendable {
        var pods: [SimPod] = []
        var ports: [SimServicePort]
        var controller: EndpointSliceController
        var podCounter = 0
        var revision = 1
    }

    static let serviceType = SimState.defaultResources.first { $0.plural == "services" }!
    static let sliceType = SimState.defaultResources.first { $0.plural == "endpointslices" }!
    static let endpointsType = SimState.defaultResources.first { $0.plural == "endpoints" }!

    public init(state: SimState, maxPerSlice: Int = 100, podAddresses: [String] = []) {
        self.state = state
        self.maxPerSlice = maxPerSlice
        self.podAddresses = podAddresses
        self.services = NIOLockedValueBox([:])
    }

    private func newIP() -> String {
        let n = nextIP.withLockedValue { v -> Int in
            defer { v += 1 }
            return v
        }
        if !podAddresses.isEmpty { return podAddresses[(n - 1) % podAddresses.count] }
        return "10.\(100 + n / 65_536).\((n / 256) % 256).\(n % 256)"
    }

    /// Sets the number of ready pods behind `service` (created with `ports` if new).
    public func scale(namespace: String, service: String, replicas: Int, ports: [SimServicePort] = [SimServicePort(name: "http", port: 8080)]) throws(APIError) {
        let key = "\(namespace)/\(service)"
        var w = services.withLockedValue { $0[key] } ?? Workload(ports: ports, controller: EndpointSliceController(maxPerSlice: maxPerSlice))
        if (try? state.read({ s throws(APIError) in try s.get(Self.serviceType, namespace: namespace, name: service) })) == nil {
            let svc: JSONValue = [
                "metadata": ["name": .string(service)],
                "spec": ["selector": ["app": .string(service)], "ports": .array(ports.map { ["name": .string($0.name), "port": 80, "targetPort": .int(Int64($0.port)), "protocol": .string($0.protocol)] })],
            ]
            _ = try state.write { s throws(APIError) in try s.create(Self.serviceType, namespace: namespace, svc) }
        }
        while w.pods.count < replicas {
            w.podCounter += 1
            w.pods.append(SimPod(name: "\(service)-r\(w.revision)-\(w.podCounter)", ip: newIP()))
        }
        if w.pods.count > replicas { w.pods.removeLast(w.pods.count - replicas) }
        try sync(namespace, service, &w)
        services.withLockedValue { $0[key] = w }
    }

    /// Replaces every pod, `batch` at a time, as a rolling update does: a new pod comes up
    /// ready, then an old one goes through terminating (not ready, still serving) to gone.
    /// Each step is one sync of the slices.
    public func rollingUpdate(namespace: String, service: String, batch: Int = 1) throws(APIError) {
        let key = "\(namespace)/\(service)"
        guard var w = services.withLockedValue({ $0[key] }) else { throw APIError(code: 404, reason: "NotFound", message: "no workload for service \(key)") }
        w.revision += 1
        let old = w.pods.map(\.name)
        var i = 0
        while i < old.count {
            let chunk = old[i..<min(i + max(1, batch), old.count)]
            for _ in chunk {
                w.podCounter += 1
                w.pods.append(SimPod(name: "\(service)-r\(w.revision)-\(w.podCounter)", ip: newIP()))
            }
            for name in chunk {
                if let j = w.pods.firstIndex(where: { $0.name == name }) {
                    w.pods[j].ready = false
                    w.pods[j].terminating = true
                }
            }
            try sync(namespace, service, &w)
            w.pods.removeAll { chunk.contains($0.name) }
            try sync(namespace, service, &w)
            i += chunk.count
        }
        services.withLockedValue { $0[key] = w }
    }

    /// Now as RFC 3339 with microseconds, as the EndpointSlice controller stamps
    /// `endpoints.kubernetes.io/last-change-trigger-time` (so programming latency can be
    /// measured from it).
    static func now() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var t = time_t(ts.tv_sec)
        var parts = tm()
        gmtime_r(&t, &parts)
        func pad(_ v: Int32, _ n: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, n - s.count)) + s
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(ts.tv_nsec / 1000), 6))Z"
    }

    /// The object with `endpoints.kubernetes.io/last-change-trigger-time` set to now (the
    /// Endpoints controller stamps legacy Endpoints the same way as slices).
    static func stamped(_ slice: JSONValue) -> JSONValue {
        guard case .object(var o) = slice, case .object(var meta)? = o["metadata"] else { return slice }
        var annotations = meta["annotations"]?.objectValue ?? [:]
        annotations["endpoints.kubernetes.io/last-change-trigger-time"] = .string(now())
        meta["annotations"] = .object(annotations)
        o["metadata"] = .object(meta)
        return .object(o)
    }

    private func sync(_ namespace: String, _ service: String, _ w: inout Workload) throws(APIError) {
        let existing = try state.read { s throws(APIError) in
            try s.list(Self.sliceType, namespace: namespace, selector: LabelSelector(requirements: [.equals("kubernetes.io/service-name", service)])).items
        }
        let plan = w.controller.reconcile(
            service: service, namespace: namespace, ports: w.ports, pods: w.pods, existing: existing, triggerTime: Self.now())
        // Stamped as each slice is written (not when the change was computed), so latency
        // measured from the stamp is the consumer's alone, not the simulator's work too.
        for s in plan.create {
            let stamped = Self.stamped(s)
            _ = try state.write { st throws(APIError) in try st.create(Self.sliceType, namespace: namespace, stamped) }
        }
        for s in plan.update {
            let name = s["metadata"]?["name"]?.stringValue ?? ""
            let stamped = Self.stamped(s)
            _ = try state.write { st throws(APIError) in try st.update(Self.sliceType, namespace: namespace, name: name, stamped) }
        }
        for name in plan.delete { _ = try state.write { st throws(APIError) in try st.delete(Self.sliceType, namespace: namespace, name: name) } }
        let endpoints = Self.stamped(EndpointSliceController.legacyEndpoints(service: service, namespace: namespace, ports: w.ports, pods: w.pods))
        let exists = (try? state.read({ s throws(APIError) in try s.get(Self.endpointsType, namespace: namespace, name: service) })) != nil
        _ = try state.write { st throws(APIError) in
            exists ? try st.update(Self.endpointsType, namespace: namespace, name: service, endpoints) : try st.create(Self.endpointsType, namespace: namespace, endpoints)
        }
    }
}
