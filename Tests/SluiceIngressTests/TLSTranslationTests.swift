import KubeClient
import SluiceCore
@testable import SluiceIngress
import Testing

/// ApisixTls and Ingress `spec.tls` as the gateway takes them: `ssls` objects its own decoder
/// accepts as written, Secrets read only where the namespace rule allows, and a missing
/// Secret or key an error on the object that writes nothing for it.
@Suite struct TLSTranslationTests {
    /// PEM-shaped text long enough for the gateway's shape checks (they do not parse it).
    static func pem(_ label: String, _ fill: Character) -> String {
        "-----BEGIN \(label)-----\n" + String(repeating: fill, count: 128) + "\n-----END \(label)-----\n"
    }

    static let cert = pem("CERTIFICATE", "c")
    static let key = pem("PRIVATE KEY", "k")
    static let ca = pem("CERTIFICATE", "a")

    /// The gateway's decoding of an `ssls` object, as its Admin API does before storing it.
    func decoded(_ value: JSONValue?, sourceLocation: SourceLocation = #_sourceLocation) throws -> SSLObject {
        let v = try #require(value, sourceLocation: sourceLocation)
        return try SSLObject.decode(v, id: "x")
    }

    // MARK: - What the gateway gets

    @Test func anApisixTlsBecomesAServerSSLTheGatewayDecodesAsWritten() throws {
        var c = ClusterState()
        try c.addSecret("site-cert", ["tls.crt": Self.cert, "tls.key": Self.key])
        try c.addSecret("client-ca", ["ca.crt": Self.ca])
        try c.addTls("site", #"""
            {"hosts": ["API.Example.COM", "api.example.com.", "*.Example.com"], "secret": {"name": "site-cert", "namespace": "default"},
             "client": {"caSecret": {"name": "client-ca", "namespace": "default"}, "depth": 2, "skip_mtls_uri_regex": ["^/health$"]}}
            """#)
        let t = translate(c)
        #expect(t.errors.isEmpty, "\(t.errors)")
        let ssl = try #require(t.ssl("default_site"))
        // Lower case, no trailing dot, each name once: what the gateway stores and lists back,
        // so the controller's comparison finds nothing to write again.
        #expect(ssl["snis"] == ["api.example.com", "*.example.com"])
        #expect(ssl["type"] == "server")
        let o = try decoded(ssl)
        #expect(o.kind == .server)
        #expect(o.snis == ["api.example.com", "*.example.com"])
        #expect(o.cert == Self.cert && o.key == Self.key)
        #expect(o.client?.ca == Self.ca)
        #expect(o.client?.depth == 2)
        #expect(o.client?.skipMTLSURIRegex == ["^/health$"])
        #expect(o.labels == ["managed-by": "sluice-ingress"])
    }

    @Test func anIngressTlsEntryBecomesAServerSSLTheGatewayDecodesAsWritten() throws {
        var c = try httpbinCluster()
        try c.addSecret("web-cert", ["tls.crt": Self.cert, "tls.key": Self.key])
        try c.addIngress("web", #"""
            {"ingressClassName": "sluice", "tls": [{"hosts": ["Web.Example.com", "web.example.com"], "secretName": "web-cert"}],
             "rules": [{"host": "web.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
               "backend": {"service": {"name": "httpbin", "port": {"number": 80}}}}]}}]}
            """#)
        let t = translate(c)
        #expect(t.errors.isEmpty, "\(t.errors)")
        let o = try decoded(t.ssl("ing_default_web_tls_0"))
        #expect(o.kind == .server)
        #expect(o.snis == ["web.example.com"])
        #expect(o.cert == Self.cert && o.key == Self.key)
        #expect(o.client == nil)
    }

    @Test func theAPISIXControllersCertAndKeySecretFormatIsReadToo() throws {
        var c = ClusterState()
        try c.addSecret("apisix-format", ["cert": Self.cert, "key": Self.key])
        try c.addTls("site", #"{"hosts": ["a.example.com"], "secret": {"name": "apisix-format", "namespace": "default"}}"#)
        let o = try decoded(translate(c).ssl("default_site"))
        #expect(o.cert == Self.cert && o.key == Self.key)
    }

    @Test func theCAIsCaCrtWhenTheSecretHasOneAndNoPrivateKeyIsEverRead() throws {
        var c = ClusterState()
        try c.addSecret("site-cert", ["tls.crt": Self.cert, "tls.key": Self.key])
        // A cert-manager Secret: tls.crt is the certificate the CA issued, ca.crt the CA.
        try c.addSecret("issued", ["tls.crt": Self.cert, "tls.key": Self.key, "ca.crt": Self.ca])
        // A CA's own Secret without ca.crt: its tls.crt is the CA.
        try c.addSecret("ca-only", ["tls.crt": Self.ca, "tls.key": Self.key])
        try c.addTls("a", #"{"hosts": ["a.com"], "secret": {"name": "site-cert"}, "client": {"caSecret": {"name": "issued"}}}"#)
        try c.addTls("b", #"{"hosts": ["b.com"], "secret": {"name": "site-cert"}, "client": {"caSecret": {"name": "ca-only"}}}"#)
        let t = translate(c)
        #expect(try decoded(t.ssl("default_a")).client?.ca == Self.ca)
        #expect(try decoded(t.ssl("default_b")).client?.ca == Self.ca)
        // The controller keeps only the keys it reads: a CA Secret's tls.key is not among them.
        let refs = Translator().secretReferences(c)
        #expect(refs["default/ca-only"] == .some(Translator.caKeys))
        #expect(Translator.caKeys.contains(Secret.tlsPrivateKeyKey) == false)
    }

    @Test(arguments: ["*example.com", "[::1]", "a.com:443", "a..com", "*", "é.com"])
    func aHostTheGatewayWouldRefuseAsAServerNameIsAnErrorNamingIt(_ host: String) throws {
        var c = try httpbinCluster()
        try c.addSecret("cert", ["tls.crt": Self.cert, "tls.key": Self.key])
        try c.addTls("site", #"{"hosts": ["ok.com", "\#(host)"], "secret": {"name": "cert"}}"#)
        try c.addIngress("web", #"""
            {"ingressClassName": "sluice", "tls": [{"hosts": ["\#(host)"], "secretName": "cert"}],
             "defaultBackend": {"service": {"name": "httpbin", "port": {"number": 80}}}}
            """#)
        let t = translate(c)
        #expect(t.errors[SourceRef(.apisixTls, "default", "site")]?.hasPrefix("spec.hosts[1]: must be a host name") == true, "\(t.errors)")
        #expect(t.errors[SourceRef(.ingress, "default", "web")]?.hasPrefix("spec.tls[0].hosts[0]: must be a host name") == true, "\(t.errors)")
        #expect(t.objects.isEmpty)
    }

    // MARK: - Missing Secrets and keys

    struct Broken: Sendable, CustomTestStringConvertible {
        var data: [String: String]?
        var message: String
        var testDescription: String { message }
    }

    @Test(arguments: [
        Broken(data: nil, message: "spec.secret: Secret default/cert not found"),
        Broken(data: ["tls.crt": TLSTranslationTests.cert], message: "spec.secret: Secret default/cert has tls.crt but no tls.key"),
        Broken(data: ["tls.key": TLSTranslationTests.key], message: "spec.secret: Secret default/cert has tls.key but no tls.crt"),
        Broken(data: ["tls.crt": "", "tls.key": TLSTranslationTests.key], message: "spec.secret: Secret default/cert has tls.key but no tls.crt"),
        Broken(data: ["cert": TLSTranslationTests.cert], message: "spec.secret: Secret default/cert has cert but no key"),
        Broken(data: ["password": "p"], message: "spec.secret: Secret default/cert needs tls.crt and tls.key"),
    ])
    func aMissingSecretOrKeyIsAnErrorOnTheObjectAndWritesNothingForIt(_ b: Broken) throws {
        var c = try httpbinCluster()
        if let data = b.data { try c.addSecret("cert", data) }
        try c.addSecret("good", ["tls.crt": Self.cert, "tls.key": Self.key])
        try c.addTls("broken", #"{"hosts": ["a.com"], "secret": {"name": "cert", "namespace": "default"}}"#)
        try c.addTls("fine", #"{"hosts": ["b.com"], "secret": {"name": "good", "namespace": "default"}}"#)
        try c.addIngress("web", #"""
            {"ingressClassName": "sluice", "tls": [{"hosts": ["a.com"], "secretName": "cert"}],
             "defaultBackend": {"service": {"name": "httpbin", "port": {"number": 80}}}}
            """#)
        let t = translate(c)
        let broken = SourceRef(.apisixTls, "default", "broken")
        #expect(t.errors[broken] == b.message)
        #expect(t.produced[broken] == nil)
        // The Ingress names its entry; its routes are not written without their certificate.
        let ingressMessage = b.message.replacingOccurrences(of: "spec.secret", with: "spec.tls[0].secretName")
        #expect(t.errors[SourceRef(.ingress, "default", "web")] == ingressMessage)
        #expect(t.ids(.routes).isEmpty)
        // Every other object still translates.
        #expect(t.ids(.ssls) == ["default_fine"])
    }

    @Test func clientVerificationErrorsNameTheField() throws {
        var c = ClusterState()
        try c.addSecret("cert", ["tls.crt": Self.cert, "tls.key": Self.key])
        try c.addSecret("opaque", ["password": "p"])
        for (name, client) in [
            ("noca", #"{"depth": 1}"#), ("gone", #"{"caSecret": {"name": "gone"}}"#), ("nocrt", #"{"caSecret": {"name": "opaque"}}"#),
            ("deep", #"{"caSecret": {"name": "cert"}, "depth": 17}"#), ("regex", #"{"caSecret": {"name": "cert"}, "skip_mtls_uri_regex": ["^/ok", "(unclosed"]}"#),
        ] {
            try c.addTls(name, #"{"hosts": ["a.com"], "secret": {"name": "cert"}, "client": \#(client)}"#)
        }
        let t = translate(c)
        func error(_ name: String) -> String { t.errors[SourceRef(.apisixTls, "default", name)] ?? "" }
        // A client block without a CA is refused, never served as TLS without verification.
        #expect(error("noca") == "spec.client.caSecret: is required to verify client certificates")
        #expect(error("gone") == "spec.client.caSecret: Secret default/gone not found")
        #expect(error("nocrt").hasPrefix("spec.client.caSecret: Secret default/opaque has no ca.crt"))
        #expect(error("deep") == "spec.client.depth: must be between 0 and 16, got 17")
        #expect(error("regex").hasPrefix("spec.client.skip_mtls_uri_regex[1]: is not a valid regex"))
        #expect(t.objects.isEmpty)
    }

    // MARK: - Secrets of other namespaces

    @Test func anIngressTlsSecretIsReadOnlyFromTheIngresssNamespaceWhateverNamespaceIsWatched() throws {
        var c = try httpbinCluster()
        try c.addSecret("web-cert", ns: "certs", ["tls.crt": Self.cert, "tls.key": "OTHER-KEY"])
        try c.addIngress("web", #"""
            {"ingressClassName": "sluice", "tls": [{"hosts": ["web.example.com"], "secretName": "web-cert"}],
             "defaultBackend": {"service": {"name": "httpbin", "port": {"number": 80}}}}
            """#)
        for translator in [Translator(), Translator(secretNamespaces: ["default", "certs"])] {
            let t = translator.translate(c)
            #expect(t.errors[SourceRef(.ingress, "default", "web")] == "spec.tls[0].secretName: Secret default/web-cert not found")
            #expect(!t.objects.values.contains { $0.serialized().contains("OTHER-KEY") })
            #expect(translator.secretReferences(c) == ["default/web-cert": Translator.certificateKeys])
        }
    }

    @Test func everyCrossNamespaceReferenceIsRefusedAndNotEvenHeldUnlessBothNamespacesAreGiven() throws {
        var c = try httpbinCluster()
        for name in ["site", "ca", "client"] {
            try c.addSecret(name, ns: "tenant-b", ["tls.crt": Self.cert, "tls.key": "B-KEY", "ca.crt": "B-CA"])
        }
        try c.addSecret("own", ["tls.crt": Self.cert, "tls.key": Self.key])
        try c.addTls("steal-cert", #"{"hosts": ["a.com"], "secret": {"name": "site", "namespace": "tenant-b"}}"#)
        try c.addTls("steal-ca", #"{"hosts": ["b.com"], "secret": {"name": "own"}, "client": {"caSecret": {"name": "ca", "namespace": "tenant-b"}}}"#)
        try c.addUpstream("httpbin", #"{"scheme": "https", "tlsSecret": {"name": "client", "namespace": "tenant-b"}}"#)
        try c.addRoute("r", ruleSpec())
        for translator in [Translator(), Translator(secretNamespaces: ["default", "tenant-c"])] {
            let t = translator.translate(c)
            #expect(t.errors[SourceRef(.apisixTls, "default", "steal-cert")]?.hasPrefix("spec.secret.namespace: Secret tenant-b/site is in another namespace") == true)
            #expect(t.errors[SourceRef(.apisixTls, "default", "steal-ca")]?.hasPrefix("spec.client.caSecret.namespace: Secret tenant-b/ca is in another namespace") == true)
            #expect(t.errors[SourceRef(.apisixUpstream, "default", "httpbin")]?.hasPrefix("spec.tlsSecret.namespace: Secret tenant-b/client is in another namespace") == true)
            #expect(!t.objects.values.contains { $0.serialized().contains("B-") }, "\(t.objects)")
            // Nothing of tenant-b is even kept by the controller.
            #expect(translator.secretReferences(c) == ["default/own": Translator.certificateKeys])
        }
        // Both namespaces given: the references are read, as the APISIX controller reads them.
        let both = Translator(secretNamespaces: ["default", "tenant-b"])
        let t = both.translate(c)
        #expect(t.errors.isEmpty, "\(t.errors)")
        #expect(t.ssl("default_steal-cert")?["key"] == "B-KEY")
        #expect(t.ssl("default_steal-ca")?["client"]?["ca"] == "B-CA")
        #expect(t.upstream("default_httpbin_80")?["tls"]?["client_key"] == "B-KEY")
    }

    // MARK: - Secret changes reach the next translation

    /// Every kind of reference (ApisixTls `secret` and `client.caSecret`, Ingress `tls`,
    /// ApisixUpstream `tlsSecret`): a Secret updated in place, as cert-manager renews one, is
    /// what the next translation reads, and a change to it asks for one.
    @Test func aSecretUpdatedInPlaceIsWhatTheNextTranslationReads() async throws {
        let controller = IngressController(api: HostileValueTests.api(), writer: FakeGateway(), options: .init())
        await controller.handle(.service, .added(kubeObject("httpbin", spec: json(#"{"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80}]}"#))))
        await controller.handle(.crd(.apisixTls), .added(kubeObject("site", spec: json(#"{"hosts": ["a.com"], "secret": {"name": "site"}, "client": {"caSecret": {"name": "ca"}}}"#))))
        await controller.handle(.crd(.ingress), .added(kubeObject("web", spec: json(#"""
            {"ingressClassName": "sluice", "tls": [{"hosts": ["b.com"], "secretName": "web"}],
             "defaultBackend": {"service": {"name": "httpbin", "port": {"number": 80}}}}
            """#))))
        await controller.handle(.crd(.apisixUpstream), .added(kubeObject("httpbin", spec: json(#"{"scheme": "https", "tlsSecret": {"name": "client"}}"#))))
        func secret(_ name: String, _ generation: String) -> JSONValue {
            HostileValueTests.secret(name, ["tls.crt": "\(name)-crt-\(generation)", "tls.key": "\(name)-key-\(generation)", "ca.crt": "\(name)-ca-\(generation)"])
        }
        for name in ["site", "ca", "web", "client"] { await controller.handle(.secret, .added(secret(name, "v1"))) }
        let translator = Translator()  // the controller's: default class, every namespace
        func translated() async -> Translation { translator.translate(await controller.cluster) }
        var t = await translated()
        #expect(t.errors.isEmpty, "\(t.errors)")
        #expect(t.ssl("default_site")?["cert"] == "site-crt-v1")
        #expect(t.ssl("default_site")?["client"]?["ca"] == "ca-ca-v1")
        #expect(t.ssl("ing_default_web_tls_0")?["key"] == "web-key-v1")
        #expect(t.upstream("default_httpbin_80")?["tls"]?["client_cert"] == "client-crt-v1")
        for name in ["site", "ca", "web", "client"] {
            await controller.handle(.secret, .updated(old: Informer.stub(secret(name, "v1")), new: secret(name, "v2")))
        }
        #expect(await controller.needsTranslate)
        t = await translated()
        #expect(t.ssl("default_site")?["cert"] == "site-crt-v2")
        #expect(t.ssl("default_site")?["key"] == "site-key-v2")
        #expect(t.ssl("default_site")?["client"]?["ca"] == "ca-ca-v2")
        #expect(t.ssl("ing_default_web_tls_0")?["cert"] == "web-crt-v2")
        #expect(t.upstream("default_httpbin_80")?["tls"]?["client_key"] == "client-key-v2")
        // A Secret deleted: the objects that need it no longer translate (and keep what they
        // last produced on the gateway, see IngressController.prepare).
        await controller.handle(.secret, .deleted(Informer.stub(secret("site", "v2"))))
        t = await translated()
        #expect(t.errors[SourceRef(.apisixTls, "default", "site")] == "spec.secret: Secret default/site not found")
    }

    // MARK: - A gateway that encrypts private keys

    /// A gateway with `--keyring` lists private keys encrypted: the listed object still
    /// holds the desired one, so a relist writes nothing; a new certificate is written.
    @Test func keysListedEncryptedAreNotWrittenAgain() async throws {
        let sslKey = ObjectKey(.ssls, "default_site")
        let upstreamKey = ObjectKey(.upstreams, "default_httpbin_80")
        let desiredSSL: JSONValue = [
            "type": "server", "snis": ["a.com"], "cert": .string(Self.cert), "key": .string(Self.key), "keys": [.string(Self.key)],
            "certs": [.string(Self.cert)], "labels": managedBy,
        ]
        var storedSSL = desiredSSL
        storedSSL = storedSSL.mergePatched(with: ["key": "q2+ENCRYPTED+base64==", "keys": ["r3+ENCRYPTED+base64=="]])
        let desiredUpstream: JSONValue = [
            "nodes": ["10.0.0.1:443": 100], "scheme": "https", "tls": ["client_cert": .string(Self.cert), "client_key": .string(Self.key)], "labels": managedBy,
        ]
        let storedUpstream = desiredUpstream.mergePatched(with: ["tls": ["client_key": "s4+ENCRYPTED+base64=="]])
        let gw = FakeGateway(objects: [sslKey: storedSSL, upstreamKey: storedUpstream])
        let sync = GatewaySync(writer: gw, concurrency: 1)
        await sync.replaceAll([sslKey: desiredSSL, upstreamKey: desiredUpstream])
        #expect(await sync.flush().outcome == .done)
        #expect(gw.writes.isEmpty, "\(gw.writes)")
        #expect(await sync.isSynced(sslKey))
        #expect(await sync.isSynced(upstreamKey))
        // A pod change is still a patch of the nodes alone.
        await sync.set(upstreamKey, desiredUpstream.mergePatched(with: ["nodes": ["10.0.0.1:443": .null, "10.0.0.2:443": 100]]))
        #expect(await sync.flush().outcome == .done)
        #expect(gw.writes == [.patch(upstreamKey, ["nodes": ["10.0.0.1:443": .null, "10.0.0.2:443": 100]])])
        // A renewed certificate is written.
        gw.clearOps()
        let renewed = desiredSSL.mergePatched(with: ["cert": .string(Self.pem("CERTIFICATE", "n"))])
        await sync.set(sslKey, renewed)
        await sync.requestRelist()
        #expect(await sync.flush().outcome == .done)
        #expect(gw.writes == [.put(sslKey, renewed)])
        // A listed object that differs in anything else is written again, encrypted key or not.
        #expect(!GatewaySync.holds(listed: storedSSL.mergePatched(with: ["snis": ["b.com"]]), desired: desiredSSL, kind: .ssls))
        #expect(!GatewaySync.holds(listed: storedSSL, desired: desiredSSL, kind: .routes))
        #expect(GatewaySync.holds(listed: storedSSL, desired: desiredSSL, kind: .ssls))
    }
}
