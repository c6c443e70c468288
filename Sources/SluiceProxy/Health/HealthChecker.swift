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
/// Scale: there is no timer per node. Each upstream keeps its nodes in due order (one queue
/// per interval); a finished probe starts the next due one, and a tick every 100 ms picks up
/// new upstreams and what came due meanwhile. Probes in flight are bounded per upstream (`active.concurrency`) and per
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

    /// A FIFO of (due, node). Every entry of one queue has the same interval added to its
    /// completion time, so the queue stays in due order: the next due node is at the front.
    struct DueQueue {
        var items: [(due: NIODeadline, node: Int)] = []
        var head = 0
        var first: (due: NIODeadline, node: Int)? { head < items.count ? items[head] : nil }
        mutating func push(_ due: NIODeadline, _ node: Int) { items.append((due, node)) }
        mutating func pop() -> Int {
            let n = items[head].node
            head += 1
            if head > 1024, head * 2 > items.count {
                items.removeFirst(head)
                head = 0
            }
            return n
        }
    }

    /// Per upstream: which node is due when. Healthy and unhealthy nodes wait in their own
    /// queue (their intervals differ); a node is in exactly one queue or in flight.
    struct Schedule {
        var healthy = DueQueue()
        var unhealthy = DueQueue()
        var inFlight = 0
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

    /// Picks up new and removed upstreams, then starts what is due.
    private func round() {
        let s = state.value
        let now = NIODeadline.now()
        var seen = Set<ObjectIdentifier>()
        for health in registry.all {
            let id = ObjectIdentifier(health)
            seen.insert(id)
            if s.schedules[id] == nil { s.schedules[id] = Self.firstSchedule(health, now: now, random: &s.random) }
            launch(health, id, now: now)
        }
        if s.schedules.count != seen.count { s.schedules = s.schedules.filter { seen.contains($0.key) } }
    }

    /// Starts the due probes of one upstream, within its concurrency and the process cap.
    private func launch(_ health: UpstreamHealth, _ id: ObjectIdentifier, now: NIODeadline) {
        let s = state.value
        guard var schedule = s.schedules[id] else { return }
        let concurrency = health.checks.active.concurrency
        while schedule.inFlight < concurrency, s.inFlight < Self.maxInFlight {
            let node: Int
            if let h = schedule.healthy.first, h.due <= now, (schedule.unhealthy.first.map { h.due <= $0.due } ?? true) {
                node = schedule.healthy.pop()
            } else if let u = schedule.unhealthy.first, u.due <= now {
                node = schedule.unhealthy.pop()
            } else {
                break
            }
            schedule.inFlight += 1
            s.inFlight += 1
            probes.add(1, ordering: .relaxed)
            probe(health, node) { [self] outcome in finished(health, id, node, outcome) }
        }
        s.schedules[id] = schedule
    }

    /// Each node's first probe at a random point of the first interval.
    static func firstSchedule(_ health: UpstreamHealth, now: NIODeadline, random: inout SystemRandomNumberGenerator) -> Schedule {
        let spread = Int64(health.checks.active.healthyInterval) * 1_000_000_000
        var first = health.cells.indices.map { (due: now + .nanoseconds(Int64.random(in: 0..<max(1, spread), using: &random)), node: $0) }
        first.sort { $0.due < $1.due }
        var schedule = Schedule()
        schedule.healthy.items = first
        return schedule
    }

    private func finished(_ health: UpstreamHealth, _ id: ObjectIdentifier, _ node: Int, _ outcome: HealthOutcome?) {
        let s = state.value
        s.inFlight -= 1
        if let outcome { health.recordActive(node, outcome) }
        guard var schedule = s.schedules[id] else { return }  // the upstream is gone
        schedule.inFlight -= 1
        let a = health.checks.active
        let now = NIODeadline.now()
        if health.cells[node].isHealthy {
            schedule.healthy.push(now + .seconds(Int64(a.healthyInterval)), node)
        } else {
            schedule.unhealthy.push(now + .seconds(Int64(a.unhealthyInterval)), node)
        }
        s.schedules[id] = schedule
        // A freed slot goes to the next due node now, not at the next tick.
        launch(health, id, now: now)
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
