import Crypto
import _CryptoExtras
import NIOHTTP1
import SluiceCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A consumer's jwt-auth credential, ready to verify signatures: the HMAC secret or the
/// parsed public key, parsed once per snapshot.
final class JWTVerifier: @unchecked Sendable {
    // Immutable after init. SymmetricKey and P256 keys are immutable values that swift-crypto
    // does not declare Sendable; verifying with them from several threads is safe.
    enum Key {
        case hmac(SymmetricKey, bits: Int)
        case rsa(_RSA.Signing.PublicKey)
        case p256(P256.Signing.PublicKey)
        case invalid
    }
    let algorithm: String
    let key: Key
    let gracePeriod: Int64

    init(_ credential: JSONValue) {
        algorithm = credential["algorithm"]?.stringValue ?? "HS256"
        gracePeriod = Int64(PluginLimits.int(credential["lifetime_grace_period"], 0...Int(PluginLimits.maxWindowSeconds), default: 0))
        switch algorithm {
        case "HS256", "HS384", "HS512":
            let secret = credential["secret"]?.stringValue ?? ""
            let bytes = credential["base64_secret"] == true ? (Base64.decode(secret) ?? []) : Array(secret.utf8)
            key = .hmac(SymmetricKey(data: bytes), bits: Int(algorithm.dropFirst(2)) ?? 256)
        case "RS256":
            key = (try? _RSA.Signing.PublicKey(pemRepresentation: credential["public_key"]?.stringValue ?? "")).map { .rsa($0) } ?? .invalid
        case "ES256":
            key = (try? P256.Signing.PublicKey(pemRepresentation: credential["public_key"]?.stringValue ?? "")).map { .p256($0) } ?? .invalid
        default:
            key = .invalid
        }
    }

    func verify(signingInput: [UInt8], signature: [UInt8]) -> Bool {
        switch key {
        case .hmac(let k, let bits):
            switch bits {
            case 384: return HMAC<SHA384>.isValidAuthenticationCode(signature, authenticating: signingInput, using: k)
            case 512: return HMAC<SHA512>.isValidAuthenticationCode(signature, authenticating: signingInput, using: k)
            default: return HMAC<SHA256>.isValidAuthenticationCode(signature, authenticating: signingInput, using: k)
            }
        case .rsa(let k):
            return k.isValidSignature(_RSA.Signing.RSASignature(rawRepresentation: signature), for: SHA256.hash(data: signingInput), padding: .insecurePKCS1v1_5)
        case .p256(let k):
            guard let sig = try? P256.Signing.ECDSASignature(rawRepresentation: signature) else { return false }
            return k.isValidSignature(sig, for: SHA256.hash(data: signingInput))
        case .invalid:
            return false
        }
    }
}

enum Base64URL {
    static func decode(_ s: Substring) -> [UInt8]? {
        var t = String(s).replacing("-", with: "+").replacing("_", with: "/")
        while t.utf8.count % 4 != 0 { t += "=" }
        return Base64.decode(t)
    }
}

/// jwt-auth: a JSON Web Token from the Authorization header (`Bearer ` optional), a query
/// argument or a cookie; its `key` claim names the consumer, whose secret or public key
/// must verify the signature; `exp` and `nbf` are checked (with the consumer's grace
/// period).
final class JWTAuthPlugin: HTTPPlugin {
    static let name = "jwt-auth"
    let header: String
    let query: String
    let cookie: String
    let hideCredentials: Bool
    let keyClaim: String
    let anonymous: String?
    /// `claims_to_verify`: the claims a token must carry, valid. Without the list (or with an
    /// empty one) `exp` and `nbf` are still checked when the token has them, as APISIX does.
    let requireExp: Bool
    let requireNbf: Bool
    let realmHeader: (String, String)

    init(_ c: JSONValue) {
        header = c["header"]?.stringValue ?? "authorization"
        query = c["query"]?.stringValue ?? "jwt"
        cookie = c["cookie"]?.stringValue ?? "jwt"
        hideCredentials = c["hide_credentials"] == true
        keyClaim = c["key_claim_name"]?.stringValue ?? "key"
        anonymous = c["anonymous_consumer"]?.stringValue
        let claims = (c["claims_to_verify"]?.arrayValue ?? []).compactMap(\.stringValue)
        requireExp = claims.contains("exp")
        requireNbf = claims.contains("nbf")
        realmHeader = ("WWW-Authenticate", "Bearer realm=\"\(realmValue(c, default: "jwt"))\"")
    }

    func fail(_ message: String, _ r: PluginRequest) -> PluginAction {
        anonymousOr(.message(401, message, headers: [realmHeader]), anonymous, r, realm: realmHeader)
    }

    func rewrite(_ r: PluginRequest) -> PluginAction {
        enum Source { case header, query, cookie }
        var token: String? = nil
        var source = Source.header
        if var h = r.headers.first(name: header) {
            if h.hasPrefix("Bearer ") || h.hasPrefix("bearer ") { h = String(h.dropFirst(7)) }
            token = h.trimmingWhitespace()
        } else if let q = r.query, let v = PercentDecoding.queryPairs(Substring(q)).first(where: { $0.name == query })?.value {
            token = v
            source = .query
        } else if let v = PluginRequest.cookie(cookie, in: r.headers) {
            token = v
            source = .cookie
        }
        guard let token, !token.isEmpty else { return fail("Missing JWT token in request", r) }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let headerBytes = Base64URL.decode(parts[0]), let payloadBytes = Base64URL.decode(parts[1]),
            case .object = (try? JSONValue.parse(headerBytes)) ?? .null, let tokenHeader = try? JSONValue.parse(headerBytes),
            let payload = try? JSONValue.parse(payloadBytes), case .object = payload
        else {
            return fail("JWT token invalid", r)
        }
        guard let key = payload[keyClaim]?.stringValue else { return fail("missing user key in JWT token", r) }
        guard let consumer = r.consumers.byJWTKey[key], let verifier = r.consumers.jwtVerifiers[consumer.username] else {
            return fail("Invalid user key in JWT token", r)
        }
        // The token's `alg` must be the consumer's (no HS512 token for an HS256 key, no
        // `none`), and its signature must decode and verify (APISIX: "failed to verify jwt").
        let signingInput = Array(token.utf8.prefix(parts[0].utf8.count + 1 + parts[1].utf8.count))
        guard tokenHeader["alg"]?.stringValue == verifier.algorithm, let signature = Base64URL.decode(parts[2]),
            verifier.verify(signingInput: signingInput, signature: signature)
        else { return fail("failed to verify jwt", r) }
        let now = Int64(time(nil))
        let grace = Double(verifier.gracePeriod)
        switch payload["exp"] {
        case nil, .null?:
            if requireExp { return fail("failed to verify jwt", r) }
        case let exp?:
            guard let exp = exp.doubleValue, Double(now) < exp + grace else { return fail("failed to verify jwt", r) }
        }
        switch payload["nbf"] {
        case nil, .null?:
            if requireNbf { return fail("failed to verify jwt", r) }
        case let nbf?:
            guard let nbf = nbf.doubleValue, Double(now) + grace >= nbf else { return fail("failed to verify jwt", r) }
        }
        if hideCredentials {
            switch source {
            case .header: r.headers.remove(name: header)
            case .query: r.removeQueryArgument(query)
            case .cookie:
                let kept = r.headers["cookie"].flatMap { $0.split(separator: ";") }.map { $0.trimmingWhitespace() }.filter { !$0.hasPrefix("\(cookie)=") }
                r.headers.remove(name: "cookie")
                if !kept.isEmpty { r.headers.add(name: "Cookie", value: kept.joined(separator: "; ")) }
            }
        }
        attach(consumer, to: r)
        return .next
    }
}
