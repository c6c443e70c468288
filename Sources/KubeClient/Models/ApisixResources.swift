import SluiceCore

/// apisix.apache.org/v2 ApisixTls: a certificate (from a Secret) for SNI hosts, with
/// optional client-certificate verification.
public struct ApisixTls: Sendable, Hashable {
    /// `spec.client`: mutual TLS.
    public struct Client: Sendable, Hashable {
        /// Secret holding the CA (`ca.crt`) that client certificates must chain to.
        public var caSecret: ApisixSecretReference?
        public var depth: Int?
        /// JSON `skip_mtls_uri_regex`: URIs for which no client certificate is asked.
        public var skipMTLSURIRegex: [String]

        public init(caSecret: ApisixSecretReference? = nil, depth: Int? = nil, skipMTLSURIRegex: [String] = []) {
            self.caSecret = caSecret
            self.depth = depth
            self.skipMTLSURIRegex = skipMTLSURIRegex
        }
    }

    public var metadata: ObjectMeta
    public var ingressClassName: String?
    /// SNI host names; `*.example.com` wildcards allowed.
    public var hosts: [String]
    /// Secret with `tls.crt` and `tls.key`.
    public var secret: ApisixSecretReference
    public var client: Client?
    public var status: ApisixStatus
    public var raw: JSONValue

    public init(json: JSONValue) throws(KubeDecodingError) {
        let f = try KubeFields(json, "")
        metadata = try ObjectMeta.decode(f)
        let spec = try f.objectOrEmpty("spec")
        ingressClassName = try spec.string("ingressClassName")
        hosts = try spec.strings("hosts")
        secret = try ApisixSecretReference(try spec.requiredObject("secret"))
        if let cf = try spec.object("client") {
            client = Client(
                caSecret: try cf.object("caSecret").map { s throws(KubeDecodingError) in try ApisixSecretReference(s) }, depth: try cf.int("depth"),
                skipMTLSURIRegex: try cf.strings("skip_mtls_uri_regex"))
        } else {
            client = nil
        }
        status = try ApisixStatus.decode(f)
        raw = json
    }
}

/// apisix.apache.org/v2 ApisixConsumer: one consumer and its credentials.
public struct ApisixConsumer: Sendable, Hashable {
    /// One authentication method: credentials given inline (`value`) or in a Secret of the
    /// consumer's namespace (`secretRef.name`).
    public struct Credential<Value: Sendable & Hashable>: Sendable, Hashable {
        public var value: Value?
        public var secretRef: String?

        public init(value: Value? = nil, secretRef: String? = nil) {
            self.value = value
            self.secretRef = secretRef
        }

        init(_ f: KubeFields, _ decodeValue: (KubeFields) throws(KubeDecodingError) -> Value) throws(KubeDecodingError) {
            if let vf = try f.object("value") { value = try decodeValue(vf) } else { value = nil }
            secretRef = try f.object("secretRef").map { r throws(KubeDecodingError) in try r.requiredString("name") }
        }
    }

    public struct BasicAuth: Sendable, Hashable {
        public var username: String
        public var password: String

        public init(username: String, password: String) {
            self.username = username
            self.password = password
        }
    }

    public struct KeyAuth: Sendable, Hashable {
        public var key: String

        public init(key: String) {
            self.key = key
        }
    }

    public struct WolfRBAC: Sendable, Hashable {
        public var server: String?
        public var appid: String?
        /// JSON `header_prefix`.
        public var headerPrefix: String?

        public init(server: String? = nil, appid: String? = nil, headerPrefix: String? = nil) {
            self.server = server
            self.appid = appid
            self.headerPrefix = headerPrefix
        }
    }

    public struct JwtAuth: Sendable, Hashable {
        public var key: String
        public var secret: String?
        /// JSON `public_key`.
        public var publicKey: String?
        /// JSON `private_key`.
        public var privateKey: String?
        /// HS256, HS512, RS256 or ES256.
        public var algorithm: String?
        public var exp: Int?
        /// JSON `base64_secret`.
        public var base64Secret: Bool?
        /// JSON `lifetime_grace_period`.
        public var lifetimeGracePeriod: Int?

        public init(
            key: String, secret: String? = nil, publicKey: String? = nil, privateKey: String? = nil, algorithm: String? = nil, exp: Int? = nil,
            base64Secret: Bool? = nil, lifetimeGracePeriod: Int? = nil
        ) {
            self.key = key
            self.secret = secret
            self.publicKey = publicKey
            self.privateKey = privateKey
            self.algorithm = algorithm
            self.exp = exp
            self.base64Secret = base64Secret
            self.lifetimeGracePeriod = lifetimeGracePeriod
        }
    }

    public struct HMACAuth: Sendable, Hashable {
        /// JSON `key_id`.
        public var keyID: String?
        /// JSON `secret_key`.
        public var secretKey: String?
        // The rest is deprecated upstream in consumer configuration but still accepted.
        /// JSON `access_key`.
        public var accessKey: String?
        public var algorithm: String?
        /// JSON `clock_skew`.
        public var clockSkew: Int?
        /// JSON `signed_headers`.
        public var signedHeaders: [String]
        /// JSON `keep_headers`.
        public var keepHeaders: Bool?
        /// JSON `encode_uri_params`.
        public var encodeURIParams: Bool?
        /// JSON `validate_request_body`.
        public var validateRequestBody: Bool?
        /// JSON `max_req_body`.
        public var maxReqBody: Int?

        public init(
            keyID: String? = nil, secretKey: String? = nil, accessKey: String? = nil, algorithm: String? = nil, clockSkew: Int? = nil,
            signedHeaders: [String] = [], keepHeaders: Bool? = nil, encodeURIParams: Bool? = nil, validateRequestBody: Bool? = nil,
            maxReqBody: Int? = nil
        ) {
            self.keyID = keyID
            self.secretKey = secretKey
            self.accessKey = accessKey
            self.algorithm = algorithm
            self.clockSkew = clockSkew
            self.signedHeaders = signedHeaders
            self.keepHeaders = keepHeaders
            self.encodeURIParams = encodeURIParams
            self.validateRequestBody = validateRequestBody
            self.maxReqBody = maxReqBody
        }
    }

    public struct LDAPAuth: Sendable, Hashable {
        /// JSON `user_dn`.
        public var userDN: String

        public init(userDN: String) {
            self.userDN = userDN
        }
    }

    /// `spec.authParameter`.
    public struct AuthParameter: Sendable, Hashable {
        public var basicAuth: Credential<BasicAuth>?
        public var keyAuth: Credential<KeyAuth>?
        public var wolfRBAC: Credential<WolfRBAC>?
        public var jwtAuth: Credential<JwtAuth>?
        public var hmacAuth: Credential<HMACAuth>?
        public var ldapAuth: Credential<LDAPAuth>?

        public init(
            basicAuth: Credential<BasicAuth>? = nil, keyAuth: Credential<KeyAuth>? = nil, wolfRBAC: Credential<WolfRBAC>? = nil,
            jwtAuth: Credential<JwtAuth>? = nil, hmacAuth: Credential<HMACAuth>? = nil, ldapAuth: Credential<LDAPAuth>? = nil
        ) {
            self.basicAuth = basicAuth
            self.keyAuth = keyAuth
            self.wolfRBAC = wolfRBAC
            self.jwtAuth = jwtAuth
            self.hmacAuth = hmacAuth
            self.ldapAuth = ldapAuth
        }
    }

    public var metadata: ObjectMeta
    public var ingressClassName: String?
    public var authParameter: AuthParameter
    public var status: ApisixStatus
    public var raw: JSONValue

    public init(json: JSONValue) throws(KubeDecodingError) {
        let f = try KubeFields(json, "")
        metadata = try ObjectMeta.decode(f)
        let spec = try f.objectOrEmpty("spec")
        ingressClassName = try spec.string("ingressClassName")
        let af = try spec.objectOrEmpty("authParameter")
        var auth = AuthParameter()
        if let c = try af.object("basicAuth") {
            auth.basicAuth = try Credential(c) { v throws(KubeDecodingError) in
                BasicAuth(username: try v.requiredString("username"), password: try v.requiredString("password"))
            }
        }
        if let c = try af.object("keyAuth") {
            auth.keyAuth = try Credential(c) { v throws(KubeDecodingError) in KeyAuth(key: try v.requiredString("key")) }
        }
        if let c = try af.object("wolfRBAC") {
            auth.wolfRBAC = try Credential(c) { v throws(KubeDecodingError) in
                WolfRBAC(server: try v.string("server"), appid: try v.string("appid"), headerPrefix: try v.string("header_prefix"))
            }
        }
        if let c = try af.object("jwtAuth") {
            auth.jwtAuth = try Credential(c) { v throws(KubeDecodingError) in
                JwtAuth(
                    key: try v.requiredString("key"), secret: try v.string("secret"), publicKey: try v.string("public_key"),
                    privateKey: try v.string("private_key"), algorithm: try v.string("algorithm"), exp: try v.int("exp"),
                    base64Secret: try v.bool("base64_secret"), lifetimeGracePeriod: try v.int("lifetime_grace_period"))
            }
        }
        if let c = try af.object("hmacAuth") {
            auth.hmacAuth = try Credential(c) { v throws(KubeDecodingError) in
                HMACAuth(
                    keyID: try v.string("key_id"), secretKey: try v.string("secret_key"), accessKey: try v.string("access_key"),
                    algorithm: try v.string("algorithm"), clockSkew: try v.int("clock_skew"), signedHeaders: try v.strings("signed_headers"),
                    keepHeaders: try v.bool("keep_headers"), encodeURIParams: try v.bool("encode_uri_params"),
                    validateRequestBody: try v.bool("validate_request_body"), maxReqBody: try v.int("max_req_body"))
            }
        }
        if let c = try af.object("ldapAuth") {
            auth.ldapAuth = try Credential(c) { v throws(KubeDecodingError) in LDAPAuth(userDN: try v.requiredString("user_dn")) }
        }
        authParameter = auth
        status = try ApisixStatus.decode(f)
        raw = json
    }
}

/// apisix.apache.org/v2 ApisixPluginConfig: a named set of plugins routes can refer to
/// (`plugin_config_name`).
public struct ApisixPluginConfig: Sendable, Hashable {
    public var metadata: ObjectMeta
    public var ingressClassName: String?
    public var plugins: [ApisixPlugin]
    public var status: ApisixStatus
    public var raw: JSONValue

    public init(json: JSONValue) throws(KubeDecodingError) {
        let f = try KubeFields(json, "")
        metadata = try ObjectMeta.decode(f)
        let spec = try f.objectOrEmpty("spec")
        ingressClassName = try spec.string("ingressClassName")
        plugins = try ApisixPlugin.list(spec, "plugins")
        status = try ApisixStatus.decode(f)
        raw = json
    }
}

/// apisix.apache.org/v2 ApisixGlobalRule: plugins that run for every request.
public struct ApisixGlobalRule: Sendable, Hashable {
    public var metadata: ObjectMeta
    public var ingressClassName: String?
    public var plugins: [ApisixPlugin]
    public var status: ApisixStatus
    public var raw: JSONValue

    public init(json: JSONValue) throws(KubeDecodingError) {
        let f = try KubeFields(json, "")
        metadata = try ObjectMeta.decode(f)
        let spec = try f.objectOrEmpty("spec")
        ingressClassName = try spec.string("ingressClassName")
        plugins = try ApisixPlugin.list(spec, "plugins")
        status = try ApisixStatus.decode(f)
        raw = json
    }
}
