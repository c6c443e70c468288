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
        self.timing = timing
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
        let seconds = Int(timing.leaseDuration.components.seconds)
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
        if observed == nil || observed!.holder != record.0 || observed!.renew != record.1 {
            observed = record
            observedAt = .now
        }
        let held = current.spec.holderIdentity.map { !$0.isEmpty } ?? false
        let mine = current.spec.holderIdentity == identity
        let observedDuration = current.spec.leaseDurationSeconds.map { Duration.seconds($0) } ?? timing.leaseDuration
        if held && !mine && ContinuousClock.now - observedAt < observedDuration { return false }
        var lease = current
        lease.spec.holderIdentity = identity
        lease.spec.leaseDurationSeconds = seconds
        lease.spec.renewTime = now
        if !mine {
            lease.spec.acquireTime = now
            lease.spec.leaseTransitions = (current.spec.leaseTransitions ?? 0) + (held ? 1 : 0)
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
