import KubeClient
import NIOConcurrencyHelpers
import SluiceCore

/// One active controller among replicas, through a `coordination.k8s.io/v1` Lease, as
/// client-go's leader election does it: the holder renews the lease every `retryPeriod`;
/// another candidate takes it over only once it has seen the same record unchanged for
/// `leaseDuration` by its own clock (so clock skew between replicas does not matter); a
/// holder that cannot renew within `renewDeadline` stops acting as leader; every write
/// carries the resourceVersion it read, so two candidates cannot both win.
public actor LeaderElector {
    public struct Timing: Sendable {
        public var leaseDuration: Duration
        public var renewDeadline: Duration
        public var retryPeriod: Duration
        public init(leaseDuration: Duration = .seconds(15), renewDeadline: Duration = .seconds(10), retryPeriod: Duration = .seconds(2)) {
            self.leaseDuration = leaseDuration
            self.renewDeadline = renewDeadline
            self.retryPeriod = retryPeriod
        }

        /// The longest any of the three may be (a day): beyond it a sleep or a deadline
        /// could pass what the clocks hold.
        public static let longest: Duration = .seconds(86_400)
        public static let shortest: Duration = .milliseconds(1)

        /// Each value brought within `shortest...longest`, so that whatever a caller passes
        /// no sleep, deadline or Lease field computed from it can overflow.
        public var clamped: Timing {
            func c(_ d: Duration) -> Duration { min(max(d, Self.shortest), Self.longest) }
            return Timing(leaseDuration: c(leaseDuration), renewDeadline: c(renewDeadline), retryPeriod: c(retryPeriod))
        }

        /// From the flags `--lease-duration`, `--renew-deadline`, `--retry-period` (seconds):
        /// each finite, positive and at most a day, the lease longer than the renew deadline and
        /// the renew deadline longer than the retry period (a leader gets an attempt before it
        /// must give up). The error names the flag.
        public init(leaseDurationSeconds: Double, renewDeadlineSeconds: Double, retryPeriodSeconds: Double) throws(IngressFlagError) {
            let lease = try IngressFlags.duration(seconds: leaseDurationSeconds, flag: "--lease-duration", min: 1)
            let renew = try IngressFlags.duration(seconds: renewDeadlineSeconds, flag: "--renew-deadline", min: 1)
            let retry = try IngressFlags.duration(seconds: retryPeriodSeconds, flag: "--retry-period", min: 0.001)
            guard lease > renew else { throw IngressFlagError(flag: "--lease-duration", "must exceed --renew-deadline (\(FieldReader.format(renewDeadlineSeconds))), got \(FieldReader.format(leaseDurationSeconds))") }
            guard renew > retry else { throw IngressFlagError(flag: "--retry-period", "must be less than --renew-deadline (\(FieldReader.format(renewDeadlineSeconds))), got \(FieldReader.format(retryPeriodSeconds))") }
            self.init(leaseDuration: lease, renewDeadline: renew, retryPeriod: retry)
        }
    }

    /// How long another holder's record is honoured: its `leaseDurationSeconds`, read by
    /// whoever wrote the Lease (another controller, another version), within 1 s to a day.
    /// Without it, our own lease duration.
    static func observedDuration(_ seconds: Int?, default d: Duration) -> Duration {
        guard let seconds else { return d }
        return .seconds(min(max(seconds, 1), 86_400))
    }

    /// `leaseTransitions` + 1, staying within the API's int32 (a value another writer left
    /// at the limit, or negative, does not trap and does not make our update refused).
    static func nextTransitions(_ current: Int?) -> Int {
        let c = min(max(current ?? 0, 0), Int(Int32.max))
        return c == Int(Int32.max) ? c : c + 1
    }

    public let api: KubeAPI
    public let namespace: String
    public let name: String
    public let identity: String
    public let timing: Timing
    public private(set) var isLeader = false
    private var observed: (holder: String?, renew: String?)? = nil
    private var observedAt = ContinuousClock.now
    private var lastRenew = ContinuousClock.now
    private let onChange: @Sendable (Bool) async -> Void

    public init(
        api: KubeAPI, namespace: String, name: String, identity: String, timing: Timing = Timing(),
        onChange: @escaping @Sendable (Bool) async -> Void
    ) {
        self.api = api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.timing = timing.clamped
        self.onChange = onChange
    }

    var resource: KubeResource { .leases(namespace: namespace) }

    /// Campaigns and renews until cancelled; then gives the lease up if it holds it, so a
    /// successor need not wait for it to expire.
    public func run() async {
        while !Task.isCancelled {
            // A renewal that hangs must not keep a leader acting past its deadline: each
            // attempt gets what is left of it (a candidate, a lease's length).
            let budget = isLeader ? max(.milliseconds(50), timing.renewDeadline - (ContinuousClock.now - lastRenew)) : timing.leaseDuration
            let ok = await attempt(within: budget)
            if ok {
                lastRenew = .now
                if !isLeader { await set(true) }
            } else if isLeader && ContinuousClock.now - lastRenew > timing.renewDeadline {
                await set(false)
            }
            try? await Task.sleep(for: timing.retryPeriod)
        }
        if isLeader {
            await release()
            await set(false)
        }
    }

    /// `tryAcquireOrRenew`, or false once `limit` has passed (the attempt itself goes on
    /// and may still land; the next round sees its outcome in the Lease).
    private func attempt(within limit: Duration) async -> Bool {
        let work = Task { await self.tryAcquireOrRenew() }
        return await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let once = NIOLockedValueBox<CheckedContinuation<Bool, Never>?>(continuation)
            @Sendable func finish(_ value: Bool) { once.withLockedValue { c in c?.resume(returning: value); c = nil } }
            Task { finish(await work.value) }
            Task {
                try? await Task.sleep(for: limit)
                finish(false)
            }
        }
    }

    private func set(_ leader: Bool) async {
        isLeader = leader
        await onChange(leader)
    }

    func tryAcquireOrRenew() async -> Bool {
        let nowMicros = KubeTime.nowMicroseconds()
        let now = KubeTime.microTime(epochMicroseconds: nowMicros)
        // Whole seconds, at least 1 (the API's field); the timing is clamped to a day.
        let seconds = max(1, Int(timing.leaseDuration.components.seconds))
        let current: Lease
        do {
            current = try Lease(json: try await api.get(resource, name: name))
        } catch let e as KubeAPIError where e.code == 404 {
            let spec = Lease.Spec(holderIdentity: identity, leaseDurationSeconds: seconds, acquireTime: now, renewTime: now, leaseTransitions: 0)
            do {
                _ = try await api.create(resource, Lease.json(name: name, namespace: namespace, spec: spec))
                return true
            } catch {
                return false  // someone else created it first
            }
        } catch {
            return false
        }
        let record = (current.spec.holderIdentity, current.spec.renewTime)
        if !(observed.map { $0.holder == record.0 && $0.renew == record.1 } ?? false) {
            observed = record
            observedAt = .now
        }
        let held = current.spec.holderIdentity.map { !$0.isEmpty } ?? false
        let mine = current.spec.holderIdentity == identity
        let observedDuration = Self.observedDuration(current.spec.leaseDurationSeconds, default: timing.leaseDuration)
        if held && !mine && ContinuousClock.now - observedAt < observedDuration { return false }
        var lease = current
        lease.spec.holderIdentity = identity
        lease.spec.leaseDurationSeconds = seconds
        lease.spec.renewTime = now
        if !mine {
            lease.spec.acquireTime = now
            lease.spec.leaseTransitions = held ? Self.nextTransitions(current.spec.leaseTransitions) : min(max(current.spec.leaseTransitions ?? 0, 0), Int(Int32.max))
        }
        do {
            let written = try Lease(json: try await api.update(resource, name: name, lease.json()))
            observed = (written.spec.holderIdentity, written.spec.renewTime)
            observedAt = .now
            return true
        } catch {
            return false  // 409: another candidate wrote first; anything else: try again later
        }
    }

    private func release() async {
        guard let current = try? Lease(json: try await api.get(resource, name: name)), current.spec.holderIdentity == identity else { return }
        var lease = current
        lease.spec.holderIdentity = nil
        lease.spec.leaseDurationSeconds = 1
        lease.spec.renewTime = KubeTime.microTime(epochMicroseconds: KubeTime.nowMicroseconds())
        _ = try? await api.update(resource, name: name, lease.json())
    }
}
