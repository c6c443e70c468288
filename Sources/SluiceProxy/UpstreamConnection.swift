import NIOCore
import NIOHTTP1

/// Where an upstream connection goes: the pool key.
struct PeerKey: Hashable {
    var host: String
    var port: Int
}

/// One HTTP/1.1 connection to an upstream node, owned by at most one exchange at a time and
/// otherwise idle in its loop's pool. It is the last handler of the upstream channel.
final class UpstreamConnection: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = HTTPClientRequestPart

    let peer: PeerKey
    private(set) var context: ChannelHandlerContext?
    /// The downstream handler using this connection; nil while idle.
    var owner: HTTPProxyHandler?
    weak var pool: ConnectionPool?
    var requestsServed = 0
    var idleSince = NIODeadline.now()
    var idleTimeout = TimeAmount.seconds(60)
    private var readPending = false
    private(set) var isClosed = false

    init(peer: PeerKey) { self.peer = peer }

    var channel: Channel? { context?.channel }
    var isWritable: Bool { context?.channel.isWritable ?? false }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        if let owner {
            owner.upstreamRead(part, from: self)
        } else {
            // An idle connection must not send anything: it is no longer usable.
            context.close(promise: nil)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        owner?.upstreamReadComplete(from: self)
    }

    func channelInactive(context: ChannelHandlerContext) {
        isClosed = true
        pool?.remove(self)
        let owner = self.owner
        self.owner = nil
        owner?.upstreamClosed(self, error: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        let owner = self.owner
        self.owner = nil
        owner?.upstreamClosed(self, error: error)
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        owner?.upstreamWritabilityChanged(writable: context.channel.isWritable)
    }

    /// Back-pressure: read from the upstream only while the client can take more.
    func read(context: ChannelHandlerContext) {
        if let owner, !owner.downstreamWritable {
            readPending = true
        } else {
            context.read()
        }
    }

    func resumeReading() {
        if readPending, let context {
            readPending = false
            context.read()
        }
    }

    func write(_ part: HTTPClientRequestPart) {
        context?.write(wrapOutboundOut(part), promise: nil)
    }

    func flush() { context?.flush() }

    func close() {
        guard !isClosed else { return }
        owner = nil
        context?.close(promise: nil)
    }
}

/// Idle upstream connections of one event loop, by peer. No lock: only this loop touches it.
/// Most recently used first, so a small working set stays warm and the rest time out.
final class ConnectionPool {
    private var idle: [PeerKey: [UpstreamConnection]] = [:]
    private let eventLoop: EventLoop
    private var sweeper: Scheduled<Void>?
    private(set) var connectionsOpened = 0

    init(eventLoop: EventLoop) { self.eventLoop = eventLoop }

    var idleCount: Int { idle.values.reduce(0) { $0 + $1.count } }

    func noteOpened() { connectionsOpened += 1 }

    /// An idle, open connection to `peer`, or nil. The stack is mutated in place: no copy.
    func take(_ peer: PeerKey) -> UpstreamConnection? {
        while let conn = idle[peer]?.popLast() {
            if !conn.isClosed { return conn }
        }
        return nil
    }

    /// Keeps `conn` for reuse, or closes it when the pool for its peer is full.
    func put(_ conn: UpstreamConnection, maxIdle: Int, idleTimeout: TimeAmount) {
        guard !conn.isClosed, idleTimeout > .zero, (idle[conn.peer]?.count ?? 0) < maxIdle else {
            conn.close()
            return
        }
        conn.owner = nil
        conn.pool = self
        conn.idleSince = .now()
        conn.idleTimeout = idleTimeout
        idle[conn.peer, default: []].append(conn)
        scheduleSweep()
    }

    func remove(_ conn: UpstreamConnection) {
        guard let i = idle[conn.peer]?.firstIndex(where: { $0 === conn }) else { return }
        idle[conn.peer]?.remove(at: i)
    }

    /// One timer per loop closes connections idle past their upstream's `idle_timeout`,
    /// instead of a timer per connection.
    private func scheduleSweep() {
        guard sweeper == nil else { return }
        sweeper = eventLoop.assumeIsolated().scheduleTask(in: .seconds(1)) { [self] in
            self.sweeper = nil
            self.sweep()
        }
    }

    private func sweep() {
        let now = NIODeadline.now()
        var expired: [UpstreamConnection] = []
        for peer in Array(idle.keys) {
            idle[peer]?.removeAll { conn in
                if conn.isClosed { return true }
                if now - conn.idleSince >= conn.idleTimeout {
                    expired.append(conn)
                    return true
                }
                return false
            }
            if idle[peer]?.isEmpty == true { idle[peer] = nil }
        }
        // Closed only after the pool is updated: closing fires channelInactive, which calls
        // back into `remove`, and must not do so while `idle` is being mutated.
        for conn in expired { conn.close() }
        if !idle.isEmpty { scheduleSweep() }
    }

    func closeAll() {
        let all = idle.values.flatMap { $0 }
        idle.removeAll()
        for c in all { c.close() }
        sweeper?.cancel()
        sweeper = nil
    }
}
