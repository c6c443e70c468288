import NIOCore
import NIOPosix
import NIOSSL
import SluiceBalancing
import SluiceCore
import Synchronization

/// The process's one active health checker: it probes every node of every upstream with
/// `checks` (from any config source, from the moment it is configured), on one event loop of
/// its own, and writes what it finds into the shared `UpstreamHealth` cells the request
/// loops read.
///
/// Scale: one repeating tick (every 100 ms) walks the nodes whose probe is due; there is no
/// timer per node. Probes in flight are bounded per upstream (`active.concurrency`) and per
/// process (`maxInFlight`); first probes are spread over the first interval, so 10,000 new
/// nodes do not all connect in the same tick.
public final class HealthChecker: Sendable {
    public static let maxInFlight = 512
    static let tick = TimeAmount.milliseconds(100)

    public let registry: HealthRegistry
    let group: MultiThreadedEventLoopGroup
    let loop: any EventLoop
    private let state: NIOLoopBoundBox<State>
    private let probes = Atomic<Int>(0)

    /// Probes sent since the checker started (for metrics and tests).
    public var probesSent: Int { probes.load(ordering: .relaxed) }

    struct Schedule {
        var due: [NIODeadline]
        var inFlight: [Bool]
        var inFlightCount = 0
    }

    final class State {
        var schedules: [ObjectIdentifier: Schedule] = [:]
        var inFlight = 0
        var task: RepeatedTask?
        var verifying: NIOSSLContext?
        var trusting: NIOSSLContext?
        var random = SystemRandomNumberGenerator()
    }

    public init(registry: HealthRegistry) {
        self.registry = registry
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        loop = group.next()
        state = NIOLoopBoundBox.makeBoxSendingValue(State(), as: State.self, eventLoop: loop)
    }

    public func start() {
        loop.execute { [self] in
            guard state.value.task == nil else { return }
            state.value.task = loop.scheduleRepeatedTask(initialDelay: .zero, delay: Self.tick) { [self] _ in round() }
        }
    }

    public func shutdown() async {
        try? await loop.submit { [self] in
            state.value.task?.cancel()
            state.value.task = nil
        }.get()
        try? await group.shutdownGracefully()
    }

    /// One pass over the due nodes.
    private func round() {
        let s = state.value
        let now = NIODeadline.now()
        var seen = Set<ObjectIdentifier>()
        for health in registry.all {
            let id = ObjectIdentifier(health)
            seen.insert(id)
            let active = health.checks.active
            var schedule = s.schedules[id] ?? Self.firstSchedule(health, now: now, random: &s.random)
            if schedule.inFlightCount < active.concurrency, s.inFlight < Self.maxInFlight {
                for i in 0..<health.cells.count where !schedule.inFlight[i] && schedule.due[i] <= now {
                    guard schedule.inFlightCount < active.concurrency, s.inFlight < Self.maxInFlight else { break }
                    schedule.inFlight[i] = true
                    schedule.inFlightCount += 1
                    s.inFlight += 1
                    probes.add(1, ordering: .relaxed)
                    probe(health, i) { [self] outcome in finished(health, id, i, outcome) }
                }
            }
            s.schedules[id] = schedule
        }
        if s.schedules.count != seen.count { s.schedules = s.schedules.filter { seen.contains($0.key) } }
    }

    /// Each node's first probe at a random point of the first interval.
    static func firstSchedule(_ health: UpstreamHealth, now: NIODeadline, random: inout SystemRandomNumberGenerator) -> Schedule {
        let spread = Int64(health.checks.active.healthyInterval) * 1_000_000_000
        let due = health.cells.indices.map { _ in now + .nanoseconds(Int64.random(in: 0..<max(1, spread), using: &random)) }
        return Schedule(due: due, inFlight: Array(repeating: false, count: health.cells.count))
    }

    private func finished(_ health: UpstreamHealth, _ id: ObjectIdentifier, _ node: Int, _ outcome: HealthOutcome?) {
        let s = state.value
        s.inFlight -= 1
        if let outcome { health.recordActive(node, outcome) }
        guard var schedule = s.schedules[id], node < schedule.due.count else { return }
        schedule.inFlight[node] = false
        schedule.inFlightCount -= 1
        let a = health.checks.active
        let interval = health.cells[node].isHealthy ? a.healthyInterval : a.unhealthyInterval
        schedule.due[node] = .now() + .seconds(Int64(interval))
        s.schedules[id] = schedule
    }

    // MARK: Probes

    /// Connects (tcp), or sends `GET http_path` and reads the status line (http, https).
    /// `done` runs on the checker's loop with the verdict, or nil for a status that is in
    /// neither list (it counts for nothing, as in APISIX).
    private func probe(_ health: UpstreamHealth, _ node: Int, done: @escaping @Sendable (HealthOutcome?) -> Void) {
        let a = health.checks.active
        let cell = health.cells[node]
        let port = a.port ?? cell.port
        let timeout = TimeAmount.nanoseconds(Int64(min(a.timeout, 86_400) * 1_000_000_000))
        var tlsContext: NIOSSLContext? = nil
        if a.type == .https {
            tlsContext = a.httpsVerifyCertificate ? verifyingContext() : trustingContext()
            guard tlsContext != nil else {
                done(.tcpFailure)
                return
            }
        }
        let promise = loop.makePromise(of: Int.self)
        let request = a.type == .tcp ? nil : Self.request(a, host: a.host ?? cell.host, port: port)
        let sni = a.host ?? cell.host
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tlsContext {
                        let name = IPAddress(sni) == nil ? sni : nil
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tlsContext, serverHostname: name))
                    }
                    if let request { try channel.pipeline.syncOperations.addHandler(StatusLineReader(request: request, promise: promise)) }
                }
            }
        let statuses = (healthy: a.healthyStatuses, unhealthy: a.unhealthyStatuses)
        bootstrap.connect(host: cell.host, port: port).whenComplete { result in
            switch result {
            case .failure(let error):
                promise.fail(error)
                done(Self.isTimeout(error) ? .timeout : .tcpFailure)
            case .success(let channel):
                guard request != nil else {
                    promise.fail(ChannelError.alreadyClosed)
                    channel.close(promise: nil)
                    done(.success)
                    return
                }
                let timer = channel.eventLoop.scheduleTask(in: timeout) { promise.fail(ChannelError.connectTimeout(timeout)) }
                promise.futureResult.whenComplete { status in
                    timer.cancel()
                    channel.close(promise: nil)
                    switch status {
                    case .success(let code):
                        done(statuses.healthy.contains(code) ? .success : statuses.unhealthy.contains(code) ? .httpFailure : nil)
                    case .failure(let error):
                        done(Self.isTimeout(error) ? .timeout : .tcpFailure)
                    }
                }
            }
        }
    }

    static func isTimeout(_ error: any Error) -> Bool {
        if case ChannelError.connectTimeout = error { return true }
        return false
    }

    /// The probe request, as APISIX's checker sends it (HTTP/1.0, the connection closed after).
    static func request(_ a: HealthChecks.Active, host: String, port: Int) -> ByteBuffer {
        var text = "GET \(a.httpPath) HTTP/1.0\r\nHost: \(host)\r\nUser-Agent: sluice-healthcheck\r\n"
        for line in a.requestHeaders { text += line + "\r\n" }
        text += "Connection: close\r\n\r\n"
        return ByteBuffer(string: text)
    }

    private func verifyingContext() -> NIOSSLContext? {
        let s = state.value
        if s.verifying == nil { s.verifying = try? NIOSSLContext(configuration: .makeClientConfiguration()) }
        return s.verifying
    }

    private func trustingContext() -> NIOSSLContext? {
        let s = state.value
        if s.trusting == nil {
            var c = TLSConfiguration.makeClientConfiguration()
            c.certificateVerification = .none
            s.trusting = try? NIOSSLContext(configuration: c)
        }
        return s.trusting
    }
}

/// Writes the probe request and reads the status code of the answer's first line.
final class StatusLineReader: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let request: ByteBuffer
    let promise: EventLoopPromise<Int>
    var seen: [UInt8] = []

    init(request: ByteBuffer, promise: EventLoopPromise<Int>) {
        self.request = request
        self.promise = promise
    }

    func channelActive(context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(request), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        seen += buffer.readableBytesView.prefix(max(0, 512 - seen.count))
        // `HTTP/1.x NNN`: the code is bytes 9-11.
        if seen.count >= 12 {
            if seen.starts(with: Array("HTTP/1.".utf8)), let code = Int(String(decoding: seen[9..<12], as: UTF8.self)) {
                promise.succeed(code)
            } else {
                promise.fail(ChannelError.inappropriateOperationForState)
            }
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(ChannelError.alreadyClosed)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(error)
        context.close(promise: nil)
    }
}
