import SluiceCore

/// An HTTP request to the Admin or control API, fully read (bodies are small: 1.5 MiB at most).
public struct APIRequest: Sendable {
    public var method: String
    /// The path without the query.
    public var path: String
    public var query: [String: String]
    /// Header names in lower case.
    public var headers: [String: String]
    public var body: [UInt8]
    public var remoteAddress: IPAddress?

    public init(method: String, uri: String, headers: [(String, String)], body: [UInt8], remoteAddress: IPAddress?) {
        self.method = method
        if let q = uri.firstIndex(of: "?") {
            path = String(uri[..<q])
            query = PercentDecoding.queryParameters(uri[uri.index(after: q)...])
        } else {
            path = uri
            query = [:]
        }
        var h: [String: String] = [:]
        for (k, v) in headers { h[k.lowercased()] = v }
        self.headers = h
        self.body = body
        self.remoteAddress = remoteAddress
    }

}

/// A JSON answer.
public struct APIResponse: Sendable {
    public var status: Int
    public var body: JSONValue
    public var headers: [(String, String)]
    /// A non-JSON body (Prometheus text) with its content type; `body` is then unused.
    public var text: (contentType: String, body: String)?

    public init(status: Int, body: JSONValue, headers: [(String, String)] = []) {
        self.status = status
        self.body = body
        self.headers = headers
    }

    public init(status: Int, text: String, contentType: String) {
        self.status = status
        self.body = .null
        self.headers = []
        self.text = (contentType, text)
    }

    public static func error(_ status: Int, _ message: String) -> APIResponse {
        APIResponse(status: status, body: ["error_msg": .string(message)])
    }
}

/// Something that answers API requests: the Admin API, the control API.
public protocol APIHandler: Sendable {
    func handle(_ request: APIRequest) async -> APIResponse
}
