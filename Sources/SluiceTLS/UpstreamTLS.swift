import NIOCore
import NIOSSL
import SluiceCore

/// The client side of TLS to one upstream: the context its connections are made with, and
/// the identity that keys their pool (connections made with another client certificate or
/// verification setting are never reused for it).
public final class UpstreamTLSContext: Sendable {
    public let context: NIOSSLContext
    /// Part of the pool key: verification on or off and which client certificate.
    public let identity: String
    public let verify: Bool

    init(context: NIOSSLContext, identity: String, verify: Bool) {
        self.context = context
        self.identity = identity
        self.verify = verify
    }
}

/// Builds and caches upstream client contexts. Contexts are shared by every upstream with
/// the same settings, and kept across compiles while those settings are unchanged: loading
/// the system trust store costs milliseconds, and a new context would drop the TLS sessions
/// it could resume.
public final class UpstreamTLSContexts {
    public let keyring: Keyring?
    /// `--upstream-trusted-ca`: verify upstream certificates against these instead of the
    /// system trust store.
    public let trustedCA: [NIOSSLCertificate]?
    private var cache: [Key: UpstreamTLSContext] = [:]
    private var used: Set<Key> = []
    private var created = 0

    struct Key: Hashable {
        var verify: Bool
        var cert: String?
        var key: String?
    }

    public init(keyring: Keyring? = nil, trustedCA: [NIOSSLCertificate]? = nil) {
        self.keyring = keyring
        self.trustedCA = trustedCA
    }

    /// `trustedCAPEM`: PEM CA certificates (nil: the system trust store).
    public convenience init(keyring: Keyring?, trustedCAPEM: String?) throws(ConfigError) {
        let certs = try trustedCAPEM.map { pem throws(ConfigError) in try CertificatePair.parseCertificates(pem, path: "upstream-trusted-ca") }
        self.init(keyring: keyring, trustedCA: certs)
    }

    /// The context for an https upstream with `tls` (nil: verification off, no client
    /// certificate). `ssls` resolves `client_cert_id`. Errors name fields under `path`.
    public func context(for tls: UpstreamTLS?, ssls: [String: SSLObject], path: String) throws(ConfigError) -> UpstreamTLSContext {
        let t = tls ?? UpstreamTLS()
        var certPEM = t.clientCert
        var keyStored = t.clientKey
        var certPath = FieldPath.join(path, "tls.client_cert")
        var keyPath = FieldPath.join(path, "tls.client_key")
        if let id = t.clientCertID {
            guard let o = ssls[id] else {
                throw ConfigError(path: FieldPath.join(path, "tls.client_cert_id"), "ssl \"\(id)\" not found")
            }
            guard o.kind == .client else {
                throw ConfigError(path: FieldPath.join(path, "tls.client_cert_id"), "ssl \"\(id)\" is of type server; a client certificate needs type client")
            }
            certPEM = o.cert
            keyStored = o.key
            certPath = "ssls[\(id)].cert"
            keyPath = "ssls[\(id)].key"
        }
        let key = Key(verify: t.verify, cert: certPEM, key: keyStored)
        used.insert(key)
        if let c = cache[key] { return c }
        var config = TLSConfiguration.makeClientConfiguration()
        config.minimumTLSVersion = .tlsv12
        config.certificateVerification = t.verify ? .fullVerification : .none
        if let trustedCA { config.trustRoots = .certificates(trustedCA) }
        config.applicationProtocols = ["http/1.1"]
        var identity = t.verify ? "verify" : "noverify"
        if let certPEM, let keyStored {
            guard let keyPEM = KeyText.decrypt(keyStored, keyring: keyring) else {
                throw ConfigError(path: keyPath, "is neither PEM nor a value the configured keyring decrypts")
            }
            let pair = try CertificatePair.parse(certPEM: certPEM, keyPEM: keyPEM, certPath: certPath, keyPath: keyPath)
            config.certificateChain = pair.chain.map { .certificate($0) }
            config.privateKey = .privateKey(pair.key)
            created += 1
            identity += "/client-cert-\(created)"
        }
        let context: NIOSSLContext
        do {
            context = try NIOSSLContext(configuration: config)
        } catch {
            throw ConfigError(path: certPath, "cannot be used for TLS: \(error)")
        }
        let c = UpstreamTLSContext(context: context, identity: identity, verify: t.verify)
        cache[key] = c
        return c
    }

    /// Drops contexts no compile asked for since the last sweep.
    public func sweep() {
        cache = cache.filter { used.contains($0.key) }
        used = []
    }
}
