import Crypto
import Foundation
import _CryptoExtras
import NIOCore
import SluiceCore
import SluiceTesting
import Testing

/// jwt-auth with tokens signed here by swift-crypto: HS256, RS256 and ES256.
@Suite struct JWTAuthTests {
    static func b64url(_ bytes: some Sequence<UInt8>) -> String {
        Base64.encode(Array(bytes)).replacing("+", with: "-").replacing("/", with: "_").replacing("=", with: "")
    }

    static func token(alg: String, payload: JSONValue, sign: ([UInt8]) throws -> [UInt8]) rethrows -> String {
        let input = b64url(JSONValue.object(["alg": .string(alg), "typ": "JWT"]).serializedBytes()) + "." + b64url(payload.serializedBytes())
        return input + "." + b64url(try sign(Array(input.utf8)))
    }

    static func hs256(_ payload: JSONValue, secret: String) -> String {
        token(alg: "HS256", payload: payload) { Array(HMAC<SHA256>.authenticationCode(for: $0, using: SymmetricKey(data: Array(secret.utf8)))) }
    }

    static func jsonString(_ s: String) -> String { JSONValue.string(s).serialized() }

    /// `claims_to_verify` as APISIX reads it (t/plugin/jwt-auth.t TEST 57-58,
    /// jwt-auth-more-algo.t TEST 12-13): an empty list still refuses an expired token, and a
    /// listed claim must be present.
    @Test func claimsToVerify() async throws {
        let now = Int64(Date().timeIntervalSince1970)
        let consumers = #","consumers":[{"username":"jack","plugins":{"jwt-auth":{"key":"user-key","secret":"my-secret-key"}}}]}"#
        let s = try await PluginTests.Setup.start(PluginTests.route(#"{"jwt-auth":{"claims_to_verify":[]}}"#) + consumers)
        func message(_ r: TestResponse) -> String? { (try? JSONValue.parse(Array(r.body.readableBytesView)))?["message"]?.stringValue }
        let expired = Self.hs256(["key": "user-key", "exp": .int(now - 10)], secret: "my-secret-key")
        var r = try await s.get("/headers", headers: [("Authorization", expired)])
        #expect(r.status == .unauthorized && message(r) == "failed to verify jwt")
        // Without exp (and not asked for it) the token is good.
        #expect(try await s.get("/headers", headers: [("Authorization", Self.hs256(["key": "user-key"], secret: "my-secret-key"))]).status == .ok)
        try await s.apply(PluginTests.route(#"{"jwt-auth":{"claims_to_verify":["nbf"]}}"#) + consumers)
        r = try await s.get("/headers", headers: [("Authorization", Self.hs256(["key": "user-key", "exp": .int(now + 60)], secret: "my-secret-key"))])
        #expect(r.status == .unauthorized && message(r) == "failed to verify jwt")
        r = try await s.get("/headers", headers: [("Authorization", Self.hs256(["key": "user-key", "nbf": .int(now - 60)], secret: "my-secret-key"))])
        #expect(r.status == .ok)
        // The token's alg must be the consumer's (t/plugin/jwt-auth.t TEST 52), and a signature
        // that is not base64url fails verification (TEST 59).
        let hs512 = Self.token(alg: "HS512", payload: ["key": "user-key", "nbf": .int(now - 60)]) {
            Array(HMAC<SHA256>.authenticationCode(for: $0, using: SymmetricKey(data: Array("my-secret-key".utf8))))
        }
        r = try await s.get("/headers", headers: [("Authorization", hs512)])
        #expect(r.status == .unauthorized && message(r) == "failed to verify jwt")
        let good = Self.hs256(["key": "user-key", "nbf": .int(now - 60)], secret: "my-secret-key")
        let badSignature = String(good[..<(good.lastIndex(of: ".") ?? good.endIndex)]) + ".@@@@"
        r = try await s.get("/headers", headers: [("Authorization", badSignature)])
        #expect(r.status == .unauthorized && message(r) == "failed to verify jwt")
        // A malformed exp is refused, not ignored.
        r = try await s.get("/headers", headers: [("Authorization", Self.hs256(["key": "user-key", "exp": "tomorrow"], secret: "my-secret-key"))])
        #expect(r.status == .unauthorized)
        await s.stop()
    }

    @Test func hs256WithExpiryAndHiddenCredentials() async throws {
        let now = Int64(Date().timeIntervalSince1970)
        let consumers = #","consumers":[{"username":"jack","plugins":{"jwt-auth":{"key":"user-key","secret":"my-secret-key"}}}]}"#
        let s = try await PluginTests.Setup.start(PluginTests.route(#"{"jwt-auth":{}}"#) + consumers)
        let good = Self.hs256(["key": "user-key", "exp": .int(now + 60)], secret: "my-secret-key")
        var r = try await s.get("/headers", headers: [("Authorization", "Bearer \(good)")])
        #expect(r.status == .ok)
        #expect(r.bodyString.contains("x-consumer-username: jack"))
        #expect(try await s.get("/headers?jwt=\(good)").status == .ok)
        #expect(try await s.get("/headers", headers: [("Cookie", "a=1; jwt=\(good)")]).status == .ok)
        func message(_ r: TestResponse) -> String? { (try? JSONValue.parse(Array(r.body.readableBytesView)))?["message"]?.stringValue }
        r = try await s.get("/headers")
        #expect(r.status == .unauthorized)
        #expect(message(r) == "Missing JWT token in request")
        #expect(r.headers.first(name: "www-authenticate") == #"Bearer realm="jwt""#)
        r = try await s.get("/headers", headers: [("Authorization", "not.a.jwt!")])
        #expect(message(r) == "JWT token invalid")
        r = try await s.get("/headers", headers: [("Authorization", Self.hs256(["exp": .int(now + 60)], secret: "my-secret-key"))])
        #expect(message(r) == "missing user key in JWT token")
        r = try await s.get("/headers", headers: [("Authorization", Self.hs256(["key": "nobody"], secret: "my-secret-key"))])
        #expect(message(r) == "Invalid user key in JWT token")
        r = try await s.get("/headers", headers: [("Authorization", Self.hs256(["key": "user-key"], secret: "wrong-secret"))])
        #expect(message(r) == "failed to verify jwt")
        r = try await s.get("/headers", headers: [("Authorization", Self.hs256(["key": "user-key", "exp": .int(now - 10)], secret: "my-secret-key"))])
        #expect(message(r) == "failed to verify jwt")  // expired
        r = try await s.get("/headers", headers: [("Authorization", Self.hs256(["key": "user-key", "nbf": .int(now + 3600)], secret: "my-secret-key"))])
        #expect(message(r) == "failed to verify jwt")  // not yet valid
        // A tampered payload fails the signature.
        let parts = good.split(separator: ".")
        let forged = "\(parts[0]).\(Self.b64url(JSONValue.object(["key": "user-key", "admin": true]).serializedBytes())).\(parts[2])"
        #expect(message(try await s.get("/headers", headers: [("Authorization", forged)])) == "failed to verify jwt")
        // hide_credentials: the upstream does not see the token.
        try await s.apply(PluginTests.route(#"{"jwt-auth":{"hide_credentials":true}}"#) + consumers)
        r = try await s.get("/headers", headers: [("Authorization", "Bearer \(good)")])
        #expect(r.status == .ok)
        #expect(!r.bodyString.contains("authorization"))
        await s.stop()
    }

    @Test func rs256AndES256() async throws {
        let rsa = try _RSA.Signing.PrivateKey(keySize: .bits2048)
        let ec = P256.Signing.PrivateKey()
        let consumers = #","consumers":[{"username":"r","plugins":{"jwt-auth":{"key":"rsa-key","algorithm":"RS256","public_key":\#(Self.jsonString(rsa.publicKey.pemRepresentation))}}},{"username":"e","plugins":{"jwt-auth":{"key":"ec-key","algorithm":"ES256","public_key":\#(Self.jsonString(ec.publicKey.pemRepresentation))}}}]}"#
        let s = try await PluginTests.Setup.start(PluginTests.route(#"{"jwt-auth":{}}"#) + consumers)
        let rsToken = try Self.token(alg: "RS256", payload: ["key": "rsa-key"]) {
            Array(try rsa.signature(for: SHA256.hash(data: $0), padding: .insecurePKCS1v1_5).rawRepresentation)
        }
        var r = try await s.get("/headers", headers: [("Authorization", rsToken)])
        #expect(r.status == .ok)
        #expect(r.bodyString.contains("x-consumer-username: r"))
        let esToken = try Self.token(alg: "ES256", payload: ["key": "ec-key"]) { Array(try ec.signature(for: SHA256.hash(data: $0)).rawRepresentation) }
        r = try await s.get("/headers", headers: [("Authorization", esToken)])
        #expect(r.status == .ok)
        #expect(r.bodyString.contains("x-consumer-username: e"))
        // A token signed by another key is refused.
        let other = P256.Signing.PrivateKey()
        let wrong = try Self.token(alg: "ES256", payload: ["key": "ec-key"]) { Array(try other.signature(for: SHA256.hash(data: $0)).rawRepresentation) }
        #expect(try await s.get("/headers", headers: [("Authorization", wrong)]).status == .unauthorized)
        await s.stop()
    }
}
