import Foundation
import NIOCore
import NIOHTTP1
import SluiceCore
import SluiceServer
import SluiceTLS
import Testing

/// TLS at the edge with real clients (curl, openssl s_client, Python's ssl module) against
/// certificates made by a CA created in the test.
@Suite(.serialized) struct TLSGatewayTests {
    /// An `ssls` object serves its exact names and one label under its wildcard; other
    /// names get `unrecognized_name`; requests over TLS are proxied with https forwarding.
    @Test func certificatesAreChosenBySNI() async throws {
        let pki = try await TestPKI.make()
        let a = try await pki.issue("a.example.test", sans: ["a.example.test", "*.w.example.test"])
        let upstream = try await startUpstream("u")
        let gw = try await TLSGateway.start()
        defer { Task { await gw.stop(); await upstream.stop() } }
        let admin = try await gw.adminClient()
        var r = try await admin.call(.PUT, "/ssls/1", TLSGateway.sslBody(a, snis: ["a.example.test", "*.w.example.test"]))
        #expect(r.status == 201, "\(r.json)")
        r = try await admin.call(.PUT, "/routes/1", #"{"uri":"/*","upstream":{"nodes":{"\#(upstream.address)":1}}}"#)
        #expect(r.status == 201)

        let exact = try await gw.curl("a.example.test", "/headers", ca: pki.caCert)
        #expect(exact.code == 200, "\(exact.output)")
        #expect(exact.body.lowercased().contains("x-forwarded-proto: https"))
        let wild = try await gw.curl("x.w.example.test", "/", ca: pki.caCert)
        #expect(wild.code == 200, "\(wild.output)")
        // One label only: neither the bare suffix nor two labels below it.
        for name in ["w.example.test", "y.x.w.example.test", "other.test"] {
            let s = try await gw.sClient(name)
            #expect(s.output.contains("unrecognized name") || s.output.contains("alert number 112"), "\(name): \(s.output)")
        }
        // No SNI at all and no default: refused the same way.
        let none = try await gw.sClient(nil)
        #expect(none.output.contains("alert number 112"), "\(none.output)")
        // Plain HTTP to the TLS port is told so.
        let plain = try await Command.run("/usr/bin/curl", ["-s", "-w", "\n%{http_code}", "http://127.0.0.1:\(gw.tlsPort)/"])
        #expect(plain.output.hasSuffix("\n400") && plain.output.contains("plain HTTP request was sent to HTTPS port"), "\(plain.output)")
    }

    /// `--tls-default-sni` serves its certificate to clients with no or an unknown SNI.
    @Test func defaultSNIServesClientsWithoutAKnownName() async throws {
        let pki = try await TestPKI.make()
        let d = try await pki.issue("default.example.test")
        let gw = try await TLSGateway.start(defaultSNI: "default.example.test")
        defer { Task { await gw.stop() } }
        let admin = try await gw.adminClient()
        #expect(try await admin.call(.PUT, "/ssls/d", TLSGateway.sslBody(d, snis: ["default.example.test"])).status == 201)
        #expect(sameSerial(try await gw.servedSerial("unknown.test"), d.serial))
        let none = try await gw.sClient(nil)
        #expect(none.output.contains("BEGIN CERTIFICATE"), "\(none.output)")
    }

    /// TLS 1.2 and 1.3 by default, not 1.1; ALPN settles http/1.1; `ssl_protocols` narrows
    /// one object's names; a session ticket resumes.
    @Test func protocolsALPNAndResumption() async throws {
        let pki = try await TestPKI.make()
        let a = try await pki.issue("a.example.test")
        let only13 = try await pki.issue("new.example.test")
        let gw = try await TLSGateway.start()
        defer { Task { await gw.stop() } }
        let admin = try await gw.adminClient()
        #expect(try await admin.call(.PUT, "/ssls/a", TLSGateway.sslBody(a, snis: ["a.example.test"])).status == 201)
        #expect(
            try await admin.call(.PUT, "/ssls/n", TLSGateway.sslBody(only13, snis: ["new.example.test"], extra: ["ssl_protocols": ["TLSv1.3"]]))
                .status == 201)

        let v12 = try await gw.sClient("a.example.test", ["-tls1_2"])
        #expect(v12.output.contains("Protocol  : TLSv1.2") || v12.output.contains("TLSv1.2, Cipher"), "\(v12.output)")
        #expect(v12.output.contains("GCM") || v12.output.contains("CHACHA20"), "an AEAD suite: \(v12.output)")
        let v11 = try await gw.sClient("a.example.test", ["-tls1_1"])
        #expect(!v11.output.contains("BEGIN CERTIFICATE"), "TLS 1.1 must be refused: \(v11.output)")
        let cbc = try await gw.sClient("a.example.test", ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA"])
        #expect(!cbc.output.contains("BEGIN CERTIFICATE"), "CBC-SHA1 must be refused: \(cbc.output)")
        let alpn = try await gw.sClient("a.example.test", ["-alpn", "h2,http/1.1"])
        #expect(alpn.output.contains("ALPN protocol: http/1.1"), "\(alpn.output)")

        let new12 = try await gw.sClient("new.example.test", ["-tls1_2"])
        #expect(!new12.output.contains("BEGIN CERTIFICATE"), "ssl_protocols TLSv1.3 only: \(new12.output)")
        let new13 = try await gw.sClient("new.example.test", ["-tls1_3"])
        #expect(new13.output.contains("BEGIN CERTIFICATE"), "\(new13.output)")

        // Resumption: save the session of one connection, offer it on the next.
        let session = "\(pki.directory)/session.pem"
        for version in ["-tls1_2", "-tls1_3"] {
            _ = try await Command.openssl(
                ["s_client", "-connect", "127.0.0.1:\(gw.tlsPort)", "-servername", "a.example.test", version, "-sess_out", session, "-ign_eof"],
                input: "GET / HTTP/1.0\r\nHost: a.example.test\r\n\r\n")
            let resumed = try await Command.openssl(
                ["s_client", "-connect", "127.0.0.1:\(gw.tlsPort)", "-servername", "a.example.test", version, "-sess_in", session],
                input: "")
            #expect(resumed.output.contains("Reused, "), "\(version) resumption: \(resumed.output)")
        }
    }

    /// A client that checks the chain against the test CA and the name (Python's ssl
    /// module, the default context) accepts the certificate; against another CA it refuses.
    @Test func aVerifyingClientAcceptsTheChain() async throws {
        let pki = try await TestPKI.make()
        let other = try await TestPKI.make(name: "Other CA")
        let a = try await pki.issue("a.example.test", type: .rsa)
        let gw = try await TLSGateway.start()
        defer { Task { await gw.stop() } }
        let admin = try await gw.adminClient()
        #expect(try await admin.call(.PUT, "/ssls/1", TLSGateway.sslBody(a, snis: ["a.example.test"])).status == 201)
        let script = """
            import socket, ssl, sys
            ctx = ssl.create_default_context(cafile=sys.argv[1])
            try:
                with socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=10) as s:
                    with ctx.wrap_socket(s, server_hostname="a.example.test") as t:
                        print("OK", t.version(), t.getpeercert()["subject"])
            except ssl.SSLCertVerificationError as e:
                print("VERIFY-FAILED", e.verify_message)
            """
        let ok = try await Command.run("/usr/bin/env", ["python3", "-c", script, pki.caCert, String(gw.tlsPort)])
        #expect(ok.output.hasPrefix("OK TLSv1.3"), "\(ok.output)")
        let bad = try await Command.run("/usr/bin/env", ["python3", "-c", script, other.caCert, String(gw.tlsPort)])
        #expect(bad.output.hasPrefix("VERIFY-FAILED"), "\(bad.output)")
    }

    /// An RSA and an ECDSA certificate for the same names: a client that can take ECDSA
    /// gets it, one that offers only RSA signatures gets the RSA one.
    @Test func rsaAndECDSAForTheSameNames() async throws {
        let pki = try await TestPKI.make()
        let ec = try await pki.issue("dual.example.test", type: .ecdsa)
        let rsa = try await pki.issue("dual.example.test", type: .rsa)
        let gw = try await TLSGateway.start()
        defer { Task { await gw.stop() } }
        let admin = try await gw.adminClient()
        let body = TLSGateway.sslBody(rsa, snis: ["dual.example.test"], extra: ["certs": [.string(ec.cert)], "keys": [.string(ec.key)]])
        #expect(try await admin.call(.PUT, "/ssls/dual", body).status == 201)
        #expect(sameSerial(try await gw.servedSerial("dual.example.test"), ec.serial))
        let rsaOnly = try await gw.sClient("dual.example.test", ["-sigalgs", "RSA-PSS+SHA256:RSA+SHA256"])
        #expect(rsaOnly.output.contains("Peer signature type: RSA") || rsaOnly.output.contains("RSA-PSS"), "\(rsaOnly.output)")
    }

    /// `client.ca`: a handshake without a client certificate fails; with one signed by the
    /// CA the request goes through and `$ssl_client_*` are known. With
    /// `skip_mtls_uri_regex`, the listed paths are served without a certificate and the
    /// others are answered 400.
    @Test func mutualTLS() async throws {
        let pki = try await TestPKI.make()
        let clients = try await TestPKI.make(name: "Client CA")
        let server = try await pki.issue("mtls.example.test")
        let soft = try await pki.issue("soft.example.test")
        let client = try await clients.issue("client-one", client: true)
        let upstream = try await startUpstream("u")
        let gw = try await TLSGateway.start()
        defer { Task { await gw.stop(); await upstream.stop() } }
        let admin = try await gw.adminClient()
        let ca: JSONValue = ["ca": .string(clients.caPEM)]
        #expect(try await admin.call(.PUT, "/ssls/m", TLSGateway.sslBody(server, snis: ["mtls.example.test"], extra: ["client": ca])).status == 201)
        let skipping: JSONValue = ["ca": .string(clients.caPEM), "skip_mtls_uri_regex": ["^/public"]]
        #expect(try await admin.call(.PUT, "/ssls/s", TLSGateway.sslBody(soft, snis: ["soft.example.test"], extra: ["client": skipping])).status == 201)
        // The route sees the client's subject through vars.
        #expect(
            try await admin.call(
                .PUT, "/routes/1",
                #"{"uri":"/*","vars":[["ssl_client_s_dn","==","CN=client-one"]],"upstream":{"nodes":{"\#(upstream.address)":1}}}"#
            ).status == 201)

        let without = try await gw.curl("mtls.example.test", "/", ca: pki.caCert)
        #expect(without.code == 0, "a handshake without a client certificate must fail: \(without.output)")
        let with = try await gw.curl("mtls.example.test", "/", ca: pki.caCert, extra: ["--cert", client.certPath, "--key", client.keyPath])
        #expect(with.code == 200, "\(with.output)")
        #expect(with.body == "ok from u")

        let publicPath = try await gw.curl("soft.example.test", "/public/x", ca: pki.caCert)
        #expect(publicPath.code == 404, "served without a certificate (no route matches: 404): \(publicPath.output)")
        let privatePath = try await gw.curl("soft.example.test", "/private", ca: pki.caCert)
        #expect(privatePath.code == 400, "\(privatePath.output)")
        #expect(privatePath.body.contains("No required SSL certificate was sent"))
        let privateWithCert = try await gw.curl("soft.example.test", "/private", ca: pki.caCert, extra: ["--cert", client.certPath, "--key", client.keyPath])
        #expect(privateWithCert.code == 200, "\(privateWithCert.output)")
    }

    /// Every invalid `ssls` object is refused with 400 naming the field, and nothing is
    /// stored.
    @Test func invalidObjectsAreRefusedNamingTheField() async throws {
        let pki = try await TestPKI.make()
        let a = try await pki.issue("a.example.test")
        let b = try await pki.issue("b.example.test")
        let gw = try await TLSGateway.start()
        defer { Task { await gw.stop() } }
        let admin = try await gw.adminClient()
        let garbageCert = "-----BEGIN CERTIFICATE-----\n" + String(repeating: "QUJD", count: 60) + "\n-----END CERTIFICATE-----\n"
        let cases: [(String, String)] = [
            (JSONValue.object(["cert": .string(garbageCert), "key": .string(a.key), "snis": ["a.example.test"]]).serialized(), "cert:"),
            (JSONValue.object(["cert": .string(a.cert), "key": .string(b.key), "snis": ["a.example.test"]]).serialized(), "key: does not match"),
            (JSONValue.object(["cert": .string(a.cert), "key": .string(a.key)]).serialized(), "snis: is required"),
            (JSONValue.object(["cert": .string(a.cert), "key": .string(a.key), "snis": []]).serialized(), "snis:"),
            (JSONValue.object(["cert": .string(a.cert), "key": .string(a.key), "snis": ["bad name!"]]).serialized(), "snis[0]:"),
            (TLSGateway.sslBody(a, snis: ["a.example.test"], extra: ["ssl_protocols": ["TLSv1.2", "SSLv3"]]), "ssl_protocols[1]:"),
            (TLSGateway.sslBody(a, snis: ["a.example.test"], extra: ["client": ["ca": .string(garbageCert)]]), "client.ca:"),
            (TLSGateway.sslBody(a, snis: ["a.example.test"], extra: ["certs": [.string(b.cert)], "keys": [.string(a.key)]]), "keys[0]: does not match"),
            (TLSGateway.sslBody(a, snis: ["a.example.test"], extra: ["certs": [.string(b.cert)]]), "keys:"),
        ]
        for (body, field) in cases {
            let r = try await admin.call(.PUT, "/ssls/bad", body)
            #expect(r.status == 400, "\(field): \(r.json)")
            let message = r.json["error_msg"]?.stringValue ?? ""
            #expect(message.contains(field), "expected \(field) in \(message)")
            #expect(!message.contains("PRIVATE KEY"), "a key must never be echoed: \(message)")
        }
        #expect(try await admin.call(.GET, "/ssls/bad").status == 404)
        #expect(try await gw.servedSerial("a.example.test") == nil)
    }

    /// An expired certificate is accepted and served (as APISIX does), and the control
    /// view shows its expiry; keys never appear there.
    @Test func expiredCertificatesAreServedAndReported() async throws {
        let pki = try await TestPKI.make()
        let old = try await pki.issue("old.example.test", days: -2)
        let gw = try await TLSGateway.start()
        defer { Task { await gw.stop() } }
        let admin = try await gw.adminClient()
        #expect(try await admin.call(.PUT, "/ssls/old", TLSGateway.sslBody(old, snis: ["old.example.test"])).status == 201)
        #expect(sameSerial(try await gw.servedSerial("old.example.test"), old.serial))
        let view = await gw.server.certificates()
        let text = view.serialized()
        #expect(text.contains(#""expired":true"#), "\(text)")
        #expect(text.contains(#""id":"old""#))
        #expect(!text.contains("PRIVATE KEY"))
    }

    /// With a keyring, private keys are stored encrypted (APISIX's form) and still serve.
    @Test func keyringEncryptsKeysAtRest() async throws {
        let pki = try await TestPKI.make()
        let a = try await pki.issue("a.example.test")
        let keyring = try Keyring(keys: ["qeddd145sfvddff3", "edd1c9f0985e76a2"])
        let gw = try await TLSGateway.start(keyring: keyring)
        defer { Task { await gw.stop() } }
        let admin = try await gw.adminClient()
        #expect(try await admin.call(.PUT, "/ssls/1", TLSGateway.sslBody(a, snis: ["a.example.test"])).status == 201)
        let stored = try #require(await gw.service.get(.ssls, "1"))
        let storedKey = try #require(stored.value["key"]?.stringValue)
        #expect(!storedKey.contains("PRIVATE KEY"), "stored in the clear: \(storedKey.prefix(40))")
        #expect(keyring.decrypt(storedKey) == a.key)
        #expect(sameSerial(try await gw.servedSerial("a.example.test"), a.serial))
        // Read back, the object has no key at all, as APISIX answers (t/admin/ssl.t).
        let got = try await admin.call(.GET, "/ssls/1")
        #expect(got.status == 200 && got.json["value"]?["cert"] != nil && got.json["value"]?["key"] == nil, "\(got.json)")
        let all = try await admin.call(.GET, "/ssls")
        let item = all.json["list"]?.arrayValue?.first?["value"]
        #expect(item?["cert"] != nil && item?["key"] == nil && item?["keys"] == nil, "\(all.json)")
        // A PATCH re-stores the object: the key is not encrypted twice.
        #expect(try await admin.call(.PATCH, "/ssls/1", #"{"snis":["a.example.test","b.example.test"]}"#).status == 200)
        let patched = try #require(await gw.service.get(.ssls, "1")?.value["key"]?.stringValue)
        #expect(keyring.decrypt(patched) == a.key)
        #expect(sameSerial(try await gw.servedSerial("b.example.test"), a.serial))
    }
}

/// The declarative file's certificates are checked like an Admin API write.
@Suite struct TLSFileTests {
    @Test func aFileWithAMismatchedKeyIsRefusedNamingIt() async throws {
        let pki = try await TestPKI.make()
        let a = try await pki.issue("a.example.test")
        let b = try await pki.issue("b.example.test")
        let good = JSONValue.object(["ssls": [["id": "ok", "cert": .string(a.cert), "key": .string(a.key), "snis": ["a.example.test"]]]])
        if case .failure(let e) = DeclarativeFile.load(good.serialized()) { Issue.record("\(e)") }
        let bad = JSONValue.object([
            "ssls": [
                ["id": "ok", "cert": .string(a.cert), "key": .string(a.key), "snis": ["a.example.test"]],
                ["id": "bad", "cert": .string(a.cert), "key": .string(b.key), "snis": ["b.example.test"]],
            ]
        ])
        guard case .failure(let errors) = DeclarativeFile.load(bad.serialized()) else {
            Issue.record("a key that does not match its certificate was accepted")
            return
        }
        #expect(errors.errors.map(\.description).contains { $0.hasPrefix("ssls[1].key: does not match") }, "\(errors)")
    }
}
