import NIOCore
import NIOSSL
import SluiceCore

/// The key algorithm of a certificate, which decides which clients can use it.
public enum CertificateKeyType: String, Sendable {
    case ecdsa, rsa, other
}

/// One certificate chain and its private key, parsed and checked against each other.
/// Parsing happens once, when a config is compiled; handshakes only use the result.
public struct CertificatePair: @unchecked Sendable {
    // NIOSSLCertificate and NIOSSLPrivateKey are immutable wrappers of BoringSSL objects
    // (Sendable in NIOSSL); the tuple of them is too.
    public let chain: [NIOSSLCertificate]
    public let key: NIOSSLPrivateKey
    public let keyType: CertificateKeyType
    /// The leaf's notAfter, in seconds since 1970.
    public let notAfter: Int64
    public let notBefore: Int64

    /// Parses `certPEM` (leaf first, then intermediates) and `keyPEM` (already decrypted).
    /// `certPath`/`keyPath` name the fields in errors; the key's text never appears in one.
    public static func parse(certPEM: String, keyPEM: String, certPath: String, keyPath: String) throws(ConfigError) -> CertificatePair {
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMBytes(Array(certPEM.utf8))
        } catch {
            throw ConfigError(path: certPath, "is not a PEM certificate that parses")
        }
        guard let leaf = chain.first else { throw ConfigError(path: certPath, "holds no certificate") }
        if chain.count > 16 { throw ConfigError(path: certPath, "holds more than 16 certificates") }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem)
        } catch {
            throw ConfigError(path: keyPath, "is not a PEM private key that parses (an encrypted key needs the keyring it was written with)")
        }
        let keyType = Self.keyType(of: leaf)
        // BoringSSL refuses a key that does not belong to the leaf when a context is built
        // from the two: building one is the check.
        var config = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        config.minimumTLSVersion = .tlsv12
        do {
            _ = try NIOSSLContext(configuration: config)
        } catch {
            throw ConfigError(path: keyPath, "does not match the certificate in \(certPath)")
        }
        return CertificatePair(
            chain: chain, key: key, keyType: keyType, notAfter: Int64(leaf.notValidAfter), notBefore: Int64(leaf.notValidBefore))
    }

    /// Certificates only (a CA bundle), leaf-first order kept.
    public static func parseCertificates(_ pem: String, path: String) throws(ConfigError) -> [NIOSSLCertificate] {
        do {
            let certs = try NIOSSLCertificate.fromPEMBytes(Array(pem.utf8))
            guard !certs.isEmpty else { throw ConfigError(path: path, "holds no certificate") }
            if certs.count > 256 { throw ConfigError(path: path, "holds more than 256 certificates") }
            return certs
        } catch let e as ConfigError {
            throw e
        } catch {
            throw ConfigError(path: path, "is not a PEM certificate that parses")
        }
    }

    /// rsaEncryption (1.2.840.113549.1.1.1) or id-ecPublicKey (1.2.840.10045.2.1), read
    /// from the SubjectPublicKeyInfo's algorithm identifier.
    static func keyType(of cert: NIOSSLCertificate) -> CertificateKeyType {
        guard let spki = try? cert.extractPublicKey().toSPKIBytes() else { return .other }
        let rsa: [UInt8] = [0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01]
        let ec: [UInt8] = [0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01]
        // The algorithm identifier sits in the first few bytes of the SPKI.
        let head = spki.prefix(32)
        if contains(head, ec) { return .ecdsa }
        if contains(head, rsa) { return .rsa }
        return .other
    }

    private static func contains(_ haystack: ArraySlice<UInt8>, _ needle: [UInt8]) -> Bool {
        guard haystack.count >= needle.count else { return false }
        var i = haystack.startIndex
        while i + needle.count <= haystack.endIndex {
            if haystack[i..<(i + needle.count)].elementsEqual(needle) { return true }
            i += 1
        }
        return false
    }
}

/// The TLS versions and cipher suites the listeners allow unless an `ssls` object narrows
/// them: TLS 1.2 and 1.3, and in 1.2 only ECDHE with AEAD ciphers (no RC4, 3DES or CBC).
public enum TLSDefaults {
    public static let cipherSuites = [
        "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    ].joined(separator: ":")
    public static let minimumVersion = TLSVersion.tlsv12
    public static let maximumVersion = TLSVersion.tlsv13

    static func version(_ v: SSLObject.ProtocolVersion) -> TLSVersion {
        switch v {
        case .tls11: return .tlsv11
        case .tls12: return .tlsv12
        case .tls13: return .tlsv13
        }
    }
}
