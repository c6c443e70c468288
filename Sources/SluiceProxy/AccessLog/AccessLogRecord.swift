/// One upstream attempt of a request, as the access log shows it: the peer that was tried,
/// the status it answered with (nil when it never answered: connect failure, timeout,
/// reset) and the time spent on it (nil when none was measured).
public struct UpstreamAttemptLog: Sendable, Equatable {
    /// The peer, `HOST:PORT` (`127.0.0.1:8080`, `[::1]:8080`).
    public var address: String
    /// The status line's code, or nil when no response head arrived; logged as `-`.
    public var status: Int?
    /// From the start of the attempt (connect or pool checkout) to the end of the response,
    /// or nil when not measured; logged as `-`.
    public var responseTimeNanos: Int64?

    public init(address: String, status: Int? = nil, responseTimeNanos: Int64? = nil) {
        self.address = address
        self.status = status
        self.responseTimeNanos = responseTimeNanos
    }
}

/// What the access log says about one request: the values the data plane already has, with
/// no formatting done. The formatters (`AccessLogFormatter`) turn it into one line.
///
/// A nil value is one the request does not have (no `Referer` header, no route, no upstream)
/// and is logged as `-` in text and `null` in JSON. An empty string is a value that is
/// present but empty and is logged empty, as NGINX does.
///
/// For a request the gateway answered itself APISIX logs `"http://<Host>"` as the last
/// field, because its configuration presets `$upstream_scheme` to `http`, `$upstream_host`
/// to the `Host` header and `$upstream_uri` to the empty string. Passing `upstreamScheme:
/// "http"`, `upstreamHost: host` and `upstreamURI: ""` gives the same line; leaving them nil
/// gives `"-://--"`.
public struct AccessLogRecord: Sendable {
    /// `$remote_addr`: the client's IP address, without port.
    public var remoteAddr: String
    /// `$remote_user`: the user name of basic authentication, when a plugin authenticated one.
    public var remoteUser: String?
    /// When the request's first byte was read, in nanoseconds since the Unix epoch (wall
    /// clock). `$time_local` is the time the line is logged, as in NGINX: this plus
    /// `requestTimeNanos`.
    public var startWallNanos: Int64
    /// `$http_host`: the `Host` header as the client sent it.
    public var host: String?
    /// The request method (`GET`).
    public var method: String
    /// The request target exactly as the client sent it (not normalized), with query.
    public var requestURI: String
    /// The request line's version, `HTTP/1.1` or `HTTP/1.0`.
    public var httpVersion: String
    /// `$status`: the status sent to the client.
    public var status: Int
    /// `$body_bytes_sent`: response body bytes sent to the client (head not counted).
    public var bodyBytesSent: Int
    /// `$request_time`: from the first byte read to the last byte written, in nanoseconds.
    public var requestTimeNanos: Int64
    /// `$http_referer`.
    public var referer: String?
    /// `$http_user_agent`.
    public var userAgent: String?
    /// `$upstream_addr`, `$upstream_status`, `$upstream_response_time`: one entry per
    /// attempt, in order; empty when no upstream was tried (logged as `-`).
    public var upstreams: [UpstreamAttemptLog]
    /// `$upstream_scheme` (`http`).
    public var upstreamScheme: String?
    /// `$upstream_host`: the `Host` sent upstream.
    public var upstreamHost: String?
    /// `$upstream_uri`: the target sent upstream (after proxy-rewrite).
    public var upstreamURI: String?
    /// The matched route's id (JSON only).
    public var routeID: String?
    /// The request id (request-id plugin or `X-Request-Id`; JSON only).
    public var requestID: String?
    /// Why the gateway answered the request itself (JSON only): "no upstream node could be
    /// reached", "upstream timed out", ... (APISIX writes these to its error log).
    public var error: String?

    public init(
        remoteAddr: String, remoteUser: String? = nil, startWallNanos: Int64, host: String? = nil,
        method: String, requestURI: String, httpVersion: String = "HTTP/1.1", status: Int,
        bodyBytesSent: Int, requestTimeNanos: Int64, referer: String? = nil, userAgent: String? = nil,
        upstreams: [UpstreamAttemptLog] = [], upstreamScheme: String? = nil, upstreamHost: String? = nil,
        upstreamURI: String? = nil, routeID: String? = nil, requestID: String? = nil, error: String? = nil
    ) {
        self.error = error
        self.remoteAddr = remoteAddr
        self.remoteUser = remoteUser
        self.startWallNanos = startWallNanos
        self.host = host
        self.method = method
        self.requestURI = requestURI
        self.httpVersion = httpVersion
        self.status = status
        self.bodyBytesSent = bodyBytesSent
        self.requestTimeNanos = requestTimeNanos
        self.referer = referer
        self.userAgent = userAgent
        self.upstreams = upstreams
        self.upstreamScheme = upstreamScheme
        self.upstreamHost = upstreamHost
        self.upstreamURI = upstreamURI
        self.routeID = routeID
        self.requestID = requestID
    }
}
