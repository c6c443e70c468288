import NIOCore
import NIOHTTP1
import NIOPosix
import SluiceBalancing
import SluiceCore
import SluicePlugins
import SluiceRouting

/// The client side of the proxy: one per client connection, behind NIO's HTTP/1.1 decoder,
/// encoder and pipelining handler. For each request it reads the loop's snapshot once,
/// routes, picks a node, takes or opens an upstream connection on the same event loop, and
/// streams both bodies through with back-pressure.
public final class HTTPProxyHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = HTTPServerRequestPart
    public typealias OutboundIn = HTTPServerResponsePart
    public typealias OutboundOut = HTTPServerResponsePart

    private let loop: LoopContext
    private let headGuard: HeadSizeGuard?
    private var context: ChannelHandlerContext?
    private var exchange: Exchange?
    private var readPending = false
    /// One timer per connection serves the header, keep-alive, send and read timeouts: it is
    /// moved earlier when a shorter deadline appears, and otherwise re-evaluates what is due
    /// when it fires, so a request costs no timer scheduling in the common case.
    private var timer: Scheduled<Void>?
    private var timerDeadline = NIODeadline.distantFuture
    private var idleSince = NIODeadline.now()
    private var servedAny = false
    private var inReadBurst = false
    /// Pipelined request parts that arrived while an exchange was in flight.
    private var queued = CircularBuffer<HTTPServerRequestPart>()
    /// Graceful shutdown asked this connection to close after its current exchange.
    private var quiescing = false
    static let maxQueuedParts = 64
    /// The most a plugin that rewrites response bodies (response-rewrite filters, echo)
    /// collects of an upstream body.
    static let maxRewrittenBody = 16 << 20
    private var clientAddress = "0.0.0.0"
    private var clientIP: IPAddress?
    private var serverPort = 0
    private var serverPortText = "0"
    private let variables = HTTPRequestVariables()

    init(loop: LoopContext, headGuard: HeadSizeGuard?) {
        self.loop = loop
        self.headGuard = headGuard
    }

    var downstreamWritable: Bool { context?.channel.isWritable ?? false }

    // MARK: Channel events

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { connectionStarted(context) }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        self.context = nil
    }

    public func channelActive(context: ChannelHandlerContext) {
        connectionStarted(context)
        context.fireChannelActive()
    }

    private func connectionStarted(_ context: ChannelHandlerContext) {
        if let remote = context.channel.remoteAddress {
            clientAddress = remote.ipAddress ?? "0.0.0.0"
            clientIP = IPAddress(clientAddress)
            // An IPv4 client of a dual-stack listener arrives as ::ffff:a.b.c.d: it is the
            // IPv4 client a.b.c.d for rules, variables and X-Forwarded-For alike.
            if let ip = clientIP, !ip.isIPv4, ip.unmapped.isIPv4 {
                clientIP = ip.unmapped
                clientAddress = ip.unmapped.description
            }
            variables.remotePort = remote.port ?? 0
        }
        variables.remoteAddress = clientAddress
        variables.serverAddress = context.channel.localAddress?.ipAddress ?? ""
        serverPort = context.channel.localAddress?.port ?? 0
        serverPortText = String(serverPort)
        variables.serverPort = serverPort
        variables.scheme = loop.settings.scheme
        idleSince = .now()
        ensureTimer(by: idleSince + loop.settings.clientHeaderTimeout)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        if let ex = exchange {
            exchange = nil
            if let conn = ex.connection {
                ex.connection = nil
                // The upstream is mid-exchange for a client that left: not reusable.
                conn.close()
            }
            if let node = ex.node, !ex.responseEnded { ex.balancer?.release(node) }
        }
        context.fireChannelInactive()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        inReadBurst = true
        let part = unwrapInboundIn(data)
        // One exchange at a time: a pipelined request waits until the current one is done.
        if !queued.isEmpty || (exchange != nil && Self.isHead(part)) {
            queued.append(part)
            return
        }
        process(part, context)
    }

    private static func isHead(_ part: HTTPServerRequestPart) -> Bool {
        if case .head = part { return true }
        return false
    }

    private func process(_ part: HTTPServerRequestPart, _ context: ChannelHandlerContext) {
        switch part {
        case .head(let head): requestHead(head, context)
        case .body(let buffer): requestBody(buffer)
        case .end: requestEnd()
        }
    }

    /// Runs queued pipelined requests once the connection is free again.
    private func drainQueue() {
        guard let context else { return }
        while let part = queued.first {
            if exchange != nil && Self.isHead(part) { break }
            queued.removeFirst()
            process(part, context)
        }
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is ChannelShouldQuiesceEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        quiescing = true
        if let ex = exchange {
            ex.keepAlive = false  // answered with Connection: close, then closed
        } else if queued.isEmpty {
            context.close(promise: nil)
        }
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        inReadBurst = false
        if let ex = exchange, ex.needsUpstreamFlush, let conn = ex.connection {
            ex.needsUpstreamFlush = false
            conn.flush()
        }
        context.fireChannelReadComplete()
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { exchange?.connection?.resumeReading() }
        context.fireChannelWritabilityChanged()
    }

    /// Back-pressure: read from the client only while the upstream can take more.
    public func read(context: ChannelHandlerContext) {
        if shouldPauseReads {
            readPending = true
        } else {
            context.read()
        }
    }

    private var shouldPauseReads: Bool {
        if queued.count >= Self.maxQueuedParts { return true }
        guard let ex = exchange, !ex.local else { return false }
        if let conn = ex.connection { return !conn.isWritable }
        return ex.pendingBytes >= loop.settings.connectBufferBytes
    }

    private func resumeReadsIfPossible() {
        if readPending && !shouldPauseReads, let context {
            readPending = false
            context.read()
        }
    }

    public func errorCaught(context: ChannelHandlerContext, error: Error) {
        let status: HTTPResponseStatus
        let message: String
        switch error {
        case HTTPParserError.headerOverflow where headGuard?.violation == .uriTooLong:
            status = .uriTooLong
            message = "request URI too long"
        case HTTPParserError.headerOverflow:
            status = .requestHeaderFieldsTooLarge
            message = "request header fields too large"
        case is HTTPParserError:
            status = .badRequest
            message = "malformed request"
        default:
            context.close(promise: nil)
            return
        }
        if let ex = exchange, ex.requestEnded, !ex.responseEnded {
            // The error is in a later, pipelined request: finish this response, then close.
            ex.keepAlive = false
            queued.removeAll()
            return
        }
        if let ex = exchange, ex.responseStarted {
            // A response is already on the wire; nothing sensible can be added to it.
            context.close(promise: nil)
            return
        }
        exchange?.connection?.close()
        exchange = nil
        writeLocal(status: status, message: message, close: true, version: .http1_1)
    }

    // MARK: Request side

    private func requestHead(_ head: HTTPRequestHead, _ context: ChannelHandlerContext) {
        headGuard?.headReceived()
        servedAny = true
        loop.requestsServed &+= 1
        let snapshot = loop.snapshot
        var keepAlive = head.isKeepAlive && !quiescing

        if let rejection = HeaderRules.check(head, maxURIBytes: loop.settings.maxURIBytes) {
            exchange = .local(head: head, keepAlive: false)
            switch rejection {
            case .uriTooLong: respondLocally(.uriTooLong, "request URI too long", close: true)
            case .badRequest(let why): respondLocally(.badRequest, why, close: true)
            case .notImplemented(let why): respondLocally(.notImplemented, why, close: true)
            }
            return
        }
        if head.method == .CONNECT {
            exchange = .local(head: head, keepAlive: false)
            respondLocally(.methodNotAllowed, "CONNECT is not supported", close: true)
            return
        }
        let target: RequestPath
        switch RequestPath.normalize(head.uri) {
        case .success(let t): target = t
        case .failure(let f):
            exchange = .local(head: head, keepAlive: keepAlive)
            let message: String
            switch f {
            case .aboveRoot: message = "request path climbs above /"
            case .badPercentEncoding: message = "invalid percent-encoding in request path"
            case .notOriginForm: message = "invalid request target"
            }
            respondLocally(.badRequest, message, close: false)
            return
        }
        let hostHeader = target.authority ?? head.headers.first(name: "host")
        let host = hostHeader.map(Self.routingHost)

        // An Upgrade request stops NIO's decoder after its head: unless the upgrade happens,
        // this connection carries no further request.
        let upgradeValue = head.headers.first(name: "upgrade")
        let wantsUpgrade = upgradeValue != nil && HeaderRules.connectionTokens(head.headers).contains("upgrade")
        if wantsUpgrade { keepAlive = false }

        variables.head = head
        variables.path = target
        variables.host = host
        let request = RouteRequest(
            path: target.path, host: host, method: head.method.rawValue, remoteAddress: clientIP, variables: variables)
        guard let index = snapshot.router.matchIndex(request) else {
            exchange = .local(head: head, keepAlive: keepAlive)
            respondLocally(.notFound, "404 Route Not Found", close: false)
            return
        }
        let route = snapshot.targets[index]
        let plan = ForwardPlan(
            head: head, target: target, hostHeader: hostHeader, route: route, wantsUpgrade: wantsUpgrade, upgradeValue: upgradeValue,
            snapshot: snapshot)
        if route.plugins.isEmpty && snapshot.globalRules.isEmpty {
            let ex = Exchange(
                head: head, keepAlive: keepAlive, upgrade: nil, upstream: nil, balancer: nil, timeouts: route.timeouts, upstreamHead: nil,
                hashKey: 0)
            exchange = ex
            forward(ex, plan, nil)
            return
        }
        let r = PluginRequest(
            method: head.method, path: target.path, query: target.query, headers: head.headers, requestURI: head.uri, host: host,
            remoteAddress: clientAddress, clientIP: clientIP, remotePort: variables.remotePort, serverAddress: variables.serverAddress,
            serverPort: serverPort, scheme: loop.settings.scheme, routeID: route.routeID, serviceID: route.serviceID,
            startNanos: NIODeadline.now().uptimeNanoseconds)
        r.consumers = snapshot.consumers
        r.routeName = route.routeName
        r.serviceName = route.serviceName
        r.matchedURI = route.matchedURI
        r.matchedHost = route.matchedHost
        let run = PluginRun(request: r, route: route.plugins, globals: snapshot.globalRules)
        // The exchange exists while the plugins run, so that the request body waits in it.
        let ex = Exchange(
            head: head, keepAlive: keepAlive, upgrade: nil, upstream: nil, balancer: nil, timeouts: route.timeouts, upstreamHead: nil, hashKey: 0)
        ex.plugins = run
        // The request line and headers, as a client would count them on the wire.
        var headBytes = head.method.rawValue.utf8.count + head.uri.utf8.count + 12
        for (k, v) in head.headers { headBytes += k.utf8.count + v.utf8.count + 4 }
        ex.requestHeadBytes = headBytes
        exchange = ex
        runPlugins(ex, plan)
    }

    /// What forwarding a routed request needs once its plugins have run.
    struct ForwardPlan {
        let head: HTTPRequestHead
        let target: RequestPath
        let hostHeader: String?
        let route: RouteTarget
        let wantsUpgrade: Bool
        let upgradeValue: String?
        let snapshot: ConfigSnapshot
    }

    private func runPlugins(_ ex: Exchange, _ plan: ForwardPlan, resuming action: PluginDecision? = nil) {
        guard let run = ex.plugins else { return }
        switch action.map({ run.resume($0) }) ?? run.advance() {
        case .done:
            ex.maxBodySize = run.request.maxBodySize
            if let max = ex.maxBodySize, ex.requestBodyBytes > max {
                respondLocally(.payloadTooLarge, "request body too large", close: true)
                return
            }
            forward(ex, plan, run.request)
        case .respond(let reply):
            respondWithReply(ex, reply)
        case .delay(let nanos, let then):
            guard let context else { return }
            context.eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(Int64(min(nanos, UInt64(Int64.max))))) { [self] in
                guard self.exchange === ex else { return }  // the client left meanwhile
                if let then { self.respondWithReply(ex, then) } else { self.runPlugins(ex, plan) }
            }
        case .wait(let future):
            guard let context else { return }
            future.hop(to: context.eventLoop).assumeIsolated().whenComplete { [self] result in
                guard self.exchange === ex else { return }  // the client left meanwhile
                switch result {
                case .success(let action): self.runPlugins(ex, plan, resuming: action)
                case .failure: self.respondWithReply(ex, PluginReply(status: 500))
                }
            }
        }
    }

    /// Routes the exchange to its upstream: the request as the plugins left it (method,
    /// path, query, headers, Host), or as it came.
    private func forward(_ ex: Exchange, _ plan: ForwardPlan, _ r: PluginRequest?) {
        let route = plan.route
        var chosen = route.upstream
        if let key = r?.upstreamOverride {
            guard let u = plan.snapshot.upstreams[key] else {
                respondLocally(.serviceUnavailable, "traffic-split: upstream \(key) not found", close: false)
                return
            }
            chosen = u
        }
        guard let upstream = chosen, !upstream.plan.isEmpty else {
            ex.local = true
            if route.upstream == nil {
                respondLocally(.serviceUnavailable, "missing upstream configuration in Route or Service", close: false)
            } else if let name = chosen?.config.serviceName {
                // As APISIX: discovery that finds no node means the service is unavailable.
                respondLocally(.serviceUnavailable, "no valid upstream node: discovery has none for \(name)", close: false)
            } else {
                respondLocally(.badGateway, "no valid upstream node", close: false)
            }
            return
        }
        var forwardUpgrade: String? = nil
        if plan.wantsUpgrade, route.enableWebsocket, let u = plan.upgradeValue, u.lowercased() == "websocket" {
            forwardUpgrade = u
        }
        var hashKey: UInt64 = 0
        if upstream.config.type == .chash {
            // hash_on consumer: the authenticated consumer's name, else the client address.
            let value = upstream.config.hashOn == .consumer
                ? (r?.consumer?.username ?? clientAddress)
                : (upstream.hashKeyVariable.flatMap { variables.value(of: $0) } ?? clientAddress)
            hashKey = StableHash.hash(value)
        }
        let upstreamHost: String
        if let h = r?.upstreamHost {
            upstreamHost = h
        } else {
            switch upstream.config.passHost {
            case .pass: upstreamHost = plan.hostHeader ?? ""
            case .rewrite: upstreamHost = upstream.config.upstreamHost ?? plan.hostHeader ?? ""
            case .node: upstreamHost = ""  // set per node at connect time
            }
        }
        var head = plan.head
        var target = plan.target
        var address = clientAddress
        if let r {
            head.method = r.method
            head.headers = r.headers
            target = RequestPath(path: r.path, query: r.query, authority: nil)
            address = r.remoteAddress
        }
        ex.upstreamHead = HeaderRules.upstreamHead(
            head, target: target,
            client: .init(address: address, hostHeader: plan.hostHeader, scheme: loop.settings.scheme, serverPort: serverPortText),
            host: upstreamHost, upgrade: forwardUpgrade)
        ex.upgrade = forwardUpgrade
        ex.upstream = upstream
        ex.balancer = loop.balancer(for: upstream)
        ex.hashKey = hashKey
        acquireUpstream(ex, fresh: false)
    }

    /// A plugin's own response (an authentication refusal, a redirect, a mock): the header
    /// filters run on it as on an upstream response.
    private func respondWithReply(_ ex: Exchange, _ reply: PluginReply) {
        guard let context else { return }
        ex.local = true
        ex.pendingBody.removeAll()
        ex.pendingBytes = 0
        var headers = HTTPHeaders(reply.headers)
        var body = reply.body
        var status = reply.status
        if let run = ex.plugins {
            var response = PluginResponse(status: reply.status, headers: headers)
            run.headerFilters(&response)
            headers = response.headers
            status = response.status
            if response.bodyRewritten { body = run.transformBody(body) }
        }
        headers.replaceOrAdd(name: "Content-Length", value: String(body.count))
        headers.replaceOrAdd(name: "Server", value: LocalResponse.server)
        if !ex.keepAlive { headers.replaceOrAdd(name: "Connection", value: "close") }
        ex.status = status
        ex.responseBytes = body.count
        ex.responseStarted = true
        ex.responseEnded = true
        ex.endedAt = .now()
        let version = ex.clientVersion.minor == 0 ? HTTPVersion.http1_0 : .http1_1
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: version, status: HTTPResponseStatus(statusCode: min(max(status, 100), 599)), headers: headers))), promise: nil)
        if !body.isEmpty && ex.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        }
        if !ex.keepAlive {
            exchange = nil
            context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        } else {
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            if ex.requestEnded { finishExchange(ex) }
        }
        resumeReadsIfPossible()
    }

    /// A response head's size on the wire (status line and headers).
    static func headBytes(_ head: HTTPResponseHead) -> Int {
        var n = 17 + head.status.reasonPhrase.utf8.count
        for (k, v) in head.headers { n += k.utf8.count + v.utf8.count + 4 }
        return n
    }

    /// `Host` as the router compares it: lower case, without the port, and without the
    /// trailing dot of a fully qualified name (`api.example.com.` is `api.example.com`, as
    /// NGINX's `$host` has it), so an absolute name cannot slip past host-scoped routes.
    static func routingHost(_ raw: String) -> String {
        var h = Substring(raw)
        if h.hasPrefix("[") {
            if let close = h.firstIndex(of: "]") { h = h[...close] }
        } else if let colon = h.lastIndex(of: ":") {
            h = h[..<colon]
        }
        if h.last == ".", h.count > 1 { h = h.dropLast() }
        for c in h.utf8 where c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z") { return h.lowercased() }
        return String(h)
    }

    private func requestBody(_ buffer: ByteBuffer) {
        guard let ex = exchange, !ex.local else { return }
        ex.requestBodyBytes += buffer.readableBytes
        if let max = ex.maxBodySize, ex.requestBodyBytes > max {
            bodyTooLarge(ex)
            return
        }
        if let conn = ex.connection {
            conn.write(.body(.byteBuffer(buffer)))
            ex.bodyForwarded = true
            ex.needsUpstreamFlush = true
            if !conn.isWritable && ex.blockedSince == nil { ex.blockedSince = .now() }
        } else {
            ex.pendingBody.append(buffer)
            ex.pendingBytes += buffer.readableBytes
        }
    }

    /// client-control's limit, found while the body streams: the upstream exchange is
    /// abandoned and the client gets 413 (or, if its response already started, a close).
    private func bodyTooLarge(_ ex: Exchange) {
        if let conn = ex.connection {
            ex.connection = nil
            conn.close()
            if let node = ex.node { ex.balancer?.release(node) }
        }
        if ex.responseStarted {
            exchange = nil
            context?.close(promise: nil)
        } else {
            ex.pendingBody.removeAll()
            ex.pendingBytes = 0
            respondLocally(.payloadTooLarge, "request body too large", close: true)
        }
    }

    private func requestEnd() {
        guard let ex = exchange else { return }
        ex.requestEnded = true
        if ex.local {
            if ex.responseEnded { finishExchange(ex) }
            return
        }
        if let conn = ex.connection {
            conn.write(.end(nil))
            if inReadBurst {
                ex.needsUpstreamFlush = true  // flushed once at the end of this read burst
            } else {
                conn.flush()
                ex.needsUpstreamFlush = false
            }
            ex.requestEndSent = true
            ex.lastUpstreamActivity = .now()
            if ex.responseEnded { finishExchange(ex) }
        }
    }

    // MARK: Upstream connection

    private func acquireUpstream(_ ex: Exchange, fresh: Bool) {
        guard let context, let upstream = ex.upstream, let balancer = ex.balancer else { return }
        let now = NIODeadline.now()
        guard let node = balancer.pick(hashKey: ex.hashKey, excluding: ex.tried, now: now.uptimeNanoseconds) else {
            failBeforeResponse(ex, timedOut: false)
            return
        }
        ex.node = node
        ex.attempts += 1
        let n = upstream.plan.nodes[node]
        let peer = PeerKey(host: n.host, port: n.port)
        if !fresh, let conn = loop.pool.take(peer) {
            bind(ex, conn, reused: true)
            return
        }
        guard let base = ClientBootstrap(validatingGroup: context.eventLoop) else {
            failBeforeResponse(ex, timedOut: false)
            return
        }
        ex.connecting = true
        let bootstrap = base
            .connectTimeout(TimeAmount(seconds: ex.timeouts.connect))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(HTTPRequestEncoder())
                    try sync.addHandler(
                        ByteToMessageHandler(
                            HTTPResponseDecoder(leftOverBytesStrategy: .forwardBytes, informationalResponseStrategy: .drop)))
                    // No request head towards an upstream may carry CR, LF or NUL (header injection).
                    try sync.addHandler(NIOHTTPRequestHeadersValidator())
                    try sync.addHandler(UpstreamConnection(peer: peer))
                }
            }
        bootstrap.connect(host: n.host, port: n.port).assumeIsolated().whenComplete { [self] result in
            guard let current = self.exchange, current === ex else {
                if case .success(let channel) = result { channel.close(promise: nil) }
                if !ex.responseEnded { balancer.release(node) }
                return
            }
            ex.connecting = false
            switch result {
            case .success(let channel):
                guard let conn = try? channel.pipeline.syncOperations.handler(type: UpstreamConnection.self) else {
                    channel.close(promise: nil)
                    self.failBeforeResponse(ex, timedOut: false)
                    return
                }
                self.loop.pool.noteOpened()
                balancer.markRecovered(node)
                self.bind(ex, conn, reused: false)
            case .failure(let error):
                balancer.release(node)
                balancer.markFailed(node, now: NIODeadline.now().uptimeNanoseconds)
                ex.tried.append(node)
                ex.lastConnectError = error
                if self.mayRetry(ex) {
                    self.acquireUpstream(ex, fresh: false)
                } else {
                    var timedOut = false
                    if case ChannelError.connectTimeout = error { timedOut = true }
                    self.failBeforeResponse(ex, timedOut: timedOut)
                }
            }
        }
    }

    private func mayRetry(_ ex: Exchange) -> Bool {
        guard let upstream = ex.upstream, context != nil else { return false }
        guard ex.attempts <= upstream.retries else { return false }
        let limit = upstream.config.retryTimeout
        if limit > 0 && NIODeadline.now() - ex.startedAt >= TimeAmount(seconds: limit) { return false }
        return true
    }

    private func bind(_ ex: Exchange, _ conn: UpstreamConnection, reused: Bool) {
        guard let context, var head = ex.upstreamHead, let upstream = ex.upstream, let node = ex.node else { return }
        ex.connection = conn
        ex.connectionWasReused = reused
        conn.owner = self
        conn.requestsServed += 1
        if upstream.config.passHost == .node || head.headers.first(name: "host")?.isEmpty != false {
            let n = upstream.plan.nodes[node]
            head.headers.replaceOrAdd(name: "Host", value: n.port == 80 ? n.host : n.address)
        }
        conn.write(.head(head))
        ex.upstreamSentAt = .now()
        if ex.expectContinue && !ex.requestEnded && !ex.sentContinue && !ex.bodyForwarded && ex.pendingBytes == 0 {
            ex.sentContinue = true
            context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .continue))), promise: nil)
        }
        while let part = ex.pendingBody.popFirst() {
            conn.write(.body(.byteBuffer(part)))
            ex.bodyForwarded = true
        }
        ex.pendingBytes = 0
        if ex.requestEnded {
            conn.write(.end(nil))
            ex.requestEndSent = true
        }
        if inReadBurst {
            ex.needsUpstreamFlush = true  // a pooled connection taken during a read: flush once at its end
        } else {
            conn.flush()
            ex.needsUpstreamFlush = false
        }
        let now = NIODeadline.now()
        ex.lastUpstreamActivity = now
        ensureTimer(by: now + TimeAmount(seconds: min(ex.timeouts.read, ex.timeouts.send)))
        resumeReadsIfPossible()
    }

    // MARK: Upstream events

    func upstreamRead(_ part: HTTPClientResponsePart, from conn: UpstreamConnection) {
        guard let context, let ex = exchange, ex.connection === conn else {
            conn.close()
            return
        }
        ex.lastUpstreamActivity = .now()
        switch part {
        case .head(let head):
            if head.status == .switchingProtocols {
                if ex.upgrade != nil {
                    // The tunnel starts at the end of this message: the decoder still has
                    // its `.end` to deliver, and only then stops parsing.
                    ex.switchingHead = head
                } else {
                    ex.connection = nil
                    conn.close()
                    failBeforeResponse(ex, timedOut: false)
                }
                return
            }
            ex.upstreamKeepAlive = head.isKeepAlive
            if ex.clientVersion.minor == 0 && !head.headers.contains(name: "content-length") && head.status.mayHaveResponseBody
                && ex.method != .HEAD
            {
                // An HTTP/1.0 client cannot take a chunked body: the body ends at close.
                ex.keepAlive = false
            }
            var out = HeaderRules.downstreamHead(head, close: !ex.keepAlive, upgrade: false)
            if ex.clientVersion.minor == 0 { out.version = .http1_0 }
            ex.upstreamStatus = Int(head.status.code)
            ex.bodyMode = .pass
            ex.heldHead = nil
            ex.collected = []
            if let run = ex.plugins, run.hasResponseWork {
                var response = PluginResponse(status: Int(out.status.code), headers: out.headers)
                run.headerFilters(&response)
                out.status = HTTPResponseStatus(statusCode: min(max(response.status, 100), 599))
                out.headers = response.headers
                if response.bodyRewritten && ex.method != .HEAD && out.status.mayHaveResponseBody {
                    // The head waits for the body, which the plugins rewrite whole.
                    ex.bodyMode = response.upstreamBodyUnused ? .discard : .collect
                    ex.heldHead = out
                    ex.status = response.status
                    return
                }
            }
            ex.status = Int(out.status.code)
            ex.responseStarted = true
            if ex.plugins != nil { ex.responseBytes += Self.headBytes(out) }
            context.write(wrapOutboundOut(.head(out)), promise: nil)
        case .body(let buffer):
            switch ex.bodyMode {
            case .pass:
                ex.responseBytes += buffer.readableBytes
                context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
            case .discard:
                break
            case .collect:
                ex.collected += buffer.readableBytesView
                if ex.collected.count > Self.maxRewrittenBody {
                    ex.connection = nil
                    conn.close()
                    if let node = ex.node { ex.balancer?.release(node) }
                    ex.local = true
                    respondLocally(.badGateway, "the upstream response is too large for the plugins that rewrite it", close: !ex.requestEnded)
                }
            }
        case .end(let trailers):
            if let switching = ex.switchingHead {
                startTunnel(ex, switching, conn, context)
                return
            }
            if var held = ex.heldHead, let run = ex.plugins {
                let body = run.transformBody(ex.bodyMode == .collect ? ex.collected : [])
                ex.collected = []
                ex.heldHead = nil
                held.headers.remove(name: "transfer-encoding")
                held.headers.replaceOrAdd(name: "Content-Length", value: String(body.count))
                ex.responseStarted = true
                ex.responseBytes = body.count + Self.headBytes(held)
                context.write(wrapOutboundOut(.head(held)), promise: nil)
                if !body.isEmpty { context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil) }
            }
            ex.endedAt = .now()
            ex.responseEnded = true
            ex.connection = nil
            if let node = ex.node {
                let now = NIODeadline.now()
                ex.balancer?.release(node, latencyNanos: UInt64(max(0, (now - ex.startedAt).nanoseconds)), now: now.uptimeNanoseconds)
            }
            let pool = ex.upstream?.config.keepalivePool ?? KeepalivePool()
            if ex.requestEndSent && ex.upstreamKeepAlive && conn.requestsServed < pool.requests {
                loop.pool.put(conn, maxIdle: pool.size, idleTimeout: TimeAmount(seconds: pool.idleTimeout))
            } else {
                conn.close()
            }
            if !ex.requestEnded { ex.local = true }  // discard the rest of the request body
            if !ex.keepAlive {
                exchange = nil
                context.writeAndFlush(wrapOutboundOut(.end(trailers))).assumeIsolated().whenComplete { _ in
                    context.close(promise: nil)
                }
            } else {
                context.writeAndFlush(wrapOutboundOut(.end(trailers)), promise: nil)
                if ex.requestEnded { finishExchange(ex) }
            }
        }
    }

    func upstreamReadComplete(from conn: UpstreamConnection) {
        context?.flush()
    }

    func upstreamWritabilityChanged(writable: Bool) {
        guard let ex = exchange else { return }
        if writable {
            ex.blockedSince = nil
            resumeReadsIfPossible()
        } else if ex.blockedSince == nil {
            ex.blockedSince = .now()
        }
    }

    func upstreamClosed(_ conn: UpstreamConnection, error: Error?) {
        guard let context, let ex = exchange, ex.connection === conn else { return }
        ex.connection = nil
        if ex.responseEnded { return }
        guard !ex.responseStarted else {
            // The response was cut short: the client must see a broken response, not a
            // complete-looking one.
            if let node = ex.node { ex.balancer?.release(node) }
            exchange = nil
            context.close(promise: nil)
            return
        }
        if let node = ex.node { ex.balancer?.release(node) }
        if !ex.bodyForwarded && ex.isIdempotent {
            if ex.connectionWasReused && !ex.staleRetryUsed {
                // A pooled keep-alive connection closed by the upstream just as we used it:
                // the request never reached the application, so try once on a new connection.
                ex.staleRetryUsed = true
                ex.requestEndSent = false
                acquireUpstream(ex, fresh: true)
                return
            }
            if let node = ex.node { ex.tried.append(node) }
            if mayRetry(ex) {
                ex.requestEndSent = false
                acquireUpstream(ex, fresh: false)
                return
            }
        }
        failBeforeResponse(ex, timedOut: false)
    }

    // MARK: Timeouts

    /// Makes sure the connection timer fires no later than `deadline`.
    private func ensureTimer(by deadline: NIODeadline) {
        guard let context, timer == nil || deadline < timerDeadline else { return }
        timer?.cancel()
        timerDeadline = deadline
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            self.timer = nil
            self.timerDeadline = .distantFuture
            self.timerFired()
        }
    }

    private func timerFired() {
        guard let context else { return }
        let now = NIODeadline.now()
        guard let ex = exchange else {
            // Waiting for a request head: the header timeout, or the keep-alive idle timeout.
            let limit = idleSince + (servedAny ? loop.settings.keepaliveTimeout : loop.settings.clientHeaderTimeout)
            if now >= limit {
                context.close(promise: nil)
            } else {
                ensureTimer(by: limit)
            }
            return
        }
        guard let conn = ex.connection, !ex.responseEnded else {
            // Connecting (the connect timeout is the bootstrap's) or answering locally.
            ensureTimer(by: now + loop.settings.clientHeaderTimeout)
            return
        }
        let readLimit = TimeAmount(seconds: ex.timeouts.read)
        let sendLimit = TimeAmount(seconds: ex.timeouts.send)
        var next = now + sendLimit
        if let blocked = ex.blockedSince {
            if now - blocked >= sendLimit { return upstreamTimedOut(ex, conn, context) }
            next = min(next, blocked + sendLimit)
        }
        if ex.requestEndSent {
            if now - ex.lastUpstreamActivity >= readLimit { return upstreamTimedOut(ex, conn, context) }
            next = min(next, ex.lastUpstreamActivity + readLimit)
        }
        ensureTimer(by: next)
    }

    private func upstreamTimedOut(_ ex: Exchange, _ conn: UpstreamConnection, _ context: ChannelHandlerContext) {
        ex.connection = nil
        conn.close()
        if let node = ex.node { ex.balancer?.release(node) }
        if ex.responseStarted {
            exchange = nil
            context.close(promise: nil)
        } else {
            failBeforeResponse(ex, timedOut: true)
        }
    }

    // MARK: Responses

    private func failBeforeResponse(_ ex: Exchange, timedOut: Bool) {
        ex.local = true
        ex.pendingBody.removeAll()
        ex.pendingBytes = 0
        if timedOut {
            respondLocally(.gatewayTimeout, "upstream timed out", close: !ex.requestEnded && ex.bodyForwarded)
        } else {
            respondLocally(.badGateway, "no upstream node could be reached", close: !ex.requestEnded && ex.bodyForwarded)
        }
        resumeReadsIfPossible()
    }

    /// Answers the current exchange from the gateway. The rest of the request body, if any,
    /// is read and discarded unless `close` is set.
    private func respondLocally(_ status: HTTPResponseStatus, _ message: String, close: Bool) {
        guard let ex = exchange else { return }
        if close { ex.keepAlive = false }
        ex.local = true
        ex.responseStarted = true
        ex.responseEnded = true
        ex.status = Int(status.code)
        ex.endedAt = .now()
        writeLocal(status: status, message: message, close: !ex.keepAlive, version: ex.clientVersion)
        if !ex.keepAlive {
            exchange = nil
        } else if ex.requestEnded {
            finishExchange(ex)
        }
    }

    private func writeLocal(status: HTTPResponseStatus, message: String, close: Bool, version: HTTPVersion) {
        guard let context else { return }
        let body = LocalResponse.body(message, allocator: context.channel.allocator)
        let head = LocalResponse.head(status: status, bodyLength: body.readableBytes, close: close, version: version)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        if close {
            context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        } else {
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }

    private func finishExchange(_ ex: Exchange) {
        guard exchange === ex else { return }
        exchange = nil
        if quiescing && queued.isEmpty {
            context?.close(promise: nil)
            return
        }
        headGuard?.expectHead()
        idleSince = .now()
        ensureTimer(by: idleSince + loop.settings.keepaliveTimeout)
        drainQueue()
        resumeReadsIfPossible()
    }

    // MARK: Upgrade

    private func startTunnel(_ ex: Exchange, _ head: HTTPResponseHead, _ conn: UpstreamConnection, _ context: ChannelHandlerContext) {
        exchange = nil
        ex.connection = nil
        conn.owner = nil
        if let node = ex.node { ex.balancer?.release(node) }
        let out = HeaderRules.downstreamHead(head, close: false, upgrade: true)
        context.writeAndFlush(wrapOutboundOut(.head(out)), promise: nil)
        guard let upstreamChannel = conn.channel else {
            context.close(promise: nil)
            return
        }
        let (clientSide, upstreamSide) = TunnelHandler.pair()
        do {
            // Client side: the tunnel handler goes last, then the HTTP handlers leave.
            let down = context.pipeline.syncOperations
            try down.addHandler(clientSide)
            Self.remove(ByteToMessageHandler<HTTPRequestDecoder>.self, from: down)
            Self.remove(HTTPResponseEncoder.self, from: down)
            Self.remove(NIOHTTPResponseHeadersValidator.self, from: down)
            Self.remove(HeadSizeGuard.self, from: down)
            // Upstream side: the connection handler leaves first so that bytes the decoder
            // still holds (sent right after the 101) reach the tunnel.
            let up = upstreamChannel.pipeline.syncOperations
            _ = up.removeHandler(conn)
            try up.addHandler(upstreamSide)
            Self.remove(ByteToMessageHandler<HTTPResponseDecoder>.self, from: up)
            Self.remove(HTTPRequestEncoder.self, from: up)
            Self.remove(NIOHTTPRequestHeadersValidator.self, from: up)
            _ = down.removeHandler(context: context)
            upstreamChannel.read()
            context.channel.read()
        } catch {
            upstreamChannel.close(promise: nil)
            context.close(promise: nil)
        }
    }

    private static func remove<H: RemovableChannelHandler>(_ type: H.Type, from pipeline: ChannelPipeline.SynchronousOperations) {
        if let ctx = try? pipeline.context(handlerType: type) {
            _ = pipeline.removeHandler(context: ctx)
        }
    }
}
