import SluiceCore

/// apisix.apache.org/v2 ApisixUpstream: upstream settings for the Service of the same name,
/// or a list of external nodes.
public struct ApisixUpstream: Sendable, Hashable {
    public struct ExternalNode: Sendable, Hashable {
        public enum NodeType: String, Sendable, Hashable, CaseIterable {
            /// A host name or IP address.
            case Domain
            /// An ExternalName Service of the same namespace.
            case Service
        }

        public var name: String
        /// Domain when nil.
        public var type: NodeType?
        public var weight: Int?
        public var port: Int?

        public init(name: String, type: NodeType? = nil, weight: Int? = nil, port: Int? = nil) {
            self.name = name
            self.type = type
            self.weight = weight
            self.port = port
        }
    }

    /// `ApisixUpstreamConfig`: the settings that apply to the whole Service and, overridden,
    /// per port (`portLevelSettings`).
    public struct Config: Sendable, Hashable {
        /// JSON `loadbalancer`.
        public var loadbalancer: LoadBalancer?
        /// http, https, grpc or grpcs.
        public var scheme: String?
        public var retries: Int?
        public var timeout: ApisixTimeout?
        public var healthCheck: HealthCheck?
        /// Client certificate for TLS to the upstream.
        public var tlsSecret: ApisixSecretReference?
        public var subsets: [Subset]
        /// pass, node or rewrite.
        public var passHost: String?
        /// The Host sent upstream when `passHost` is rewrite.
        public var upstreamHost: String?
        public var discovery: Discovery?

        public init(
            loadbalancer: LoadBalancer? = nil, scheme: String? = nil, retries: Int? = nil, timeout: ApisixTimeout? = nil, healthCheck: HealthCheck? = nil,
            tlsSecret: ApisixSecretReference? = nil, subsets: [Subset] = [], passHost: String? = nil, upstreamHost: String? = nil, discovery: Discovery? = nil
        ) {
            self.loadbalancer = loadbalancer
            self.scheme = scheme
            self.retries = retries
            self.timeout = timeout
            self.healthCheck = healthCheck
            self.tlsSecret = tlsSecret
            self.subsets = subsets
            self.passHost = passHost
            self.upstreamHost = upstreamHost
            self.discovery = discovery
        }

        init(_ f: KubeFields) throws(KubeDecodingError) {
            if let lf = try f.object("loadbalancer") {
                loadbalancer = LoadBalancer(type: try lf.string("type") ?? "roundrobin", hashOn: try lf.string("hashOn"), key: try lf.string("key"))
            }
            scheme = try f.string("scheme")
            retries = try f.int("retries")
            timeout = try f.object("timeout").map { t throws(KubeDecodingError) in try ApisixTimeout(t) }
            healthCheck = try f.object("healthCheck").map { h throws(KubeDecodingError) in try HealthCheck(h) }
            tlsSecret = try f.object("tlsSecret").map { s throws(KubeDecodingError) in try ApisixSecretReference(s) }
            subsets = []
            for sf in try f.objects("subsets") { subsets.append(Subset(name: try sf.requiredString("name"), labels: try sf.stringMap("labels"))) }
            passHost = try f.string("passHost")
            upstreamHost = try f.string("upstreamHost")
            if let df = try f.object("discovery") {
                discovery = Discovery(serviceName: try df.requiredString("serviceName"), type: try df.requiredString("type"), args: try df.stringMap("args"))
            }
        }
    }

    public struct LoadBalancer: Sendable, Hashable {
        /// roundrobin (the default), chash, ewma or least_conn.
        public var type: String
        /// For chash: vars (the default), header, cookie, consumer or vars_combinations.
        public var hashOn: String?
        public var key: String?

        public init(type: String = "roundrobin", hashOn: String? = nil, key: String? = nil) {
            self.type = type
            self.hashOn = hashOn
            self.key = key
        }
    }

    /// A group of the Service's endpoints, chosen by pod labels.
    public struct Subset: Sendable, Hashable {
        public var name: String
        public var labels: [String: String]

        public init(name: String, labels: [String: String]) {
            self.name = name
            self.labels = labels
        }
    }

    public struct Discovery: Sendable, Hashable {
        public var serviceName: String
        public var type: String
        public var args: [String: String]

        public init(serviceName: String, type: String, args: [String: String]) {
            self.serviceName = serviceName
            self.type = type
            self.args = args
        }
    }

    public struct PortLevelSettings: Sendable, Hashable {
        /// A port of the Service.
        public var port: Int
        public var config: Config

        public init(port: Int, config: Config) {
            self.port = port
            self.config = config
        }
    }

    /// `healthCheck`: typed, with the object as given in `raw`.
    public struct HealthCheck: Sendable, Hashable {
        public struct Healthy: Sendable, Hashable {
            public var httpCodes: [Int]
            public var successes: Int?
            /// Active checks only: a Go duration.
            public var interval: String?

            public init(httpCodes: [Int] = [], successes: Int? = nil, interval: String? = nil) {
                self.httpCodes = httpCodes
                self.successes = successes
                self.interval = interval
            }

            init(_ f: KubeFields) throws(KubeDecodingError) {
                httpCodes = try f.ints("httpCodes")
                successes = try f.int("successes")
                interval = try f.string("interval")
            }
        }

        public struct Unhealthy: Sendable, Hashable {
            public var httpCodes: [Int]
            public var httpFailures: Int?
            public var tcpFailures: Int?
            /// JSON `timeout`: the number of timeouts that makes a node unhealthy.
            public var timeouts: Int?
            /// Active checks only: a Go duration.
            public var interval: String?

            public init(httpCodes: [Int] = [], httpFailures: Int? = nil, tcpFailures: Int? = nil, timeouts: Int? = nil, interval: String? = nil) {
                self.httpCodes = httpCodes
                self.httpFailures = httpFailures
                self.tcpFailures = tcpFailures
                self.timeouts = timeouts
                self.interval = interval
            }

            init(_ f: KubeFields) throws(KubeDecodingError) {
                httpCodes = try f.ints("httpCodes")
                httpFailures = try f.int("httpFailures")
                tcpFailures = try f.int("tcpFailures")
                timeouts = try f.int("timeout")
                interval = try f.string("interval")
            }
        }

        public struct Active: Sendable, Hashable {
            /// http, https or tcp.
            public var type: String?
            /// Probe timeout, in seconds.
            public var timeout: Double?
            public var concurrency: Int?
            public var host: String?
            public var port: Int?
            public var httpPath: String?
            public var strictTLS: Bool?
            public var requestHeaders: [String]
            public var healthy: Healthy?
            public var unhealthy: Unhealthy?

            public init(
                type: String? = nil, timeout: Double? = nil, concurrency: Int? = nil, host: String? = nil, port: Int? = nil, httpPath: String? = nil,
                strictTLS: Bool? = nil, requestHeaders: [String] = [], healthy: Healthy? = nil, unhealthy: Unhealthy? = nil
            ) {
                self.type = type
                self.timeout = timeout
                self.concurrency = concurrency
                self.host = host
                self.port = port
                self.httpPath = httpPath
                self.strictTLS = strictTLS
                self.requestHeaders = requestHeaders
                self.healthy = healthy
                self.unhealthy = unhealthy
            }
        }

        public struct Passive: Sendable, Hashable {
            public var type: String?
            public var healthy: Healthy?
            public var unhealthy: Unhealthy?

            public init(type: String? = nil, healthy: Healthy? = nil, unhealthy: Unhealthy? = nil) {
                self.type = type
                self.healthy = healthy
                self.unhealthy = unhealthy
            }
        }

        public var active: Active?
        public var passive: Passive?
        public var raw: JSONValue

        /// `raw` is what was decoded; for a health check built here it is only informative.
        public init(active: Active? = nil, passive: Passive? = nil, raw: JSONValue = .object([:])) {
            self.active = active
            self.passive = passive
            self.raw = raw
        }

        init(_ f: KubeFields) throws(KubeDecodingError) {
            if let af = try f.object("active") {
                active = Active(
                    type: try af.string("type"), timeout: try af.number("timeout"), concurrency: try af.int("concurrency"), host: try af.string("host"),
                    port: try af.int("port"), httpPath: try af.string("httpPath"), strictTLS: try af.bool("strictTLS"),
                    requestHeaders: try af.strings("requestHeaders"),
                    healthy: try af.object("healthy").map { h throws(KubeDecodingError) in try Healthy(h) },
                    unhealthy: try af.object("unhealthy").map { u throws(KubeDecodingError) in try Unhealthy(u) })
            }
            if let pf = try f.object("passive") {
                passive = Passive(
                    type: try pf.string("type"), healthy: try pf.object("healthy").map { h throws(KubeDecodingError) in try Healthy(h) },
                    unhealthy: try pf.object("unhealthy").map { u throws(KubeDecodingError) in try Unhealthy(u) })
            }
            raw = f.value
        }
    }

    public var metadata: ObjectMeta
    public var ingressClassName: String?
    public var externalNodes: [ExternalNode]
    /// The settings given directly under `spec`.
    public var config: Config
    public var portLevelSettings: [PortLevelSettings]
    public var status: ApisixStatus
    public var raw: JSONValue

    /// The settings for Service port `port`: the port-level ones when given, else `config`.
    /// (Port-level settings inherit what they leave unset.)
    public func config(forPort port: Int) -> Config {
        guard let p = portLevelSettings.first(where: { $0.port == port })?.config else { return config }
        var c = config
        if p.loadbalancer != nil { c.loadbalancer = p.loadbalancer }
        if p.scheme != nil { c.scheme = p.scheme }
        if p.retries != nil { c.retries = p.retries }
        if p.timeout != nil { c.timeout = p.timeout }
        if p.healthCheck != nil { c.healthCheck = p.healthCheck }
        if p.tlsSecret != nil { c.tlsSecret = p.tlsSecret }
        if !p.subsets.isEmpty { c.subsets = p.subsets }
        if p.passHost != nil { c.passHost = p.passHost }
        if p.upstreamHost != nil { c.upstreamHost = p.upstreamHost }
        if p.discovery != nil { c.discovery = p.discovery }
        return c
    }

    public init(json: JSONValue) throws(KubeDecodingError) {
        let f = try KubeFields(json, "")
        metadata = try ObjectMeta.decode(f)
        let spec = try f.objectOrEmpty("spec")
        ingressClassName = try spec.string("ingressClassName")
        externalNodes = []
        for nf in try spec.objects("externalNodes") {
            externalNodes.append(
                ExternalNode(name: try nf.requiredString("name"), type: try nf.enumeration("type", ExternalNode.NodeType.self), weight: try nf.int("weight"),
                             port: try nf.int("port")))
        }
        config = try Config(spec)
        portLevelSettings = []
        for pf in try spec.objects("portLevelSettings") {
            portLevelSettings.append(PortLevelSettings(port: try pf.requiredInt("port"), config: try Config(pf)))
        }
        status = try ApisixStatus.decode(f)
        raw = json
    }
}
