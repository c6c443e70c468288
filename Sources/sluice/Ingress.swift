import ArgumentParser
import Foundation
import KubeClient
import Logging
import NIOPosix
import SluiceAdmin
import SluiceCore
import SluiceEtcd
import SluiceIngress
import SluiceServer

/// `sluice ingress`: the Kubernetes ingress controller.
struct IngressCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ingress",
        abstract: "Watch Kubernetes (APISIX CRDs, Ingress, Services, EndpointSlices) and keep the gateway's routes and upstreams in step.")

    @Option(help: "kubeconfig file (default: in-cluster service account, else $KUBECONFIG, else ~/.kube/config).")
    var kubeconfig: String?

    @Option(name: .customLong("admin-url"), help: "Gateway Admin API to write to.")
    var adminURL = "http://127.0.0.1:9180"

    @Option(name: .customLong("admin-key"), help: "X-API-KEY for the Admin API.")
    var adminKey: String?

    @Option(help: "Write straight into etcd instead of the Admin API: http://HOST:PORT[,...].")
    var etcd: String?

    @Option(name: .customLong("etcd-prefix"), help: "Key prefix in etcd.")
    var etcdPrefix = "/apisix"

    @Option(name: .customLong("watch-endpointslice"), help: "true: follow discovery.k8s.io/v1 EndpointSlices; false: legacy v1 Endpoints.")
    var watchEndpointSlice = true

    @Option(name: .customLong("ingress-class"), help: "Ingress and APISIX objects of this class are this controller's.")
    var ingressClass = "sluice"

    @Option(name: .customLong("namespace"), help: "Namespace to watch (repeatable; default all). A Secret named with its namespace (ApisixTls secret and client.caSecret, ApisixUpstream tlsSecret) is read from another namespace only when both are given here; otherwise only from the referring object's own.")
    var namespaces: [String] = []

    @Option(name: .customLong("leader-elect"), help: "One active controller among replicas, via a coordination.k8s.io/v1 Lease.")
    var leaderElect = true

    @Option(name: .customLong("leader-election-namespace"), help: "Namespace of the Lease (default $POD_NAMESPACE, else the service account's, else default).")
    var leaseNamespace: String?

    @Option(name: .customLong("leader-election-id"), help: "Name of the Lease.")
    var leaseName = "sluice-ingress-leader"

    @Option(name: .customLong("lease-duration"), help: "Seconds a candidate waits before taking over an unrenewed lease.")
    var leaseDuration = 15

    @Option(name: .customLong("renew-deadline"), help: "Seconds the leader keeps acting without a renewal.")
    var renewDeadline = 10

    @Option(name: .customLong("retry-period"), help: "Seconds between lease attempts.")
    var retryPeriod = 2.0

    @Option(name: .customLong("coalesce-window"), help: "Milliseconds within which a Service's endpoint changes are written together.")
    var coalesceWindowMs = 100

    @Option(name: .customLong("resync-interval"), help: "Seconds between full comparisons with the gateway.")
    var resyncInterval = 60.0

    @Option(name: .customLong("ingress-status-address"), help: "Address (IP or host name; repeatable or comma-separated) every owned Ingress reports in status.loadBalancer.")
    var ingressStatusAddress: [String] = []

    @Option(name: .customLong("ingress-publish-service"), help: "NAMESPACE/NAME of the Service fronting the gateway: its load-balancer addresses go to status.loadBalancer of owned Ingresses.")
    var ingressPublishService: String?

    @Option(name: .customLong("metrics-listen"), help: "Prometheus metrics HOST:PORT at /metrics.")
    var metricsListen = "127.0.0.1:9092"

    @Option(help: "Identity in the Lease (default HOSTNAME_PID).")
    var identity: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel = "info"

    @Option(name: .customLong("log-format"), help: "text or json.")
    var logFormat = "text"

    func timing() throws(IngressFlagError) -> LeaderElector.Timing {
        try LeaderElector.Timing(
            leaseDurationSeconds: Double(leaseDuration), renewDeadlineSeconds: Double(renewDeadline), retryPeriodSeconds: retryPeriod)
    }

    func validate() throws {
        guard let _ = Logger.Level(rawValue: logLevel) else { throw ValidationError("--log-level: must be trace, debug, info, notice, warning, error or critical") }
        guard ["text", "json"].contains(logFormat) else { throw ValidationError("--log-format: must be text or json") }
        guard ListenAddress(metricsListen) != nil else { throw ValidationError("--metrics-listen: must be HOST:PORT, got \"\(metricsListen)\"") }
        for a in ingressStatusAddress.flatMap({ $0.split(separator: ",").map { $0.trimmingWhitespace() } }) where !a.isEmpty {
            guard IPAddress(a) != nil || (try? HostPattern.validate(a, path: "")) != nil, !a.contains("*") else {
                throw ValidationError("--ingress-status-address: \"\(a)\" is neither an IP address nor a host name")
            }
        }
        if let p = ingressPublishService {
            let parts = p.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw ValidationError("--ingress-publish-service: must be NAMESPACE/NAME, got \"\(p)\"")
            }
        }
        guard leaseDuration > renewDeadline, renewDeadline > 0, retryPeriod > 0 else {
            throw ValidationError("--lease-duration must exceed --renew-deadline, and both and --retry-period must be positive")
        }
        guard coalesceWindowMs >= 0, resyncInterval > 0 else { throw ValidationError("--coalesce-window must be >= 0 and --resync-interval > 0") }
        // Ranges checked where they are converted, so no value can trap later (`inf`, 1e300).
        do throws(IngressFlagError) {
            _ = try timing()
            _ = try IngressFlags.coalesceWindow(milliseconds: coalesceWindowMs)
            _ = try IngressFlags.resyncInterval(seconds: resyncInterval)
        } catch {
            throw ValidationError(error.description)
        }
        if etcd == nil && !adminURL.hasPrefix("http://") { throw ValidationError("--admin-url: must start with http://, got \"\(adminURL)\"") }
    }

    func run() async throws {
        bootstrapLogging(json: logFormat == "json", level: Logger.Level(rawValue: logLevel) ?? .info)
        let logger = Logger(label: "sluice-ingress")
        let environment = ProcessInfo.processInfo.environment
        let connection: KubeConnection
        do {
            connection = try KubeConfigLoader.load(kubeconfig: kubeconfig, environment: environment)
        } catch {
            FileHandle.standardError.write(Data("--kubeconfig: \(error)\n".utf8))
            throw ExitCode(2)
        }
        let api = KubeAPI(connection)
        let group = MultiThreadedEventLoopGroup.singleton
        let writer: GatewayWriter
        if let etcd {
            guard let endpoints = etcdEndpoints(etcd) else {
                FileHandle.standardError.write(Data("--etcd: \"\(etcd)\" must be http://HOST:PORT, comma-separated for several members\n".utf8))
                throw ExitCode(2)
            }
            writer = StoreWriter(
                store: EtcdStore(client: EtcdClient(endpoints: endpoints, group: group), prefix: etcdPrefix), trialCompile: GatewayServer.trialCompile)
        } else {
            writer = try AdminAPIWriter(url: adminURL, key: adminKey, group: group)
        }
        var options = IngressController.Options()
        options.ingressClass = ingressClass
        options.namespaces = namespaces
        options.watchEndpointSlices = watchEndpointSlice
        options.coalesceWindow = try IngressFlags.coalesceWindow(milliseconds: coalesceWindowMs)
        options.resyncInterval = try IngressFlags.resyncInterval(seconds: resyncInterval)
        options.statusAddresses = ingressStatusAddress.flatMap { $0.split(separator: ",").map { $0.trimmingWhitespace() } }.filter { !$0.isEmpty }
        options.publishService = ingressPublishService
        let metrics = IngressMetrics()
        let controller = IngressController(api: api, writer: writer, options: options, metrics: metrics, leader: !leaderElect, logger: logger)

        let metricsServer: APIServer
        do {
            metricsServer = try await APIServer.start(
                name: "metrics", listen: ListenAddress(metricsListen) ?? ListenAddress(host: "127.0.0.1", port: 9092),
                handler: IngressMetricsAPI(metrics: metrics), group: group, logger: logger)
        } catch {
            logger.critical("cannot listen", metadata: ["address": "\(metricsListen)", "error": "\(error)"])
            throw ExitCode(1)
        }
        logger.info(
            "ingress controller starting",
            metadata: [
                "api_server": "\(connection.server)", "writes_to": "\(etcd.map { "etcd \($0)" } ?? adminURL)", "ingress_class": "\(ingressClass)",
                "endpoints": "\(watchEndpointSlice ? "EndpointSlices" : "Endpoints")", "leader_elect": "\(leaderElect)",
            ])

        let controllerTask = Task { await controller.run() }
        var electionTask: Task<Void, Never>? = nil
        if leaderElect {
            let hostname = environment["HOSTNAME"] ?? ProcessInfo.processInfo.hostName
            let elector = LeaderElector(
                api: api, namespace: leaseNamespace ?? environment["POD_NAMESPACE"] ?? (connection.namespace.isEmpty ? "default" : connection.namespace), name: leaseName,
                identity: identity ?? "\(hostname)_\(getpid())",
                timing: try timing(),
                onChange: { leader in await controller.setLeader(leader) })
            electionTask = Task { await elector.run() }
        }
        let signal = await Signals.wait(for: [SIGTERM, SIGINT])
        logger.info("shutting down", metadata: ["signal": "\(signal)"])
        electionTask?.cancel()
        await electionTask?.value  // gives the lease up
        controllerTask.cancel()
        await controllerTask.value
        await metricsServer.close()
        logger.info("stopped")
    }
}

/// `GET /metrics`: the controller's Prometheus metrics.
struct IngressMetricsAPI: APIHandler {
    let metrics: IngressMetrics

    func handle(_ request: APIRequest) async -> APIResponse {
        guard request.method == "GET" || request.method == "HEAD" else { return .error(405, "method not allowed") }
        guard request.path == "/metrics" else { return .error(404, "not found") }
        return APIResponse(status: 200, text: metrics.text(), contentType: "text/plain; version=0.0.4")
    }
}
