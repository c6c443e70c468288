import Foundation
import NIOCore
import NIOSSL
import SluiceCore
import SluiceTesting
import Testing

/// `scheme: https` upstreams: verification on and off, the server name sent, client
/// certificates inline and by `client_cert_id`, pooled TLS connections, WebSocket over TLS.
@Suite(.serialized) struct TLSUpstreamTests {
    /// An https origin with `issued`'s certificate; with `clientCA`, it requires a client
    /// certificate signed by that CA.
    static func httpsOrigin(_ name: String, _ issued: TestPKI.Issued, clientCA: String? = nil) async throws -> TestUpstream {
        let chain = try NIOSSLCertificate.fromPEMBytes(Array(issued.cert.utf8))
        let key = try NIOSSLPrivateKey(bytes: Array(issued.key.utf8), format: .pem)
        var config = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        if let clientCA {
            config.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(clientCA.utf8)))
            config.certificateVerification = .noHostnameVerification
        }
        let context = try NIOSSLContext(configuration: config)
        return try await TestUpstream.start(name: name, group: Gateway.group) { channel in
            try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
        }
    }

    func get(_ gw: TLSGateway, _ path: String, host: String = "gw.test") async throws -> (code: Int, body: String) {
        let r = try await Command.run(
            "/usr/bin/curl", ["-sS", "--max-time", "10", "-H", "Host: \(host)", "-w", "\n%{http_code}", "http://127.0.0.1:\(gw.port)\(path)"])
        let lines = r.output.split(separator: "\n", omittingEmptySubsequences: false)
        return (lines.last.flatMap { Int($0) } ?? 0, lines.dropLast().joined(separator: "\n"))
    }

    @Test func verificationOffOnAndTheServerName() async throws {
        let pki = try await TestPKI.make()
        let stranger = try await TestPKI.make(name: "Unknown CA")
        let origin = try await Self.httpsOrigin("tls-origin", try await pki.issue("origin.example.test"))
        let selfSigned = try await Self.httpsOrigin("stranger", try await stranger.issue("origin.example.test"))
        let gw = try await TLSGateway.start(upstreamTrustedCA: pki.caPEM)
        defer { Task { await gw.stop(); await origin.stop(); await selfSigned.stop() } }
        let admin = try await gw.adminClient()
        func route(_ id: String, _ uri: String, _ node: TestUpstream, _ extra: String) async throws {
            let r = try await admin.call(
                .PUT, "/routes/\(id)", #"{"uri":"\#(uri)","upstream":{"scheme":"https","nodes":{"\#(node.address)":1},\#(extra)}}"#)
            #expect(r.status == 201, "\(r.json)")
        }
        try await route("off", "/off", selfSigned, #""tls":{"verify":false}"#)
        try await route("on", "/on", origin, #""tls":{"verify":true},"pass_host":"rewrite","upstream_host":"origin.example.test""#)
        try await route("wrong-name", "/wrong-name", origin, #""tls":{"verify":true}"#)
        try await route("untrusted", "/untrusted", selfSigned, #""tls":{"verify":true},"pass_host":"rewrite","upstream_host":"origin.example.test""#)

        let off = try await get(gw, "/off")
        #expect(off.code == 200 && off.body == "ok from stranger", "\(off)")
        // Verified against the configured CA, with the rewritten host as SNI and name.
        let on = try await get(gw, "/on")
        #expect(on.code == 200 && on.body == "ok from tls-origin", "\(on)")
        // pass_host pass: the name checked is the client's Host, which the certificate lacks.
        #expect(try await get(gw, "/wrong-name", host: "gw.test").code == 502)
        #expect(try await get(gw, "/untrusted").code == 502)

        // TLS connections are pooled like plain ones: sequential requests share one.
        let before = origin.connectionsAccepted
        let client = try await TestHTTPClient.connect(port: gw.port, group: Gateway.group)
        for _ in 0..<5 {
            let r = try await client.request(.GET, "/on", host: "gw.test")
            #expect(r.status == .ok)
        }
        await client.close()
        #expect(origin.connectionsAccepted - before <= 1, "TLS connections were not reused: \(origin.connectionsAccepted - before) opened")
    }

    @Test func clientCertificatesInlineAndByID() async throws {
        let pki = try await TestPKI.make()
        let clients = try await TestPKI.make(name: "Client CA")
        let origin = try await Self.httpsOrigin("mtls-origin", try await pki.issue("origin.example.test"), clientCA: clients.caPEM)
        let clientCert = try await clients.issue("gateway-client", client: true)
        let gw = try await TLSGateway.start()
        defer { Task { await gw.stop(); await origin.stop() } }
        let admin = try await gw.adminClient()
        let base = #""scheme":"https","nodes":{"\#(origin.address)":1}"#
        #expect(try await admin.call(.PUT, "/routes/none", #"{"uri":"/none","upstream":{\#(base)}}"#).status == 201)
        let inline = JSONValue.object(["client_cert": .string(clientCert.cert), "client_key": .string(clientCert.key)]).serialized()
        #expect(try await admin.call(.PUT, "/routes/inline", #"{"uri":"/inline","upstream":{\#(base),"tls":\#(inline)}}"#).status == 201)
        let clientObject = JSONValue.object(["type": "client", "cert": .string(clientCert.cert), "key": .string(clientCert.key)]).serialized()
        #expect(try await admin.call(.PUT, "/ssls/gw-client", clientObject).status == 201)
        let byID = try await admin.call(.PUT, "/routes/byid", #"{"uri":"/byid","upstream":{\#(base),"tls":{"client_cert_id":"gw-client"}}}"#)
        #expect(byID.status == 201, "\(byID.json)")
        // A reference to a missing object, or to a server certificate, is refused.
        let missing = try await admin.call(.PUT, "/routes/x", #"{"uri":"/x","upstream":{\#(base),"tls":{"client_cert_id":"nope"}}}"#)
        #expect(missing.status == 400 && (missing.json["error_msg"]?.stringValue ?? "").contains("client_cert_id"), "\(missing.json)")
        // An inline key that does not match its certificate is refused naming it.
        let other = try await clients.issue("other", client: true)
        let mismatched = JSONValue.object(["client_cert": .string(clientCert.cert), "client_key": .string(other.key)]).serialized()
        let bad = try await admin.call(.PUT, "/routes/bad", #"{"uri":"/bad","upstream":{\#(base),"tls":\#(mismatched)}}"#)
        #expect(bad.status == 400 && (bad.json["error_msg"]?.stringValue ?? "").contains("tls.client_key"), "\(bad.json)")

        #expect(try await get(gw, "/none").code == 502, "the origin requires a client certificate")
        let a = try await get(gw, "/inline")
        #expect(a.code == 200 && a.body == "ok from mtls-origin", "\(a)")
        let b = try await get(gw, "/byid")
        #expect(b.code == 200 && b.body == "ok from mtls-origin", "\(b)")
        // The object in use cannot be deleted while an upstream names it.
        #expect(try await admin.call(.DELETE, "/ssls/gw-client").status == 400)
    }

    /// `wss://` in to a plain WebSocket origin, and `ws://` in to an https one: the
    /// upgrade and the frames cross both.
    @Test func webSocketsOverTLS() async throws {
        let pki = try await TestPKI.make()
        let edge = try await pki.issue("ws.example.test")
        let plain = try await startUpstream("ws-plain")
        let secure = try await Self.httpsOrigin("ws-secure", try await pki.issue("origin.example.test"))
        let gw = try await TLSGateway.start()
        defer { Task { await gw.stop(); await plain.stop(); await secure.stop() } }
        let admin = try await gw.adminClient()
        #expect(try await admin.call(.PUT, "/ssls/ws", TLSGateway.sslBody(edge, snis: ["ws.example.test"])).status == 201)
        #expect(
            try await admin.call(.PUT, "/routes/plain", #"{"uri":"/ws","host":"ws.example.test","enable_websocket":true,"upstream":{"nodes":{"\#(plain.address)":1}}}"#)
                .status == 201)
        #expect(
            try await admin.call(
                .PUT, "/routes/secure",
                #"{"uri":"/ws","host":"secure.test","enable_websocket":true,"upstream":{"scheme":"https","nodes":{"\#(secure.address)":1}}}"#
            ).status == 201)
        let script = """
            import base64, os, socket, ssl, sys
            port, host, tls = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "tls"
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            if tls:
                ctx = ssl.create_default_context(cafile=sys.argv[4])
                s = ctx.wrap_socket(s, server_hostname=host)
            key = base64.b64encode(os.urandom(16)).decode()
            s.sendall(f"GET /ws HTTP/1.1\\r\\nHost: {host}\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Key: {key}\\r\\nSec-WebSocket-Version: 13\\r\\n\\r\\n".encode())
            head = b""
            while b"\\r\\n\\r\\n" not in head:
                chunk = s.recv(1)
                if not chunk: break
                head += chunk
            if not head.startswith(b"HTTP/1.1 101"):
                print("NO-UPGRADE", head[:60]); sys.exit(0)
            for word in [b"hello", b"over tls"]:
                mask = os.urandom(4)
                s.sendall(bytes([0x81, 0x80 | len(word)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(word)))
                hdr = s.recv(2)
                body = b""
                while len(body) < (hdr[1] & 0x7f):
                    body += s.recv((hdr[1] & 0x7f) - len(body))
                print("ECHO", body.decode())
            """
        let wss = try await Command.run("/usr/bin/env", ["python3", "-c", script, String(gw.tlsPort), "ws.example.test", "tls", pki.caCert])
        #expect(wss.output == "ECHO hello\nECHO over tls\n", "\(wss.output)")
        let toTLS = try await Command.run("/usr/bin/env", ["python3", "-c", script, String(gw.port), "secure.test", "plain"])
        #expect(toTLS.output == "ECHO hello\nECHO over tls\n", "\(toTLS.output)")
    }
}
