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
    public static func endpoints(for servicePort: Service.Port, in slices: [EndpointSlice]) -> [BackendEndpoint] {
        var ready = Set<BackendEndpoint>()
        var fallback = Set<BackendEndpoint>()
        for slice in slices where slice.addressType != .FQDN {
            guard let port = slice.ports.first(where: { $0.name == servicePort.name && $0.protocol == servicePort.protocol })?.port else {
                continue
            }
            for endpoint in slice.endpoints {
                let c = endpoint.conditions
                let isReady = c.ready ?? true
                for address in endpoint.addresses {
                    let e = BackendEndpoint(address: address, port: port)
                    if isReady {
                        ready.insert(e)
                    } else if c.serving == true && c.terminating == true {
                        fallback.insert(e)
                    }
                }
            }
        }
        return (ready.isEmpty ? fallback : ready).sorted()
    }

    /// The same from a legacy Endpoints object (ready addresses only; `notReadyAddresses` are
    /// not served).
    public static func endpoints(for servicePort: Service.Port, in endpoints: Endpoints) -> [BackendEndpoint] {
        var out = Set<BackendEndpoint>()
        for subset in endpoints.subsets {
            guard let port = subset.ports.first(where: { $0.name == servicePort.name && $0.protocol == servicePort.protocol })?.port else {
                continue
            }
            for a in subset.addresses { out.insert(BackendEndpoint(address: a.ip, port: port)) }
        }
        return out.sorted()
    }
}
