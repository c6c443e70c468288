import ArgumentParser
import Dispatch
import Foundation
import Logging
import NIOCore
import NIOPosix
import SluiceAdmin
import KubeClient
import SluiceCore
import SluiceDiscovery
import SluiceEtcd
import SluiceProxy
import SluiceServer
import SluiceTLS
import SluiceStore

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the gateway: proxy listeners with live configuration.")

    @Option(name: .customLong("config"), help: "Settings file (default: conf/sluice.yaml when present).")
    var configFile: String?

    @Option(name: .customLong("proxy-listen"), help: "HTTP proxy listener HOST:PORT (repeatable; default 0.0.0.0:9080).")
    var proxyListen: [String] = []

    @Option(name: .customLong("tls-listen"), help: "TLS proxy listener HOST:PORT (repeatable; default 0.0.0.0:9443; off for none). Certificates come from ssls objects by SNI.")
    var tlsListen: [String] = []

    @Option(name: .customLong("tls-default-sni"), help: "Server name whose certificate serves TLS clients that send no SNI or an unknown one (default: such handshakes fail with unrecognized_name).")
    var tlsDefaultSNI: String?

    @Option(name: .customLong("keyring"), help: "Keyring key (16 or 32 characters; repeatable), as APISIX's data_encryption.keyring: private keys and plugin secrets (key-auth key, basic-auth password, jwt-auth secret, Redis passwords) are stored AES-CBC encrypted with the first and decrypted with any. Without it they are stored in the clear and read with APISIX's default keyring.")
    var keyring: [String] = []

    @Option(name: .customLong("upstream-trusted-ca"), help: "PEM file of CA certificates that https upstreams with tls.verify are checked against (default: the system trust store).")
    var upstreamTrustedCA: String?

    @Option(help: "Read-only mode: routes, services and upstreams come from this YAML file, re-read when it changes.")
    var standalone: String?

    @Option(name: .customLong("admin-listen"), help: "Admin API HOST:PORT (default 127.0.0.1:9180).")
    var adminListen: String?

    @Option(name: .customLong("admin-key"), help: "Admin API key (default: generated at first start, kept in the data dir).")
    var adminKey: String?

    @Option(name: .customLong("control-listen"), help: "Control API HOST:PORT (default 127.0.0.1:9090).")
    var controlListen: String?

    @Option(name: .customLong("metrics-listen"), help: "Prometheus metrics HOST:PORT (default 127.0.0.1:9091).")
    var metricsListen: String?

    @Option(name: .customLong("data-dir"), help: "Embedded store directory (default ./sluice-data).")
    var dataDir: String?

    @Option(help: "Use etcd v3 as the store: http://HOST:PORT[,http://HOST:PORT...] (instead of the embedded store).")
    var etcd: String?

    @Option(name: .customLong("etcd-prefix"), help: "Key prefix in etcd (default /apisix).")
    var etcdPrefix: String?

    @Option(
        name: .customLong("kubernetes-discovery"),
        help: "Follow EndpointSlices for discovery_type kubernetes upstreams: in-cluster, or a kubeconfig FILE (default: off).")
    var kubernetesDiscovery: String?

    @Option(help: "Event-loop threads (default: number of cores).")
    var workers: Int?

    @Option(name: .customLong("client-header-timeout"), help: "Seconds a client has to send a request head (default 60).")
    var clientHeaderTimeout: Double?

    @Option(name: .customLong("client-body-timeout"), help: "Seconds a request body may send nothing before it is answered 408 (default 60).")
    var clientBodyTimeout: Double?

    @Option(name: .customLong("keepalive-timeout"), help: "Seconds an idle keep-alive client connection is kept (default 60).")
    var keepaliveTimeout: Double?

    @Option(name: .customLong("max-connections"), help: "Client connections the process accepts at most; above it accepts wait (default 10620 per worker, within the descriptor limit).")
    var maxConnections: Int?

    @Option(name: .customLong("shutdown-timeout"), help: "Seconds in-flight requests get to finish on SIGTERM/SIGINT (default 30).")
    var shutdownTimeout: Double?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical (default info).")
    var logLevel: String?

    @Option(name: .customLong("log-format"), help: "text or json (default text).")
    var logFormat: String?

    @Option(name: .customLong("access-log"), help: "Access log: a file PATH, stdout, or off (default off). SIGUSR1 reopens the file.")
    var accessLog: String?

    @Option(name: .customLong("access-log-format"), help: "Access log lines: text (APISIX's default line) or json (default text).")
    var accessLogFormat: String?

    func run() async throws {
        let settings = try ServeSettings.resolve(flags: self)
        bootstrapLogging(json: settings.logFormat == "json", level: settings.logLevel)
        let logger = Logger(label: "sluice")

        var accessLog: AccessLog? = nil
        if let destination = settings.accessLog {
            do {
                accessLog = try AccessLog(destination: destination, format: settings.accessLogFormat)
            } catch {
                FileHandle.standardError.write(Data("sluice: --access-log: \(error)\n".utf8))
                throw ExitCode(2)
            }
        }
        // SIGUSR1 reopens the access log file (logrotate: mv the file, then kill -USR1).
        var reopenSignal: DispatchSourceSignal? = nil
        if let accessLog {
            Foundation.signal(SIGUSR1, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: SIGUSR1, queue: .global())
            source.setEventHandler {
                logger.info("SIGUSR1: reopening the access log", metadata: ["path": "\(accessLog.destination)"])
                accessLog.reopen()
            }
            source.resume()
            reopenSignal = source
        }

        var config = GatewayServer.Configuration()
        config.accessLog = accessLog
        config.proxyListen = settings.proxyListen
        config.tlsListen = settings.tlsListen
        config.tlsDefaultSNI = settings.tlsDefaultSNI
        config.keyring = settings.keyring
        config.upstreamTrustedCA = settings.upstreamTrustedCA
        config.settings = settings.proxy
        config.maxConnections = settings.maxConnections
        config.workers = settings.workers
        config.discoveryEnabled = settings.kubernetesDiscovery != nil
        let server = try await GatewayServer.make(configuration: config, logger: logger)

        let publisher: ConfigService.Publisher = { state, changes in try await server.apply(state, changes: changes) }
        var storedForm: ConfigService.StoredForm? = nil
        if let keyring = settings.keyring {
            storedForm = { (kind: ResourceKind, value: JSONValue) -> JSONValue in keyring.storedForm(kind, value) }
        }
        // Encrypted plugin fields (key-auth keys, basic-auth passwords...) are read with the
        // configured keyring, else with APISIX's default one, which is what an APISIX left at
        // its defaults wrote them with.
        let plainForm: ConfigService.StoredForm?
        if let readKeyring = settings.keyring ?? (try? Keyring(keys: Keyring.apisixDefaultKeys)) {
            plainForm = { (kind: ResourceKind, value: JSONValue) -> JSONValue in readKeyring.plainForm(kind, value) }
        } else {
            plainForm = nil
        }
        let service: ConfigService
        var watcher: Task<Void, Never>? = nil
        var storeHealth: (any StoreHealth)? = nil
        if let file = settings.standalone {
            service = ConfigService(readOnlyPublisher: publisher)
            let source = StandaloneSource(path: file, service: service, logger: logger, keyring: settings.keyring)
            do {
                let fingerprint = try await source.loadInitial()
                watcher = Task { await source.watch(from: fingerprint) }
            } catch {
                FileHandle.standardError.write(Data("sluice: --standalone: \(error)\n".utf8))
                await server.shutdown(gracePeriod: .zero)
                throw ExitCode(2)
            }
        } else if let endpoints = settings.etcd {
            let store = EtcdStore(client: EtcdClient(endpoints: endpoints, group: server.group), prefix: settings.etcdPrefix)
            service = ConfigService(store: store, publisher: publisher, trialCompile: GatewayServer.trialCompiler(keyring: settings.keyring), storedForm: storedForm, plainForm: plainForm)
            do {
                let (_, skipped, _) = try await store.loadAll()
                for s in skipped { logger.error("etcd value is not JSON; skipped", metadata: ["key": "\(s.key)", "error": "\(s.reason)"]) }
                await service.noteSkipped(skipped.count)
                for e in try await service.start() {
                    logger.error("stored object skipped: it does not validate", metadata: ["error": "\(e)"])
                }
            } catch {
                FileHandle.standardError.write(Data("sluice: --etcd: cannot read the config from \(endpoints): \(error)\n".utf8))
                await server.shutdown(gracePeriod: .zero)
                throw ExitCode(1)
            }
            let sync = EtcdSync(store: store, service: service, logger: logger)
            storeHealth = sync
            watcher = Task { await sync.run() }
        } else {
            do {
                let store = try EmbeddedStore(directory: settings.dataDir)
                for note in await store.recoveryNotes { logger.warning("embedded store recovered", metadata: ["note": "\(note)"]) }
                service = ConfigService(store: store, publisher: publisher, trialCompile: GatewayServer.trialCompiler(keyring: settings.keyring), storedForm: storedForm, plainForm: plainForm)
                for e in try await service.start() {
                    logger.error("stored object skipped: it does not validate", metadata: ["error": "\(e)"])
                }
            } catch {
                FileHandle.standardError.write(Data("sluice: --data-dir \(settings.dataDir): \(error)\n".utf8))
                await server.shutdown(gracePeriod: .zero)
                throw ExitCode(1)
            }
        }

        var keys: [String: AdminAPI.Role] = [:]
        if let key = settings.adminKey {
            keys[key] = .admin
        } else {
            do {
                try EmbeddedStore.makeDataDirectory(settings.dataDir)
                switch try AdminKey.loadOrGenerate(dataDirectory: settings.dataDir) {
                case .loaded(let key): keys[key] = .admin
                case .generated(let key):
                    keys[key] = .admin
                    FileHandle.standardOutput.write(
                        Data("Admin API key (generated; stored in \(settings.dataDir)/admin.key, mode 0600): \(key)\n".utf8))
                }
            } catch {
                FileHandle.standardError.write(Data("sluice: --admin-key: none given and \(error)\n".utf8))
                await server.shutdown(gracePeriod: .zero)
                throw ExitCode(1)
            }
        }
        if let viewer = settings.viewerKey { keys[viewer] = .viewer }

        var discovery: KubernetesDiscovery? = nil
        var discoveryTask: Task<Void, Never>? = nil
        if let connection = settings.kubernetesDiscovery {
            let d = KubernetesDiscovery(api: KubeAPI(connection, group: server.group), logger: logger)
            discovery = d
            logger.info("kubernetes discovery on", metadata: ["server": "\(connection.server)"])
            discoveryTask = Task {
                await d.run { update in
                    do {
                        try await server.applyDiscovery(update.registry, changed: update.changed)
                        let now = KubeTime.nowMicroseconds()
                        for (service, trigger) in update.triggerTimes {
                            logger.debug(
                                "kubernetes discovery: nodes live",
                                metadata: ["service": "\(service)", "latency_ms": "\(Double(now - trigger) / 1000)"])
                        }
                    } catch {
                        logger.error("kubernetes discovery: cannot publish new nodes", metadata: ["error": "\(error)"])
                    }
                }
            }
        }
        var dump: (@Sendable () async -> JSONValue)? = nil
        if let discovery { dump = { await discovery.dump() } }

        // The Admin, control and metrics APIs run on a loop of their own: a large listing
        // is encoded there, never on a loop that serves proxied requests.
        let controlGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var apis: [APIServer] = []
        do {
            apis.append(
                try await APIServer.start(
                    name: "admin API", listen: settings.adminListen,
                    handler: AdminAPI(service: service, keys: keys, allowed: settings.allowAdmin), group: controlGroup, logger: logger))
            apis.append(
                try await APIServer.start(
                    name: "control API", listen: settings.controlListen, handler: ControlAPI(
                        service: service, kubernetesDiscoveryDump: dump, certificates: { await server.certificates() },
                        healthcheck: { name in name.map { server.healthcheckStatus(upstream: $0) } ?? server.healthcheckStatus() }), group: controlGroup,
                    logger: logger))
            apis.append(
                try await APIServer.start(
                    name: "metrics", listen: settings.metricsListen,
                    handler: MetricsAPI(service: service, storeHealth: storeHealth, dataPlane: { await server.metricsText() }), group: controlGroup,
                    logger: logger))
            try await server.start()
        } catch {
            logger.critical("cannot listen", metadata: ["error": "\(error)"])
            for api in apis { await api.close() }
            await server.shutdown(gracePeriod: .zero)
            throw ExitCode(1)
        }

        let signal = await Signals.wait(for: [SIGTERM, SIGINT])
        logger.info("shutting down", metadata: ["signal": "\(signal)", "grace_seconds": "\(settings.shutdownTimeout)"])
        watcher?.cancel()
        discoveryTask?.cancel()
        for api in apis { await api.close() }
        try? await controlGroup.shutdownGracefully()
        await server.shutdown(gracePeriod: TimeAmount.nanoseconds(Int64(settings.shutdownTimeout * 1e9)))
        reopenSignal?.cancel()
        if let accessLog, !accessLog.close(timeout: .seconds(5)) {
            logger.warning("access log: gave up waiting for the writer", metadata: ["path": "\(accessLog.destination)"])
        }
        logger.info("stopped")
    }
}

/// Logs to stderr, as text or JSON lines, for `serve` and `ingress` alike.
func bootstrapLogging(json: Bool, level: Logger.Level) {
    LoggingSystem.bootstrap { label in
        var handler: LogHandler = json ? JSONLogHandler(label: label) : StreamLogHandler.standardError(label: label)
        handler.logLevel = level
        return handler
    }
}

/// `--etcd URL[,URL...]`: nil when empty or when any member is not http://HOST:PORT.
func etcdEndpoints(_ urls: String) -> [EtcdEndpoint]? {
    let endpoints = urls.split(separator: ",").map { EtcdEndpoint(url: String($0).trimmingCharacters(in: .whitespaces)) }
    guard !endpoints.isEmpty, endpoints.allSatisfy({ $0 != nil }) else { return nil }
    return endpoints.compactMap { $0 }
}

/// Flag values merged over the settings file.
struct ServeSettings {
    var proxyListen: [ListenAddress] = [ListenAddress(host: "0.0.0.0", port: 9080)]
    var tlsListen: [ListenAddress] = [ListenAddress(host: "0.0.0.0", port: 9443)]
    var tlsDefaultSNI: String?
    var keyring: Keyring?
    /// The PEM text of `--upstream-trusted-ca`, checked to parse.
    var upstreamTrustedCA: String?
    var standalone: String?
    var workers = System.coreCount
    var shutdownTimeout = 30.0
    var proxy = ProxySettings()
    var maxConnections: Int?
    var logLevel: Logger.Level = .info
    var logFormat = "text"
    /// Where the access log goes; nil: off (the default).
    var accessLog: AccessLog.Destination?
    var accessLogFormat: AccessLogFormat = .text
    var adminListen = ListenAddress(host: "127.0.0.1", port: 9180)
    var controlListen = ListenAddress(host: "127.0.0.1", port: 9090)
    var metricsListen = ListenAddress(host: "127.0.0.1", port: 9091)
    var adminKey: String?
    var viewerKey: String?
    var dataDir = "./sluice-data"
    var etcd: [EtcdEndpoint]?
    var etcdPrefix = "/apisix"
    var allowAdmin: [CIDR] = [CIDR("127.0.0.0/8")!, CIDR("::1/128")!]
    /// Where `discovery_type: kubernetes` reads the cluster; nil: discovery is off.
    var kubernetesDiscovery: KubeConnection?

    static func fail(_ message: String) -> ValidationError { ValidationError(message) }

    /// `in-cluster` (the pod's service account) or a kubeconfig file (its current context).
    static func kubernetesConnection(_ value: String) throws -> KubeConnection {
        let environment = ProcessInfo.processInfo.environment
        do throws(KubeConfigError) {
            if value == "in-cluster" { return try KubeConfigLoader.inCluster(environment: environment) }
            guard !value.isEmpty else { throw KubeConfigError("must be in-cluster or a kubeconfig file") }
            return try KubeConfigLoader.fromFiles([value], context: nil)
        } catch {
            throw fail("--kubernetes-discovery: \(error.message)")
        }
    }

    static func resolve(flags: Serve) throws -> ServeSettings {
        var s = ServeSettings()
        var file: [String: JSONValue] = [:]
        let path = flags.configFile ?? (FileManager.default.fileExists(atPath: "conf/sluice.yaml") ? "conf/sluice.yaml" : nil)
        if let path {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw fail("--config: cannot read \(path); pass an existing settings file")
            }
            do {
                guard case .object(let o) = try DeclarativeFile.parse(String(decoding: data, as: UTF8.self)) else {
                    throw fail("\(path): must be a mapping of settings")
                }
                file = o
            } catch let errors as ConfigErrors {
                throw fail("\(path): \(errors)")
            }
            let known: Set<String> = [
                "proxy_listen", "standalone", "workers", "shutdown_timeout", "log_level", "log_format", "admin_listen",
                "admin_key", "viewer_key", "control_listen", "metrics_listen", "data_dir", "allow_admin", "etcd", "etcd_prefix",
                "kubernetes_discovery", "access_log", "access_log_format", "client_header_timeout", "client_body_timeout",
                "keepalive_timeout", "max_connections", "tls_listen", "tls_default_sni", "keyring", "upstream_trusted_ca",
            ]
            for key in file.keys.sorted() where !known.contains(key) {
                throw fail("\(path): \(key): unknown setting (known: \(known.sorted().joined(separator: ", ")))")
            }
        }
        var listens = flags.proxyListen
        if listens.isEmpty, let v = file["proxy_listen"] {
            switch v {
            case .string(let one): listens = [one]
            case .array(let many): listens = many.compactMap(\.stringValue)
            default: throw fail("proxy_listen: must be HOST:PORT or a list of them")
            }
        }
        if !listens.isEmpty {
            s.proxyListen = try listens.map { text in
                guard let a = ListenAddress(text) else { throw fail("--proxy-listen: \"\(text)\" is not HOST:PORT") }
                return a
            }
        }
        var tlsListens = flags.tlsListen
        if tlsListens.isEmpty, let v = file["tls_listen"] {
            switch v {
            case .string(let one): tlsListens = [one]
            case .array(let many): tlsListens = many.compactMap(\.stringValue)
            case .bool(false): tlsListens = ["off"]
            default: throw fail("tls_listen: must be HOST:PORT, a list of them, or off")
            }
        }
        if tlsListens == ["off"] {
            s.tlsListen = []
        } else if !tlsListens.isEmpty {
            s.tlsListen = try tlsListens.map { text in
                guard let a = ListenAddress(text) else { throw fail("--tls-listen: \"\(text)\" is not HOST:PORT (or off)") }
                return a
            }
        }
        if let name = flags.tlsDefaultSNI ?? file["tls_default_sni"]?.stringValue {
            do throws(ConfigError) {
                s.tlsDefaultSNI = try SSLObject.normalizedSNI(name, path: "--tls-default-sni")
            } catch {
                throw fail("\(error)")
            }
            if s.tlsDefaultSNI?.hasPrefix("*.") == true { throw fail("--tls-default-sni: must be a server name, not a wildcard") }
        }
        var keys = flags.keyring
        if keys.isEmpty, case .array(let items)? = file["keyring"] { keys = items.compactMap(\.stringValue) }
        if !keys.isEmpty {
            do throws(KeyringError) {
                s.keyring = try Keyring(keys: keys)
            } catch {
                throw fail("--keyring: \(error)")
            }
        }
        if let path = flags.upstreamTrustedCA ?? file["upstream_trusted_ca"]?.stringValue {
            guard let data = FileManager.default.contents(atPath: path) else { throw fail("--upstream-trusted-ca: cannot read \(path)") }
            let pem = String(decoding: data, as: UTF8.self)
            do throws(ConfigError) {
                _ = try CertificatePair.parseCertificates(pem, path: "--upstream-trusted-ca")
            } catch {
                throw fail("\(error) (\(path))")
            }
            s.upstreamTrustedCA = pem
        }
        s.standalone = flags.standalone ?? file["standalone"]?.stringValue
        if let a = flags.adminListen ?? file["admin_listen"]?.stringValue {
            guard let addr = ListenAddress(a) else { throw fail("--admin-listen: \"\(a)\" is not HOST:PORT") }
            s.adminListen = addr
        }
        if let c = flags.controlListen ?? file["control_listen"]?.stringValue {
            guard let addr = ListenAddress(c) else { throw fail("--control-listen: \"\(c)\" is not HOST:PORT") }
            s.controlListen = addr
        }
        if let m = flags.metricsListen ?? file["metrics_listen"]?.stringValue {
            guard let addr = ListenAddress(m) else { throw fail("--metrics-listen: \"\(m)\" is not HOST:PORT") }
            s.metricsListen = addr
        }
        if let k = flags.adminKey ?? file["admin_key"]?.stringValue {
            guard k.count >= 8 else { throw fail("--admin-key: must be at least 8 characters") }
            s.adminKey = k
        }
        if let v = file["viewer_key"]?.stringValue {
            guard v.count >= 8 else { throw fail("viewer_key: must be at least 8 characters") }
            s.viewerKey = v
        }
        if let d = flags.dataDir ?? file["data_dir"]?.stringValue {
            guard !d.isEmpty else { throw fail("--data-dir: must not be empty") }
            s.dataDir = d
        }
        if let urls = flags.etcd ?? file["etcd"]?.stringValue {
            guard let endpoints = etcdEndpoints(urls) else {
                throw fail("--etcd: \"\(urls)\" must be http://HOST:PORT, comma-separated for several members")
            }
            if flags.standalone != nil || file["standalone"] != nil {
                throw fail("--etcd and --standalone exclude each other: pick one config source")
            }
            s.etcd = endpoints
        }
        if let p = flags.etcdPrefix ?? file["etcd_prefix"]?.stringValue {
            guard p.hasPrefix("/"), p.count > 1 else { throw fail("--etcd-prefix: must start with / (default /apisix)") }
            s.etcdPrefix = p
        }
        if let k = flags.kubernetesDiscovery ?? file["kubernetes_discovery"]?.stringValue {
            s.kubernetesDiscovery = try kubernetesConnection(k)
        }
        if let list = file["allow_admin"] {
            guard case .array(let items) = list else { throw fail("allow_admin: must be a list of CIDRs") }
            s.allowAdmin = try items.enumerated().map { i, item in
                guard let text = item.stringValue, let c = CIDR(text) else { throw fail("allow_admin[\(i)]: must be an IP address or CIDR") }
                return c
            }
        }
        if let w = flags.workers ?? file["workers"]?.intValue.map(Int.init) {
            guard (1...1024).contains(w) else { throw fail("--workers: must be 1-1024, got \(w)") }
            s.workers = w
        }
        // Connection timeouts: whole milliseconds from 1 ms to a day.
        func timeout(_ flag: String, _ value: Double?) throws -> TimeAmount? {
            guard let value else { return nil }
            guard value.isFinite, value >= 0.001, value <= 86_400 else { throw fail("--\(flag): must be 0.001-86400 seconds, got \(value)") }
            return .milliseconds(Int64(value * 1000))
        }
        if let t = try timeout("client-header-timeout", flags.clientHeaderTimeout ?? file["client_header_timeout"]?.doubleValue) {
            s.proxy.clientHeaderTimeout = t
        }
        if let t = try timeout("client-body-timeout", flags.clientBodyTimeout ?? file["client_body_timeout"]?.doubleValue) {
            s.proxy.clientBodyTimeout = t
        }
        if let t = try timeout("keepalive-timeout", flags.keepaliveTimeout ?? file["keepalive_timeout"]?.doubleValue) {
            s.proxy.keepaliveTimeout = t
        }
        if let m = flags.maxConnections ?? file["max_connections"]?.intValue.map({ Int(clamping: $0) }) {
            guard (1...10_000_000).contains(m) else { throw fail("--max-connections: must be 1-10000000, got \(m)") }
            s.maxConnections = m
        }
        if let t = flags.shutdownTimeout ?? file["shutdown_timeout"]?.doubleValue {
            guard t >= 0, t <= 86_400 else { throw fail("--shutdown-timeout: must be 0-86400 seconds, got \(t)") }
            s.shutdownTimeout = t
        }
        if let l = flags.logLevel ?? file["log_level"]?.stringValue {
            guard let level = Logger.Level(rawValue: l) else {
                throw fail("--log-level: must be trace, debug, info, notice, warning, error or critical")
            }
            s.logLevel = level
        }
        if let f = flags.logFormat ?? file["log_format"]?.stringValue {
            guard f == "json" || f == "text" else { throw fail("--log-format: must be text or json") }
            s.logFormat = f
        }
        // YAML reads a bare `off` as false.
        if flags.accessLog == nil, let v = file["access_log"], v.stringValue == nil, v != .bool(false) {
            throw fail("access_log: must be a file path, stdout or off")
        }
        if let a = flags.accessLog ?? file["access_log"]?.stringValue {
            switch a {
            case "off": s.accessLog = nil
            case "stdout": s.accessLog = .stdout
            case "": throw fail("--access-log: must be a file path, stdout or off")
            default: s.accessLog = .file(a)
            }
        }
        if let f = flags.accessLogFormat ?? file["access_log_format"]?.stringValue {
            guard let format = AccessLogFormat(rawValue: f) else { throw fail("--access-log-format: must be text or json, got \"\(f)\"") }
            s.accessLogFormat = format
        }
        return s
    }
}

/// Waits for the first of the given signals (handled, not fatal).
enum Signals {
    static func wait(for signals: [Int32]) async -> Int32 {
        await withCheckedContinuation { (continuation: CheckedContinuation<Int32, Never>) in
            let once = Once()
            var sources: [DispatchSourceSignal] = []
            for sig in signals {
                Foundation.signal(sig, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
                source.setEventHandler {
                    if once.claim() { continuation.resume(returning: sig) }
                }
                source.resume()
                sources.append(source)
            }
            Retained.sources = sources
        }
    }

    final class Once: @unchecked Sendable {
        // Guarded by `lock`; claimed at most once.
        private let lock = NSLock()
        private var done = false
        func claim() -> Bool {
            lock.lock()
            defer { lock.unlock() }
            if done { return false }
            done = true
            return true
        }
    }

    enum Retained {
        nonisolated(unsafe) static var sources: [DispatchSourceSignal] = []
    }
}

/// One JSON object per log line on stderr.
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var object: [String: JSONValue] = [
            "ts": .string(ISO8601DateFormatter().string(from: Date())),
            "level": .string(event.level.rawValue),
            "msg": .string("\(event.message)"),
            "logger": .string(label),
        ]
        for (k, v) in metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 }) { object[k] = .string("\(v)") }
        FileHandle.standardError.write(Data((JSONValue.object(object).serialized() + "\n").utf8))
    }
}
