/// One backend address of a Service port, as the gateway's upstream nodes need it.
public struct BackendEndpoint: Sendable, Hashable, Comparable {
    public var address: String
    public var port: Int

    public init(address: String, port: Int) {
        self.address = address
        self.port = port
    }

    public static func < (a: BackendEndpoint, b: BackendEndpoint) -> Bool { (a.address, a.port) < (b.address, b.port) }
}

/// Turns the EndpointSlices of one Service into the endpoints behind one Service port, the
/// way kube-proxy reads them:
/// - the slice port is found by the Service port's name (`""` for an unnamed port), so a
///   named `targetPort` resolves to whatever number each slice carries;
/// - endpoints are deduplicated by address and port across slices;
/// - `ready` (nil counts as ready) endpoints are used; when none is ready, endpoints that are
///   `serving` and `terminating` are used instead, so a Service that is rolling does not
///   black-hole;
/// - FQDN slices are skipped, IPv4 and IPv6 both kept.
/// A slice event only replaces that slice in the cache; the merge is over the cached slices.
public enum EndpointMerger {
    /// The result is in slice-name order, then the slices' own order, with duplicates
    /// dropped where they recur: deterministic for the same slices, and with no sort (a
    /// sort of 100,000 string addresses was a third of the work at that size).
    public static func endpoints(for servicePort: Service.Port, in slices: [EndpointSlice]) -> [BackendEndpoint] {
        // Indices, not copies: copying an `Endpoint` out of its array retains and releases
        // each of its fields, which was most of the time at 100,000 endpoints.
        let order = slices.indices.sorted { slices[$0].metadata.name < slices[$1].metadata.name }
        var total = 0
        for i in order { total += slices[i].endpoints.count }
        var seen = Set<BackendEndpoint>(minimumCapacity: total)
        var ready: [BackendEndpoint] = []
        ready.reserveCapacity(total)
        var fallback: [BackendEndpoint] = []
        for i in order where slices[i].addressType != .FQDN {
            guard let port = slices[i].ports.first(where: { $0.name == servicePort.name && $0.protocol == servicePort.protocol })?.port,
                isPort(port)
            else {
                continue
            }
            slices[i].endpoints.withUnsafeBufferPointer { endpoints in
                for j in endpoints.indices {
                    let c = endpoints[j].conditions
                    let isReady = c.ready ?? true
                    let fallsBack = !isReady && c.serving == true && c.terminating == true
                    guard isReady || (fallsBack && ready.isEmpty) else { continue }
                    for address in endpoints[j].addresses where isAddress(address) {
                        let e = BackendEndpoint(address: address, port: port)
                        if isReady {
                            if seen.insert(e).inserted { ready.append(e) }
                        } else {
                            fallback.append(e)  // only needed while nothing is ready
                        }
                    }
                }
            }
        }
        if !ready.isEmpty { return ready }
        var fallbackSeen = Set<BackendEndpoint>(minimumCapacity: fallback.count)
        return fallback.filter { fallbackSeen.insert($0).inserted }
    }

    /// The same from a legacy Endpoints object (ready addresses only; `notReadyAddresses` are
    /// not served).
    public static func endpoints(for servicePort: Service.Port, in endpoints: Endpoints) -> [BackendEndpoint] {
        var out = Set<BackendEndpoint>()
        for subset in endpoints.subsets {
            guard let port = subset.ports.first(where: { $0.name == servicePort.name && $0.protocol == servicePort.protocol })?.port,
                isPort(port)
            else {
                continue
            }
            for a in subset.addresses where isAddress(a.ip) { out.insert(BackendEndpoint(address: a.ip, port: port)) }
        }
        return out.sorted()
    }

    /// A port a node can have: the API server validates slice ports, but whatever it serves
    /// must not make the gateway refuse the whole upstream.
    @inline(__always) static func isPort(_ p: Int) -> Bool { p >= 1 && p <= 65535 }

    /// Text that can be an IPv4 or IPv6 address (hex digits, `.` and `:` only, at most 45
    /// bytes): anything else (a name in an IP slice, CR LF) is skipped, so it cannot end up
    /// in a node address. A byte scan, cheap enough for 100,000 endpoints.
    @inline(__always) static func isAddress(_ a: String) -> Bool {
        var count = 0
        for c in a.utf8 {
            count += 1
            guard count <= 45 else { return false }
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "f"), UInt8(ascii: "A")...UInt8(ascii: "F"),
                UInt8(ascii: "."), UInt8(ascii: ":"):
                continue
            default:
                return false
            }
        }
        return count > 0
    }
}
