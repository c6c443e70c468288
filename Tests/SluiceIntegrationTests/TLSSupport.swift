import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import SluiceAdmin
import SluiceCore
import SluiceProxy
import SluiceServer
import SluiceStore
import SluiceTLS
import SluiceTesting
import Testing

/// Runs a program to completion (bounded by `timeout`), off the cooperative threads.
enum Command {
    struct Result {
        var status: Int32
        var output: String
    }

    static func run(_ path: String, _ arguments: [String], input: String? = nil, timeout: Double = 20) async throws -> Result {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Result, Error>) in
            DispatchQueue.global().async {
                let p = Process()
                p.executableURL = URL(fileURLWithPath: path)
                p.arguments = arguments
                let out = Pipe()
                p.standardOutput = out
                p.standardError = out
                let inPipe = Pipe()
                p.standardInput = inPipe
                do {
                    try p.run()
                } catch {
                    c.resume(throwing: error)
                    return
                }
                if let input { inPipe.fileHandleForWriting.write(Data(input.utf8)) }
                try? inPipe.fileHandleForWriting.close()
                let killer = DispatchWorkItem { if p.isRunning { p.terminate() } }
                DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: killer)
                let data = out.fileHandleForReading.readDataToEndOfFile()
                p.waitUntilExit()
                killer.cancel()
                c.resume(returning: Result(status: p.terminationStatus, output: String(decoding: data, as: UTF8.self)))
            }
        }
    }

    static func openssl(_ arguments: [String], input: String? = nil) async throws -> Result {
        try await run("/usr/bin/openssl", arguments, input: input)
    }
}

/// A certificate authority made for one test with the `openssl` command, and the
/// certificates it signs. Files live in `directory`.
struct TestPKI {
    let directory: String
    var caCert: String { "\(directory)/ca.crt" }
    var caPEM: String { (try? String(contentsOfFile: caCert, encoding: .utf8)) ?? "" }

    enum KeyType { case ecdsa, rsa }

    struct Issued {
        var cert: String
        var key: String
        var certPath: String
        var keyPath: String
        var serial: String
    }

    static func make(name: String = "Test CA") async throws -> TestPKI {
        let dir = makeTemporaryDirectory()
        let pki = TestPKI(directory: dir)
        let r = try await Command.openssl([
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "\(dir)/ca.key", "-out",
            "\(dir)/ca.crt", "-days", "30", "-subj", "/CN=\(name)",
        ])
        try #require(r.status == 0, "openssl req: \(r.output)")
        return pki
    }

    /// A certificate for `names` (the first is the CN), signed by this CA. `days` < 0 makes
    /// one that expired that many days ago. `client`: for TLS client authentication.
    func issue(_ name: String, sans: [String]? = nil, type: KeyType = .ecdsa, days: Int = 30, client: Bool = false) async throws -> Issued {
        let base = "\(directory)/\(name.replacingOccurrences(of: "*", with: "star"))-\(UUID().uuidString.prefix(8))"
        let keyArgs: [String] = type == .ecdsa ? ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] : ["-newkey", "rsa:2048"]
        var r = try await Command.openssl(["req", "-new"] + keyArgs + ["-nodes", "-keyout", "\(base).key", "-out", "\(base).csr", "-subj", "/CN=\(name)"])
        try #require(r.status == 0, "openssl req: \(r.output)")
        let ext = (sans ?? [name]).map { "DNS:\($0)" }.joined(separator: ",")
        var extText = "subjectAltName=\(ext)\n"
        if client { extText += "extendedKeyUsage=clientAuth\n" } else { extText += "extendedKeyUsage=serverAuth\n" }
        try extText.write(toFile: "\(base).ext", atomically: true, encoding: .utf8)
        // OpenSSL 3.0's x509 cannot set dates in the past: an expired certificate is made
        // with Python's cryptography package instead.
        if days < 0 { return try await issueExpired(name, base: base, daysAgo: -days) }
        let args = [
            "x509", "-req", "-in", "\(base).csr", "-CA", caCert, "-CAkey", "\(directory)/ca.key", "-CAcreateserial", "-out", "\(base).crt",
            "-extfile", "\(base).ext", "-days", String(max(1, days)),
        ]
        r = try await Command.openssl(args)
        try #require(r.status == 0, "openssl x509: \(r.output)")
        let serial = try await Command.openssl(["x509", "-in", "\(base).crt", "-noout", "-serial"]).output
            .replacingOccurrences(of: "serial=", with: "").trimmingCharacters(in: .whitespacesAndNewlines)
        return Issued(
            cert: try String(contentsOfFile: "\(base).crt", encoding: .utf8), key: try String(contentsOfFile: "\(base).key", encoding: .utf8),
            certPath: "\(base).crt", keyPath: "\(base).key", serial: serial)
    }

    private func issueExpired(_ name: String, base: String, daysAgo: Int) async throws -> Issued {
        let script = """
            import datetime, sys
            from cryptography import x509
            from cryptography.hazmat.primitives import hashes, serialization
            from cryptography.x509.oid import NameOID
            ca_key = serialization.load_pem_private_key(open(sys.argv[1], 'rb').read(), None)
            ca = x509.load_pem_x509_certificate(open(sys.argv[2], 'rb').read())
            key = serialization.load_pem_private_key(open(sys.argv[3], 'rb').read(), None)
            now = datetime.datetime.now(datetime.timezone.utc)
            end = now - datetime.timedelta(days=int(sys.argv[5]))
            cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, sys.argv[4])]))
                .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(end - datetime.timedelta(days=30)).not_valid_after(end)
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(sys.argv[4])]), critical=False)
                .sign(ca_key, hashes.SHA256()))
            open(sys.argv[6], 'wb').write(cert.public_bytes(serialization.Encoding.PEM))
            print(format(cert.serial_number, 'X'))
            """
        let r = try await Command.run(
            "/usr/bin/env", ["python3", "-c", script, "\(directory)/ca.key", caCert, "\(base).key", name, String(daysAgo), "\(base).crt"])
        try #require(r.status == 0, "python3 cryptography: \(r.output)")
        return Issued(
            cert: try String(contentsOfFile: "\(base).crt", encoding: .utf8), key: try String(contentsOfFile: "\(base).key", encoding: .utf8),
            certPath: "\(base).crt", keyPath: "\(base).key", serial: r.output.trimmingCharacters(in: .whitespacesAndNewlines))
    }
}

/// A gateway with a plain and a TLS listener, and the Admin API over an embedded store.
struct TLSGateway {
    let server: GatewayServer
    let service: ConfigService
    let admin: APIServer
    let adminPort: Int
    let port: Int
    let tlsPort: Int
    let directory: String

    static func start(defaultSNI: String? = nil, keyring: Keyring? = nil, upstreamTrustedCA: String? = nil) async throws -> TLSGateway {
        var config = GatewayServer.Configuration()
        config.proxyListen = [ListenAddress(host: "127.0.0.1", port: 0)]
        config.tlsListen = [ListenAddress(host: "127.0.0.1", port: 0)]
        config.tlsDefaultSNI = defaultSNI
        config.keyring = keyring
        config.upstreamTrustedCA = upstreamTrustedCA
        config.workers = 2
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let server = try await GatewayServer.make(configuration: config, logger: logger)
        let addresses = try await server.start()
        let dir = makeTemporaryDirectory()
        let publisher: ConfigService.Publisher = { state, changes in try await server.apply(state, changes: changes) }
        var storedForm: ConfigService.StoredForm? = nil
        if let keyring { storedForm = { kind, value in keyring.storedForm(kind, value) } }
        let service = ConfigService(
            store: try EmbeddedStore(directory: dir), publisher: publisher, trialCompile: GatewayServer.trialCompiler(keyring: keyring),
            storedForm: storedForm)
        try await service.start()
        let api = AdminAPI(service: service, keys: [adminKey: .admin], allowed: [])
        let admin = try await APIServer.start(
            name: "admin", listen: ListenAddress(host: "127.0.0.1", port: 0), handler: api, group: Gateway.group, logger: logger)
        return TLSGateway(
            server: server, service: service, admin: admin, adminPort: try #require(admin.localAddress?.port),
            port: try #require(addresses.first?.port), tlsPort: try #require(addresses.last?.port), directory: dir)
    }

    func adminClient() async throws -> AdminClient {
        AdminClient(http: try await TestHTTPClient.connect(port: adminPort, group: Gateway.group))
    }

    func stop() async {
        await admin.close()
        await server.shutdown(gracePeriod: .seconds(2))
    }

    /// PUT of an `ssls` object; returns the status and the body.
    static func sslBody(_ issued: TestPKI.Issued, snis: [String], extra: [String: JSONValue] = [:]) -> String {
        var o: [String: JSONValue] = ["cert": .string(issued.cert), "key": .string(issued.key), "snis": .array(snis.map { .string($0) })]
        for (k, v) in extra { o[k] = v }
        return JSONValue.object(o).serialized()
    }

    /// curl to the TLS listener for `host`, verifying against `ca`. Returns the status
    /// code (0 when the handshake or verification failed) and the body.
    func curl(_ host: String, _ path: String = "/", ca: String, extra: [String] = []) async throws -> (code: Int, body: String, output: String) {
        let r = try await Command.run(
            "/usr/bin/curl",
            ["-sS", "--max-time", "10", "--cacert", ca, "--resolve", "\(host):\(tlsPort):127.0.0.1", "-w", "\n%{http_code}", "https://\(host):\(tlsPort)\(path)"]
                + extra)
        let lines = r.output.split(separator: "\n", omittingEmptySubsequences: false)
        let code = lines.last.flatMap { Int($0) } ?? 0
        return (code, lines.dropLast().joined(separator: "\n"), r.output)
    }

    /// `openssl s_client` to the TLS listener; the output (certificate, protocol, ALPN,
    /// alerts). `sni` nil sends none.
    func sClient(_ sni: String?, _ extra: [String] = []) async throws -> Command.Result {
        var args = ["s_client", "-connect", "127.0.0.1:\(tlsPort)"]
        if let sni { args += ["-servername", sni] } else { args += ["-noservername"] }
        return try await Command.openssl(args + extra, input: "")
    }

    /// The serial of the certificate a new handshake for `sni` is served (upper-case hex),
    /// or nil when the handshake fails.
    func servedSerial(_ sni: String) async throws -> String? {
        try await Self.servedSerial(port: tlsPort, sni: sni)
    }

    static func servedSerial(port: Int, sni: String) async throws -> String? {
        let r = try await Command.openssl(["s_client", "-connect", "127.0.0.1:\(port)", "-servername", sni], input: "")
        guard let body = r.output.components(separatedBy: "-----BEGIN CERTIFICATE-----").dropFirst().first?
            .components(separatedBy: "-----END CERTIFICATE-----").first
        else { return nil }
        let certs = try NIOSSLCertificate.fromPEMBytes(Array("-----BEGIN CERTIFICATE-----\(body)-----END CERTIFICATE-----\n".utf8))
        return certs.first.map { CertificateText.hex($0.serialNumber) }
    }
}

/// Serial numbers as `openssl x509 -serial` prints them vs NIOSSL's bytes: both upper-case
/// hex; openssl drops no leading zero byte, so compare without leading zeros.
func sameSerial(_ a: String?, _ b: String?) -> Bool {
    guard let a, let b else { return false }
    func trimmed(_ s: String) -> Substring { s.uppercased().drop(while: { $0 == "0" }) }
    return trimmed(a) == trimmed(b)
}
