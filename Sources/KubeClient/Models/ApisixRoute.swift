import SluiceCore

/// apisix.apache.org/v2 ApisixRoute: HTTP and stream (TCP/UDP) routes.
public struct ApisixRoute: Sendable, Hashable {
    /// `spec.http[]`.
    public struct HTTP: Sendable, Hashable {
        public var name: String
        public var priority: Int
        public var timeout: ApisixTimeout?
        public var match: Match
        public var backends: [Backend]
        public var upstreams: [UpstreamReference]
        public var websocket: Bool
        /// JSON `plugin_config_name`.
        public var pluginConfigName: String?
        /// JSON `plugin_config_namespace`; the route's namespace when nil.
        public var pluginConfigNamespace: String?
        public var plugins: [ApisixPlugin]
        public var authentication: Authentication?

        public init(
            name: String, priority: Int = 0, timeout: ApisixTimeout? = nil, match: Match = Match(), backends: [Backend] = [],
            upstreams: [UpstreamReference] = [], websocket: Bool = false, pluginConfigName: String? = nil, pluginConfigNamespace: String? = nil, plugins: [ApisixPlugin] = [],
            authentication: Authentication? = nil
        ) {
            self.name = name
            self.priority = priority
            self.timeout = timeout
            self.match = match
            self.backends = backends
            self.upstreams = upstreams
            self.websocket = websocket
            self.pluginConfigName = pluginConfigName
            self.pluginConfigNamespace = pluginConfigNamespace
            self.plugins = plugins
            self.authentication = authentication
        }
    }

    /// `match` of an HTTP rule.
    public struct Match: Sendable, Hashable {
        /// Exact paths, or prefixes ending in `*`.
        public var paths: [String]
        public var methods: [String]
        public var hosts: [String]
        public var remoteAddrs: [String]
        public var exprs: [Expr]
        /// JSON `filter_func`: Lua source.
        public var filterFunc: String?

        public init(
            paths: [String] = [], methods: [String] = [], hosts: [String] = [], remoteAddrs: [String] = [], exprs: [Expr] = [],
            filterFunc: String? = nil
        ) {
            self.paths = paths
            self.methods = methods
            self.hosts = hosts
            self.remoteAddrs = remoteAddrs
            self.exprs = exprs
            self.filterFunc = filterFunc
        }
    }

    /// One of `match.exprs`.
    public struct Expr: Sendable, Hashable {
        public struct Subject: Sendable, Hashable {
            /// Header, Query, Cookie, Path or Variable.
            public var scope: String
            /// Ignored for Path.
            public var name: String

            public init(scope: String, name: String) {
                self.scope = scope
                self.name = name
            }
        }

        public var subject: Subject
        /// Equal, NotEqual, GreaterThan, GreaterThanEqual, LessThan, LessThanEqual, RegexMatch,
        /// RegexNotMatch, RegexMatchCaseInsensitive, RegexNotMatchCaseInsensitive, In, NotIn.
        public var op: String
        /// For every operator but In and NotIn.
        public var value: String?
        /// For In and NotIn.
        public var set: [String]

        public init(subject: Subject, op: String, value: String? = nil, set: [String] = []) {
            self.subject = subject
            self.op = op
            self.value = value
            self.set = set
        }
    }

    /// `backends[]`: a Service of the route's namespace.
    public struct Backend: Sendable, Hashable {
        public var serviceName: String
        public var servicePort: ServicePortReference
        /// "endpoints" (pod addresses, the default) or "service" (the ClusterIP).
        public var resolveGranularity: String?
        public var weight: Int?
        /// A subset defined in the Service's ApisixUpstream.
        public var subset: String?

        public init(
            serviceName: String, servicePort: ServicePortReference, resolveGranularity: String? = nil, weight: Int? = nil, subset: String? = nil
        ) {
            self.serviceName = serviceName
            self.servicePort = servicePort
            self.resolveGranularity = resolveGranularity
            self.weight = weight
            self.subset = subset
        }
    }

    /// `upstreams[]`: an ApisixUpstream (with external nodes) by name.
    public struct UpstreamReference: Sendable, Hashable {
        public var name: String
        public var weight: Int?

        public init(name: String, weight: Int? = nil) {
            self.name = name
            self.weight = weight
        }
    }

    public struct Authentication: Sendable, Hashable {
        public struct KeyAuth: Sendable, Hashable {
            public var header: String?

            public init(header: String? = nil) {
                self.header = header
            }
        }

        public struct JwtAuth: Sendable, Hashable {
            public var header: String?
            public var query: String?
            public var cookie: String?

            public init(header: String? = nil, query: String? = nil, cookie: String? = nil) {
                self.header = header
                self.query = query
                self.cookie = cookie
            }
        }

        public struct LDAPAuth: Sendable, Hashable {
            /// JSON `base_dn`.
            public var baseDN: String?
            /// JSON `ldap_uri`.
            public var ldapURI: String?
            /// JSON `use_tls`.
            public var useTLS: Bool?
            public var uid: String?

            public init(baseDN: String? = nil, ldapURI: String? = nil, useTLS: Bool? = nil, uid: String? = nil) {
                self.baseDN = baseDN
                self.ldapURI = ldapURI
                self.useTLS = useTLS
                self.uid = uid
            }
        }

        public var enable: Bool
        /// key-auth, basic-auth, wolf-rbac, jwt-auth, hmac-auth or ldap-auth.
        public var type: String
        public var keyAuth: KeyAuth?
        public var jwtAuth: JwtAuth?
        public var ldapAuth: LDAPAuth?

        public init(enable: Bool = true, type: String, keyAuth: KeyAuth? = nil, jwtAuth: JwtAuth? = nil, ldapAuth: LDAPAuth? = nil) {
            self.enable = enable
            self.type = type
            self.keyAuth = keyAuth
            self.jwtAuth = jwtAuth
            self.ldapAuth = ldapAuth
        }
    }

    /// `spec.stream[]`.
    public struct Stream: Sendable, Hashable {
        public enum StreamProtocol: String, Sendable, Hashable, CaseIterable { case TCP, UDP }

        public struct Match: Sendable, Hashable {
            public var ingressPort: Int
            public var host: String?

            public init(ingressPort: Int, host: String? = nil) {
                self.ingressPort = ingressPort
                self.host = host
            }
        }

        public struct Backend: Sendable, Hashable {
            public var serviceName: String
            public var servicePort: ServicePortReference
            /// "endpoint" (the default) or "service".
            public var resolveGranularity: String?
            public var subset: String?

            public init(serviceName: String, servicePort: ServicePortReference, resolveGranularity: String? = nil, subset: String? = nil) {
                self.serviceName = serviceName
                self.servicePort = servicePort
                self.resolveGranularity = resolveGranularity
                self.subset = subset
            }
        }

        public var name: String
        public var `protocol`: StreamProtocol
        public var match: Match
        public var backend: Backend
        public var plugins: [ApisixPlugin]

        public init(name: String, `protocol`: StreamProtocol, match: Match, backend: Backend, plugins: [ApisixPlugin] = []) {
            self.name = name
            self.`protocol` = `protocol`
            self.match = match
            self.backend = backend
            self.plugins = plugins
        }
    }

    public var metadata: ObjectMeta
    public var ingressClassName: String?
    public var http: [HTTP]
    public var stream: [Stream]
    public var status: ApisixStatus
    public var raw: JSONValue

    public init(json: JSONValue) throws(KubeDecodingError) {
        let f = try KubeFields(json, "")
        metadata = try ObjectMeta.decode(f)
        let spec = try f.objectOrEmpty("spec")
        ingressClassName = try spec.string("ingressClassName")
        http = []
        for hf in try spec.objects("http") { http.append(try Self.httpRule(hf)) }
        stream = []
        for sf in try spec.objects("stream") { stream.append(try Self.streamRule(sf)) }
        status = try ApisixStatus.decode(f)
        raw = json
    }

    static func httpRule(_ f: KubeFields) throws(KubeDecodingError) -> HTTP {
        let mf = try f.objectOrEmpty("match")
        var exprs: [Expr] = []
        for ef in try mf.objects("exprs") {
            let sf = try ef.requiredObject("subject")
            exprs.append(
                Expr(subject: Expr.Subject(scope: try sf.requiredString("scope"), name: try sf.string("name") ?? ""), op: try ef.requiredString("op"),
                     value: try ef.string("value"), set: try ef.strings("set")))
        }
        let match = Match(
            paths: try mf.strings("paths"), methods: try mf.strings("methods"), hosts: try mf.strings("hosts"), remoteAddrs: try mf.strings("remoteAddrs"),
            exprs: exprs, filterFunc: try mf.string("filter_func"))
        var backends: [Backend] = []
        for bf in try f.objects("backends") {
            backends.append(
                Backend(serviceName: try bf.requiredString("serviceName"), servicePort: try requiredPort(bf),
                        resolveGranularity: try bf.string("resolveGranularity"), weight: try bf.int("weight"), subset: try bf.string("subset")))
        }
        var upstreams: [UpstreamReference] = []
        for uf in try f.objects("upstreams") { upstreams.append(UpstreamReference(name: try uf.requiredString("name"), weight: try uf.int("weight"))) }
        var authentication: Authentication?
        if let af = try f.object("authentication") {
            let keyAuth = try af.object("keyAuth")
            let jwtAuth = try af.object("jwtAuth")
            let ldapAuth = try af.object("ldapAuth")
            authentication = Authentication(
                enable: try af.bool("enable") ?? false, type: try af.string("type") ?? "",
                keyAuth: try keyAuth.map { k throws(KubeDecodingError) in Authentication.KeyAuth(header: try k.string("header")) },
                jwtAuth: try jwtAuth.map { j throws(KubeDecodingError) in
                    Authentication.JwtAuth(header: try j.string("header"), query: try j.string("query"), cookie: try j.string("cookie"))
                },
                ldapAuth: try ldapAuth.map { l throws(KubeDecodingError) in
                    Authentication.LDAPAuth(
                        baseDN: try l.string("base_dn"), ldapURI: try l.string("ldap_uri"), useTLS: try l.bool("use_tls"), uid: try l.string("uid"))
                })
        }
        return HTTP(
            name: try f.requiredString("name"), priority: try f.int("priority") ?? 0,
            timeout: try f.object("timeout").map { t throws(KubeDecodingError) in try ApisixTimeout(t) }, match: match, backends: backends,
            upstreams: upstreams, websocket: try f.bool("websocket") ?? false, pluginConfigName: try f.string("plugin_config_name"),
            pluginConfigNamespace: try f.string("plugin_config_namespace"), plugins: try ApisixPlugin.list(f, "plugins"), authentication: authentication)
    }

    static func streamRule(_ f: KubeFields) throws(KubeDecodingError) -> Stream {
        guard let proto = try f.enumeration("protocol", Stream.StreamProtocol.self) else { throw KubeDecodingError(f.sub("protocol"), "is required") }
        let mf = try f.requiredObject("match")
        let bf = try f.requiredObject("backend")
        return Stream(
            name: try f.requiredString("name"), protocol: proto,
            match: Stream.Match(ingressPort: try mf.requiredInt("ingressPort"), host: try mf.string("host")),
            backend: Stream.Backend(
                serviceName: try bf.requiredString("serviceName"), servicePort: try requiredPort(bf),
                resolveGranularity: try bf.string("resolveGranularity"), subset: try bf.string("subset")),
            plugins: try ApisixPlugin.list(f, "plugins"))
    }

    static func requiredPort(_ f: KubeFields) throws(KubeDecodingError) -> ServicePortReference {
        guard let p = try f.portReference("servicePort") else { throw KubeDecodingError(f.sub("servicePort"), "is required") }
        return p
    }
}
