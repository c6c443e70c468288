import NIOCore

/// Listener-level limits and timeouts (CONTRACT defaults).
public struct ProxySettings: Sendable {
    /// Time allowed for a request head, and for an idle keep-alive connection.
    public var clientHeaderTimeout: TimeAmount = .seconds(60)
    public var keepaliveTimeout: TimeAmount = .seconds(60)
    /// Request header section limit (431 above).
    public var maxHeaderBytes = 32 * 1024
    /// Request target limit (414 above).
    public var maxURIBytes = 8 * 1024
    /// Request body bytes buffered while the upstream connection is being set up; reading
    /// from the client pauses above this.
    public var connectBufferBytes = 64 * 1024
    /// `X-Forwarded-Proto` and the `scheme` variable.
    public var scheme = "http"

    public init() {}
}
