import NIOCore
import NIOHTTP1
import SluiceCore
import SluiceTLS
import SluicePlugins
import SluiceRouting

/// Who is on the client side of a connection, as routing and the forwarding headers see it.
struct ClientConnectionInfo {
    var address = "0.0.0.0"
    var ip: IPAddress?
    var port = 0
    var serverAddress = ""
    var serverPort = 0
    var serverPortText = "0"
    /// `X-Forwarded-Proto` and `$scheme`: the listener's.
    var scheme = "http"
    /// The TLS handshake's outcome, on a TLS listener.
    var tls: TLSConnectionInfo?
    /// The certificate object that served it: its `skip_mtls_uri_regex` decides which
    /// requests may come without a client certificate.
    var identity: ServerIdentity?
}

/// The step from a request head to an exchange: normalizes the target, finds the route in
/// the snapshot read once for this request, and sets up the plugin run. What cannot be
/// routed becomes an exchange the gateway answers itself.
enum ExchangeRouting {
    /// A request answered before routing: this status and message; `close` when the
    /// connection must close.
    struct Refusal {
        var status: HTTPResponseStatus
        var message: String
        var close: Bool
        var page: ErrorPageTitles.Variant? = nil
    }

    /// The exchange for `head`; `refusal` is set when the gateway answers it at once. The
    /// machine is returned, not wrapped, so that it moves into its driver without a copy.
    static func route(
        _ head: RequestHead, framing: BodyFraming, keepAlive: Bool, connection: ClientConnectionInfo, snapshot: ConfigSnapshot,
        variables: HTTPRequestVariables, balancers: BalancerSource, limits: ExchangeStateMachine.Limits, now: NIODeadline,
        refusal: inout Refusal?
    ) -> ExchangeStateMachine {
        let client = ForwardingHeaders.Client(
            address: connection.address, hostHeader: nil, scheme: connection.scheme, serverPort: connection.serverPortText)
        // The Host header as sent, for the log of a request refused before routing.
        var request = ExchangeStateMachine.Request(
            head: head, framing: framing, target: RequestPath(path: "/", query: nil, authority: nil), hostHeader: head.fields.first(.host),
            upgrade: nil, client: client, variables: variables, keepAlive: keepAlive)
        if head.method == .CONNECT {
            request.keepAlive = false
            refusal = Refusal(status: .methodNotAllowed, message: "CONNECT is not supported", close: true)
            return .local(request: request, limits: limits, now: now)
        }
        let target: RequestPath
        switch RequestPath.normalize(head.target) {
        case .success(let t): target = t
        case .failure(let f):
            let message: String
            switch f {
            case .aboveRoot: message = "request path climbs above /"
            case .badPercentEncoding: message = "invalid percent-encoding in request path"
            case .notOriginForm: message = "invalid request target"
            }
            refusal = Refusal(status: .badRequest, message: message, close: false)
            return .local(request: request, limits: limits, now: now)
        }
        let hostHeader = target.authority ?? request.hostHeader
        let host = hostHeader.map(routingHost)
        request.target = target
        request.hostHeader = hostHeader
        request.client.hostHeader = hostHeader

        // An Upgrade request carries nothing after it on this connection unless the upgrade
        // happens: the bytes after it are the tunnel's.
        if let upgrade = head.fields.first(.upgrade), ForwardingHeaders.connectionHas(head.fields, "upgrade") {
            request.upgrade = upgrade
            request.keepAlive = false
        }

        // `client.ca` with `skip_mtls_uri_regex`: the handshake let a client without a
        // certificate in; only the listed paths serve it.
        if let identity = connection.identity, identity.verifiesClients, connection.tls?.hasClientCertificate != true,
            !identity.skipsClientCertificate(path: target.path)
        {
            refusal = Refusal(status: .badRequest, message: "No required SSL certificate was sent", close: false, page: .noClientCertificate)
            return .local(request: request, limits: limits, now: now)
        }
        variables.head = head
        variables.path = target
        variables.host = host
        let routeRequest = RouteRequest(
            path: target.path, host: host, method: head.method.rawValue, remoteAddress: connection.ip, variables: variables)
        let route: RouteTarget
        if let index = snapshot.router.matchIndex(routeRequest) {
            route = snapshot.targets[index]
        } else if !snapshot.globalRules.isEmpty {
            route = .unmatched  // global rules first, then 404
        } else {
            return .local(request: request, limits: limits, now: now)
        }
        var run: PluginRun? = nil
        if !(route.plugins.isEmpty && snapshot.globalRules.isEmpty) {
            let r = PluginRequest(
                method: head.method, path: target.path, query: target.query, headers: head.fields.httpHeaders(), requestURI: head.target,
                host: host, remoteAddress: connection.address, clientIP: connection.ip, remotePort: connection.port,
                serverAddress: connection.serverAddress, serverPort: connection.serverPort, scheme: connection.scheme,
                routeID: route.routeID, serviceID: route.serviceID, startNanos: now.uptimeNanoseconds)
            r.consumers = snapshot.consumers
            r.tls = connection.tls
            r.routeName = route.routeName
            r.serviceName = route.serviceName
            r.matchedURI = route.matchedURI
            r.matchedHost = route.matchedHost
            run = PluginRun(request: r, route: route.plugins, globals: snapshot.globalRules)
        }
        return ExchangeStateMachine(request: request, route: route, plugins: run, snapshot: snapshot, balancers: balancers, limits: limits, now: now)
    }

    /// `Host` as the router compares it: lower case, without the port, and without the
    /// trailing dot of a fully qualified name (`api.example.com.` is `api.example.com`, as
    /// NGINX's `$host` has it), so an absolute name cannot slip past host-scoped routes.
    static func routingHost(_ raw: String) -> String {
        var bytes = raw
        return bytes.withUTF8 { b -> String in
            var end = b.count
            if b.first == UInt8(ascii: "[") {
                if let close = b.firstIndex(of: UInt8(ascii: "]")) { end = close + 1 }
            } else if let colon = b.lastIndex(of: UInt8(ascii: ":")) {
                end = colon
            }
            if end > 1 && b[end - 1] == UInt8(ascii: ".") { end -= 1 }
            var upper = false
            for i in 0..<end where b[i] >= UInt8(ascii: "A") && b[i] <= UInt8(ascii: "Z") {
                upper = true
                break
            }
            if !upper && end == b.count { return raw }
            let slice = UnsafeBufferPointer(rebasing: b[0..<end])
            return upper ? String(decoding: slice, as: UTF8.self).lowercased() : String(decoding: slice, as: UTF8.self)
        }
    }

}
