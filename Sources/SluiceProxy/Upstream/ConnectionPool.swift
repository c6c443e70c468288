import NIOCore

/// Idle upstream connections of one event loop, by upstream identity. No lock: only this
/// loop touches it. Most recently used first, so a small working set stays warm and the rest
/// time out.
final class ConnectionPool {
    /// Idle connections by key. Each key's stack is an object, so taking and returning a
    /// connection mutates it in place instead of going through the dictionary's accessor.
    private final class Stack {
        var connections: [HTTP1UpstreamConnection] = []
    }
    private var idle: [UpstreamKey: Stack] = [:]
    private let eventLoop: EventLoop
    private var sweeper: Scheduled<Void>?
    private(set) var connectionsOpened = 0

    init(eventLoop: EventLoop) { self.eventLoop = eventLoop }

    var idleCount: Int { idle.values.reduce(0) { $0 + $1.connections.count } }

    func noteOpened() { connectionsOpened += 1 }

    /// An idle, open connection to `key`, or nil. The stack is mutated in place: no copy.
    func take(_ key: UpstreamKey) -> HTTP1UpstreamConnection? {
        guard let stack = idle[key] else { return nil }
        while let conn = stack.connections.popLast() {
            if !conn.isClosed { return conn }
        }
        return nil
    }

    /// Keeps `conn` for reuse, or closes it when the pool for its key is full, it served its
    /// `requests`, or idle connections are not kept.
    func put(_ conn: HTTP1UpstreamConnection, policy: KeepalivePoolPolicy) {
        let stack: Stack
        if let s = idle[conn.key] {
            stack = s
        } else {
            stack = Stack()
            idle[conn.key] = stack
        }
        guard !conn.isClosed, policy.idleTimeout > .zero, conn.requestsServed < policy.requests, stack.connections.count < policy.size else {
            conn.close()
            return
        }
        conn.owner = nil
        conn.pool = self
        conn.idleSince = .now()
        conn.idleTimeout = policy.idleTimeout
        stack.connections.append(conn)
        scheduleSweep()
    }

    func remove(_ conn: HTTP1UpstreamConnection) {
        guard let stack = idle[conn.key], let i = stack.connections.firstIndex(where: { $0 === conn }) else { return }
        stack.connections.remove(at: i)
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
        for (key, stack) in idle {
            stack.connections.removeAll { conn in
                if conn.isClosed { return true }
                if now - conn.idleSince >= conn.idleTimeout {
                    expired.append(conn)
                    return true
                }
                return false
            }
            if stack.connections.isEmpty { idle[key] = nil }
        }
        // Closed only after the pool is updated: closing fires channelInactive, which calls
        // back into `remove`, and must not do so while `idle` is being mutated.
        for conn in expired { conn.close() }
        if !idle.isEmpty { scheduleSweep() }
    }

    func closeAll() {
        let all = idle.values.flatMap { $0.connections }
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
