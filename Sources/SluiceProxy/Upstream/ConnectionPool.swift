import NIOCore

/// Idle upstream connections of one event loop, by upstream identity. No lock: only this
/// loop touches it. Most recently used first, so a small working set stays warm and the rest
/// time out.
final class ConnectionPool {
    private var idle: [UpstreamKey: [HTTP1UpstreamConnection]] = [:]
    private let eventLoop: EventLoop
    private var sweeper: Scheduled<Void>?
    private(set) var connectionsOpened = 0

    init(eventLoop: EventLoop) { self.eventLoop = eventLoop }

    var idleCount: Int { idle.values.reduce(0) { $0 + $1.count } }

    func noteOpened() { connectionsOpened += 1 }

    /// An idle, open connection to `key`, or nil. The stack is mutated in place: no copy.
    func take(_ key: UpstreamKey) -> HTTP1UpstreamConnection? {
        while let conn = idle[key]?.popLast() {
            if !conn.isClosed { return conn }
        }
        return nil
    }

    /// Keeps `conn` for reuse, or closes it when the pool for its key is full, it served its
    /// `requests`, or idle connections are not kept.
    func put(_ conn: HTTP1UpstreamConnection, policy: KeepalivePoolPolicy) {
        guard !conn.isClosed, policy.idleTimeout > .zero, conn.requestsServed < policy.requests,
            (idle[conn.key]?.count ?? 0) < policy.size
        else {
            conn.close()
            return
        }
        conn.owner = nil
        conn.pool = self
        conn.idleSince = .now()
        conn.idleTimeout = policy.idleTimeout
        idle[conn.key, default: []].append(conn)
        scheduleSweep()
    }

    func remove(_ conn: HTTP1UpstreamConnection) {
        guard let i = idle[conn.key]?.firstIndex(where: { $0 === conn }) else { return }
        idle[conn.key]?.remove(at: i)
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
        var expired: [HTTP1UpstreamConnection] = []
        for key in Array(idle.keys) {
            idle[key]?.removeAll { conn in
                if conn.isClosed { return true }
                if now - conn.idleSince >= conn.idleTimeout {
                    expired.append(conn)
                    return true
                }
                return false
            }
            if idle[key]?.isEmpty == true { idle[key] = nil }
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

/// An upstream's `keepalive_pool`, in the units the pool uses.
struct KeepalivePoolPolicy {
    var size: Int
    var idleTimeout: TimeAmount
    var requests: Int
}
