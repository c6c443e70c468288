import NIOCore

/// One listener's limits and timeouts (CONTRACT defaults, as nginx's).
public struct ProxySettings: Sendable {
    /// Time allowed for a request head (`client_header_timeout`).
    public var clientHeaderTimeout: TimeAmount = .seconds(60)
    /// Time a request body may send nothing before it is answered 408 (`client_body_timeout`).
    public var clientBodyTimeout: TimeAmount = .seconds(60)
    /// Time an idle keep-alive connection is kept (`keepalive_timeout`).
    public var keepaliveTimeout: TimeAmount = .seconds(60)
    /// Request header section limit (431 above).
    public var maxHeaderBytes = 32 * 1024
    /// Request target limit (414 above).
    public var maxURIBytes = 8 * 1024
    /// Request body bytes buffered while the upstream connection is being set up; reading
    /// from the client pauses above this.
    public var connectBufferBytes = 64 * 1024
    /// `X-Forwarded-Proto` and the `scheme` variable: the listener's.
    public var scheme = "http"

    public init() {}
}

/// The settings a listener hands to each of its connections.
typealias ListenerSettings = ProxySettings
