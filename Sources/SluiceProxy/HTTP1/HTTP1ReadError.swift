/// Bounds on a request head, in bytes.
public struct HTTP1Limits: Sendable, Equatable {
    /// The longest request target accepted (longer: 414).
    public var maxURIBytes: Int
    /// The largest header section accepted (larger: 431).
    public var maxHeaderBytes: Int

    public init(maxURIBytes: Int = 8 * 1024, maxHeaderBytes: Int = 32 * 1024) {
        self.maxURIBytes = maxURIBytes
        self.maxHeaderBytes = maxHeaderBytes
    }
}

/// Why an HTTP/1 message could not be read. Each case says how the gateway answers it.
public enum HTTP1ReadError: Error, Equatable, Sendable {
    /// The request target is too long: 414.
    case uriTooLong
    /// The request head is too large: 431.
    case headersTooLarge
    /// The request is malformed or ambiguous to frame: 400, with a short reason for the client.
    case badRequest(String)
    /// The request uses something the gateway does not support: 501.
    case notImplemented(String)
    /// The upstream's response cannot be read or framed: the gateway answers 502.
    case badResponse(String)
}
