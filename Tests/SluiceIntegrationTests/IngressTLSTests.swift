import Foundation
import KubeClient
import KubeSim
import KubeSimServer
import NIOHTTP1
import SluiceCore
import SluiceTesting
import Testing

/// TLS through `sluice ingress` end to end: certificates made with `openssl` go into
/// Secrets in kube-sim, ApisixTls and Ingress `spec.tls` refer to them, and real clients
/// (`curl`, `openssl s_client`) check what the `sluice serve` process's TLS listener serves.
@Suite(.serialized) struct IngressTLSEndToEndTests {
    /// One pod behind Service `web` (a real server on a loopback address) in a fresh
    /// environment; returns the environment, the pod's address and the server.
    func webEnvironment(_ address: String, gatewayFlags: [String] = []) async throws -> (IngressEnvironment, TestUpstream) {
        let port = try await freePort()
        let pods = try await startPods([address], port: port)
        let pod = try #require(pods[address])
        let env = try await IngressEnvironment(podAddresses: [address], gatewayFlags: gatewayFlags)
        try env.control.scale(namespace: "default", service: "web", replicas: 1, ports: [SimServicePort(name: "http", port: port)])
        return (env, pod)
    }

    /// An ApisixTls for `tls.example.test` serves HTTPS that curl verifies against the test
    /// CA, routed by an ApisixRoute to the pod. The Secret is then renewed in place (a new
    /// key, serial and subject, as cert-manager does): new handshakes present the new
    /// certificate, with the same controller and gateway processes still running.
    @Test func anApisixTlsServesHTTPSAndARenewedSecretReachesNewHandshakes() async throws {
        let (env, pod) = try await webEnvironment("127.0.3.1")
        let pki = try await TestPKI.make()
        let first = try await pki.issue("tls.example.test")
        try await env.create(.secrets(namespace: "default"), Self.tlsSecret("site-cert", first))
        try await env.create(.apisixTlses(namespace: "default"), #"""
            {"apiVersion": "apisix.apache.org/v2", "kind": "ApisixTls", "metadata": {"name": "site", "namespace": "default"},
             "spec": {"hosts": ["tls.example.test"], "secret": {"name": "site-cert", "namespace": "default"}}}
            """#)
        try await env.create(.apisixRoutes(namespace: "default"), #"""
            {"apiVersion": "apisix.apache.org/v2", "kind": "ApisixRoute", "metadata": {"name": "web", "namespace": "default"},
             "spec": {"http": [{"name": "all", "match": {"hosts": ["tls.example.test"], "paths": ["/*"]},
                                "backends": [{"serviceName": "web", "servicePort": 80}]}]}}
            """#)
        let controller = try env.startController()
        let tlsPort = try await env.tlsPort()

        var last = (code: 0, output: "")
        #expect(try await eventually(timeout: .seconds(30)) {
            last = try await Self.curl("tls.example.test", "/get", port: tlsPort, ca: pki.caCert)
            return last.code == 200
        }, "\(last.output)\n\(controller.text)")
        #expect(last.output.contains("X-Upstream: 127.0.3.1"), "\(last.output)")
        #expect(sameSerial(try await Self.served("tls.example.test", port: tlsPort)?.serial, first.serial))
        #expect(try await eventually {
            let tls = try ApisixTls(json: try await env.api.get(.apisixTlses(namespace: "default"), name: "site"))
            return tls.status.resourcesAvailable?.status == .true && tls.status.resourcesAvailable?.observedGeneration == 1
        })

        // Renewed in place: another key, serial and subject for the same name.
        let renewed = try await pki.issue("renewed.example.test", sans: ["tls.example.test"])
        #expect(!sameSerial(renewed.serial, first.serial))
        _ = try await env.api.modify(.secrets(namespace: "default"), name: "site-cert") { o in
            o.mergePatched(with: ["data": ["tls.crt": .string(Base64.encode(renewed.cert)), "tls.key": .string(Base64.encode(renewed.key))]])
        }
        var served: (serial: String, subject: String)? = nil
        #expect(try await eventually(timeout: .seconds(20)) {
            served = try await Self.served("tls.example.test", port: tlsPort)
            return sameSerial(served?.serial, renewed.serial)
        }, "still served: \(served.map { "\($0)" } ?? "nothing")\n\(controller.text)")
        #expect(served?.subject.contains("renewed.example.test") == true, "\(served.map { "\($0)" } ?? "")")
        let again = try await Self.curl("tls.example.test", "/get", port: tlsPort, ca: pki.caCert)
        #expect(again.code == 200, "\(again.output)")
        #expect(controller.process.isRunning && env.gateway.process.isRunning)
        await env.stop()
        await pod.stop()
    }

    /// An Ingress with two `spec.tls` entries serves HTTPS for both hosts. The gateway runs
    /// with `--keyring`, so it stores and lists the private keys encrypted: the controller's
    /// periodic comparison still finds the certificates it wrote in place and writes them
    /// again only when one is actually missing.
    @Test func anIngressWithTLSServesHTTPSAndAnEncryptingGatewayIsNotRewritten() async throws {
        let (env, pod) = try await webEnvironment("127.0.3.2", gatewayFlags: ["--keyring", "edd1c9f0985e76a2"])
        let pki = try await TestPKI.make()
        let web = try await pki.issue("web.example.test")
        let api = try await pki.issue("api.example.test")
        try await env.create(.secrets(namespace: "default"), Self.tlsSecret("web-cert", web))
        try await env.create(.secrets(namespace: "default"), Self.tlsSecret("api-cert", api))
        let backend = #"{"service": {"name": "web", "port": {"name": "http"}}}"#
        try await env.create(.ingresses(namespace: "default"), #"""
            {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web", "namespace": "default"},
             "spec": {"ingressClassName": "sluice",
                      "tls": [{"hosts": ["web.example.test"], "secretName": "web-cert"}, {"hosts": ["api.example.test"], "secretName": "api-cert"}],
                      "rules": [{"host": "web.example.test", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": \#(backend)}]}},
                                {"host": "api.example.test", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": \#(backend)}]}}]}}
            """#)
        let controller = try env.startController()
        let tlsPort = try await env.tlsPort()
        for (host, issued) in [("web.example.test", web), ("api.example.test", api)] {
            var last = (code: 0, output: "")
            #expect(try await eventually(timeout: .seconds(30)) {
                last = try await Self.curl(host, "/get", port: tlsPort, ca: pki.caCert)
                return last.code == 200
            }, "\(host): \(last.output)\n\(controller.text)")
            #expect(last.output.contains("X-Upstream: 127.0.3.2"), "\(last.output)")
            #expect(sameSerial(try await Self.served(host, port: tlsPort)?.serial, issued.serial))
        }

        // The gateway lists certificates without their keys (as APISIX's); the controller
        // does not take that for a difference (the write count below stays put).
        let listed = try await env.admin(.GET, "/ssls/ing_default_web_tls_1")
        #expect(listed.json["value"]?["cert"] != nil)
        #expect(listed.json["value"]?["key"] == nil, "\(listed.json)")
        let index = try #require(listed.json["modifiedIndex"]?.intValue)
        // The first sync's writes (the upstream, two routes, two certificates) are counted.
        let puts = "sluice_ingress_gateway_writes_total{op=\"put\"}"
        #expect(try await eventually { try await IngressEndToEndTests.metric(controller, puts) == 5 }, "\(controller.text)")
        // One certificate lost: the next comparison (every 2 s here) writes it, and only it.
        #expect(try await env.admin(.DELETE, "/ssls/ing_default_web_tls_0").status == 200)
        #expect(try await eventually(timeout: .seconds(15)) {
            let back = try await env.admin(.GET, "/ssls/ing_default_web_tls_0").status == 200
            let counted = try await IngressEndToEndTests.metric(controller, puts) ?? 0
            return back && counted >= 6
        })
        #expect(try await IngressEndToEndTests.metric(controller, puts) == 6)
        #expect(try await env.modifiedIndex("ssls", "ing_default_web_tls_1") == index)
        #expect(sameSerial(try await Self.served("web.example.test", port: tlsPort)?.serial, web.serial))
        await env.stop()
        await pod.stop()
    }

    /// An ApisixTls in `default` naming a Secret of namespace `tenant-b` is refused when the
    /// controller watches every namespace: its status says why, no `ssls` object is written
    /// and no handshake for its host succeeds, while an ApisixTls with its own Secret is
    /// served. A controller given both namespaces with `--namespace` reads it.
    @Test func aSecretOfAnotherNamespaceIsNotServedUnlessBothNamespacesAreGiven() async throws {
        let env = try await IngressEnvironment()
        let pki = try await TestPKI.make()
        let stolen = try await pki.issue("steal.example.test")
        let own = try await pki.issue("own.example.test")
        try await env.create(.secrets(namespace: "tenant-b"), Self.tlsSecret("site-cert", stolen, namespace: "tenant-b"))
        try await env.create(.secrets(namespace: "default"), Self.tlsSecret("own-cert", own))
        try await env.create(.apisixTlses(namespace: "default"), #"""
            {"metadata": {"name": "steal", "namespace": "default"},
             "spec": {"hosts": ["steal.example.test"], "secret": {"name": "site-cert", "namespace": "tenant-b"}}}
            """#)
        try await env.create(.apisixTlses(namespace: "default"), #"""
            {"metadata": {"name": "own", "namespace": "default"}, "spec": {"hosts": ["own.example.test"], "secret": {"name": "own-cert", "namespace": "default"}}}
            """#)
        let everyNamespace = try env.startController()
        let tlsPort = try await env.tlsPort()
        #expect(try await eventually(timeout: .seconds(30)) {
            sameSerial(try await Self.served("own.example.test", port: tlsPort)?.serial, own.serial)
        }, "\(everyNamespace.text)")
        var message = ""
        #expect(try await eventually {
            let tls = try ApisixTls(json: try await env.api.get(.apisixTlses(namespace: "default"), name: "steal"))
            message = tls.status.resourcesAvailable?.message ?? ""
            return tls.status.resourcesAvailable?.status == .false
        })
        #expect(message.hasPrefix("spec.secret.namespace: Secret tenant-b/site-cert is in another namespace"), "\(message)")
        #expect(try await env.admin(.GET, "/ssls/default_steal").status == 404)
        let all = try await env.admin(.GET, "/ssls")
        let certs = (all.json["list"]?.arrayValue ?? []).compactMap { $0["value"]?["cert"]?.stringValue }
        #expect(certs == [own.cert])
        #expect(try await Self.served("steal.example.test", port: tlsPort) == nil)

        everyNamespace.kill(SIGTERM)
        #expect(await everyNamespace.waitForExit() == 0)
        let both = try env.startController(["--leader-elect", "false", "--namespace", "default", "--namespace", "tenant-b"])
        #expect(try await eventually(timeout: .seconds(30)) {
            sameSerial(try await Self.served("steal.example.test", port: tlsPort)?.serial, stolen.serial)
        }, "\(both.text)")
        #expect(try await eventually {
            let tls = try ApisixTls(json: try await env.api.get(.apisixTlses(namespace: "default"), name: "steal"))
            return tls.status.resourcesAvailable?.status == .true
        })
        await env.stop()
    }

    // MARK: - Helpers

    /// A `kubernetes.io/tls` Secret holding `issued`.
    static func tlsSecret(_ name: String, _ issued: TestPKI.Issued, namespace: String = "default") -> String {
        let o: JSONValue = [
            "apiVersion": "v1", "kind": "Secret", "metadata": ["name": .string(name), "namespace": .string(namespace)], "type": "kubernetes.io/tls",
            "data": ["tls.crt": .string(Base64.encode(issued.cert)), "tls.key": .string(Base64.encode(issued.key))],
        ]
        return o.serialized()
    }

    /// `curl` over TLS to `host` on the gateway's TLS port, verifying against `ca`: the HTTP
    /// status (0 when the handshake or the verification failed) and what curl printed (the
    /// response headers, or its error).
    static func curl(_ host: String, _ path: String, port: Int, ca: String) async throws -> (code: Int, output: String) {
        let r = try await Command.run("/usr/bin/curl", [
            "-sS", "--max-time", "5", "--cacert", ca, "--resolve", "\(host):\(port):127.0.0.1", "-D", "-", "-o", "/dev/null",
            "-w", "\n%{http_code}", "https://\(host):\(port)\(path)",
        ])
        let code = r.output.split(separator: "\n").last.flatMap { Int($0.trimmingCharacters(in: .whitespaces)) } ?? 0
        return (code, r.output)
    }

    /// The serial and subject of the certificate a new handshake for `sni` is served, as
    /// `openssl` prints them; nil when the handshake fails.
    static func served(_ sni: String, port: Int) async throws -> (serial: String, subject: String)? {
        let hello = try await Command.openssl(["s_client", "-connect", "127.0.0.1:\(port)", "-servername", sni], input: "")
        guard let start = hello.output.range(of: "-----BEGIN CERTIFICATE-----"),
            let end = hello.output.range(of: "-----END CERTIFICATE-----", range: start.upperBound..<hello.output.endIndex)
        else { return nil }
        let pem = String(hello.output[start.lowerBound..<end.upperBound]) + "\n"
        let fields = try await Command.openssl(["x509", "-noout", "-serial", "-subject"], input: pem)
        var serial = "", subject = ""
        for line in fields.output.split(separator: "\n") {
            if line.hasPrefix("serial=") { serial = String(line.dropFirst("serial=".count)) }
            if line.hasPrefix("subject=") { subject = String(line.dropFirst("subject=".count)) }
        }
        return serial.isEmpty ? nil : (serial, subject)
    }
}

extension IngressEnvironment {
    /// The port of the gateway's TLS listener, once its log shows it.
    func tlsPort() async throws -> Int {
        var port = 0
        _ = try await eventually(timeout: .seconds(20)) {
            port = try await gateway.ports().tls
            return port > 0
        }
        try #require(port > 0, "the gateway did not report a TLS listener: \(gateway.text)")
        return port
    }
}
