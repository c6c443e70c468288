import NIOCore
import NIOSSL
import SluiceCore

/// One `ssls` object of type server, compiled for handshakes: a TLS context per certificate
/// (an ECDSA and an RSA one when both are given), with that object's client-certificate
/// and protocol settings. Built once per version of the object and shared by every
/// connection and snapshot while the object is unchanged, which is also what keeps its
/// session tickets valid.
public final class ServerIdentity: Sendable {
    public let id: String
    public let snis: [String]
    /// In the order given; `context(for:)` picks among them.
    let contexts: [(keyType: CertificateKeyType, context: NIOSSLContext)]
    /// `client.ca` is set: clients must show a certificate signed by it, except on request
    /// paths matching `skipMTLS` (for which the handshake asks, but does not require, one).
    public let verifiesClients: Bool
    public let skipMTLS: [LinearRegex]
    /// Summaries of each certificate for the control API (never the key).
    public let certificates: [CertificateSummary]
    /// The object as compiled, to tell whether a new version changed it.
    let source: SSLObject

    init(
        id: String, source: SSLObject, contexts: [(CertificateKeyType, NIOSSLContext)], skipMTLS: [LinearRegex],
        certificates: [CertificateSummary]
    ) {
        self.id = id
        self.source = source
        self.snis = source.snis
        self.contexts = contexts.map { (keyType: $0.0, context: $0.1) }
        self.verifiesClients = source.client != nil
        self.skipMTLS = skipMTLS
        self.certificates = certificates
    }

    /// The context for a client: ECDSA when the client can verify ECDSA signatures and one
    /// is configured, otherwise the first that is not ECDSA, otherwise the first.
    public func context(acceptsECDSA: Bool) -> NIOSSLContext {
        if contexts.count > 1 {
            if acceptsECDSA, let c = contexts.first(where: { $0.keyType == .ecdsa }) { return c.context }
            if let c = contexts.first(where: { $0.keyType != .ecdsa }) { return c.context }
        }
        return contexts[0].context
    }

    /// Whether `path` may be served without a client certificate (`skip_mtls_uri_regex`).
    public func skipsClientCertificate(path: String) -> Bool {
        skipMTLS.contains { $0.matches(path) }
    }

    /// Compiles `object` (keys decrypted with `keyring`). `alpn` is what the listeners offer.
    /// Errors name the object's fields under `path`.
    public static func compile(
        _ object: SSLObject, id: String, keyring: Keyring?, alpn: [String], path: String = ""
    ) throws(ConfigError) -> ServerIdentity {
        var contexts: [(CertificateKeyType, NIOSSLContext)] = []
        var summaries: [CertificateSummary] = []
        var caCerts: [NIOSSLCertificate] = []
        if let client = object.client {
            caCerts = try CertificatePair.parseCertificates(client.ca, path: FieldPath.join(FieldPath.join(path, "client"), "ca"))
        }
        let pairs = object.pairs
        for (i, pair) in pairs.enumerated() {
            let certPath = i == 0 ? FieldPath.join(path, "cert") : FieldPath.index(FieldPath.join(path, "certs"), i - 1)
            let keyPath = i == 0 ? FieldPath.join(path, "key") : FieldPath.index(FieldPath.join(path, "keys"), i - 1)
            guard let keyPEM = KeyText.decrypt(pair.key, keyring: keyring) else {
                throw ConfigError(path: keyPath, "is neither PEM nor a value the configured keyring decrypts")
            }
            let parsed = try CertificatePair.parse(certPEM: pair.cert, keyPEM: keyPEM, certPath: certPath, keyPath: keyPath)
            var config = TLSConfiguration.makeServerConfiguration(
                certificateChain: parsed.chain.map { .certificate($0) }, privateKey: .privateKey(parsed.key))
            config.minimumTLSVersion = object.sslProtocols.first.map(TLSDefaults.version) ?? TLSDefaults.minimumVersion
            config.maximumTLSVersion = object.sslProtocols.last.map(TLSDefaults.version) ?? TLSDefaults.maximumVersion
            config.cipherSuites = TLSDefaults.cipherSuites
            config.applicationProtocols = alpn
            if object.client != nil {
                config.trustRoots = .certificates(caCerts)
                config.sendCANameList = true
                config.certificateVerification = object.client?.skipMTLSURIRegex.isEmpty == false ? .optionalVerification : .noHostnameVerification
            }
            do {
                contexts.append((parsed.keyType, try NIOSSLContext(configuration: config)))
            } catch {
                throw ConfigError(path: certPath, "cannot be used for TLS: \(error)")
            }
            summaries.append(CertificateSummary(pair: parsed, index: i))
        }
        var regexes: [LinearRegex] = []
        for re in object.client?.skipMTLSURIRegex ?? [] {
            if let r = try? LinearRegex(re) { regexes.append(r) }
        }
        return ServerIdentity(id: id, source: object, contexts: contexts, skipMTLS: regexes, certificates: summaries)
    }
}

/// What the control API shows of a certificate.
public struct CertificateSummary: Sendable, Hashable {
    public var index: Int
    public var keyType: CertificateKeyType
    public var notBefore: Int64
    public var notAfter: Int64
    public var subject: String
    public var serialNumber: String

    init(pair: CertificatePair, index: Int) {
        self.index = index
        keyType = pair.keyType
        notBefore = pair.notBefore
        notAfter = pair.notAfter
        subject = pair.chain.first.map(CertificateText.distinguishedName) ?? ""
        serialNumber = pair.chain.first.map { CertificateText.hex($0.serialNumber) } ?? ""
    }
}

/// Text forms of certificate fields, as NGINX's `$ssl_client_*` variables show them.
public enum CertificateText {
    /// RFC 2253 order (most specific first), `CN=client,O=Example`.
    public static func distinguishedName(_ cert: NIOSSLCertificate) -> String {
        cert.subjectName.reversed().map { "\(label($0.type))=\($0.value)" }.joined(separator: ",")
    }

    public static func issuer(_ cert: NIOSSLCertificate) -> String {
        cert.issuerName.reversed().map { "\(label($0.type))=\($0.value)" }.joined(separator: ",")
    }

    static func label(_ t: SSLCertificateNameType) -> String {
        switch t {
        case .commonName: return "CN"
        case .organization: return "O"
        case .organizationalUnit: return "OU"
        case .country: return "C"
        case .state: return "ST"
        case .city: return "L"
        case .emailAddress: return "emailAddress"
        case .userId: return "UID"
        default: return "OID"
        }
    }

    public static func hex(_ bytes: [UInt8]) -> String {
        let digits: [Character] = Array("0123456789ABCDEF")
        var s = ""
        s.reserveCapacity(bytes.count * 2)
        for b in bytes {
            s.append(digits[Int(b >> 4)])
            s.append(digits[Int(b & 0x0F)])
        }
        return s
    }
}

/// Private key text as stored: PEM, or the keyring-encrypted form.
public enum KeyText {
    public static func decrypt(_ stored: String, keyring: Keyring?) -> String? {
        if let keyring { return keyring.decrypt(stored) }
        return Keyring.decryptWithoutKeyring(stored)
    }
}
