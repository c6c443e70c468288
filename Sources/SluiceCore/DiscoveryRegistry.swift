/// Node sets found by service discovery, as one immutable value: the compiler reads an
/// upstream's nodes from it when it compiles, so the request path never looks anything up.
/// A discovery source builds a new value per change and hands it over whole.
public struct DiscoveryRegistry: Sendable, Hashable {
    /// `namespace/name` → port key (the port's name, and its number) → nodes.
    public private(set) var services: [String: [String: [UpstreamNode]]] = [:]
    /// False until the source has read everything once; until then every node set is empty.
    public var synced: Bool

    public init(synced: Bool = false) { self.synced = synced }

    public static let empty = DiscoveryRegistry()

    /// The nodes behind `service_name` (`namespace/name:port`); empty when unknown.
    public func nodes(for serviceName: String) -> [UpstreamNode] {
        guard case .success(let s) = KubernetesServiceName.parse(serviceName) else { return [] }
        return services[s.serviceKey]?[s.port.key] ?? []
    }

    /// Replaces one Service's node sets (nil or empty: it has none) and returns the
    /// `service_name`s whose nodes changed, in every spelling an upstream may use.
    @discardableResult
    public mutating func replace(service key: String, ports: [String: [UpstreamNode]]?) -> Set<String> {
        let old = services[key] ?? [:]
        // A port without endpoints is stored as absent, so "no nodes" has one spelling.
        let new = (ports ?? [:]).filter { !$0.value.isEmpty }
        if old == new { return [] }
        services[key] = new.isEmpty ? nil : new
        var changed = Set<String>()
        for port in Set(old.keys).union(new.keys) where old[port] != new[port] { changed.insert("\(key):\(port)") }
        return changed
    }
}
