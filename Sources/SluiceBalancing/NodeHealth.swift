import SluiceCore
import Synchronization

/// What one probe or one real request said about a node.
public enum HealthOutcome: Sendable {
    case success
    case httpFailure
    case tcpFailure
    case timeout
}

/// The health of one node, shared by every event loop and the checker: atomics only, so the
/// request path reads it without a lock. Counters are APISIX's (lua-resty-healthcheck): a
/// success resets the failure counters once the node turns healthy, a failure resets the
/// success counter once it turns unhealthy.
public final class NodeHealthCell: Sendable {
    public let host: String
    public let port: Int
    private let healthy = Atomic<Bool>(true)
    private let successes = Atomic<Int>(0)
    private let httpFailures = Atomic<Int>(0)
    private let tcpFailures = Atomic<Int>(0)
    private let timeouts = Atomic<Int>(0)

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public var isHealthy: Bool { healthy.load(ordering: .relaxed) }

    public struct Counters: Sendable, Equatable {
        public var success: Int
        public var httpFailure: Int
        public var tcpFailure: Int
        public var timeoutFailure: Int
        public init(success: Int, httpFailure: Int, tcpFailure: Int, timeoutFailure: Int) {
            self.success = success
            self.httpFailure = httpFailure
            self.tcpFailure = tcpFailure
            self.timeoutFailure = timeoutFailure
        }
    }

    public var counters: Counters {
        Counters(
            success: successes.load(ordering: .relaxed), httpFailure: httpFailures.load(ordering: .relaxed),
            tcpFailure: tcpFailures.load(ordering: .relaxed), timeoutFailure: timeouts.load(ordering: .relaxed))
    }

    /// The thresholds an outcome is judged by (the active or the passive ones). A threshold
    /// of 0 turns that kind of judgement off.
    public struct Thresholds: Sendable {
        public var successes: Int
        public var httpFailures: Int
        public var tcpFailures: Int
        public var timeouts: Int
        public init(successes: Int, httpFailures: Int, tcpFailures: Int, timeouts: Int) {
            self.successes = successes
            self.httpFailures = httpFailures
            self.tcpFailures = tcpFailures
            self.timeouts = timeouts
        }
    }

    /// Counts `outcome`; returns the new health when it changed.
    @discardableResult
    public func record(_ outcome: HealthOutcome, _ t: Thresholds) -> Bool? {
        switch outcome {
        case .success:
            guard t.successes > 0 else { return nil }
            if healthy.load(ordering: .relaxed) {
                // Healthy already: failures seen before this success no longer count.
                if httpFailures.load(ordering: .relaxed) != 0 { httpFailures.store(0, ordering: .relaxed) }
                if tcpFailures.load(ordering: .relaxed) != 0 { tcpFailures.store(0, ordering: .relaxed) }
                if timeouts.load(ordering: .relaxed) != 0 { timeouts.store(0, ordering: .relaxed) }
                return nil
            }
            let n = successes.add(1, ordering: .relaxed).newValue
            guard n >= t.successes else { return nil }
            return turn(healthy: true)
        case .httpFailure: return fail(httpFailures, t.httpFailures)
        case .tcpFailure: return fail(tcpFailures, t.tcpFailures)
        case .timeout: return fail(timeouts, t.timeouts)
        }
    }

    private func fail(_ counter: borrowing Atomic<Int>, _ threshold: Int) -> Bool? {
        guard threshold > 0 else { return nil }
        if !healthy.load(ordering: .relaxed) {
            if successes.load(ordering: .relaxed) != 0 { successes.store(0, ordering: .relaxed) }
            return nil
        }
        let n = counter.add(1, ordering: .relaxed).newValue
        guard n >= threshold else { return nil }
        return turn(healthy: false)
    }

    /// Flips the state once (a racing report that lost the exchange changes nothing) and
    /// starts the other side's counting from zero.
    private func turn(healthy target: Bool) -> Bool? {
        guard healthy.compareExchange(expected: !target, desired: target, ordering: .relaxed).exchanged else { return nil }
        successes.store(0, ordering: .relaxed)
        httpFailures.store(0, ordering: .relaxed)
        tcpFailures.store(0, ordering: .relaxed)
        timeouts.store(0, ordering: .relaxed)
        return target
    }
}

/// The health of an upstream's nodes, in the order of its balancer plan's nodes. Made and
/// kept by the gateway's health registry: an upstream whose nodes and `checks` did not change
/// gets the same object after a config change, so its state survives the change.
public final class UpstreamHealth: Sendable {
    /// `/apisix/upstreams/1`, `/apisix/routes/2` (an inline upstream): APISIX's names.
    public let name: String
    public let checks: HealthChecks
    /// One per node of the plan, by plan index.
    /// A cell may be shared with the upstream's previous health object (a node that stayed
    /// in a changed node set keeps its state), so nothing here counts across cells.
    public let cells: [NodeHealthCell]

    public init(name: String, checks: HealthChecks, cells: [NodeHealthCell]) {
        self.name = name
        self.checks = checks
        self.cells = cells
    }

    public func isHealthy(_ node: Int) -> Bool {
        node >= 0 && node < cells.count ? cells[node].isHealthy : true
    }

    public var activeThresholds: NodeHealthCell.Thresholds {
        let a = checks.active
        return .init(successes: a.healthySuccesses, httpFailures: a.httpFailures, tcpFailures: a.tcpFailures, timeouts: a.timeouts)
    }

    /// Records what a probe found. Returns the new health when it changed.
    @discardableResult
    public func recordActive(_ node: Int, _ outcome: HealthOutcome) -> Bool? {
        record(node, outcome, activeThresholds)
    }

    /// Records what a real request found (a response status, a connect failure, a timeout),
    /// when passive checks are configured.
    public func recordPassive(_ node: Int, status: Int) {
        // Passive `tcp` checks judge connections only: statuses count for nothing.
        guard let p = checks.passive, p.type != .tcp else { return }
        if p.unhealthyStatuses.contains(status) {
            record(node, .httpFailure, passiveThresholds(p))
        } else if p.healthyStatuses.contains(status) {
            record(node, .success, passiveThresholds(p))
        }
    }

    public func recordPassive(_ node: Int, _ outcome: HealthOutcome) {
        guard let p = checks.passive else { return }
        record(node, outcome, passiveThresholds(p))
    }

    private func passiveThresholds(_ p: HealthChecks.Passive) -> NodeHealthCell.Thresholds {
        .init(successes: p.successes, httpFailures: p.httpFailures, tcpFailures: p.tcpFailures, timeouts: p.timeouts)
    }

    @discardableResult
    private func record(_ node: Int, _ outcome: HealthOutcome, _ t: NodeHealthCell.Thresholds) -> Bool? {
        guard node >= 0, node < cells.count else { return nil }
        return cells[node].record(outcome, t)
    }
}
