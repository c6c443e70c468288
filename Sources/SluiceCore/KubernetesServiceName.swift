/// The `service_name` of an upstream with `discovery_type: kubernetes`: `namespace/name:port`,
/// where `port` is the Service port's name or its number (an unnamed port has only its
/// number). APISIX's kubernetes discovery uses the same form.
public struct KubernetesServiceName: Sendable, Hashable, CustomStringConvertible {
    public enum Port: Sendable, Hashable {
        case name(String)
        case number(Int)

        /// The text after the colon: how a node set is keyed in a `DiscoveryRegistry`.
        public var key: String {
            switch self {
            case .name(let n): n
            case .number(let n): String(n)
            }
        }
    }

    public var namespace: String
    public var name: String
    public var port: Port

    public init(namespace: String, name: String, port: Port) {
        self.namespace = namespace
        self.name = name
        self.port = port
    }

    /// `namespace/name`: how Services and their EndpointSlices are grouped.
    public var serviceKey: String { "\(namespace)/\(name)" }

    public var description: String { "\(serviceKey):\(port.key)" }

    /// Parses `namespace/name:port`; the error says what is wrong, for a `ConfigError`.
    public static func parse(_ text: String) -> Result<KubernetesServiceName, ParseError> {
        let form = "must be namespace/name:port (port: the Service port's name or number), e.g. default/httpbin:http"
        guard let slash = text.firstIndex(of: "/"), let colon = text.lastIndex(of: ":"), slash < colon else {
            return .failure(ParseError("\(form), got \"\(text)\""))
        }
        let namespace = String(text[..<slash])
        let name = String(text[text.index(after: slash)..<colon])
        let portText = String(text[text.index(after: colon)...])
        guard isDNSLabel(namespace) else {
            return .failure(ParseError("namespace \"\(namespace)\" is not a valid Kubernetes name (lowercase letters, digits and '-', at most 63); \(form)"))
        }
        guard isDNSLabel(name) else {
            return .failure(ParseError("service name \"\(name)\" is not a valid Kubernetes name (lowercase letters, digits and '-', at most 63); \(form)"))
        }
        if !portText.isEmpty, portText.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) {
            guard let n = Int(portText), (1...65535).contains(n) else {
                return .failure(ParseError("port \(portText) must be 1-65535"))
            }
            return .success(KubernetesServiceName(namespace: namespace, name: name, port: .number(n)))
        }
        // Service port names are DNS labels too (and never all digits, so they cannot be
        // mistaken for a number).
        guard isDNSLabel(portText) else {
            return .failure(ParseError("port \"\(portText)\" must be a Service port name or number; \(form)"))
        }
        return .success(KubernetesServiceName(namespace: namespace, name: name, port: .name(portText)))
    }

    public struct ParseError: Error, Sendable, CustomStringConvertible {
        public var description: String
        init(_ description: String) { self.description = description }
    }

    /// RFC 1123 label, as Kubernetes requires for namespaces, Service names and port names.
    static func isDNSLabel(_ s: String) -> Bool {
        let bytes = Array(s.utf8)
        guard (1...63).contains(bytes.count) else { return false }
        func alnum(_ c: UInt8) -> Bool { (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) }
        guard let first = bytes.first, let last = bytes.last, alnum(first), alnum(last) else { return false }
        return bytes.allSatisfy { alnum($0) || $0 == UInt8(ascii: "-") }
    }
}
