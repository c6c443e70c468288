import NIOCore

/// The protocol a listener speaks to its clients.
public enum ListenerProtocol: String, Sendable, CaseIterable {
    /// HTTP/1.1 (and 1.0) in clear text.
    case http
    /// TLS, certificates chosen by SNI from the snapshot's `ssls`, then HTTP/1.1.
    case https
}

/// One proxy listener: where it listens, what it speaks, and the settings of its
/// connections (scheme for `X-Forwarded-Proto`, limits, timeouts).
public struct Listener: Sendable {
    public var host: String
    public var port: Int
    public var wireProtocol: ListenerProtocol
    public var settings: ProxySettings
    /// For https: the server name whose certificate serves clients without a known SNI.
    public var defaultSNI: String?

    public init(
        host: String, port: Int, wireProtocol: ListenerProtocol = .http, settings: ProxySettings = ProxySettings(), defaultSNI: String? = nil
    ) {
        self.host = host
        self.port = port
        self.wireProtocol = wireProtocol
        self.settings = settings
        self.defaultSNI = defaultSNI
    }

    /// The factory that sets up this listener's connections.
    public var factory: ListenerFactory {
        switch wireProtocol {
        case .http: return HTTP1ListenerFactory(settings: settings)
        case .https: return TLSListenerFactory(settings: settings, defaultSNI: defaultSNI)
        }
    }
}

/// Sets up an accepted connection's pipeline for one protocol. A new protocol (TLS, h2c,
/// TCP/UDP streams) is a new factory; the exchange and the upstream side do not change.
public protocol ListenerFactory: Sendable {
    func configure(_ channel: Channel, loop: LoopContext) throws
}

/// HTTP/1.1 in clear text: one handler, `HTTP1ServerConnection`, reading requests from the
/// socket's bytes and writing responses as bytes.
public struct HTTP1ListenerFactory: ListenerFactory {
    public let settings: ProxySettings

    public init(settings: ProxySettings) { self.settings = settings }

    public func configure(_ channel: Channel, loop: LoopContext) throws {
        try channel.pipeline.syncOperations.addHandler(HTTP1ServerConnection(loop: loop, settings: settings))
        loop.track(channel)
    }
}
