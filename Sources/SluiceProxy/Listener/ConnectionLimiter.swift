import NIOConcurrencyHelpers
import NIOCore
import Synchronization

/// A cap on client connections per process. At the cap, listeners stop accepting: new
/// clients wait in the kernel's backlog instead of the process running out of descriptors,
/// and accepting resumes as connections close. Each listener's accept batch may overshoot
/// the cap by at most its `maxMessagesPerRead`.
public final class ConnectionLimiter: Sendable {
    public let maxConnections: Int
    private let open = Atomic<Int>(0)
    private let gates = NIOLockedValueBox<[AcceptGate.Handle]>([])

    public init(maxConnections: Int) { self.maxConnections = max(1, maxConnections) }

    public var openConnections: Int { open.load(ordering: .relaxed) }

    /// Adds the gate to a listener's server channel; called on the channel's event loop (in
    /// a `serverChannelInitializer`).
    public func installGate(on channel: Channel) throws {
        let gate = AcceptGate(limiter: self)
        try channel.pipeline.syncOperations.addHandler(gate)
        gates.withLockedValue { $0.append(AcceptGate.Handle(loop: channel.eventLoop, gate: NIOLoopBound(gate, eventLoop: channel.eventLoop))) }
    }

    var isFull: Bool { open.load(ordering: .relaxed) >= maxConnections }

    func opened() { open.add(1, ordering: .relaxed) }

    func closed() {
        let before = open.subtract(1, ordering: .relaxed).oldValue
        guard before >= maxConnections else { return }
        for handle in gates.withLockedValue({ $0 }) {
            let gate = handle.gate
            handle.loop.execute { gate.value.resume() }
        }
    }
}

/// Holds a server channel's reads (accepts) while the process is at its connection cap.
final class AcceptGate: ChannelDuplexHandler {
    typealias InboundIn = Channel
    typealias InboundOut = Channel
    typealias OutboundIn = Never

    struct Handle: Sendable {
        let loop: EventLoop
        let gate: NIOLoopBound<AcceptGate>
    }

    private let limiter: ConnectionLimiter
    private var context: ChannelHandlerContext?
    private var held = false

    init(limiter: ConnectionLimiter) { self.limiter = limiter }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let child = unwrapInboundIn(data)
        limiter.opened()
        let limiter = self.limiter
        child.closeFuture.whenComplete { _ in limiter.closed() }
        context.fireChannelRead(data)
    }

    func read(context: ChannelHandlerContext) {
        if limiter.isFull {
            held = true
        } else {
            context.read()
        }
    }

    func resume() {
        guard held, !limiter.isFull, let context else { return }
        held = false
        context.read()
    }
}

