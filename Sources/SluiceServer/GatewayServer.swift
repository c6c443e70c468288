import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SluiceBalancing
import SluiceCore
import SluicePlugins
import SluiceProxy
import SluiceStore
import SluiceTLS
import Synchronization

/// The data plane as one object: an event-loop group, one `LoopContext` per loop, the proxy
/// listeners, and the publisher that hands new snapshots to every loop.
public final class GatewayServer: Sendable {
    public struct Configuration: Sendable {
        public var proxyListen: [ListenAddress] = [ListenAddress(host: "0.0.0.0", port: 9080)]
        public var workers: Int = System.coreCount
        /// The settings of every proxy listener's connections.
        public var settings = ProxySettings()
        /// Client connections the process keeps open at most; above it, listeners stop
        /// accepting until connections close. nil: APISIX's 10,620 per worker, within the
        /// descriptor limit (`RLIMIT_NOFILE`), which also covers upstream connections.
        public var maxConnections: Int? = nil
        /// A discovery source will call `applyDiscovery`; without one, discovery upstreams
        /// have no nodes and are logged once each.
        public var discoveryEnabled = false
        /// The access log (`--access-log`); nil when it is off.
        public var accessLog: AccessLog? = nil
        /// TLS listeners (`--tls-listen`); certificates come from `ssls` objects by SNI.
        public var tlsListen: [ListenAddress] = []
        /// `--tls-default-sni`: the certificate for clients with no or an unknown SNI.
        public var tlsDefaultSNI: String? = nil
        /// `--keyring`: decrypts (and, through the Admin API, encrypts) private keys at rest.
        public var keyring: Keyring? = nil
        /// `--upstream-trusted-ca`: PEM CA certificates https upstreams are verified against
        /// (when `tls.verify` is on) instead of the system trust store.
        public var upstreamTrustedCA: String? = nil
        public init() {}
    }

    public let group: MultiThreadedEventLoopGroup
    private let loops: [ObjectIdentifier: NIOLoopBound<LoopContext>]
    private let loopList: [EventLoop]
    private let channels: NIOLockedValueBox<[Channel]>
    private let compiler: Mutex<SnapshotCompiler>
    /// The process-wide client connection cap.
    public let connectionLimiter: ConnectionLimiter
    private let compileThread = BlockingSerialExecutor(label: "sluice.compile")
    private let configuration: Configuration
    private let logger: Logger
    /// The prometheus plugin's metrics, served with the connection gauges by `metricsText`.
    public let metrics = HTTPMetrics()
    /// The one active health checker of the process, over the compiler's health registry.
    public let healthChecker: HealthChecker
    /// Node-set updates from discovery applied so far (a Prometheus counter).
    private let discoveryUpdates = Atomic<Int>(0)

    /// Starts the event loops and a `LoopContext` on each (listeners come with `start()`).
    public static func make(configuration: Configuration, logger: Logger) async throws -> GatewayServer {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, configuration.workers))
        var loops: [ObjectIdentifier: NIOLoopBound<LoopContext>] = [:]
        for loop in group.makeIterator() {
            let accessLog = configuration.accessLog
            // A LoopContext is confined to its loop: it is created there.
            loops[ObjectIdentifier(loop)] = try await loop.submit {
                NIOLoopBound(LoopContext(eventLoop: loop, accessLog: accessLog), eventLoop: loop)
            }.get()
        }
        return GatewayServer(configuration: configuration, logger: logger, group: group, loops: loops)
    }

    private init(
        configuration: Configuration, logger: Logger, group: MultiThreadedEventLoopGroup,
        loops: [ObjectIdentifier: NIOLoopBound<LoopContext>]
    ) {
        self.configuration = configuration
        self.logger = logger
        self.group = group
        self.loops = loops
        var list: [EventLoop] = []
        for loop in group.makeIterator() { list.append(loop) }
        loopList = list
        channels = NIOLockedValueBox([])
        // The CA file was checked by the caller (`sluice serve` refuses to start on a bad one).
        let upstreamTLS =
            (try? UpstreamTLSContexts(keyring: configuration.keyring, trustedCAPEM: configuration.upstreamTrustedCA))
            ?? UpstreamTLSContexts(keyring: configuration.keyring)
        compiler = Mutex(
            SnapshotCompiler(
                metrics: metrics, discovery: configuration.discoveryEnabled ? .empty : nil,
                serverTLS: TLSCompiler(keyring: configuration.keyring), upstreamTLS: upstreamTLS))
        connectionLimiter = ConnectionLimiter(maxConnections: configuration.maxConnections ?? Self.defaultMaxConnections(workers: configuration.workers))
        healthChecker = HealthChecker(registry: compiler.withLock { $0.health })
        // Checks run from the first config on, listeners or not: not on a first request.
        healthChecker.start()
    }

    /// `GET /v1/healthcheck` in APISIX's format: every upstream with checks and its nodes.
    public func healthcheckStatus() -> JSONValue {
        .array(healthChecker.registry.all.map(Self.healthJSON))
    }

    /// One upstream's entry, by APISIX's name (`/apisix/upstreams/1`), or nil.
    public func healthcheckStatus(upstream name: String) -> JSONValue? {
        healthChecker.registry.upstream(named: name).map(Self.healthJSON)
    }

    static func healthJSON(_ h: UpstreamHealth) -> JSONValue {
        let nodes: [JSONValue] = h.cells.map { c in
            let k = c.counters
            return [
                "ip": .string(c.host), "port": .int(Int64(c.port)), "status": .string(c.isHealthy ? "healthy" : "unhealthy"),
                "counter": [
                    "success": .int(Int64(k.success)), "http_failure": .int(Int64(k.httpFailure)),
                    "tcp_failure": .int(Int64(k.tcpFailure)), "timeout_failure": .int(Int64(k.timeoutFailure)),
                ],
            ]
        }
        return ["name": .string(h.name), "type": .string(h.checks.active.type.rawValue), "nodes": .array(nodes)]
    }

    /// 10,620 client connections per worker (APISIX's `worker_connections`), but no more than
    /// half the descriptors the process may open (each client connection usually has an
    /// upstream one), less a reserve for listeners, files and control connections.
    static func defaultMaxConnections(workers: Int) -> Int {
        var limit = rlimit()
        let perWorker = 10_620 * max(1, workers)
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < rlim_t(Int32.max) else { return perWorker }
        let descriptors = Int(clamping: limit.rlim_cur)
        return max(64, min(perWorker, (descriptors - 256) / 2))
    }

    /// The proxy listeners as configured: one HTTP/1.1 listener per `proxyListen` address,
    /// then one TLS listener per `tlsListen` address.
    public var listeners: [Listener] {
        configuration.proxyListen.map { Listener(host: $0.host, port: $0.port, wireProtocol: .http, settings: configuration.settings) }
            + configuration.tlsListen.map {
                Listener(host: $0.host, port: $0.port, wireProtocol: .https, settings: configuration.settings, defaultSNI: configuration.tlsDefaultSNI)
            }
    }

    /// Binds every proxy listener. Returns the bound addresses (port 0 resolves to a real port).
    @discardableResult
    public func start() async throws -> [SocketAddress] {
        var bound: [SocketAddress] = []
        for listener in listeners {
            let loops = self.loops
            let factory = listener.factory
            let limiter = connectionLimiter
            let channel = try await ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 4096)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .serverChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture { try limiter.installGate(on: channel) }
                }
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .childChannelOption(.socketOption(.so_keepalive), value: 1)
                .childChannelOption(.maxMessagesPerRead, value: 16)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        guard let ctx = loops[ObjectIdentifier(channel.eventLoop)] else {
                            throw ChannelError.ioOnClosedChannel
                        }
                        try factory.configure(channel, loop: ctx.value)
                    }
                }
                .bind(host: listener.host, port: listener.port).get()
            channels.withLockedValue { $0.append(channel) }
            if let addr = channel.localAddress { bound.append(addr) }
            if listener.wireProtocol == .https, let port = channel.localAddress?.port {
                // redirect's http_to_https sends clients to the first TLS listener.
                compiler.withLock { c in if c.pluginState.listeners.httpsPort == nil { c.pluginState.listeners.setHTTPSPort(port) } }
            }
            logger.info(listener.wireProtocol == .https ? "TLS proxy listening" : "proxy listening", metadata: ["address": "\(channel.localAddress.map { "\($0)" } ?? "?")"])
        }
        return bound
    }

    /// Compiles one written object on its own before it is stored (see
    /// `SnapshotCompiler.trialCompile`): what `ConfigService` takes as its trial compiler.
    public static let trialCompile: @Sendable (ResourceKind, String, ConfigState) throws(ConfigError) -> Void = { kind, id, scratch throws(ConfigError) in
        try SnapshotCompiler.trialCompile(kind, id: id, scratch: scratch)
    }

    /// The trial compiler for a gateway whose keys are encrypted with `keyring`.
    public static func trialCompiler(keyring: Keyring?) -> @Sendable (ResourceKind, String, ConfigState) throws(ConfigError) -> Void {
        { kind, id, scratch throws(ConfigError) in try SnapshotCompiler.trialCompile(kind, id: id, scratch: scratch, keyring: keyring) }
    }

    /// `ssls` objects whose certificates did not compile in the last compile (stored by
    /// another writer, or under another keyring), with why. They serve no handshake.
    public func tlsErrors() -> [String: ConfigError] { compiler.withLock { $0.tlsErrors } }

    /// What the TLS listeners serve, for the control API: per `ssls` object its names and
    /// certificates (type, validity, subject, serial), never a key.
    public func certificates() async -> JSONValue {
        let index = (try? await inspectLoops { $0.snapshot.tls })?.first ?? .empty
        let now = Int64(time(nil))
        var list: [JSONValue] = []
        for id in index.identities.keys.sorted(by: SNIIndex.idOrder) {
            guard let identity = index.identities[id] else { continue }
            let certs: [JSONValue] = identity.certificates.map { c in
                [
                    "key_type": .string(c.keyType.rawValue), "not_before": .int(c.notBefore), "not_after": .int(c.notAfter),
                    "expired": .bool(c.notAfter < now), "subject": .string(c.subject), "serial": .string(c.serialNumber),
                ]
            }
            list.append(["id": .string(id), "snis": .array(identity.snis.map { .string($0) }), "mtls": .bool(identity.verifiesClients), "certificates": .array(certs)])
        }
        let errors = tlsErrors()
        let failed: [JSONValue] = errors.keys.sorted().map { ["id": .string($0), "error": .string(errors[$0]?.description ?? "")] }
        return ["ssls": .array(list), "failed": .array(failed)]
    }

    /// Compiles `state` and makes it live on every event loop. Returns once every loop has
    /// installed it: the next request read on any loop after this returns sees it.
    @discardableResult
    public func apply(_ state: ConfigState, changes: [ConfigChange]? = nil) async throws -> UInt64 {
        // A full compile of a large config takes milliseconds: it runs on the compile thread,
        // so neither an event loop nor a cooperative thread waits for it.
        let (snapshot, warnings, tlsErrors) = await compileThread.run {
            self.compiler.withLock { ($0.compile(state, changes: changes), $0.takeDiscoveryWarnings(), $0.tlsErrors) }
        }
        logTLS(snapshot, errors: tlsErrors, changes: changes)
        for w in warnings {
            logger.warning(
                "upstream uses discovery_type kubernetes but this gateway runs without --kubernetes-discovery: it has no nodes",
                metadata: ["upstream": "\(w.key)", "service_name": "\(w.serviceName)"])
        }
        try await publish(snapshot)
        return snapshot.version
    }

    /// An `ssls` object that did not compile (written to etcd by another tool, or under
    /// another keyring) serves no handshake; an expired certificate is served (as APISIX
    /// does) but said. Both are logged when the object is loaded or changed.
    private func logTLS(_ snapshot: ConfigSnapshot, errors: [String: ConfigError], changes: [ConfigChange]?) {
        let concerned: (String) -> Bool = { id in changes?.contains(where: { $0.kind == .ssls && $0.id == id }) ?? true }
        for (id, error) in errors.sorted(by: { $0.key < $1.key }) where concerned(id) {
            logger.error("ssl object not served: its certificate or key does not load", metadata: ["ssl": "\(id)", "error": "\(error)"])
        }
        let now = Int64(time(nil))
        for (id, identity) in snapshot.tls.identities where concerned(id) {
            for c in identity.certificates where c.notAfter < now {
                logger.warning(
                    "ssl object serves an expired certificate",
                    metadata: ["ssl": "\(id)", "certificate": "\(c.index)", "not_after": "\(c.notAfter)", "subject": "\(c.subject)"])
            }
        }
    }

    /// New node sets from discovery: recompiles the upstreams that name a changed
    /// `service_name` (nothing else) and makes the result live on every loop. The config
    /// store is not involved: no write happens per pod change.
    public func applyDiscovery(_ registry: DiscoveryRegistry, changed: Set<String>) async throws {
        discoveryUpdates.add(1, ordering: .relaxed)
        guard let snapshot = await compileThread.run({ self.compiler.withLock({ $0.updateDiscovery(registry, changed: changed) }) }) else { return }
        try await publish(snapshot)
    }

    public func publish(_ snapshot: ConfigSnapshot) async throws {
        var futures: [EventLoopFuture<Void>] = []
        for loop in loopList {
            guard let ctx = loops[ObjectIdentifier(loop)] else { continue }
            futures.append(loop.submit { ctx.value.install(snapshot) })
        }
        for f in futures { try await f.get() }
    }

    /// Runs `body` on every loop's context and collects the results (tests, control API).
    public func inspectLoops<T: Sendable>(_ body: @escaping @Sendable (LoopContext) -> T) async throws -> [T] {
        var results: [T] = []
        for loop in loopList {
            guard let ctx = loops[ObjectIdentifier(loop)] else { continue }
            results.append(try await loop.submit { body(ctx.value) }.get())
        }
        return results
    }

    /// Prometheus text: the connection gauges (APISIX's names), the node, and the request
    /// metrics of routes with the prometheus plugin.
    public func metricsText() async -> String {
        let counts = (try? await inspectLoops { ($0.openConnections, $0.connectionsAccepted, $0.requestsServed) }) ?? []
        let active = counts.reduce(0) { $0 + $1.0 }, accepted = counts.reduce(0) { $0 + $1.1 }, requests = counts.reduce(0) { $0 + $1.2 }
        var out = "# HELP apisix_nginx_http_current_connections Number of HTTP connections\n"
        out += "# TYPE apisix_nginx_http_current_connections gauge\n"
        out += "apisix_nginx_http_current_connections{state=\"active\"} \(active)\n"
        out += "apisix_nginx_http_current_connections{state=\"accepted\"} \(accepted)\n"
        out += "apisix_nginx_http_current_connections{state=\"handled\"} \(accepted)\n"
        out += "# HELP apisix_http_requests_total The total number of client requests since APISIX started\n"
        out += "# TYPE apisix_http_requests_total gauge\n"
        out += "apisix_http_requests_total \(requests)\n"
        var host = [CChar](repeating: 0, count: 256)
        gethostname(&host, host.count)
        let hostname = String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        out += "# HELP apisix_node_info Info of APISIX node\n# TYPE apisix_node_info gauge\n"
        out += "apisix_node_info{hostname=\"\(hostname)\"} 1\n"
        let checked = healthChecker.registry.all
        if !checked.isEmpty {
            out += "# HELP apisix_upstream_status Upstream status from health check\n# TYPE apisix_upstream_status gauge\n"
            for h in checked {
                for c in h.cells {
                    out += "apisix_upstream_status{name=\"\(h.name)\",ip=\"\(c.host)\",port=\"\(c.port)\"} \(c.isHealthy ? 1 : 0)\n"
                }
            }
            out += "# HELP sluice_healthcheck_probes_total Active health check probes sent\n# TYPE sluice_healthcheck_probes_total counter\n"
            out += "sluice_healthcheck_probes_total \(healthChecker.probesSent)\n"
        }
        if configuration.discoveryEnabled {
            out += "# HELP sluice_discovery_updates_total Node-set updates applied from Kubernetes discovery\n"
            out += "# TYPE sluice_discovery_updates_total counter\n"
            out += "sluice_discovery_updates_total \(discoveryUpdates.load(ordering: .relaxed))\n"
        }
        if let log = configuration.accessLog {
            out += "# HELP sluice_access_log_dropped_lines_total Access log lines dropped because the writer fell behind\n"
            out += "# TYPE sluice_access_log_dropped_lines_total counter\n"
            out += "sluice_access_log_dropped_lines_total \(log.droppedLines)\n"
        }
        out += "# HELP sluice_connections_limit Client connections the process accepts at most\n"
        out += "# TYPE sluice_connections_limit gauge\n"
        out += "sluice_connections_limit \(connectionLimiter.maxConnections)\n"
        return out + metrics.text()
    }

    /// Graceful stop: stop accepting, let in-flight exchanges finish (idle keep-alive
    /// connections close at once), and close whatever is left at the deadline.
    public func shutdown(gracePeriod: TimeAmount) async {
        let listeners = channels.withLockedValue { c in
            let all = c
            c.removeAll()
            return all
        }
        for ch in listeners { try? await ch.close() }
        _ = try? await inspectLoops { $0.quiesceAll() }
        let deadline = NIODeadline.now() + gracePeriod
        while NIODeadline.now() < deadline {
            let open = (try? await inspectLoops { $0.openConnections })?.reduce(0, +) ?? 0
            if open == 0 { break }
            try? await Task.sleep(nanoseconds: 20_000_000)
        }
        _ = try? await inspectLoops { $0.closeAll() }
        await healthChecker.shutdown()
        try? await group.shutdownGracefully()
    }
}

/// `HOST:PORT` as given on the command line or in the config file.
public struct ListenAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public init?(_ text: String) {
        guard let (host, port) = UpstreamNode.splitAddress(text), let p = port, (0...65535).contains(p), !host.isEmpty else {
            return nil
        }
        self.host = host
        self.port = p
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
