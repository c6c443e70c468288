import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// How a watch shows that it is alive, and how soon a silent one is replaced
/// (docs/etcd.md, "Watch liveness").
///
/// etcd 3.4's JSON gateway carries a watch as one HTTP/1.1 request whose body is the create
/// request: it answers only once that body has ended, so nothing more (a `progress_request`)
/// can be sent on a live watch. Liveness comes from three things instead:
/// - `progress_notify` in the create request: etcd sends an empty message with its current
///   revision every `--experimental-watch-progress-notify-interval` (10 min by default);
/// - a probe when the watch has been silent for `probeInterval`: a linearizable range on the
///   watch's member, over a connection of its own. An answer whose header revision is not
///   newer than the last one the watch reported proves the watch has missed nothing;
/// - TCP keepalive on the watch's socket, for a peer that is gone without a reset.
/// When nothing confirms the watch for `idleTimeout` it is closed and replaced.
public struct EtcdWatchLiveness: Sendable, Hashable {
    /// No message on the watch (created, events, progress) and no probe confirming it for this
    /// long: the watch is closed and replaced. Also bounds the wait for `created`.
    public var idleTimeout: Duration
    /// A watch silent for this long is probed, then again every `probeInterval`. nil: no probes.
    public var probeInterval: Duration?
    /// How long one probe may take, connection included.
    public var probeTimeout: Duration
    /// Asks etcd for periodic progress notifications on the watch.
    public var progressNotify: Bool
    /// TCP keepalive on the watch's socket; nil: the system's default (off).
    public var keepalive: TCPKeepalive?

    public init(
        idleTimeout: Duration = .seconds(30), probeInterval: Duration? = .seconds(10), probeTimeout: Duration = .seconds(5),
        progressNotify: Bool = true, keepalive: TCPKeepalive? = TCPKeepalive()
    ) {
        self.idleTimeout = idleTimeout
        self.probeInterval = probeInterval
        self.probeTimeout = probeTimeout
        self.progressNotify = progressNotify
        self.keepalive = keepalive
    }

    /// Values in range: durations of at least 10 ms, a probe no longer than the idle timeout.
    var effective: EtcdWatchLiveness {
        var l = self
        let floor = Duration.milliseconds(10)
        l.idleTimeout = max(l.idleTimeout, floor)
        l.probeInterval = l.probeInterval.map { max($0, floor) }
        l.probeTimeout = min(max(l.probeTimeout, floor), l.idleTimeout)
        return l
    }
}

/// `SO_KEEPALIVE` with the probes' timing: a peer that stops acknowledging is declared dead
/// after about `idle + interval × count`. Seconds, as the kernel takes them (1 s at least).
public struct TCPKeepalive: Sendable, Hashable {
    /// Idle time before the first probe.
    public var idle: Duration
    /// Time between probes.
    public var interval: Duration
    /// Unanswered probes before the connection is dropped.
    public var count: Int

    public init(idle: Duration = .seconds(10), interval: Duration = .seconds(5), count: Int = 3) {
        self.idle = idle
        self.interval = interval
        self.count = count
    }

    /// Socket options for a `ClientBootstrap`: name and value, clamped to what the kernel accepts.
    var socketOptions: [(ChannelOptions.Types.SocketOption, SocketOptionValue)] {
        let idleSeconds = Self.seconds(idle), intervalSeconds = Self.seconds(interval)
        let probes = SocketOptionValue(min(max(count, 1), 127))
        var options: [(ChannelOptions.Types.SocketOption, SocketOptionValue)] = [(ChannelOptions.socketOption(.so_keepalive), 1)]
        #if os(Linux)
        options += [
            (tcp(TCP_KEEPIDLE), idleSeconds), (tcp(TCP_KEEPINTVL), intervalSeconds), (tcp(TCP_KEEPCNT), probes),
            // Unacknowledged data is given up after the same time (the kernel otherwise
            // retransmits for about 15 minutes before it tells the socket).
            (tcp(Self.tcpUserTimeout), SocketOptionValue(min((Int64(idleSeconds) + Int64(intervalSeconds) * Int64(probes)) * 1000, Int64(CInt.max)))),
        ]
        #elseif canImport(Darwin)
        options += [(tcp(TCP_KEEPALIVE), idleSeconds), (tcp(TCP_KEEPINTVL), intervalSeconds), (tcp(TCP_KEEPCNT), probes)]
        #endif
        return options
    }

    /// Linux's `TCP_USER_TIMEOUT` (netinet/tcp.h), in milliseconds.
    static let tcpUserTimeout: CInt = 18

    private func tcp(_ name: CInt) -> ChannelOptions.Types.SocketOption {
        ChannelOptions.Types.SocketOption(level: .tcp, name: NIOBSDSocket.Option(rawValue: name))
    }

    /// Whole seconds in 1...32767 (the kernel's range for these options).
    static func seconds(_ d: Duration) -> SocketOptionValue {
        SocketOptionValue(min(max(d.components.seconds, 1), 32767))
    }
}

extension Duration {
    /// As a NIO `TimeAmount`, saturating instead of trapping on a duration beyond Int64 nanoseconds.
    var timeAmount: TimeAmount {
        let (s, attos) = components
        let (ns, overflow) = s.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return .nanoseconds(s < 0 ? .min : .max) }
        let (sum, overflow2) = ns.addingReportingOverflow(attos / 1_000_000_000)
        return .nanoseconds(overflow2 ? (s < 0 ? .min : .max) : sum)
    }
}

/// What one watch has heard, shared by its reader, its deadline and its prober.
final class WatchProgress: Sendable {
    struct State {
        /// The last message on the watch, or probe that confirmed it.
        var lastProgress: ContinuousClock.Instant
        /// The last probe answer of any revision.
        var lastContact: ContinuousClock.Instant?
        /// The highest header revision the watch reported; nil until it is created.
        var revision: Int64?
        /// etcd answered the create request.
        var created = false
    }

    private let state: Mutex<State>

    init(now: ContinuousClock.Instant = .now) { state = Mutex(State(lastProgress: now)) }

    var snapshot: State { state.withLock { $0 } }

    /// A message arrived on the watch (`revision`: its header's, when it had a valid one).
    func heard(revision: Int64?, created: Bool = false) {
        let now = ContinuousClock.now
        state.withLock {
            $0.lastProgress = now
            if created { $0.created = true }
            if let revision, revision > 0 { $0.revision = max($0.revision ?? 0, revision) }
        }
    }

    /// A probe answered at `revision`. It confirms the watch when nothing happened in the store
    /// after the watch's last report; returns whether it did.
    @discardableResult
    func probeAnswered(revision: Int64) -> Bool {
        let now = ContinuousClock.now
        return state.withLock {
            $0.lastContact = now
            guard $0.created, let watched = $0.revision, revision <= watched else { return false }
            $0.lastProgress = now
            return true
        }
    }
}
