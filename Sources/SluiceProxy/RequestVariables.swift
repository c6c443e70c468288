import NIOHTTP1
import SluiceCore
import SluicePlugins

/// Request variables for `vars` expressions and hash keys, read from the live request head.
/// One per client connection, updated at each request head: routing a request allocates none.
final class HTTPRequestVariables: RequestVariableSource {
    /// What `head` is between requests: it must not keep the last request's bytes, which
    /// share storage with the connection's read buffer. Holding them would make the next
    /// read copy that buffer (TLS's plaintext buffer) or allocate a new one (the socket's).
    static let idleHead = RequestHead(method: .GET, target: "/", version: .http1_1, fields: HeaderBlock())
    var head = HTTPRequestVariables.idleHead
    var path = RequestPath(path: "/", query: nil, authority: nil)
    var host: String?
    var remoteAddress = ""
    var remotePort = 0
    var serverAddress = ""
    var serverPort = 0
    var scheme = "http"
    var tls: TLSConnectionInfo?
    /// The request's form body, when it was read for routing (`post_arg_*`); decoded once.
    var formBody: String? {
        didSet { formFields = nil }
    }
    private var formFields: [(name: String, value: String)]?

    /// The exchange is over: drop what refers to its bytes.
    func requestEnded() {
        head = Self.idleHead
        formBody = nil
    }

    func value(of variable: RequestVariable) -> String? {
        switch variable {
        case .header(let name):
            let values = head.fields.values(name: name)
            if values.isEmpty { return nil }
            return values.count == 1 ? values[0] : values.joined(separator: ", ")
        case .arg(let name):
            return Self.queryArgument(name, in: path.query)
        case .cookie(let name):
            for header in head.fields.values(name: "cookie") {
                for pair in header.split(separator: ";") {
                    let trimmed = pair.drop(while: { $0 == " " })
                    if let eq = trimmed.firstIndex(of: "="), trimmed[..<eq] == name {
                        return String(trimmed[trimmed.index(after: eq)...])
                    }
                }
            }
            return nil
        case .postArg(let name):
            guard let formBody else { return nil }
            if formFields == nil { formFields = PercentDecoding.queryPairs(Substring(formBody)) }
            return formFields?.first { $0.name == name }?.value
        case .uri: return path.path
        case .requestURI: return head.target
        case .host: return host
        case .remoteAddr: return remoteAddress
        case .remotePort: return String(remotePort)
        case .serverAddr: return serverAddress
        case .serverPort: return String(serverPort)
        case .requestMethod: return head.method.rawValue
        case .scheme: return scheme
        case .queryString: return path.query
        case .consumerName, .routeID, .serviceID, .status, .balancerIP, .balancerPort: return nil  // not known while routing
        case .tls(let v): return tls?.value(v) ?? (v == .https ? "" : nil)
        }
    }

    /// `arg_NAME` as NGINX has it: the raw, undecoded value (the plugins read it the same way).
    static func queryArgument(_ name: String, in query: String?) -> String? {
        QueryArgument.raw(name, in: query)
    }
}
