import NIOCore
import SluiceBalancing

/// Everything the data plane keeps per event loop: the current snapshot, balancer state,
/// the upstream connection pool and the open client connections. Only its loop touches it,
/// so the request path takes no lock.
public final class LoopContext: BalancerSource {
    public let eventLoop: EventLoop
    public private(set) var snapshot: ConfigSnapshot
    /// This loop's access log buffer; nil when the access log is off.
    let accessLog: AccessLogBuffer?
    let pool: ConnectionPool
    /// Balancer state by upstream key. Lookups go through `byInstance` first: hashing an
    /// object identity is cheaper than hashing the key string on every request.
    private var balancers: [String: (upstream: CompiledUpstream, balancer: Balancer)] = [:]
    private var byInstance: [ObjectIdentifier: Balancer] = [:]
    private var connections: [ObjectIdentifier: Channel] = [:]
    private var seed: UInt64

    public init(eventLoop: EventLoop, snapshot: ConfigSnapshot = .empty, accessLog: AccessLog? = nil) {
        self.eventLoop = eventLoop
        self.snapshot = snapshot
        self.accessLog = accessLog.map { AccessLogBuffer(log: $0, eventLoop: eventLoop) }
        self.pool = ConnectionPool(eventLoop: eventLoop)
        self.seed = UInt64(UInt(bitPattern: ObjectIdentifier(eventLoop).hashValue)) | 1
    }

    /// Makes `snapshot` the one new requests on this loop read. Requests already running keep
    /// theirs. Balancer state of upstreams that did not change is kept; that of removed or
    /// changed upstreams is dropped.
    public func install(_ snapshot: ConfigSnapshot) {
        // Publications may race; an older snapshot never replaces a newer one.
        guard snapshot.version > self.snapshot.version else { return }
        self.snapshot = snapshot
        balancers = balancers.filter { key, value in snapshot.upstreams[key] === value.upstream }
        byInstance = [:]
        for (_, value) in balancers { byInstance[ObjectIdentifier(value.upstream)] = value.balancer }
    }

    public func balancer(for upstream: CompiledUpstream) -> Balancer {
        if let b = byInstance[ObjectIdentifier(upstream)] { return b }
        if let entry = balancers[upstream.key], entry.upstream === upstream {
            byInstance[ObjectIdentifier(upstream)] = entry.balancer
            return entry.balancer
        }
        seed = StableHash.mix(seed)
        let b = Balancer(plan: upstream.plan, seed: seed, health: upstream.health)
        balancers[upstream.key] = (upstream, b)
        byInstance[ObjectIdentifier(upstream)] = b
        return b
    }

    /// Balancer state for tests and the control API (nil when none was created yet).
    public func existingBalancer(forKey key: String) -> Balancer? { balancers[key]?.balancer }

    /// Upstream connections this loop opened since it started.
    public var upstreamConnectionsOpened: Int { pool.connectionsOpened }
    public var idleUpstreamConnections: Int { pool.idleCount }

    public var openConnections: Int { connections.count }
    /// Client connections accepted and requests read on this loop since it started.
    public private(set) var connectionsAccepted = 0
    public internal(set) var requestsServed = 0

    public func track(_ channel: Channel) {
        connectionsAccepted += 1
        let id = ObjectIdentifier(channel)
        connections[id] = channel
        channel.closeFuture.assumeIsolated().whenComplete { [self] _ in
            self.connections.removeValue(forKey: id)
        }
    }

    /// Asks every client connection to finish its current exchange and close.
    public func quiesceAll() {
        for c in connections.values {
            c.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        }
    }

    public func closeAll() {
        for c in connections.values { c.close(promise: nil) }
        pool.closeAll()
        accessLog?.flush()
    }
}
