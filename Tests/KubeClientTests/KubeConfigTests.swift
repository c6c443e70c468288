import KubeClient
import SluiceCore
import Testing

/// An in-memory file system for kubeconfig tests.
func files(_ contents: [String: String]) -> KubeConfigLoader.FileReader {
    { path in contents[path].map { Array($0.utf8) } }
}

let sample = """
    apiVersion: v1
    kind: Config
    current-context: dev
    clusters:
    - name: prod
      cluster:
        server: https://10.0.0.1:6443
        certificate-authority-data: \(Base64.encode("CA-PEM"))
    - name: local
      cluster:
        server: http://127.0.0.1:8001/k8s/
        insecure-skip-tls-verify: true
    - name: filed
      cluster:
        server: https://[fd00::1]
        certificate-authority: certs/ca.crt
    contexts:
    - name: dev
      context: {cluster: local, user: token-user, namespace: team-a}
    - name: prod
      context: {cluster: prod, user: cert-user}
    - name: filed
      context: {cluster: filed, user: file-user}
    - name: broken
      context: {cluster: nowhere, user: token-user}
    - name: exec
      context: {cluster: prod, user: exec-user}
    users:
    - name: token-user
      user: {token: abc123}
    - name: cert-user
      user:
        client-certificate-data: \(Base64.encode("CERT"))
        client-key-data: \(Base64.encode("KEY"))
    - name: file-user
      user: {tokenFile: secrets/token}
    - name: exec-user
      user: {exec: {command: aws}}
    """

@Suite struct KubeConfigTests {
    let fs = files([
        "/home/me/.kube/config": sample, "/home/me/.kube/certs/ca.crt": "FILE-CA", "/home/me/.kube/secrets/token": "t0k3n",
    ])

    @Test func currentContextWithTokenNamespaceAndPathPrefix() throws {
        let c = try KubeConfigLoader.load(environment: ["HOME": "/home/me"], readFile: fs)
        #expect(c.scheme == "http")
        #expect(c.host == "127.0.0.1")
        #expect(c.port == 8001)
        #expect(c.basePath == "/k8s")
        #expect(c.insecureSkipTLSVerify)
        #expect(c.auth == .bearer("abc123"))
        #expect(c.namespace == "team-a")
    }

    @Test func namedContextWithClientCertificateAndInlineCA() throws {
        let c = try KubeConfigLoader.load(context: "prod", environment: ["HOME": "/home/me"], readFile: fs)
        #expect(c.server == "https://10.0.0.1:6443")
        #expect(c.certificateAuthorityPEM == Array("CA-PEM".utf8))
        #expect(c.auth == .clientCertificate(certificatePEM: Array("CERT".utf8), keyPEM: Array("KEY".utf8)))
        #expect(c.namespace == "default")
    }

    @Test func relativeFilesResolveAgainstTheKubeconfigsDirectory() throws {
        let c = try KubeConfigLoader.load(context: "filed", environment: ["HOME": "/home/me"], readFile: fs)
        #expect(c.host == "fd00::1")
        #expect(c.port == 443)
        #expect(c.certificateAuthorityPEM == Array("FILE-CA".utf8))
        #expect(c.auth == .bearerFile(path: "/home/me/.kube/secrets/token"))
    }

    @Test func errorsNameWhatIsMissing() {
        #expect(throws: KubeConfigError.self) { try KubeConfigLoader.load(context: "nope", environment: ["HOME": "/home/me"], readFile: fs) }
        do {
            _ = try KubeConfigLoader.load(context: "broken", environment: ["HOME": "/home/me"], readFile: fs)
            Issue.record("expected an error")
        } catch {
            #expect(error.description == "contexts[broken].context.cluster: cluster \"nowhere\" not found")
        }
        do {
            _ = try KubeConfigLoader.load(context: "exec", environment: ["HOME": "/home/me"], readFile: fs)
            Issue.record("expected an error")
        } catch {
            #expect(error.description.hasPrefix("users[exec-user].user: exec and auth-provider"))
        }
    }

    @Test func kubeconfigListMergesFirstDefinitionWins() throws {
        let first = """
            current-context: mine
            contexts: [{name: mine, context: {cluster: c, user: u}}]
            clusters: [{name: c, cluster: {server: "https://first:6443"}}]
            users: [{name: u, user: {token: first}}]
            """
        let second = """
            current-context: theirs
            clusters: [{name: c, cluster: {server: "https://second:6443"}}]
            users: [{name: u, user: {token: second}}, {name: v, user: {token: v}}]
            contexts: [{name: theirs, context: {cluster: c, user: v}}]
            """
        let reader = files(["/a": first, "/b": second])
        let c = try KubeConfigLoader.load(environment: ["KUBECONFIG": "/a:/missing:/b"], readFile: reader)
        #expect(c.host == "first")
        #expect(c.auth == .bearer("first"))
        let d = try KubeConfigLoader.load(context: "theirs", environment: ["KUBECONFIG": "/a:/b"], readFile: reader)
        #expect(d.auth == .bearer("v"))
        #expect(d.host == "first")  // cluster "c" was defined first in /a
    }

    @Test func inClusterServiceAccountComesFirst() throws {
        let sa = KubeConfigLoader.serviceAccountDirectory
        let reader = files(["\(sa)/token": "tok", "\(sa)/ca.crt": "SA-CA", "\(sa)/namespace": "ingress\n", "/home/me/.kube/config": sample])
        let c = try KubeConfigLoader.load(
            environment: ["KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443", "HOME": "/home/me"], readFile: reader)
        #expect(c.server == "https://10.96.0.1:443")
        #expect(c.auth == .bearerFile(path: "\(sa)/token"))
        #expect(c.certificateAuthorityPEM == Array("SA-CA".utf8))
        #expect(c.namespace == "ingress")
        // --kubeconfig wins over the service account.
        let k = try KubeConfigLoader.load(kubeconfig: "/home/me/.kube/config", environment: ["KUBERNETES_SERVICE_HOST": "10.96.0.1"], readFile: reader)
        #expect(k.auth == .bearer("abc123"))
    }
}
