import SluiceCore

/// How gateway objects made from Kubernetes objects are named and marked, as APISIX ingress
/// controller users know them: upstream `default_httpbin_80`, route
/// `default_httpbin-route_rule1`, every object labelled `managed-by`.
public enum IngressNaming {
    /// The label every object this controller writes carries; a full sync deletes objects
    /// that carry it and are no longer wanted, and never touches any other object.
    public static let managedByKey = "managed-by"
    public static let managedByValue = "sluice-ingress"
    public static var managedBy: JSONValue { .object([managedByKey: .string(managedByValue)]) }

    /// `ns_service_port`, `ns_service_subset_port`, and `_service` appended when the
    /// backend resolves to the ClusterIP rather than to endpoints.
    public static func upstreamName(namespace: String, service: String, subset: String?, port: Int, serviceGranularity: Bool) -> String {
        var parts = [namespace, service]
        if let subset, !subset.isEmpty { parts.append(subset) }
        parts.append(String(port))
        if serviceGranularity { parts.append("service") }
        return parts.joined(separator: "_")
    }

    /// An ApisixUpstream with external nodes: `ns_name`.
    public static func externalUpstreamName(namespace: String, name: String) -> String { "\(namespace)_\(name)" }

    /// A rule of an ApisixRoute: `ns_route_rule`.
    public static func routeName(namespace: String, route: String, rule: String) -> String { "\(namespace)_\(route)_\(rule)" }

    /// Plugin configs, global rules, TLS objects: `ns_name`.
    public static func objectName(namespace: String, name: String) -> String { "\(namespace)_\(name)" }

    /// A consumer's username: `ns_name` with every character the gateway does not allow in
    /// a username (`[a-zA-Z0-9_-]`) replaced by `_`.
    public static func consumerName(namespace: String, name: String) -> String {
        String(String.UnicodeScalarView("\(namespace)_\(name)".unicodeScalars.map { s in
            switch s {
            case "a"..."z", "A"..."Z", "0"..."9", "_", "-": return s
            default: return "_"
            }
        }))
    }

    /// The object id for a name: the name itself when it is a valid id (the Admin API allows
    /// `[a-zA-Z0-9-_.]{1,64}`), so `GET /apisix/admin/upstreams/default_httpbin_80` works;
    /// otherwise the valid characters cut to 55 and the name's CRC-32, which stays unique
    /// and stable for as long as the name does.
    public static func id(_ name: String) -> String {
        let valid = name.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2D || c == 0x5F || c == 0x2E
        }
        if valid && !name.isEmpty && name.utf8.count <= 64 { return name }
        let kept = String(String.UnicodeScalarView(name.unicodeScalars.compactMap { s -> Unicode.Scalar? in
            switch s {
            case "a"..."z", "A"..."Z", "0"..."9", "_", "-", ".": return s
            default: return "_"
            }
        }).prefix(55))
        return "\(kept)-\(hex(CRC32.checksum(Array(name.utf8))))"
    }

    static func hex(_ v: UInt32) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 8 - s.count) + s
    }
}
