import Foundation
import KubeClient
import KubeSim
import KubeSimServer
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SluiceCore
import SluiceTesting
import Testing

/// Certificates made with the openssl command line for one test: a CA, a server
/// certificate for 127.0.0.1, and a client certificate, all signed by the CA.
struct TestPKI {
    let dir: String
    var caCert: String { "\(dir)/ca.crt" }
    var serverCert: String { "\(dir)/server.crt" }
    var serverKey: String { "\(dir)/server.key" }
    var clientCert: String { "\(dir)/client.crt" }
    var clientKey: String { "\(dir)/client.key" }
    var otherCACert: String { "\(dir)/other-ca.crt" }

    static func make() throws -> TestPKI {
        let dir = NSTemporaryDirectory() + "sluice-pki-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let pki = TestPKI(dir: dir)
        try "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n".write(toFile: "\(dir)/server.ext", atomically: true, encoding: .utf8)
        try "extendedKeyUsage=clientAuth\n".write(toFile: "\(dir)/client.ext", atomically: true, encoding: .utf8)
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        for ca in ["ca", "other-ca"] {
            try openssl(["req", "-x509"] + ec + ["-keyout", "\(dir)/\(ca).key", "-out", "\(dir)/\(ca).crt", "-days", "2", "-subj", "/CN=\(ca)",
                         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        }
        for (name, subject) in [("server", "/CN=kube-sim"), ("client", "/O=system:masters/CN=sluice")] {
            try openssl(["req"] + ec + ["-keyout", "\(dir)/\(name).key", "-out", "\(dir)/\(name).csr", "-subj", subject])
            try openssl(["x509", "-req", "-in", "\(dir)/\(name).csr", "-CA", pki.caCert, "-CAkey", "\(dir)/ca.key", "-CAcreateserial",
                         "-out", "\(dir)/\(name).crt", "-days", "2", "-extfile", "\(dir)/\(name).ext"])
        }
        return pki
    }

    static func openssl(_ args: [String]) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        p.arguments = args
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw TestClientError(description: "openssl \(args.joined(separator: " ")) failed") }
    }

    func read(_ path: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: path))) }
    func base64(_ path: String) throws -> String { try Data(contentsOf: URL(fileURLWithPath: path)).base64EncodedString() }

    func remove() { try? FileManager.default.removeItem(atPath: dir) }
}

/// How the client reaches and authenticates to the API server: TLS with a CA and a
/// client certificate (kubeconfig `-data` fields), insecure-skip-tls-verify, a rotated
/// bearer token.
@Suite struct ClientTransportTests {
    static let group = MultiThreadedEventLoopGroup.singleton
    static let services = SimState.defaultResources[1]

    func writeKubeconfig(_ dir: String, _ body: String) throws -> String {
        let path = "\(dir)/kubeconfig-\(UUID().uuidString)"
        try body.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func httpsWithClientCertificateFromKubeconfigData() async throws {
        let pki = try TestPKI.make()
        defer { pki.remove() }
        let state = SimState()
        state.acceptedTokens = ["never-sent"]  // only the client certificate can authenticate
        _ = try state.write { s throws(APIError) in try s.create(Self.services, namespace: "default", ["metadata": ["name": "tls-svc"], "spec": [:]]) }
        let server = try await SimHTTPServer.start(
            state: state, group: Self.group,
            tls: SimTLS(certificatePEM: try pki.read(pki.serverCert), keyPEM: try pki.read(pki.serverKey), clientCAPEM: try pki.read(pki.caCert)))
        defer { Task { await server.stop() } }
        let kubeconfig = try writeKubeconfig(pki.dir, """
            apiVersion: v1
            kind: Config
            current-context: sim
            clusters: [{name: sim, cluster: {server: "https://127.0.0.1:\(server.port)", certificate-authority-data: "\(try pki.base64(pki.caCert))"}}]
            users: [{name: sim, user: {client-certificate-data: "\(try pki.base64(pki.clientCert))", client-key-data: "\(try pki.base64(pki.clientKey))"}}]
            contexts: [{name: sim, context: {cluster: sim, user: sim, namespace: default}}]
            """)
        let connection = try KubeConfigLoader.fromFiles([kubeconfig], context: nil)
        let api = KubeAPI(connection, group: Self.group)
        let list = try await api.list(.services(namespace: "default"))
        #expect(list.items.map { $0["metadata"]?["name"]?.stringValue } == ["tls-svc"])
        // Watches go over TLS too.
        let informer = Informer(api: api, resource: .services(namespace: "default"))
        let task = Task { await informer.run { _ in } }
        defer { task.cancel() }
        #expect(try await eventually { await informer.hasSynced })
        _ = try await api.create(.services(namespace: "default"), ["metadata": ["name": "second"], "spec": [:]])
        #expect(try await eventually { await informer.cache["default/second"] != nil })
        #expect(api.bytesReceived.value > 0)

        // kubectl agrees the server and its certificates are sound.
        let (status, out) = try await KubectlTests().run(["get", "services", "-o", "name"], kubeconfig)
        #expect(status == 0, "kubectl: \(out)")
        #expect(out.contains("service/tls-svc"))

        // A server certificate from another CA is refused, naming the problem.
        let wrongCA = try writeKubeconfig(pki.dir, """
            apiVersion: v1
            kind: Config
            current-context: sim
            clusters: [{name: sim, cluster: {server: "https://127.0.0.1:\(server.port)", certificate-authority: "\(pki.otherCACert)"}}]
            users: [{name: sim, user: {client-certificate: "\(pki.clientCert)", client-key: "\(pki.clientKey)"}}]
            contexts: [{name: sim, context: {cluster: sim, user: sim}}]
            """)
        await #expect(throws: KubeAPIError.self) { _ = try await KubeAPI(try KubeConfigLoader.fromFiles([wrongCA], context: nil), group: Self.group).list(.services()) }
        // Without a client certificate the server answers 401 (no token it accepts either).
        let noClientCert = try writeKubeconfig(pki.dir, """
            apiVersion: v1
            kind: Config
            current-context: sim
            clusters: [{name: sim, cluster: {server: "https://127.0.0.1:\(server.port)", insecure-skip-tls-verify: true}}]
            users: [{name: sim, user: {token: wrong}}]
            contexts: [{name: sim, context: {cluster: sim, user: sim}}]
            """)
        do {
            _ = try await KubeAPI(try KubeConfigLoader.fromFiles([noClientCert], context: nil), group: Self.group).list(.services())
            Issue.record("a request without a client certificate was served")
        } catch let e as KubeAPIError {
            // The TLS handshake itself is refused (the server requires a certificate).
            #expect(e.code == 0 || e.code == 401, "\(e)")
        }
    }

    @Test func insecureSkipTLSVerifyAcceptsAnyServerCertificate() async throws {
        let pki = try TestPKI.make()
        defer { pki.remove() }
        let server = try await SimHTTPServer.start(
            state: SimState(), group: Self.group, tls: SimTLS(certificatePEM: try pki.read(pki.serverCert), keyPEM: try pki.read(pki.serverKey)))
        defer { Task { await server.stop() } }
        let kubeconfig = try writeKubeconfig(pki.dir, """
            apiVersion: v1
            kind: Config
            current-context: sim
            clusters: [{name: sim, cluster: {server: "https://127.0.0.1:\(server.port)", insecure-skip-tls-verify: true}}]
            users: [{name: sim, user: {token: t}}]
            contexts: [{name: sim, context: {cluster: sim, user: sim}}]
            """)
        let list = try await KubeAPI(try KubeConfigLoader.fromFiles([kubeconfig], context: nil), group: Self.group).list(.services())
        #expect(list.items.isEmpty)
        #expect(!list.resourceVersion.isEmpty)
    }

    /// The service-account token file is replaced (as the kubelet rotates it) and the API
    /// server stops accepting the old token: the next requests, and the informer's resumed
    /// watch, use the new one.
    @Test func rotatedTokenFileIsPickedUp() async throws {
        let dir = NSTemporaryDirectory() + "sluice-token-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let tokenFile = "\(dir)/token"
        try "token-1\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
        let state = SimState()
        state.acceptedTokens = ["token-1"]
        let first = try await SimHTTPServer.start(state: state, group: Self.group)
        let port = first.port
        let kubeconfig = try writeKubeconfig(dir, """
            apiVersion: v1
            kind: Config
            current-context: sim
            clusters: [{name: sim, cluster: {server: "http://127.0.0.1:\(port)"}}]
            users: [{name: sim, user: {tokenFile: "\(tokenFile)"}}]
            contexts: [{name: sim, context: {cluster: sim, user: sim, namespace: default}}]
            """)
        let connection = try KubeConfigLoader.fromFiles([kubeconfig], context: nil)
        #expect(connection.auth == .bearerFile(path: tokenFile))
        let api = KubeAPI(connection, group: Self.group)
        _ = try await api.create(.services(namespace: "default"), ["metadata": ["name": "a"], "spec": [:]])
        let informer = Informer(api: api, resource: .services(namespace: "default"))
        let task = Task { await informer.run { _ in } }
        defer { task.cancel() }
        #expect(try await eventually { await informer.cache.count == 1 })

        // Rotation: the server now takes only token-2, and drops its connections.
        state.acceptedTokens = ["token-2"]
        await first.stop()
        let server = try await SimHTTPServer.start(state: state, port: port, group: Self.group)
        defer { Task { await server.stop() } }
        await #expect(throws: KubeAPIError.self) { _ = try await api.list(.services()) }
        try "token-2\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
        #expect(try await api.list(.services()).items.count == 1)
        _ = try await api.create(.services(namespace: "default"), ["metadata": ["name": "b"], "spec": [:]])
        #expect(try await eventually { await informer.cache["default/b"] != nil })
    }
}

func eventually(_ timeout: Duration = .seconds(10), _ check: () async -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if await check() { return true }
        try await Task.sleep(for: .milliseconds(20))
    }
    return await check()
}
