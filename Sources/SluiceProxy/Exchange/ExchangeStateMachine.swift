import NIOCore
import NIOHTTP1
import SluiceBalancing
import SluiceCore
import SluicePlugins
import SluiceTLS

/// The life of one request, from its routed head to the end of its response, as a value:
/// plugin phases, upstream attempts and retries, both bodies, back-pressure, every timeout
/// after the head, the gateway's own answers, and what the log phase records. Each event
/// returns the actions to run (`ExchangeActions`); the machine holds no channel, so it is
/// driven and tested without sockets, and an HTTP/1.1 connection, an HTTP/2 stream or a gRPC
/// call can all drive it.
///
/// Every release happens in one place, once: the balancer's in-flight count is released
/// when the node stops being used (`heldNode`), whichever event ends the attempt.
struct ExchangeStateMachine {
    /// The request as routed.
    struct Request {
        var head: RequestHead
        var framing: BodyFraming
        var target: RequestPath
        var hostHeader: String?
        /// The `Upgrade` value, when the client asked for one (and `Connection: upgrade`).
        var upgrade: String?
        var client: ForwardingHeaders.Client
        var variables: RequestVariableSource?
        /// Whether the client connection may carry another request after this one.
        var keepAlive: Bool
    }

    /// Settings from the listener.
    struct Limits {
        /// Request body bytes held while plugins run or the upstream connection is set up;
        /// reading from the client pauses above it.
        var connectBufferBytes = 64 * 1024
        /// A request body that sends nothing for this long is answered 408.
        var clientBodyTimeout = TimeAmount.seconds(60)
        /// The most a plugin that rewrites response bodies collects of an upstream body.
        var maxRewrittenBody = 16 << 20
    }

    enum Event {
        case start
        case pluginDecision(PluginDecision?)
        case pluginDelayElapsed(then: PluginReply?)
        case requestBody(ByteBuffer)
        case requestEnd
        case upstreamAcquired(reused: Bool)
        case upstreamConnectFailed(timedOut: Bool)
        case upstreamWritable(Bool)
        case responseHead(ResponseHead)
        case responseBody(ByteBuffer)
        case responseEnd(HeaderBlock?)
        case upstreamClosed
        case clientClosed
        case timer
        /// The connection will close after this exchange (shutdown, a broken pipelined
        /// request behind it).
        case closeAfterResponse
    }

    /// Where the exchange is.
    enum Stage {
        /// The rewrite and access phases run; the request body is held.
        case plugins
        /// An upstream connection is being taken or opened for `heldNode`.
        case connecting
        /// The request goes to an upstream connection.
        case proxying
        /// The response is complete (or the gateway answered); the rest of the request body
        /// is read and dropped.
        case answered
        case finished
    }

    enum ResponseState {
        case awaitingHead
        /// A 101 waits for its message end, where the tunnel starts.
        case switching(ResponseHead)
        /// The head waits for the whole body, which plugins rewrite.
        case held(ResponseHead, collected: [UInt8], discard: Bool)
        case streaming
        case complete
    }

    enum RequestState {
        case receiving
        case complete
    }

    // The request and its route.
    private(set) var request: Request
    let route: RouteTarget?
    let plugins: PluginRun?
    private let snapshot: ConfigSnapshot?
    private let balancers: BalancerSource?
    let limits: Limits
    let startedAt: NIODeadline
    private let isIdempotent: Bool
    private let expectContinue: Bool

    private(set) var stage: Stage
    private(set) var requestState: RequestState
    private(set) var response = ResponseState.awaitingHead
    private(set) var keepAlive: Bool

    // Upstream.
    private var upstream: CompiledUpstream?
    private var balancer: Balancer?
    private var hashKey: UInt64 = 0
    private var upstreamHead: UpstreamRequestHead?
    /// The head as sent to the node of the last attempt (`Host` per node), for the log.
    private(set) var sentHead: UpstreamRequestHead?
    private var forwardUpgrade: String?
    private var retry = RetryState(retries: 0, retryTimeout: 0)
    /// The node whose in-flight count this exchange holds; released exactly once.
    private(set) var heldNode: Int?
    private var node: Int?
    private var reused = false
    private var requestEndSent = false
    private(set) var bodyForwarded = false
    private var sentContinue = false
    private var upstreamKeepAlive = true
    private var upstreamBlockedSince: NIODeadline?
    private var lastUpstreamActivity: NIODeadline
    private var lastClientActivity: NIODeadline
    private var attemptStartedAt: NIODeadline?

    // The request body held before an upstream connection is bound.
    private var pending: [ByteBuffer] = []
    private var pendingBytes = 0

    // What the log phase records.
    private(set) var log: ExchangeLog

    init(
        request: Request, route: RouteTarget?, plugins: PluginRun?, snapshot: ConfigSnapshot?, balancers: BalancerSource?,
        limits: Limits, now: NIODeadline = .now()
    ) {
        self.request = request
        self.route = route
        self.plugins = plugins
        self.snapshot = snapshot
        self.balancers = balancers
        self.limits = limits
        self.startedAt = now
        self.keepAlive = request.keepAlive
        switch request.head.method {
        case .GET, .HEAD, .PUT, .DELETE, .OPTIONS, .TRACE: isIdempotent = true
        default: isIdempotent = false
        }
        var expect = false
        for f in request.head.fields.fields where f.kind == .expect && request.head.fields.valueEquals(f, caseInsensitive: "100-continue") {
            expect = true
        }
        expectContinue = expect
        stage = .plugins
        requestState = request.framing == .none ? .complete : .receiving
        lastUpstreamActivity = now
        lastClientActivity = now
        log = ExchangeLog(requestHeadBytes: request.head.wireSize)
    }

    /// An exchange the gateway answers without routing (a malformed head, no route).
    static func local(request: Request, limits: Limits, now: NIODeadline = .now()) -> ExchangeStateMachine {
        ExchangeStateMachine(request: request, route: nil, plugins: nil, snapshot: nil, balancers: nil, limits: limits, now: now)
    }

    var method: HTTPMethod { request.head.method }
    var responseStarted: Bool {
        switch response {
        case .streaming, .complete: return true
        case .awaitingHead, .switching, .held: return false
        }
    }

    // MARK: Events

    mutating func event(_ event: Event, now: NIODeadline = .now()) -> ExchangeActions {
        switch event {
        case .start: return start(now)
        case .pluginDecision(let d): return pluginsResumed(d, now)
        case .pluginDelayElapsed(let then): return then.map { reply($0, now) } ?? runPlugins(nil, now)
        case .requestBody(let b): return requestBody(b, now)
        case .requestEnd: return requestEnd(now)
        case .upstreamAcquired(let reused): return acquired(reused: reused, now)
        case .upstreamConnectFailed(let timedOut): return connectFailed(timedOut: timedOut, now)
        case .upstreamWritable(let w):
            if w {
                upstreamBlockedSince = nil
            } else if upstreamBlockedSince == nil {
                upstreamBlockedSince = now
            }
            return .none
        case .responseHead(let h): return responseHead(h, now)
        case .responseBody(let b): return responseBody(b, now)
        case .responseEnd(let t): return responseEnd(t, now)
        case .upstreamClosed: return upstreamClosed(now)
        case .clientClosed: return clientClosed(now)
        case .timer: return timerFired(now)
        case .closeAfterResponse:
            keepAlive = false
            return .none
        }
    }

    /// Answers at once with the gateway's own response (the head was refused, no route).
    mutating func answer(
        _ status: HTTPResponseStatus, _ message: String, close: Bool, page: ErrorPageTitles.Variant? = nil, now: NIODeadline = .now()
    ) -> ExchangeActions {
        localAnswer(status, message, close: close, page: page, now)
    }

    private mutating func start(_ now: NIODeadline) -> ExchangeActions {
        guard stage == .plugins else { return .none }
        guard let route else { return routeNotFound(now) }
        if plugins == nil { return forward(route, nil, now) }
        return runPlugins(nil, now)
    }

    private mutating func runPlugins(_ decision: PluginDecision?, _ now: NIODeadline) -> ExchangeActions {
        guard stage == .plugins, let run = plugins, let route else { return .none }
        switch decision.map({ run.resume($0) }) ?? run.advance() {
        case .done:
            if let max = run.request.maxBodySize, log.requestBodyBytes > max {
                return localAnswer(.payloadTooLarge, "request body too large", close: true, now)
            }
            return forward(route, run.request, now)
        case .respond(let r):
            return reply(r, now)
        case .delay(let nanos, let then):
            var a = ExchangeActions()
            a.plugins = .delay(nanoseconds: nanos, then: then)
            return a
        case .wait(let future):
            var a = ExchangeActions()
            a.plugins = .wait(future)
            return a
        }
    }

    private mutating func pluginsResumed(_ decision: PluginDecision?, _ now: NIODeadline) -> ExchangeActions {
        guard stage == .plugins else { return .none }
        guard let decision else { return reply(PluginReply(status: 500), now) }
        return runPlugins(decision, now)
    }

    // MARK: Forwarding

    /// Routes the request to its upstream as the plugins left it (method, path, query,
    /// headers, Host), or as it came.
    private mutating func forward(_ route: RouteTarget, _ r: PluginRequest?, _ now: NIODeadline) -> ExchangeActions {
        var chosen = route.upstream
        if let key = r?.upstreamOverride {
            guard let u = snapshot?.upstreams[key] else {
                return localAnswer(.serviceUnavailable, "traffic-split: upstream \(key) not found", close: false, now)
            }
            chosen = u
        }
        if route.isUnmatched {
            // The global rules' response phases see the 404 too (headers, body rewrites).
            let body = LocalResponse.body("404 Route Not Found")
            return reply(
                PluginReply(status: 404, headers: [("Content-Type", LocalResponse.textType)], body: Array(body.readableBytesView)), now)
        }
        guard let upstream = chosen, !upstream.plan.isEmpty, let balancers else {
            if route.upstream == nil {
                return localAnswer(.serviceUnavailable, "missing upstream configuration in Route or Service", close: false, now)
            } else if let name = chosen?.config.serviceName {
                // As APISIX: discovery that finds no node means the service is unavailable.
                return localAnswer(.serviceUnavailable, "no valid upstream node: discovery has none for \(name)", close: false, now)
            }
            // An upstream without nodes: APISIX answers 503.
            return localAnswer(.serviceUnavailable, "no valid upstream node", close: false, now)
        }
        if let u = request.upgrade, route.enableWebsocket, u.lowercased() == "websocket" { forwardUpgrade = u }
        if upstream.config.type == .chash {
            // hash_on consumer: the authenticated consumer's name, else the client address.
            let value = upstream.config.hashOn == .consumer
                ? (r?.consumer?.username ?? request.client.address)
                : (upstream.hashKeyVariable.flatMap { request.variables?.value(of: $0) } ?? request.client.address)
            hashKey = StableHash.hash(value)
        }
        let host: String
        if let h = r?.upstreamHost {
            host = h
        } else {
            switch upstream.config.passHost {
            case .pass: host = request.hostHeader ?? ""
            case .rewrite: host = upstream.config.upstreamHost ?? request.hostHeader ?? ""
            case .node: host = ""  // set per node when the connection is bound
            }
        }
        var method = request.head.method
        var path = request.target
        var fields = request.head.fields
        var client = request.client
        if let r {
            method = r.method
            path = RequestPath(path: r.path, query: r.query, authority: nil)
            client.address = r.remoteAddress
            do {
                fields = try HeaderBlock(validating: r.headers)
            } catch {
                // A plugin rendered a value that would split the head: refused, never sent.
                return localAnswer(.badRequest, "invalid header \(error.name) from a plugin", close: false, now)
            }
        }
        var target = path.path
        if let q = path.query {
            target += "?"
            target += q
        }
        var head = ForwardingHeaders.upstreamHead(
            method: method, target: target, fields: fields, client: client, host: host, upgrade: forwardUpgrade)
        if let overrides = r?.forwardingOverrides {
            for (name, value) in overrides { head.gateway.override(name, value) }
        }
        upstreamHead = head
        self.upstream = upstream
        self.balancer = balancers.balancer(for: upstream)
        retry = RetryState(retries: upstream.retries, retryTimeout: upstream.config.retryTimeout)
        log.upstreamScheme = upstream.config.scheme
        log.upstreamURI = target
        return pickAndAcquire(fresh: false, now)
    }

    private mutating func pickAndAcquire(fresh: Bool, _ now: NIODeadline) -> ExchangeActions {
        guard let upstream, let balancer else { return localAnswer(.badGateway, "no upstream node could be reached", close: false, now) }
        guard let picked = balancer.pick(hashKey: hashKey, excluding: retry.tried, now: now.uptimeNanoseconds) else {
            return failBeforeResponse(timedOut: false, now)
        }
        retry.noteAttempt()
        node = picked
        heldNode = picked
        stage = .connecting
        requestEndSent = false
        attemptStartedAt = now
        let n = upstream.plan.nodes[picked]
        log.beginAttempt(node: picked)
        // `$balancer_ip` / `$balancer_port` for the response phases (the last node tried).
        plugins?.request.balancerNode = (n.host, n.port)
        var key = UpstreamKey(host: n.host, port: n.port)
        var tls: UpstreamTLSContext? = nil
        if upstream.config.scheme == "https" {
            guard let context = upstream.tls else {
                // Its client certificate did not compile (logged when it was loaded).
                return localAnswer(.badGateway, "the upstream's TLS settings are not usable", close: false, now)
            }
            // SNI is the Host the upstream is sent (per pass_host), or the node's name.
            let host = upstreamHead?.gateway.host ?? ""
            let sni = ForwardingHeaders.serverName(host.isEmpty ? n.host : host)
            key = UpstreamKey(scheme: .https, host: n.host, port: n.port, sni: sni, tls: context.identity)
            tls = context
        }
        var a = ExchangeActions()
        a.upstream = .acquire(
            key, tls: tls, fresh: fresh, connectTimeout: TimeAmount(seconds: route?.timeouts.connect ?? Timeouts.default.connect))
        return a
    }

    private mutating func acquired(reused: Bool, _ now: NIODeadline) -> ExchangeActions {
        guard stage == .connecting, var head = upstreamHead, let node, let upstream else {
            // The exchange ended while connecting: the connection is not needed.
            var a = ExchangeActions()
            a.upstream = .close
            return a
        }
        if !reused { balancer?.markRecovered(node) }
        self.reused = reused
        stage = .proxying
        response = .awaitingHead
        upstreamKeepAlive = true
        upstreamBlockedSince = nil
        if head.gateway.host.isEmpty {
            // pass_host node, or no Host to pass: the node's address, per attempt.
            let n = upstream.plan.nodes[node]
            head.gateway.host = n.port == 80 ? n.host : n.address
        }
        sentHead = head
        var a = ExchangeActions()
        let end = requestState == .complete
        if !pending.isEmpty { bodyForwarded = true }
        a.upstream = .send(head, framing: request.framing, body: pending, end: end)
        pending.removeAll()
        pendingBytes = 0
        if end { requestEndSent = true }
        if expectContinue && !end && !sentContinue && !bodyForwarded {
            sentContinue = true
            a.downstream = .sendContinue
        }
        lastUpstreamActivity = now
        return a
    }

    private mutating func connectFailed(timedOut: Bool, _ now: NIODeadline) -> ExchangeActions {
        guard stage == .connecting, let node else { return .none }
        releaseNode(now, latency: false)
        balancer?.markFailed(node, now: now.uptimeNanoseconds)
        upstream?.health?.recordPassive(node, timedOut ? .timeout : .tcpFailure)
        log.endAttempt(status: nil, now: now, attemptStart: attemptStartedAt)
        retry.noteFailed(node)
        if retry.mayRetry(startedAt: startedAt, now: now) { return pickAndAcquire(fresh: false, now) }
        return failBeforeResponse(timedOut: timedOut, now)
    }

    // MARK: Request body

    private mutating func requestBody(_ buffer: ByteBuffer, _ now: NIODeadline) -> ExchangeActions {
        lastClientActivity = now
        log.requestBodyBytes &+= buffer.readableBytes
        switch stage {
        case .answered, .finished:
            return .none
        case .plugins, .connecting, .proxying:
            if let max = plugins?.request.maxBodySize, stage != .plugins, log.requestBodyBytes > max {
                return bodyTooLarge(now)
            }
            if stage == .proxying {
                bodyForwarded = true
                var a = ExchangeActions()
                a.upstream = .body(buffer)
                return a
            }
            pending.append(buffer)
            pendingBytes &+= buffer.readableBytes
            return .none
        }
    }

    /// client-control's limit, found while the body streams: the upstream exchange is
    /// abandoned and the client gets 413 (or, when its response started, a close).
    private mutating func bodyTooLarge(_ now: NIODeadline) -> ExchangeActions {
        abandon(now) { $0.localAnswer(.payloadTooLarge, "request body too large", close: true, $1) }
    }

    private mutating func requestEnd(_ now: NIODeadline) -> ExchangeActions {
        guard requestState == .receiving else { return .none }
        requestState = .complete
        lastClientActivity = now
        switch stage {
        case .answered:
            stage = .finished
            var a = ExchangeActions()
            a.completion = .finished(close: !keepAlive)
            return a
        case .proxying:
            requestEndSent = true
            lastUpstreamActivity = now
            var a = ExchangeActions()
            a.upstream = .end
            if case .complete = response {
                stage = .finished
                a.completion = .finished(close: !keepAlive)
            }
            return a
        case .plugins, .connecting, .finished:
            return .none
        }
    }

    // MARK: Response

    private mutating func responseHead(_ head: ResponseHead, _ now: NIODeadline) -> ExchangeActions {
        guard stage == .proxying, case .awaitingHead = response else { return .none }
        lastUpstreamActivity = now
        log.setAttemptStatus(head.status)
        if let health = upstream?.health, let node { health.recordPassive(node, status: head.status) }
        if head.status == 101 {
            if forwardUpgrade != nil {
                // The tunnel starts at the end of this message.
                response = .switching(head)
                return .none
            }
            return abandon(now) { $0.failBeforeResponse(timedOut: false, $1) }
        }
        upstreamKeepAlive = ForwardingHeaders.keepsAlive(head.fields, version: head.version)
        // Hop-by-hop fields are left out when the head is written (`HTTP1Writer`): nothing is
        // copied here unless plugins look at the head.
        var out = ResponseHead(status: head.status, version: .http1_1, fields: head.fields)
        if head.status >= 500 {
            // As APISIX: a 5xx from the upstream says so, whatever plugins make of the status.
            out.fields.appendUnchecked(name: "X-APISIX-Upstream-Status", value: String(head.status))
        }
        log.upstreamStatus = head.status
        if let run = plugins, run.hasResponseWork {
            let fields = ForwardingHeaders.downstreamFields(head.fields, upgrade: false)
            var r = PluginResponse(status: out.status, headers: fields.httpHeaders())
            run.headerFilters(&r)
            out.status = min(max(r.status, 100), 599)
            out.fields = HeaderBlock(droppingInvalid: r.headers)
            if r.bodyRewritten && method != .HEAD && HTTPResponseStatus(statusCode: out.status).mayHaveResponseBody {
                // The head waits for the body, which the plugins rewrite whole.
                response = .held(out, collected: [], discard: r.upstreamBodyUnused)
                log.status = out.status
                return .none
            }
        }
        log.status = out.status
        response = .streaming
        if plugins != nil { log.responseBytes &+= out.wireSize }
        var a = ExchangeActions()
        a.downstream = .head(out, close: !keepAlive)
        return a
    }

    private mutating func responseBody(_ buffer: ByteBuffer, _ now: NIODeadline) -> ExchangeActions {
        guard stage == .proxying else { return .none }
        lastUpstreamActivity = now
        switch response {
        case .streaming:
            log.responseBytes &+= buffer.readableBytes
            log.bodyBytesSent &+= buffer.readableBytes
            var a = ExchangeActions()
            a.downstream = .body(buffer)
            return a
        case .held(let head, var collected, let discard):
            if discard { return .none }
            response = .awaitingHead  // no copy of `collected` while it grows
            collected += buffer.readableBytesView
            if collected.count > limits.maxRewrittenBody {
                return abandon(now) {
                    $0.localAnswer(
                        .badGateway, "the upstream response is too large for the plugins that rewrite it", close: $0.requestState != .complete, $1)
                }
            }
            response = .held(head, collected: collected, discard: discard)
            return .none
        case .awaitingHead, .switching, .complete:
            return .none
        }
    }

    private mutating func responseEnd(_ trailers: HeaderBlock?, _ now: NIODeadline) -> ExchangeActions {
        guard stage == .proxying else { return .none }
        var a = ExchangeActions()
        switch response {
        case .switching(let head):
            releaseNode(now, latency: false)
            log.status = 101
            log.endAttempt(status: 101, now: now, attemptStart: attemptStartedAt)
            stage = .finished
            response = .complete
            let out = ResponseHead(status: 101, version: .http1_1, fields: ForwardingHeaders.downstreamFields(head.fields, upgrade: true))
            a.completion = .tunnel(out, idleTimeout: TimeAmount(seconds: route?.timeouts.read ?? Timeouts.default.read))
            return a
        case .held(var head, let collected, let discard):
            let body = plugins?.transformBody(discard ? [] : collected) ?? collected
            head.fields.remove(.contentLength)
            head.fields.appendUnchecked(name: "Content-Length", value: String(body.count))
            log.responseBytes = body.count &+ head.wireSize
            log.bodyBytesSent = body.count
            a.downstream = .whole(head, body: body.isEmpty ? nil : ByteBuffer(bytes: body), close: !keepAlive)
        case .streaming:
            a.downstream = .end(trailers)
        case .awaitingHead, .complete:
            return .none
        }
        response = .complete
        log.endAttempt(status: log.upstreamStatus, now: now, attemptStart: attemptStartedAt)
        releaseNode(now, latency: true)
        let pool = upstream?.config.keepalivePool ?? KeepalivePool()
        a.upstream = .release(reusable: requestEndSent && upstreamKeepAlive, pool: pool)
        if requestState == .complete || !keepAlive {
            stage = .finished
            a.completion = .finished(close: !keepAlive)
        } else {
            stage = .answered  // the rest of the request body is read and dropped
        }
        return a
    }

    private mutating func upstreamClosed(_ now: NIODeadline) -> ExchangeActions {
        guard stage == .proxying, let node else { return .none }
        // Closed before its response ended (a stale keep-alive connection is the pool's, not the node's, fault).
        if !reused, case .awaitingHead = response { upstream?.health?.recordPassive(node, .tcpFailure) }
        releaseNode(now, latency: false)
        log.endAttempt(status: nil, now: now, attemptStart: attemptStartedAt)
        if responseStarted {
            // The response was cut short: the client must see a broken response.
            stage = .finished
            var a = ExchangeActions()
            a.downstream = .abort
            return a
        }
        if !bodyForwarded && isIdempotent {
            if reused && retry.takeStaleRetry() {
                // A pooled keep-alive connection the upstream closed as we used it: the request
                // never reached the application, so it is tried once on a new connection.
                return pickAndAcquire(fresh: true, now)
            }
            retry.noteFailed(node)
            if retry.mayRetry(startedAt: startedAt, now: now) { return pickAndAcquire(fresh: false, now) }
        }
        return failBeforeResponse(timedOut: false, now)
    }

    private mutating func clientClosed(_ now: NIODeadline) -> ExchangeActions {
        if stage == .proxying { log.endAttempt(status: nil, now: now, attemptStart: attemptStartedAt) }
        var a = ExchangeActions()
        a.upstream = dropAttempt(now)  // mid-exchange for a client that left: not reusable
        stage = .finished
        return a
    }

    // MARK: Timeouts

    /// The earliest time something is due: the upstream send and read timeouts, and the
    /// client body idle timeout.
    var nextDeadline: NIODeadline? { Self.earliest(upstreamDeadline, clientBodyDeadline) }

    /// When the upstream has been unwritable for the send timeout, or silent for the read
    /// timeout after the whole request went out, whichever comes first.
    private var upstreamDeadline: NIODeadline? {
        guard stage == .proxying, let t = route?.timeouts else { return nil }
        let send = upstreamBlockedSince.map { $0 + TimeAmount(seconds: t.send) }
        let read = requestEndSent && !isComplete(response) ? lastUpstreamActivity + TimeAmount(seconds: t.read) : nil
        return Self.earliest(send, read)
    }

    /// When a request body that is being read, and sends nothing, is answered 408.
    private var clientBodyDeadline: NIODeadline? {
        guard requestState == .receiving && wantsClientReads && stage != .finished else { return nil }
        return lastClientActivity + limits.clientBodyTimeout
    }

    private static func earliest(_ a: NIODeadline?, _ b: NIODeadline?) -> NIODeadline? {
        guard let a else { return b }
        guard let b else { return a }
        return min(a, b)
    }

    private func isComplete(_ r: ResponseState) -> Bool {
        if case .complete = r { return true }
        return false
    }

    private mutating func timerFired(_ now: NIODeadline) -> ExchangeActions {
        if let d = upstreamDeadline, now >= d {
            if stage == .proxying, let node { upstream?.health?.recordPassive(node, .timeout) }
            log.endAttempt(status: nil, now: now, attemptStart: attemptStartedAt)
            return abandon(now) { $0.failBeforeResponse(timedOut: true, $1) }
        }
        if let d = clientBodyDeadline, now >= d {
            // The client stopped sending its body: 408, as nginx's `client_body_timeout`.
            if stage == .proxying { log.endAttempt(status: nil, now: now, attemptStart: attemptStartedAt) }
            return abandon(now) { $0.localAnswer(.requestTimeout, "client body timed out", close: true, $1) }
        }
        return .none
    }

    /// Whether the client side should be read now: not while the body has nowhere to go.
    var wantsClientReads: Bool {
        switch stage {
        case .plugins, .connecting: return pendingBytes < limits.connectBufferBytes
        case .proxying: return upstreamBlockedSince == nil
        case .answered, .finished: return true
        }
    }

    // MARK: Answers

    private mutating func failBeforeResponse(timedOut: Bool, _ now: NIODeadline) -> ExchangeActions {
        pending.removeAll()
        pendingBytes = 0
        let close = requestState != .complete && bodyForwarded
        let (status, message): (HTTPResponseStatus, String) =
            timedOut ? (.gatewayTimeout, "upstream timed out") : (.badGateway, "no upstream node could be reached")
        // The answer concerns the upstream: `X-APISIX-Upstream-Status` carries it, as APISIX's.
        log.reason = message
        let body = LocalResponse.page(Int(status.code))
        var head = LocalResponse.head(status, body: body)
        head.fields.appendUnchecked(name: "X-APISIX-Upstream-Status", value: String(status.code))
        return complete(head, body: body, close: close, now)
    }

    /// The gateway's own answer: NGINX's error page for `status`, as APISIX answers; `reason`
    /// goes to the access log (JSON `error`), as APISIX writes it to its error log. The rest
    /// of the request body, if any, is read and dropped unless `close` is set.
    private mutating func localAnswer(
        _ status: HTTPResponseStatus, _ reason: String, close: Bool, page: ErrorPageTitles.Variant? = nil, _ now: NIODeadline
    ) -> ExchangeActions {
        log.reason = reason
        let body = LocalResponse.page(Int(status.code), page)
        return complete(LocalResponse.head(status, body: body), body: body, close: close, now)
    }

    /// No route matched: `{"error_msg":"404 Route Not Found"}`, as APISIX's.
    private mutating func routeNotFound(_ now: NIODeadline) -> ExchangeActions {
        let body = LocalResponse.body("404 Route Not Found")
        return complete(LocalResponse.head(.notFound, body: body, contentType: LocalResponse.textType), body: body, close: false, now)
    }

    /// A plugin's own response (an authentication refusal, a redirect, a mock): the header
    /// filters run on it as on an upstream response.
    private mutating func reply(_ reply: PluginReply, _ now: NIODeadline) -> ExchangeActions {
        var headers = HTTPHeaders(reply.headers)
        var body = reply.body
        var status = reply.status
        if body.isEmpty, method != .HEAD, ErrorPageTitles.hasPage(status), !headers.contains(name: "content-type") {
            // A plugin that ends the request without a body (a redirect, a limit without
            // `rejected_msg`): NGINX's page for the status, as APISIX's `ngx.exit(code)`.
            body = Array(LocalResponse.page(status).readableBytesView)
            headers.add(name: "Content-Type", value: LocalResponse.htmlType)
        }
        if let run = plugins {
            var response = PluginResponse(status: reply.status, headers: headers)
            run.headerFilters(&response)
            headers = response.headers
            status = response.status
            if response.bodyRewritten { body = run.transformBody(body) }
        }
        var fields = HeaderBlock(droppingInvalid: headers)
        fields.remove(.contentLength)
        fields.remove(.server)
        fields.appendUnchecked(name: "Content-Length", value: String(body.count))
        fields.appendUnchecked(name: "Server", value: LocalResponse.server)
        let head = ResponseHead(status: min(max(status, 100), 599), fields: fields)
        return complete(head, body: body.isEmpty ? nil : ByteBuffer(bytes: body), close: false, now)
    }

    private mutating func complete(_ head: ResponseHead, body: ByteBuffer?, close: Bool, _ now: NIODeadline) -> ExchangeActions {
        if close { keepAlive = false }
        pending.removeAll()
        pendingBytes = 0
        var head = head
        head.status = min(max(head.status, 100), 599)
        log.status = head.status
        let bodyBytes = method == .HEAD ? 0 : (body?.readableBytes ?? 0)
        log.bodyBytesSent = bodyBytes
        log.responseBytes = bodyBytes &+ head.wireSize
        response = .complete
        var a = ExchangeActions()
        a.downstream = .whole(head, body: method == .HEAD ? nil : body, close: !keepAlive)
        if requestState == .complete || !keepAlive {
            stage = .finished
            a.completion = .finished(close: !keepAlive)
        } else {
            stage = .answered
        }
        return a
    }

    // MARK: Releases

    /// Gives up the attempt under way, if any: the node is released, and a bound connection
    /// is closed (it is mid-message) by the returned action.
    private mutating func dropAttempt(_ now: NIODeadline) -> ExchangeActions.Upstream {
        let bound = stage == .proxying
        releaseNode(now, latency: false)
        return bound ? .close : .none
    }

    /// Gives up the attempt under way and answers the client with `answer`, or cuts the client
    /// connection when its response has already started.
    private mutating func abandon(
        _ now: NIODeadline, answer: (inout ExchangeStateMachine, NIODeadline) -> ExchangeActions
    ) -> ExchangeActions {
        var a = ExchangeActions()
        a.upstream = dropAttempt(now)
        if responseStarted {
            stage = .finished
            a.downstream = .abort
            return a
        }
        let answered = answer(&self, now)
        a.downstream = answered.downstream
        a.completion = answered.completion
        return a
    }

    /// Releases the balancer's in-flight count for the node in use, once.
    private mutating func releaseNode(_ now: NIODeadline, latency: Bool) {
        guard let n = heldNode else { return }
        heldNode = nil
        if latency {
            balancer?.release(n, latencyNanos: UInt64(max(0, (now - startedAt).nanoseconds)), now: now.uptimeNanoseconds)
        } else {
            balancer?.release(n)
        }
    }

    /// The log phase: the plugins' log hooks, once, and the record for the access log.
    mutating func finishLog(now: NIODeadline = .now()) -> ExchangeLog? {
        guard !log.done else { return nil }
        log.done = true
        log.endedAt = now
        if let run = plugins {
            let status = log.status == 0 ? 499 : log.status  // 499: the client left first, as nginx logs it
            run.log(PluginLogInfo(
                status: status, upstreamStatus: log.upstreamStatus, latencyNanos: UInt64(max(0, (now - startedAt).nanoseconds)),
                upstreamLatencyNanos: log.lastAttemptNanos, requestBytes: log.requestHeadBytes &+ log.requestBodyBytes,
                responseBytes: log.responseBytes, node: node.flatMap { n in upstream.map { $0.plan.nodes[n].address } }))
        }
        return log
    }

    /// `host:port` of a node of this exchange's upstream.
    func nodeAddress(_ node: Int) -> String {
        guard let upstream, node >= 0, node < upstream.plan.nodes.count else { return "-" }
        return upstream.plan.nodes[node].address
    }

}

/// Where an exchange finds the balancer state of an upstream on its event loop.
protocol BalancerSource: AnyObject {
    func balancer(for upstream: CompiledUpstream) -> Balancer
}

/// What the log phase knows of an exchange.
struct ExchangeLog {
    struct Attempt {
        /// The node's index in the upstream's plan (its address is looked up when logged).
        var node: Int
        var status: Int?
        var nanos: UInt64?
    }
    var requestHeadBytes: Int
    var requestBodyBytes = 0
    /// The status sent to the client; 0 until there is one.
    var status = 0
    var upstreamStatus: Int?
    var responseBytes = 0
    var bodyBytesSent = 0
    /// The first attempt is kept inline: most requests have exactly one.
    private var first: Attempt?
    private var more: [Attempt] = []
    var upstreamScheme: String?
    var upstreamURI: String?
    /// Why the gateway answered itself (a 502, a 503 without upstream), for the access log.
    var reason: String?
    var endedAt: NIODeadline?
    var done = false

    init(requestHeadBytes: Int) { self.requestHeadBytes = requestHeadBytes }

    /// Every upstream attempt, in order.
    var attempts: [Attempt] {
        guard let first else { return [] }
        return [first] + more
    }

    var hasAttempts: Bool { first != nil }

    mutating func beginAttempt(node: Int) {
        if first == nil {
            first = Attempt(node: node)
        } else {
            more.append(Attempt(node: node))
        }
    }

    private mutating func updateLast(_ body: (inout Attempt) -> Void) {
        if more.isEmpty {
            if var f = first {
                body(&f)
                first = f
            }
        } else {
            body(&more[more.count - 1])
        }
    }

    private var last: Attempt? { more.last ?? first }

    mutating func setAttemptStatus(_ status: Int) { updateLast { $0.status = status } }

    mutating func endAttempt(status: Int?, now: NIODeadline, attemptStart: NIODeadline?) {
        guard let l = last, l.nanos == nil else { return }
        updateLast { a in
            if let status { a.status = status }
            if let s = attemptStart { a.nanos = UInt64(max(0, (now - s).nanoseconds)) }
        }
    }

    var lastAttemptNanos: UInt64? { last?.nanos }
}
