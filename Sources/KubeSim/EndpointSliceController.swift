import SluiceCore

/// A pod as the simulated control plane sees it: an address and the conditions the
/// EndpointSlice controller copies.
public struct SimPod: Sendable, Hashable {
    public var name: String
    public var ip: String
    public var ready: Bool
    public var terminating: Bool
    public var nodeName: String

    public init(name: String, ip: String, ready: Bool = true, terminating: Bool = false, nodeName: String = "node-1") {
        self.name = name
        self.ip = ip
        self.ready = ready
        self.terminating = terminating
        self.nodeName = nodeName
    }

    /// Serving: ready, or terminating but still able to serve.
    var serving: Bool { ready || terminating }
}

/// A Service port as the controller writes it into slices (the pod's port number).
public struct SimServicePort: Sendable, Hashable {
    public var name: String
    public var port: Int
    public var `protocol`: String

    public init(name: String, port: Int, protocol: String = "TCP") {
        self.name = name
        self.port = port
        self.protocol = `protocol`
    }
}

/// Produces a Service's EndpointSlices as Kubernetes' EndpointSlice controller does: at most
/// `maxPerSlice` endpoints a slice (default 100); an endpoint stays in the slice that holds
/// it; new endpoints first fill slices this sync changes anyway, then slices with room, then
/// new slices; slices left empty are deleted; unchanged slices are not written. So a pod
/// change costs one slice, not the whole Service.
public struct EndpointSliceController: Sendable {
    public var maxPerSlice: Int
    private var sliceCounter = 0

    public init(maxPerSlice: Int = 100) { self.maxPerSlice = maxPerSlice }

    public struct Plan: Sendable {
        public var create: [JSONValue] = []
        public var update: [JSONValue] = []
        public var delete: [String] = []
    }

    static func endpoint(_ pod: SimPod) -> JSONValue {
        [
            "addresses": [.string(pod.ip)],
            "conditions": ["ready": .bool(pod.ready), "serving": .bool(pod.serving), "terminating": .bool(pod.terminating)],
            "nodeName": .string(pod.nodeName),
            "targetRef": ["kind": "Pod", "name": .string(pod.name)],
        ]
    }

    public mutating func reconcile(
        service: String, namespace: String, ports: [SimServicePort], pods: [SimPod], existing: [JSONValue], triggerTime: String
    ) -> Plan {
        var plan = Plan()
        let desired = Dictionary(pods.map { ($0.ip, $0) }, uniquingKeysWith: { _, b in b })
        var placed = Set<String>()
        let portsJSON: JSONValue = .array(ports.map { ["name": .string($0.name), "port": .int(Int64($0.port)), "protocol": .string($0.protocol)] })
        // 1. Keep what is still wanted where it is; note which slices change.
        var slices: [(name: String, object: JSONValue, endpoints: [JSONValue], changed: Bool)] = []
        for s in existing {
            guard let name = s["metadata"]?["name"]?.stringValue else { continue }
            var kept: [JSONValue] = []
            var changed = s["ports"] != portsJSON
            for e in s["endpoints"]?.arrayValue ?? [] {
                guard let ip = e["addresses"]?.arrayValue?.first?.stringValue, let pod = desired[ip], !placed.contains(ip) else {
                    changed = true
                    continue
                }
                let fresh = Self.endpoint(pod)
                if fresh != e { changed = true }
                kept.append(fresh)
                placed.insert(ip)
            }
            slices.append((name, s, kept, changed))
        }
        // 2. New endpoints: slices changing anyway, then any with room, then new slices.
        var newcomers = pods.filter { !placed.contains($0.ip) }.map(Self.endpoint)
        for pass in 0..<2 {
            for i in slices.indices where !newcomers.isEmpty && (pass == 1 || slices[i].changed) {
                let room = maxPerSlice - slices[i].endpoints.count
                guard room > 0 else { continue }
                slices[i].endpoints += newcomers.prefix(room)
                newcomers.removeFirst(min(room, newcomers.count))
                slices[i].changed = true
            }
        }
        for (i, s) in slices.enumerated() where s.changed {
            if s.endpoints.isEmpty {
                plan.delete.append(s.name)
                continue
            }
            plan.update.append(slice(name: s.name, base: slices[i].object, service: service, namespace: namespace, ports: portsJSON, endpoints: s.endpoints, triggerTime: triggerTime))
        }
        while !newcomers.isEmpty {
            let chunk = Array(newcomers.prefix(maxPerSlice))
            newcomers.removeFirst(chunk.count)
            sliceCounter += 1
            let name = "\(service)-\(String(sliceCounter, radix: 36))"
            plan.create.append(slice(name: name, base: nil, service: service, namespace: namespace, ports: portsJSON, endpoints: chunk, triggerTime: triggerTime))
        }
        return plan
    }

    func slice(name: String, base: JSONValue?, service: String, namespace: String, ports: JSONValue, endpoints: [JSONValue], triggerTime: String) -> JSONValue {
        var metadata: [String: JSONValue] = base?["metadata"]?.objectValue ?? [:]
        metadata["name"] = .string(name)
        metadata["namespace"] = .string(namespace)
        metadata["labels"] = [
            "kubernetes.io/service-name": .string(service), "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
        ]
        metadata["annotations"] = ["endpoints.kubernetes.io/last-change-trigger-time": .string(triggerTime)]
        return ["apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": .object(metadata), "addressType": "IPv4",
                "ports": ports, "endpoints": .array(endpoints)]
    }

    /// The legacy Endpoints object for the same pods: ready addresses and not-ready ones,
    /// cut to 1,000 in total with `endpoints.kubernetes.io/over-capacity: truncated`, as the
    /// Endpoints controller does.
    public static func legacyEndpoints(service: String, namespace: String, ports: [SimServicePort], pods: [SimPod]) -> JSONValue {
        let limit = 1000
        let truncated = pods.count > limit
        let kept = pods.prefix(limit)
        func address(_ p: SimPod) -> JSONValue { ["ip": .string(p.ip), "nodeName": .string(p.nodeName), "targetRef": ["kind": "Pod", "name": .string(p.name)]] }
        var metadata: [String: JSONValue] = ["name": .string(service), "namespace": .string(namespace)]
        if truncated { metadata["annotations"] = ["endpoints.kubernetes.io/over-capacity": "truncated"] }
        return [
            "apiVersion": "v1", "kind": "Endpoints", "metadata": .object(metadata),
            "subsets": [[
                "addresses": .array(kept.filter(\.ready).map(address)),
                "notReadyAddresses": .array(kept.filter { !$0.ready }.map(address)),
                "ports": .array(ports.map { ["name": .string($0.name), "port": .int(Int64($0.port)), "protocol": .string($0.protocol)] }),
            ]],
        ]
    }
}
