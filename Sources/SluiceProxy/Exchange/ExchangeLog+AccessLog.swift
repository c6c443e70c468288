import Foundation
import NIOCore

extension LoopContext {
    /// The access log line of a finished exchange (answered by an upstream or by the gateway).
    func writeAccessLog(_ exchange: ProxyExchange, _ log: ExchangeLog) {
        guard let buffer = accessLog else { return }
        writeAccessLog(exchange.machine, log, into: buffer)
    }

    private func writeAccessLog(_ machine: borrowing ExchangeStateMachine, _ log: ExchangeLog, into buffer: AccessLogBuffer) {
        let end = log.endedAt ?? .now()
        let elapsed = max(0, (end - machine.startedAt).nanoseconds)
        let fields = machine.request.head.fields
        var upstreams: [UpstreamAttemptLog] = []
        if log.hasAttempts {
            for a in log.attempts {
                upstreams.append(UpstreamAttemptLog(address: machine.nodeAddress(a.node), status: a.status, responseTimeNanos: a.nanos.map { Int64(clamping: $0) }))
            }
        }
        let head = machine.request.head
        let proxied = log.hasAttempts
        buffer.append(AccessLogRecord(
            remoteAddr: machine.request.client.address, remoteUser: nil, startWallNanos: Self.wallNanos(ago: elapsed),
            host: fields.first(.host), method: head.method.rawValue, requestURI: head.target,
            httpVersion: head.version.minor == 0 ? "HTTP/1.0" : "HTTP/1.1", status: log.status == 0 ? 499 : log.status,
            bodyBytesSent: log.bodyBytesSent, requestTimeNanos: elapsed, referer: fields.first(.referer),
            userAgent: fields.first(.userAgent), upstreams: upstreams,
            // As APISIX logs a request it answered itself: http://<Host> with an empty URI.
            upstreamScheme: proxied ? (log.upstreamScheme ?? "http") : "http",
            upstreamHost: proxied ? machine.sentHead?.gateway.host : (machine.request.hostHeader ?? ""),
            upstreamURI: proxied ? log.upstreamURI : "", routeID: machine.route.flatMap { $0.isUnmatched ? nil : $0.routeID },
            requestID: machine.plugins?.request.headers.first(name: "x-request-id") ?? fields.first(name: "x-request-id"),
            error: log.reason))
    }

    /// The line of a request that could not be read (400, 414, 431, 501 before routing).
    func writeAccessLogForUnreadRequest(_ client: ClientConnectionInfo, status: Int, bodyBytes: Int, startedAt: NIODeadline) {
        guard let buffer = accessLog else { return }
        let elapsed = max(0, (NIODeadline.now() - startedAt).nanoseconds)
        buffer.append(AccessLogRecord(
            remoteAddr: client.address, startWallNanos: Self.wallNanos(ago: elapsed), method: "-", requestURI: "-", httpVersion: "-",
            status: status, bodyBytesSent: bodyBytes, requestTimeNanos: elapsed))
    }

    private static func wallNanos(ago nanos: Int64) -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return (Int64(ts.tv_sec) &* 1_000_000_000 &+ Int64(ts.tv_nsec)) &- nanos
    }
}
