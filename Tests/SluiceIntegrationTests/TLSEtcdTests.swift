import Foundation
import Logging
import NIOCore
import SluiceAdmin
import SluiceCore
import SluiceEtcd
import SluiceServer
import SluiceTLS
import SluiceTesting
import Testing

/// Certificates in etcd, as APISIX keeps them: keys encrypted with the keyring.
@Suite struct TLSEtcdTests {
    @Test func anAPISIXEncryptedKeyInEtcdIsServedAndOurWritesAreEncrypted() async throws {
        let etcd = try await EtcdTestServer.start(group: Gateway.group)
        let pki = try await TestPKI.make()
        let apisixWritten = try await pki.issue("apisix.example.test")
        let ours = try await pki.issue("ours.example.test")
        let ringKey = "edd1c9f0985e76a2"
        let keyring = try Keyring(keys: ["qeddd145sfvddff3", ringKey])

        var config = GatewayServer.Configuration()
        config.proxyListen = [ListenAddress(host: "127.0.0.1", port: 0)]
        config.tlsListen = [ListenAddress(host: "127.0.0.1", port: 0)]
        config.keyring = keyring
        config.workers = 1
        var logger = Logger(label: "tls-etcd")
        logger.logLevel = .critical
        let server = try await GatewayServer.make(configuration: config, logger: logger)
        let addresses = try await server.start()
        let tlsPort = try #require(addresses.last?.port)
        let store = EtcdStore(client: EtcdClient(endpoints: [try #require(EtcdEndpoint(url: etcd.url))], group: Gateway.group))
        let service = ConfigService(
            store: store, publisher: { state, changes in try await server.apply(state, changes: changes) },
            trialCompile: GatewayServer.trialCompiler(keyring: keyring), storedForm: { kind, value in keyring.storedForm(kind, value) })
        try await service.start()
        let sync = Task { await EtcdSync(store: store, service: service, logger: logger).run() }
        defer {
            sync.cancel()
            Task {
                await server.shutdown(gracePeriod: .seconds(1))
                await etcd.remove()
            }
        }

        // Encrypted the way APISIX does it, by the openssl CLI rather than by our code: AES-128-CBC,
        // the keyring entry as key and IV, base64. The second keyring entry, so decryption
        // has to try more than the first.
        let hex = ringKey.utf8.map { String(format: "%02x", $0) }.joined()
        let keyFile = apisixWritten.keyPath
        let enc = try await Command.openssl(["enc", "-aes-128-cbc", "-K", hex, "-iv", hex, "-base64", "-A", "-in", keyFile])
        try #require(enc.status == 0, "\(enc.output)")
        let object = JSONValue.object([
            "id": "a", "cert": .string(apisixWritten.cert), "key": .string(enc.output.trimmingCharacters(in: .whitespacesAndNewlines)),
            "snis": ["apisix.example.test"],
        ])
        _ = try etcd.etcdctl(["put", "/apisix/ssls/a", object.serialized()])
        #expect(
            try await eventually { sameSerial(try await TLSGateway.servedSerial(port: tlsPort, sni: "apisix.example.test"), apisixWritten.serial) },
            "an APISIX-encrypted key in etcd was not served")

        // Written through the service (the Admin API's path): stored encrypted in etcd.
        _ = try await service.put(.ssls, id: "b", body: try JSONValue.parse(TLSGateway.sslBody(ours, snis: ["ours.example.test"])))
        let stored = try etcd.etcdctl(["get", "/apisix/ssls/b", "--print-value-only"])
        #expect(!stored.contains("PRIVATE KEY"), "the key is in etcd in the clear")
        let storedKey = try JSONValue.parse(stored.trimmingCharacters(in: .whitespacesAndNewlines))["key"]?.stringValue
        #expect(keyring.decrypt(storedKey ?? "") == ours.key)
        #expect(sameSerial(try await TLSGateway.servedSerial(port: tlsPort, sni: "ours.example.test"), ours.serial))
    }
}
