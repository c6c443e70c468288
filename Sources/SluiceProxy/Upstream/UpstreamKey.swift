/// The identity of an upstream connection: what must be equal for a pooled connection to
/// serve another request. It is the connection pool's key. Plain HTTP/1.1 is what this build
/// opens; TLS (`scheme` https, `sni`, `tls`) and HTTP/2 (`protocol`) attempts key their pools
/// the same way, so a TLS connection is never reused for a plain request or for another SNI.
public struct UpstreamKey: Hashable, Sendable, CustomStringConvertible {
    public enum Scheme: UInt8, Sendable { case http, https }
    public enum WireProtocol: UInt8, Sendable { case http1, http2 }

    public let scheme: Scheme
    public let host: String
    public let port: Int
    /// The TLS server name sent, when `scheme` is https.
    public let sni: String?
    /// Identifies the client certificate and verification settings, when `scheme` is https.
    public let tls: String?
    public let wireProtocol: WireProtocol
    /// Computed once: the pool hashes a key twice per request (take and put).
    private let hash: Int

    public init(scheme: Scheme = .http, host: String, port: Int, sni: String? = nil, tls: String? = nil, wireProtocol: WireProtocol = .http1) {
        self.scheme = scheme
        self.host = host
        self.port = port
        self.sni = sni
        self.tls = tls
        self.wireProtocol = wireProtocol
        var h = Hasher()
        h.combine(scheme)
        h.combine(host)
        h.combine(port)
        h.combine(sni)
        h.combine(tls)
        h.combine(wireProtocol)
        hash = h.finalize()
    }

    public static func == (a: UpstreamKey, b: UpstreamKey) -> Bool {
        a.hash == b.hash && a.port == b.port && a.host == b.host && a.scheme == b.scheme && a.sni == b.sni && a.tls == b.tls
            && a.wireProtocol == b.wireProtocol
    }

    public func hash(into hasher: inout Hasher) { hasher.combine(hash) }

    /// `host:port` as NGINX's `$upstream_addr` shows it.
    public var address: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    public var description: String { "\(scheme == .http ? "http" : "https")://\(address)" }
}
