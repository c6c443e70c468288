import Crypto
import Foundation
import SluiceCore
import _CryptoExtras

/// Why a `data_encryption.keyring` could not be used. The message names a key by its index
/// only: keys are secrets and end up in logs and admin responses otherwise.
public struct KeyringError: Error, Sendable, CustomStringConvertible {
    public var description: String
}

/// APISIX's `apisix.data_encryption.keyring`: how private keys of `ssls` objects are stored
/// at rest, so that data written by APISIX decrypts here and the other way round.
///
/// The format (apisix/core/data_encryption.lua, apisix/ssl.lua; lua-resty-string resty.aes):
/// - each keyring entry's bytes are the AES key and also the IV. A 16-byte entry selects
///   AES-128-CBC (IV = the key); a 32-byte entry selects AES-256-CBC (APISIX 3.18+), whose
///   IV is the key's first 16 bytes, since resty.aes copies the key into the IV buffer and
///   OpenSSL reads only a block's worth of it. Other lengths are refused, as APISIX's config
///   schema refuses them at startup;
/// - PKCS#7 padding; the stored value is the ciphertext in standard, padded base64;
/// - new values are encrypted with the first entry, and a stored value is decrypted by
///   trying every entry in order, which is how a keyring is rotated: the new key goes
///   first and the old ones stay behind it until everything has been rewritten;
/// - a value that starts with `---` is PEM in the clear and is used as is.
///
/// There is no MAC: a wrong key is detected only by bad padding (or, here, by the result
/// not being UTF-8), so a wrong key can, rarely, "succeed" with garbage. The caller's PEM
/// parse is the final check, as in APISIX.
public struct Keyring: Sendable {
    /// One keyring entry. Keeps the raw bytes, as `SymmetricKey` is not `Sendable`.
    struct Cipher: Sendable {
        var keyBytes: [UInt8]
        var iv: AES._CBC.IV
        var key: SymmetricKey { SymmetricKey(data: keyBytes) }
    }

    /// Stored values longer than this are refused before decoding. A PEM private key is a
    /// few kilobytes (an RSA-16384 key is about 13 KB), so this only stops runaway input.
    public static let maxStoredBytes = 1 << 20

    /// Encrypts new values; also the first one tried when decrypting.
    let primary: Cipher
    /// Every entry in keyring order, `primary` first.
    let ciphers: [Cipher]

    /// `keys`: the keyring in priority order, each 16 bytes (AES-128) or 32 bytes (AES-256).
    public init(keys: [String]) throws(KeyringError) {
        var ciphers: [Cipher] = []
        ciphers.reserveCapacity(keys.count)
        for (index, key) in keys.enumerated() {
            let bytes = Array(key.utf8)
            guard bytes.count == 16 || bytes.count == 32,
                  let iv = try? AES._CBC.IV(ivBytes: bytes.prefix(16))
            else {
                throw KeyringError(description: "data_encryption.keyring[\(index)]: a key must be 16 bytes (AES-128) or 32 bytes (AES-256), got \(bytes.count) bytes")
            }
            ciphers.append(Cipher(keyBytes: bytes, iv: iv))
        }
        guard let primary = ciphers.first else {
            throw KeyringError(description: "data_encryption.keyring: at least one key is required")
        }
        self.primary = primary
        self.ciphers = ciphers
    }

    /// Always false for a keyring `init` built, as it refuses an empty list; kept so code that
    /// holds "the configured keyring" can ask without knowing that rule.
    public var isEmpty: Bool { ciphers.isEmpty }

    /// Encrypts with the first key; returns base64 text as APISIX stores it.
    public func encrypt(_ plaintext: String) -> String {
        let cipher = primary
        let padded = Self.pad(Array(plaintext.utf8))
        // The only failures AES._CBC reports are a key that is not 128/192/256 bits and, with
        // `noPadding`, input that is not whole blocks; `init` and `pad` rule both out.
        guard let sealed = try? AES._CBC.encrypt(padded, using: cipher.key, iv: cipher.iv, noPadding: true) else {
            preconditionFailure("AES-CBC refused a validated key or whole blocks")
        }
        return Base64.encode(sealed)
    }

    /// Stored value → PEM. A value starting with `---` is returned as is. Otherwise it is
    /// base64-decoded and every key is tried in order; the first that decrypts with valid
    /// padding to UTF-8 wins. nil when none does (or the value is not base64).
    public func decrypt(_ stored: String) -> String? {
        if Self.isPlainPEM(stored) { return stored }
        guard stored.utf8.count <= Self.maxStoredBytes,
              let sealed = Base64.decode(stored),
              !sealed.isEmpty, sealed.count % 16 == 0
        else { return nil }
        for cipher in ciphers {
            let key = cipher.key
            guard let padded = try? AES._CBC.decrypt(sealed, using: key, iv: cipher.iv, noPadding: true),
                  let plain = Self.unpad(Array(padded)),
                  let text = String(validating: plain, as: UTF8.self)
            else { continue }
            return text
        }
        return nil
    }

    /// Without a keyring: plain PEM passes, anything else is nil (an encrypted value cannot
    /// be read, and APISIX would fail to parse it as PEM anyway).
    public static func decryptWithoutKeyring(_ stored: String) -> String? {
        isPlainPEM(stored) ? stored : nil
    }

    /// APISIX's test for "already PEM": the `---` prefix (ssl.lua, `aes_decrypt_pkey`).
    static func isPlainPEM(_ value: String) -> Bool {
        value.utf8.starts(with: "---".utf8)
    }

    /// PKCS#7: 1 to 16 bytes, each holding the count; a whole block when already aligned.
    static func pad(_ bytes: [UInt8]) -> [UInt8] {
        let count = 16 - bytes.count % 16
        return bytes + [UInt8](repeating: UInt8(count), count: count)
    }

    /// Removes PKCS#7 padding as OpenSSL checks it: the last byte is 1...16 and that many
    /// trailing bytes all hold it. (swift-crypto's own check accepts counts above 16.)
    static func unpad(_ bytes: [UInt8]) -> [UInt8]? {
        guard let last = bytes.last, (1...16).contains(last), Int(last) <= bytes.count,
              bytes.suffix(Int(last)).allSatisfy({ $0 == last })
        else { return nil }
        return Array(bytes.dropLast(Int(last)))
    }
}

extension Keyring {
    /// `value` as it is stored: the private keys of an `ssls` object (`key`, `keys`) and of
    /// an upstream's `tls.client_key` encrypted with the first key, as APISIX stores them.
    /// A key already in the encrypted form is left as it is (a PATCH re-stores the object).
    public func storedForm(_ kind: ResourceKind, _ value: JSONValue) -> JSONValue {
        guard case .object(var o) = value else { return value }
        func encrypted(_ v: JSONValue) -> JSONValue {
            guard case .string(let s) = v, s.hasPrefix("-----") else { return v }
            return .string(encrypt(s))
        }
        func upstream(_ u: JSONValue) -> JSONValue {
            guard case .object(var uo) = u, case .object(var tls)? = uo["tls"], let key = tls["client_key"] else { return u }
            tls["client_key"] = encrypted(key)
            uo["tls"] = .object(tls)
            return .object(uo)
        }
        switch kind {
        case .ssls:
            if let k = o["key"] { o["key"] = encrypted(k) }
            if case .array(let keys)? = o["keys"] { o["keys"] = .array(keys.map(encrypted)) }
        case .upstreams:
            return upstream(value)
        case .routes, .services:
            if let u = o["upstream"] { o["upstream"] = upstream(u) }
        default:
            break
        }
        if let plugins = o["plugins"] {
            o["plugins"] = Self.mapEncryptFields(plugins, consumer: kind == .consumers) { .string(encrypt($0)) }
        }
        return .object(o)
    }

    /// `value` with the plugin fields APISIX encrypts decrypted; a field that does not
    /// decrypt (written in the clear, or under another keyring) is kept as it is, as APISIX
    /// keeps it.
    public func plainForm(_ kind: ResourceKind, _ value: JSONValue) -> JSONValue {
        guard case .object(var o) = value, let plugins = o["plugins"] else { return value }
        o["plugins"] = Self.mapEncryptFields(plugins, consumer: kind == .consumers) { s in decrypt(s).map(JSONValue.string) ?? .string(s) }
        return .object(o)
    }

    /// The plugin fields APISIX marks `encrypt_fields` (its schemas, 3.x), for the plugins it
    /// has that take secrets: on consumers (`consumer_schema`) and everywhere else.
    static let consumerEncryptFields: [String: [String]] = [
        "key-auth": ["key"], "basic-auth": ["password"], "jwt-auth": ["secret"], "hmac-auth": ["secret_key"],
    ]
    static let encryptFields: [String: [String]] = [
        "limit-count": ["redis_password", "sentinel_password"], "limit-req": ["redis_password"], "limit-conn": ["redis_password"],
        "csrf": ["key"],
    ]

    /// The APISIX keyring every APISIX uses unless configured otherwise
    /// (`apisix.data_encryption.keyring` in its config-default.yaml). Sluice reads encrypted
    /// plugin fields with it when no `--keyring` is given, so an etcd a default APISIX wrote
    /// serves here as it is.
    public static let apisixDefaultKeys = ["qeddd145sfvddff3", "edd1c9f0985e76a2"]

    static func mapEncryptFields(_ plugins: JSONValue, consumer: Bool, _ transform: (String) -> JSONValue) -> JSONValue {
        guard case .object(var all) = plugins else { return plugins }
        for (name, config) in all {
            guard let fields = (consumer ? consumerEncryptFields[name] : nil) ?? encryptFields[name], case .object(var c) = config else { continue }
            var changed = false
            for f in fields {
                if case .string(let s)? = c[f], !s.isEmpty {
                    c[f] = transform(s)
                    changed = true
                }
            }
            if changed { all[name] = .object(c) }
        }
        return .object(all)
    }
}
