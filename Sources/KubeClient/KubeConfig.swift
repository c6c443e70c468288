#if canImport(Glibc)
import Glibc
#endif
import SluiceCore
import SluiceYAML

/// How to authenticate to the API server.
public enum KubeAuth: Sendable, Hashable {
    case none
    /// A bearer token given inline.
    case bearer(String)
    /// A bearer token read from a file, read again when it changes (service-account tokens
    /// are rotated).
    case bearerFile(path: String)
    /// A client certificate and key, PEM.
    case clientCertificate(certificatePEM: [UInt8], keyPEM: [UInt8])
    case basic(username: String, password: String)
}

/// Everything needed to reach one API server: what a kubeconfig context, or the in-cluster
/// service account, resolves to.
public struct KubeConnection: Sendable, Hashable {
    /// `https://10.0.0.1:6443`, `http://127.0.0.1:8001`; a path prefix is kept.
    public var server: String
    public var scheme: String
    public var host: String
    public var port: Int
    public var basePath: String
    /// Certificate authority bundle, PEM; nil means the system trust store.
    public var certificateAuthorityPEM: [UInt8]?
    public var insecureSkipTLSVerify: Bool
    public var auth: KubeAuth
    /// The context's namespace, or "default".
    public var namespace: String

    public init(
        server: String, scheme: String, host: String, port: Int, basePath: String, certificateAuthorityPEM: [UInt8]?,
        insecureSkipTLSVerify: Bool, auth: KubeAuth, namespace: String
    ) {
        self.server = server
        self.scheme = scheme
        self.host = host
        self.port = port
        self.basePath = basePath
        self.certificateAuthorityPEM = certificateAuthorityPEM
        self.insecureSkipTLSVerify = insecureSkipTLSVerify
        self.auth = auth
        self.namespace = namespace
    }
}

public struct KubeConfigError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Resolves where and how to reach the API server, as kubectl does: `--kubeconfig FILE`;
/// otherwise the in-cluster service account when `KUBERNETES_SERVICE_HOST` is set;
/// otherwise `$KUBECONFIG` (a `:`-separated list, merged, first definition wins); otherwise
/// `~/.kube/config`.
public enum KubeConfigLoader {
    public static let serviceAccountDirectory = "/var/run/secrets/kubernetes.io/serviceaccount"

    /// Reads a file's bytes; injectable for tests.
    public typealias FileReader = @Sendable (String) -> [UInt8]?

    public static let readFile: FileReader = { path in
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            out += chunk[0..<n]
        }
        return out
    }

    public static func load(
        kubeconfig: String? = nil, context: String? = nil, environment: [String: String], readFile: FileReader = readFile
    ) throws(KubeConfigError) -> KubeConnection {
        if let kubeconfig { return try fromFiles([kubeconfig], context: context, readFile: readFile) }
        if environment["KUBERNETES_SERVICE_HOST"] != nil {
            return try inCluster(environment: environment, readFile: readFile)
        }
        if let list = environment["KUBECONFIG"], !list.isEmpty {
            return try fromFiles(list.split(separator: ":").map(String.init), context: context, readFile: readFile)
        }
        guard let home = environment["HOME"] else {
            throw KubeConfigError("no Kubernetes configuration: not in a cluster, no $KUBECONFIG, no $HOME; pass --kubeconfig FILE")
        }
        return try fromFiles(["\(home)/.kube/config"], context: context, readFile: readFile)
    }

    /// The pod's service account: `KUBERNETES_SERVICE_HOST`/`_PORT`, its token (re-read as
    /// it rotates) and CA, its namespace.
    public static func inCluster(environment: [String: String], readFile: FileReader = readFile) throws(KubeConfigError) -> KubeConnection {
        guard let host = environment["KUBERNETES_SERVICE_HOST"], !host.isEmpty else {
            throw KubeConfigError("in-cluster config: KUBERNETES_SERVICE_HOST is not set")
        }
        let portText = environment["KUBERNETES_SERVICE_PORT"] ?? "443"
        guard let port = Int(portText), (1...65535).contains(port) else {
            throw KubeConfigError("in-cluster config: KUBERNETES_SERVICE_PORT \"\(portText)\" is not a port")
        }
        let tokenPath = "\(serviceAccountDirectory)/token"
        guard readFile(tokenPath) != nil else { throw KubeConfigError("in-cluster config: cannot read \(tokenPath)") }
        guard let ca = readFile("\(serviceAccountDirectory)/ca.crt") else {
            throw KubeConfigError("in-cluster config: cannot read \(serviceAccountDirectory)/ca.crt")
        }
        let namespace = readFile("\(serviceAccountDirectory)/namespace").map { String(decoding: $0, as: UTF8.self).trimmingWhitespace() }
        let bracketed = host.contains(":") ? "[\(host)]" : host
        return KubeConnection(
            server: "https://\(bracketed):\(port)", scheme: "https", host: host, port: port, basePath: "",
            certificateAuthorityPEM: ca, insecureSkipTLSVerify: false, auth: .bearerFile(path: tokenPath),
            namespace: namespace.flatMap { $0.isEmpty ? nil : $0 } ?? "default")
    }

    /// Loads and merges kubeconfig files, then resolves `context` (or the current context).
    public static func fromFiles(_ paths: [String], context: String?, readFile: FileReader = readFile) throws(KubeConfigError) -> KubeConnection {
        var clusters: [String: (JSONValue, String)] = [:]
        var users: [String: (JSONValue, String)] = [:]
        var contexts: [String: JSONValue] = [:]
        var current: String? = nil
        var readAny = false
        for path in paths {
            guard let bytes = readFile(path) else {
                if paths.count == 1 { throw KubeConfigError("cannot read kubeconfig \(path)") }
                continue  // kubectl skips missing files in a $KUBECONFIG list
            }
            readAny = true
            let doc: JSONValue
            do throws(ConfigErrors) {
                doc = try YAMLDocument.parse(String(decoding: bytes, as: UTF8.self))
            } catch {
                throw KubeConfigError("\(path): \(error)")
            }
            let dir = directory(of: path)
            for (field, target) in [("clusters", 0), ("users", 1), ("contexts", 2)] {
                for (i, item) in (doc[field]?.arrayValue ?? []).enumerated() {
                    guard let name = item["name"]?.stringValue else {
                        throw KubeConfigError("\(path): \(field)[\(i)].name: is required")
                    }
                    let body = item[field == "clusters" ? "cluster" : field == "users" ? "user" : "context"] ?? .object([:])
                    switch target {
                    case 0: if clusters[name] == nil { clusters[name] = (body, dir) }
                    case 1: if users[name] == nil { users[name] = (body, dir) }
                    default: if contexts[name] == nil { contexts[name] = body }
                    }
                }
            }
            if current == nil, let c = doc["current-context"]?.stringValue, !c.isEmpty { current = c }
        }
        guard readAny else { throw KubeConfigError("none of the kubeconfig files could be read: \(paths.joined(separator: ", "))") }
        guard let contextName = context ?? current else {
            throw KubeConfigError("kubeconfig has no current-context; pass a context name")
        }
        guard let ctx = contexts[contextName] else { throw KubeConfigError("contexts: context \"\(contextName)\" not found") }
        guard let clusterName = ctx["cluster"]?.stringValue, let (cluster, clusterDir) = clusters[clusterName] else {
            throw KubeConfigError("contexts[\(contextName)].context.cluster: cluster \"\(ctx["cluster"]?.stringValue ?? "")\" not found")
        }
        guard let server = cluster["server"]?.stringValue, let (scheme, host, port, basePath) = parseServer(server) else {
            throw KubeConfigError("clusters[\(clusterName)].cluster.server: must be an http(s) URL, got \"\(cluster["server"]?.stringValue ?? "")\"")
        }
        var ca: [UInt8]? = nil
        if let data = cluster["certificate-authority-data"]?.stringValue {
            guard let decoded = Base64.decode(data) else {
                throw KubeConfigError("clusters[\(clusterName)].cluster.certificate-authority-data: not valid base64")
            }
            ca = decoded
        } else if let file = cluster["certificate-authority"]?.stringValue {
            guard let bytes = readFile(resolve(file, against: clusterDir)) else {
                throw KubeConfigError("clusters[\(clusterName)].cluster.certificate-authority: cannot read \(resolve(file, against: clusterDir))")
            }
            ca = bytes
        }
        let insecure = cluster["insecure-skip-tls-verify"] == .bool(true)
        var auth = KubeAuth.none
        if let userName = ctx["user"]?.stringValue, !userName.isEmpty {
            guard let (user, userDir) = users[userName] else {
                throw KubeConfigError("contexts[\(contextName)].context.user: user \"\(userName)\" not found")
            }
            auth = try resolveAuth(user, name: userName, directory: userDir, readFile: readFile)
        }
        let namespace = ctx["namespace"]?.stringValue ?? "default"
        return KubeConnection(
            server: server, scheme: scheme, host: host, port: port, basePath: basePath, certificateAuthorityPEM: ca,
            insecureSkipTLSVerify: insecure, auth: auth, namespace: namespace.isEmpty ? "default" : namespace)
    }

    static func resolveAuth(_ user: JSONValue, name: String, directory: String, readFile: FileReader) throws(KubeConfigError) -> KubeAuth {
        if let token = user["token"]?.stringValue, !token.isEmpty { return .bearer(token) }
        if let file = user["tokenFile"]?.stringValue, !file.isEmpty {
            let path = resolve(file, against: directory)
            guard readFile(path) != nil else { throw KubeConfigError("users[\(name)].user.tokenFile: cannot read \(path)") }
            return .bearerFile(path: path)
        }
        func pem(_ dataKey: String, _ fileKey: String) throws(KubeConfigError) -> [UInt8]? {
            if let data = user[dataKey]?.stringValue {
                guard let decoded = Base64.decode(data) else { throw KubeConfigError("users[\(name)].user.\(dataKey): not valid base64") }
                return decoded
            }
            if let file = user[fileKey]?.stringValue {
                let path = resolve(file, against: directory)
                guard let bytes = readFile(path) else { throw KubeConfigError("users[\(name)].user.\(fileKey): cannot read \(path)") }
                return bytes
            }
            return nil
        }
        let cert = try pem("client-certificate-data", "client-certificate")
        let key = try pem("client-key-data", "client-key")
        switch (cert, key) {
        case (let c?, let k?): return .clientCertificate(certificatePEM: c, keyPEM: k)
        case (nil, nil): break
        case (nil, _?): throw KubeConfigError("users[\(name)].user: client-key given without client-certificate")
        case (_?, nil): throw KubeConfigError("users[\(name)].user: client-certificate given without client-key")
        }
        if let u = user["username"]?.stringValue, let p = user["password"]?.stringValue { return .basic(username: u, password: p) }
        if user["exec"] != nil || user["auth-provider"] != nil {
            throw KubeConfigError("users[\(name)].user: exec and auth-provider credentials are not supported; use a token or a client certificate")
        }
        return .none
    }

    /// Relative paths in a kubeconfig are relative to the file that holds them.
    static func resolve(_ path: String, against directory: String) -> String {
        path.hasPrefix("/") ? path : "\(directory)/\(path)"
    }

    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    static func parseServer(_ server: String) -> (String, String, Int, String)? {
        let scheme: String
        var rest = Substring(server)
        if rest.hasPrefix("https://") {
            scheme = "https"
            rest = rest.dropFirst(8)
        } else if rest.hasPrefix("http://") {
            scheme = "http"
            rest = rest.dropFirst(7)
        } else {
            return nil
        }
        var basePath = ""
        if let slash = rest.firstIndex(of: "/") {
            basePath = String(rest[slash...])
            if basePath.hasSuffix("/") { basePath.removeLast() }
            rest = rest[..<slash]
        }
        guard let (host, port) = UpstreamNode.splitAddress(String(rest)), !host.isEmpty else { return nil }
        return (scheme, host, port ?? (scheme == "https" ? 443 : 80), basePath)
    }
}
