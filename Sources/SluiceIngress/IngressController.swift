import KubeClient
import Logging
import SluiceCore

/// Watches Kubernetes and keeps the gateway's routes and upstreams in step.
///
/// Two paths, by cost:
/// - An APISIX resource, Ingress, Service or Secret changes (rare): everything is translated
///   again (a pure function, `Translator`) and the sync writes only the objects that differ.
/// - An EndpointSlice changes (every pod change): the Service's slices are already cached,
///   so only the upstreams that follow that Service get their nodes recomputed; nothing is
///   translated, and the write is a merge patch of the nodes that changed. Bursts are
///   coalesced per Service: the first change after a quiet `coalesceWindow` goes out at
///   once, later ones wait for the window and go out together.
public actor IngressController {
    public struct Options: Sendable {
        public var ingressClass = "sluice"
        /// Namespaces to watch; empty: all.
        public var namespaces: [String] = []
        /// false: follow legacy v1 Endpoints instead of EndpointSlices.
        public var watchEndpointSlices = true
        public var coalesceWindow: Duration = .milliseconds(100)
        /// How often the gateway is listed and compared in full, repairing a gateway that
        /// lost objects (e.g. restarted with an empty store).
        public var resyncInterval: Duration = .seconds(60)
        /// `--ingress-status-address`: what every owned Ingress reports in
        /// `status.loadBalancer.ingress` (IPs, or host names).
        public var statusAddresses: [String] = []
        /// `--ingress-publish-service ns/name`: the Service fronting the gateway, whose
        /// load-balancer addresses (else external IPs, else cluster IP) Ingresses report.
        public var publishService: String?
        public init() {}
    }

    public let api: KubeAPI
    public let sync: GatewaySync
    public let options: Options
    public let metrics: IngressMetrics
    let translator: Translator
    let logger: Logger

    /// Decoded copies of the watched objects (the informers keep only stubs of the bulky
    /// kinds). Secrets are the exception: only those a translation reads are held, and of
    /// them only the keys it reads (see `secretNeeds`).
    var cluster = ClusterState()
    var decodeErrors: [SourceRef: String] = [:]
    /// Every Secret the informers report (`ns/name`), by name only: a Secret that becomes
    /// referenced later is then read with a GET.
    var knownSecrets: Set<String> = []
    /// What the current objects read of which Secret (`Translator.secretReferences`).
    var secretNeeds: [String: Translator.SecretKeys] = [:]
    /// The keys each held Secret was kept with.
    var heldSecretKeys: [String: Translator.SecretKeys] = [:]
    /// A CRD or Ingress changed since `secretNeeds` was computed.
    var referencesDirty = true
    private var secretRetry: Task<Void, Never>?
    /// Reads one Secret (`namespace`, `name`); the API's GET, or a stand-in in tests.
    var fetchSecret: (@Sendable (String, String) async throws -> JSONValue)?

    func setSecretFetcher(_ f: @escaping @Sendable (String, String) async throws -> JSONValue) { fetchSecret = f }
    /// Service `ns/name` → slice name → slice.
    var slices: [String: [String: EndpointSlice]] = [:]
    var legacyEndpoints: [String: Endpoints] = [:]
    var podLabels: [String: [String: String]] = [:]
    var podInformerStarted = false
    /// Ingress addresses written and not yet seen back through the watch.
    var lastIngressStatus: [String: [Ingress.LoadBalancerIngress]] = [:]
    /// The `--ingress-publish-service` Service's addresses, as last seen.
    var publishedAddresses: [Ingress.LoadBalancerIngress] = []
    var podInformers: [Informer] = []
    /// The pod informers have listed once: until then subset upstreams keep their nodes.
    var podsSynced = false
    private let started = ContinuousClock.now
    private var lastUnsyncedReport: ContinuousClock.Instant?
    public private(set) var translation = Translation()
    var upstreamsByService: [String: [String]] = [:]
    var needsTranslate = true
    var dirtyServices: Set<String> = []
    var lastServiceFlush: [String: ContinuousClock.Instant] = [:]
    /// Upstream id → when its Service's change was triggered and received, awaiting the write.
    var pendingLatency: [String: (trigger: Int64?, received: ContinuousClock.Instant, version: UInt64)] = [:]
    var lastStatus: [SourceRef: (ok: Bool, message: String, generation: Int?)] = [:]
    var warnedTruncated: Set<String> = []
    public private(set) var isLeader: Bool
    var informers: [Informer] = []
    var extraTasks: [Task<Void, Never>] = []
    private var waiter: CheckedContinuation<Void, Never>?
    private var signaled = false
    private var retryAt: ContinuousClock.Instant?
    /// Every informer has listed once: before that, a sync would delete as orphans the
    /// objects whose Kubernetes sources are not cached yet.
    private var synced = false
    private var apiBytesCounted = 0
    /// Full syncs that reached the gateway (for tests and logs).
    public private(set) var syncs = 0

    public init(
        api: KubeAPI, writer: GatewayWriter, options: Options, metrics: IngressMetrics = IngressMetrics(), leader: Bool = true,
        logger: Logger = Logger(label: "sluice-ingress")
    ) {
        self.api = api
        self.sync = GatewaySync(writer: writer)
        // Whatever a caller passes, no timer computed from these can overflow a clock.
        var options = options
        options.coalesceWindow = min(max(options.coalesceWindow, .zero), .seconds(86_400))
        options.resyncInterval = min(max(options.resyncInterval, .milliseconds(1)), .seconds(86_400))
        self.options = options
        self.metrics = metrics
        self.translator = Translator(ingressClass: options.ingressClass, secretNamespaces: Set(options.namespaces))
        self.isLeader = leader
        self.logger = logger
        metrics.isLeader.set(to: leader ? 1 : 0)
    }

    // MARK: - Running

    /// Runs the informers and the sync loop until the task is cancelled.
    public func run() async {
        let namespaces: [String?] = options.namespaces.isEmpty ? [nil] : options.namespaces
        var specs: [(KubeResource, Watched)] = [(.ingressClasses(), .ingressClass)]
        for ns in namespaces {
            specs += [
                (.services(namespace: ns), .service), (.secrets(namespace: ns), .secret),
                (options.watchEndpointSlices ? .endpointSlices(namespace: ns) : .endpoints(namespace: ns), options.watchEndpointSlices ? .slice : .endpoints),
                (.apisixRoutes(namespace: ns), .crd(.apisixRoute)), (.apisixUpstreams(namespace: ns), .crd(.apisixUpstream)),
                (.apisixTlses(namespace: ns), .crd(.apisixTls)), (.apisixConsumers(namespace: ns), .crd(.apisixConsumer)),
                (.apisixPluginConfigs(namespace: ns), .crd(.apisixPluginConfig)), (.apisixGlobalRules(namespace: ns), .crd(.apisixGlobalRule)),
                (.ingresses(namespace: ns), .crd(.ingress)),
            ]
        }
        // An APISIX CRD that is not installed is simply empty (an Ingress-only cluster has
        // none of them); it is looked for again every 30 s. The bulky kinds are cached as
        // stubs (the controller keeps its own decoded copy, or nothing, as for Secrets); the
        // Secret list leaves out the types no reference can use.
        informers = specs.map { resource, what in
            var selector = KubeSelector.everything
            if case .secret = what { selector = KubeSelector(fields: Self.secretFieldSelector) }
            return Informer(
                api: api, resource: resource, selector: selector, pageSize: 500, missingIsEmpty: resource.group == KubeResource.apisixGroup,
                retain: what.isStubbed ? Informer.stub : nil)
        }
        let pairs = Array(zip(informers, specs.map(\.1)))
        // Secrets are listed once the objects that refer to them are: each one is then kept
        // or dropped as it arrives, and no unreferenced Secret is held even at start.
        let referrers = pairs.filter {
            switch $0.1 {
            case .crd, .ingressClass: return true
            default: return false
            }
        }.map(\.0)
        await withTaskGroup(of: Void.self) { group in
            for (informer, what) in pairs {
                group.addTask {
                    if case .secret = what {
                        while !Task.isCancelled, !(await self.allSynced(referrers)) { try? await Task.sleep(for: .milliseconds(50)) }
                    }
                    await informer.run { event in await self.handle(what, event) }
                }
            }
            group.addTask { await self.loop() }
            await group.waitForAll()
        }
        for t in extraTasks { t.cancel() }
        secretRetry?.cancel()
    }

    /// Leadership changed: a new leader lists the gateway and writes what differs; one that
    /// lost it stops writing at once.
    public func setLeader(_ leader: Bool) async {
        guard leader != isLeader else { return }
        isLeader = leader
        metrics.isLeader.set(to: leader ? 1 : 0)
        logger.info(leader ? "became the leader: syncing the gateway" : "lost the leadership: no longer writing")
        if leader {
            await sync.requestRelist()
            needsTranslate = true
            lastStatus = [:]
            wake()
        }
    }

    func allSynced() async -> Bool { await allSynced(informers) }

    func allSynced(_ list: [Informer]) async -> Bool {
        for i in list where !(await i.hasSynced) { return false }
        return !list.isEmpty
    }

    /// Nothing is written before every informer has listed once; a list that keeps failing
    /// (a CRD that is not installed, RBAC without list) would otherwise stall in silence.
    private func reportUnsynced() async {
        let now = ContinuousClock.now
        guard now - started > .seconds(10), lastUnsyncedReport.map({ now - $0 > .seconds(60) }) ?? true else { return }
        lastUnsyncedReport = now
        var missing: [String] = []
        for i in informers where !(await i.hasSynced) { missing.append(await i.resource.path()) }
        logger.warning(
            "not syncing yet: these resources could not be listed (is the CRD installed, and may the service account list and watch them?)",
            metadata: ["resources": "\(missing.joined(separator: ", "))"])
    }

    private func wake() {
        if let w = waiter {
            waiter = nil
            w.resume()
        } else {
            signaled = true
        }
    }

    private func wait(until deadline: ContinuousClock.Instant) async {
        if signaled {
            signaled = false
            return
        }
        let timer = Task { [weak self] in
            guard (try? await Task.sleep(until: deadline)) != nil else { return }  // cancelled: woken already
            await self?.wake()
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { waiter = $0 }
        } onCancel: {
            Task { await self.wake() }
        }
        signaled = false
        timer.cancel()
    }

    private func loop() async {
        var backoff: Duration = .milliseconds(100)
        var nextResync = ContinuousClock.now + options.resyncInterval
        while !Task.isCancelled {
            // Only a leader has work with a deadline (coalesced Services, a retry); a
            // follower just keeps its caches and wakes for the resync timer.
            var deadline = nextResync
            if isLeader {
                if let r = retryAt {
                    deadline = min(deadline, r)  // backing off: nothing else is due before
                } else if !dirtyServices.isEmpty, let due = dirtyServices.map({ (lastServiceFlush[$0] ?? .now) + options.coalesceWindow }).min() {
                    deadline = min(deadline, max(due, .now))
                }
                if !synced || (podInformerStarted && !podsSynced) { deadline = min(deadline, .now + .milliseconds(50)) }  // informers still listing
            }
            await wait(until: deadline)
            if Task.isCancelled { break }
            let read = api.bytesReceived.value
            metrics.apiReadBytes.increment(by: Int64(read - apiBytesCounted))
            apiBytesCounted = read
            guard isLeader else {
                nextResync = .now + options.resyncInterval
                continue
            }
            if !synced {
                synced = await allSynced()
                guard synced else {
                    await reportUnsynced()
                    continue
                }
                var missing: [String] = []
                for i in informers where await i.isMissing { missing.append(await i.resource.plural) }
                if !missing.isEmpty {
                    logger.notice("CRDs not installed, taken as empty until they are", metadata: ["resources": "\(missing.joined(separator: ", "))"])
                }
            }
            if podInformerStarted && !podsSynced, await allSynced(podInformers) {
                podsSynced = true
                needsTranslate = true  // subset upstreams can be filled now
            }
            let now = ContinuousClock.now
            if let r = retryAt, now < r { continue }
            if now >= nextResync {
                await sync.requestRelist()
                nextResync = now + options.resyncInterval
            }
            await prepare(now: now)
            let before = await (sync.puts, sync.patches, sync.deletes)
            let bytesBefore = sync.writer.bytesWritten
            let pending = await sync.pendingCount
            let (outcome, written) = await sync.flush(proceed: { [weak self] in await self?.isLeader ?? false })
            if pending > 0 || !written.isEmpty {
                logger.debug("synced", metadata: ["pending": "\(pending)", "written": "\(written.count)", "outcome": "\(outcome)"])
            }
            let after = await (sync.puts, sync.patches, sync.deletes)
            metrics.puts.increment(by: Int64(after.0 - before.0))
            metrics.patches.increment(by: Int64(after.1 - before.1))
            metrics.deletes.increment(by: Int64(after.2 - before.2))
            metrics.writeBytes.increment(by: Int64(sync.writer.bytesWritten - bytesBefore))
            observeLatency(written)
            switch outcome {
            case .done:
                if retryAt != nil { logger.info("the gateway is reachable again; synced") }
                retryAt = nil
                backoff = .milliseconds(100)
                syncs += 1
                // Objects made writable by this flush (a route whose upstream now exists)
                // go out at once, not with the next change.
                if await sync.pendingCount > 0 { signaled = true }
            case .retry(let why):
                metrics.syncFailures.increment()
                logger.warning("gateway sync failed; retrying", metadata: ["error": "\(why)", "retry_in": "\(backoff)"])
                retryAt = .now + backoff
                backoff = min(backoff * 2, .seconds(5))
            }
            await writeStatuses()
            await writeIngressStatuses()
        }
    }

    /// The addresses owned Ingresses should report, or nil when none is configured.
    func desiredIngressAddresses() -> [Ingress.LoadBalancerIngress]? {
        func entry(_ s: String) -> Ingress.LoadBalancerIngress {
            IPAddress(s) != nil ? .init(ip: s) : .init(hostname: s)
        }
        if let key = options.publishService { return cluster.services[key] == nil ? [] : publishedAddresses }
        return options.statusAddresses.isEmpty ? nil : options.statusAddresses.map(entry)
    }

    /// A Service's load-balancer addresses, else its external IPs, else its cluster IP.
    static func addresses(ofService object: JSONValue) -> [Ingress.LoadBalancerIngress] {
        var out: [Ingress.LoadBalancerIngress] = []
        for lb in object["status"]?["loadBalancer"]?["ingress"]?.arrayValue ?? [] {
            if let ip = lb["ip"]?.stringValue { out.append(.init(ip: ip)) } else if let h = lb["hostname"]?.stringValue { out.append(.init(hostname: h)) }
        }
        if out.isEmpty { out = (object["spec"]?["externalIPs"]?.arrayValue ?? []).compactMap(\.stringValue).map { .init(ip: $0) } }
        if out.isEmpty, let ip = object["spec"]?["clusterIP"]?.stringValue, ip != "None", !ip.isEmpty { out = [.init(ip: ip)] }
        return out
    }

    /// Leader only: `status.loadBalancer.ingress` on every Ingress this controller owns, when
    /// it differs from the configured addresses (what `kubectl get ingress` shows as ADDRESS,
    /// and what external-dns and Argo CD wait for).
    private func writeIngressStatuses() async {
        guard isLeader, let desired = desiredIngressAddresses() else { return }
        for (key, ing) in cluster.ingresses.sorted(by: { $0.key < $1.key }) {
            guard translator.owns(ing, classes: cluster.ingressClasses), ing.loadBalancer != desired else { continue }
            if lastIngressStatus[key] == desired { continue }  // written; the watch has not echoed it yet
            let ingress: [JSONValue] = desired.map { lb in
                if let ip = lb.ip { return ["ip": .string(ip)] }
                return ["hostname": .string(lb.hostname ?? "")]
            }
            do {
                _ = try await api.mergePatchStatus(
                    .ingresses(namespace: ing.metadata.namespace), name: ing.metadata.name, ["status": ["loadBalancer": ["ingress": .array(ingress)]]])
                lastIngressStatus[key] = desired
            } catch {
                logger.warning("cannot write the status of ingress \(key)", metadata: ["error": "\(error)"])
            }
        }
        lastIngressStatus = lastIngressStatus.filter { cluster.ingresses[$0.key] != nil }
    }

    // MARK: - Events

    enum Watched: Sendable {
        case service, secret, slice, endpoints, pod, ingressClass
        case crd(SourceRef.Kind)

        /// Kinds whose informer keeps only stubs: the controller holds what it needs itself.
        /// CRDs stay whole (their spec is compared to tell our own status writes apart).
        var isStubbed: Bool {
            switch self {
            case .service, .secret, .slice, .endpoints, .pod: return true
            case .ingressClass, .crd: return false
            }
        }
    }

    /// Secret types no reference reads (service-account tokens, Helm releases, image pull
    /// secrets, bootstrap tokens): left out of the list and watch by the API server, so they
    /// are neither sent nor held. (Secrets of the types that remain are kept only if
    /// referenced.)
    static let secretFieldSelector = [
        "kubernetes.io/service-account-token", "helm.sh/release.v1", "kubernetes.io/dockerconfigjson", "kubernetes.io/dockercfg",
        "bootstrap.kubernetes.io/token",
    ].map { "type!=\($0)" }.joined(separator: ",")

    func handle(_ what: Watched, _ event: Informer.Event) {
        let (object, deleted): (JSONValue, Bool)
        var unchangedSpec = false
        switch event {
        case .added(let o): (object, deleted) = (o, false)
        case .updated(let old, let new):
            (object, deleted) = (new, false)
            unchangedSpec = old["spec"] == new["spec"] && old["metadata"]?["generation"] == new["metadata"]?["generation"]
                && old["metadata"]?["labels"] == new["metadata"]?["labels"] && old["metadata"]?["annotations"] == new["metadata"]?["annotations"]
        case .deleted(let o): (object, deleted) = (o, true)
        }
        let ns = object["metadata"]?["namespace"]?.stringValue
        let name = object["metadata"]?["name"]?.stringValue ?? ""
        let key = ClusterState.key(ns, name)
        switch what {
        case .slice:
            metrics.sliceEvents.increment()
            guard let service = object["metadata"]?["labels"]?["kubernetes.io/service-name"]?.stringValue else { return }
            let serviceKey = ClusterState.key(ns, service)
            if deleted {
                slices[serviceKey]?[name] = nil
                if slices[serviceKey]?.isEmpty == true { slices[serviceKey] = nil }
            } else {
                guard var slice = try? EndpointSlice(json: object) else { return }
                slice.raw = .null  // the decoded fields are all that is read
                slices[serviceKey, default: [:]][name] = slice
            }
            // A deleted slice carries the trigger time of its last change, not of its
            // deletion: no latency is measured from it.
            endpointsChanged(
                serviceKey, trigger: deleted ? nil : EndpointSlice.lastChangeTriggerTime(object))
        case .endpoints:
            metrics.sliceEvents.increment()
            if deleted {
                legacyEndpoints[key] = nil
            } else {
                guard var e = try? Endpoints(json: object) else { return }
                e.raw = .null
                legacyEndpoints[key] = e
                if e.isTruncated && warnedTruncated.insert(key).inserted {
                    logger.warning(
                        "Endpoints of Service \(key) are truncated at 1000 addresses (endpoints.kubernetes.io/over-capacity); the gateway sees only those. Follow EndpointSlices instead: --watch-endpointslice true")
                }
            }
            endpointsChanged(key, trigger: EndpointSlice.lastChangeTriggerTime(object))
        case .pod:
            let labels = object["metadata"]?["labels"]?.objectValue?.compactMapValues(\.stringValue) ?? [:]
            if deleted { podLabels[key] = nil } else if podLabels[key] != labels {
                podLabels[key] = labels
            } else {
                return
            }
            // Only subsets read pod labels: recompute the Services of this namespace that have one.
            let services = Set(translation.endpointSources.values.filter { $0.subsetLabels != nil && $0.service.hasPrefix("\(ns ?? "")/") }.map(\.service))
            for service in services { endpointsChanged(service, trigger: nil) }
        case .service:
            if deleted {
                cluster.services[key] = nil
            } else {
                var svc = try? KubeClient.Service(json: object)
                svc?.raw = .null
                cluster.services[key] = svc
                if key == options.publishService { publishedAddresses = Self.addresses(ofService: object) }
            }
            structureChanged()
        case .secret:
            // (Not `deleted ? nil : object`: JSONValue takes `nil` as a literal, `.null`.)
            let change: JSONValue? = deleted ? .none : object
            secretChanged(key, change)
        case .ingressClass:
            if deleted { cluster.ingressClasses[key] = nil } else { cluster.ingressClasses[key] = try? IngressClass(json: object) }
            referencesDirty = true  // the default class decides which Ingresses are ours
            structureChanged()
        case .crd(let kind):
            let ref = SourceRef(kind, ns ?? "", name)
            if unchangedSpec {
                storeCRD(kind, key, object, ref)  // a status write of ours: keep the copy, translate nothing
                return
            }
            if deleted {
                removeCRD(kind, key)
                decodeErrors[ref] = nil
                lastStatus[ref] = nil
            } else {
                storeCRD(kind, key, object, ref)
            }
            referencesDirty = true
            structureChanged()
        }
    }

    // MARK: - Secrets

    /// A Secret was added, changed (`object`) or deleted (nil). Only a referenced Secret is
    /// kept, and only the keys its referrers read; any other is remembered by name, and a
    /// change to it translates nothing.
    func secretChanged(_ key: String, _ object: JSONValue?) {
        updateSecretNeeds()
        guard let object else {
            knownSecrets.remove(key)
            let held = cluster.secrets.removeValue(forKey: key) != nil
            heldSecretKeys[key] = nil
            metrics.secretsHeld.set(to: Double(cluster.secrets.count))
            if held || secretNeeds[key] != nil { structureChanged() }
            return
        }
        knownSecrets.insert(key)
        guard let keys = secretNeeds[key] else {
            cluster.secrets[key] = nil
            heldSecretKeys[key] = nil
            return
        }
        hold(key, object, keys)
        structureChanged()
    }

    private func hold(_ key: String, _ object: JSONValue, _ keys: Translator.SecretKeys) {
        cluster.secrets[key] = (try? Secret(json: object))?.retaining(keys: keys)
        heldSecretKeys[key] = keys
        metrics.secretsHeld.set(to: Double(cluster.secrets.count))
    }

    func updateSecretNeeds() {
        guard referencesDirty else { return }
        referencesDirty = false
        secretNeeds = translator.secretReferences(cluster)
    }

    /// Before a translation: drops the Secrets no longer referenced (their data is not kept)
    /// and reads those newly referenced (or now read for more keys) that exist, with a GET
    /// each; a GET that fails is tried again shortly.
    func refreshSecrets() async {
        updateSecretNeeds()
        for key in Array(cluster.secrets.keys) where secretNeeds[key] == nil {
            cluster.secrets[key] = nil
            heldSecretKeys[key] = nil
        }
        var failed = false
        for (key, keys) in secretNeeds.sorted(by: { $0.key < $1.key }) where knownSecrets.contains(key) && !Self.covers(heldSecretKeys[key], keys) {
            guard let slash = key.firstIndex(of: "/") else { continue }
            let ns = String(key[..<slash]), name = String(key[key.index(after: slash)...])
            do {
                let object: JSONValue
                if let fetchSecret { object = try await fetchSecret(ns, name) } else { object = try await api.get(.secrets(namespace: ns), name: name) }
                // The watch may have delivered a newer version (or the deletion) meanwhile.
                guard knownSecrets.contains(key), let now = secretNeeds[key], !Self.covers(heldSecretKeys[key], now) else { continue }
                hold(key, object, now)
            } catch let e as KubeAPIError where e.code == 404 {
                knownSecrets.remove(key)
            } catch {
                failed = true
                logger.warning("cannot read a referenced Secret; retrying", metadata: ["secret": "\(key)", "error": "\(error)"])
            }
        }
        metrics.secretsHeld.set(to: Double(cluster.secrets.count))
        if failed && secretRetry == nil {
            secretRetry = Task { [weak self] in
                guard (try? await Task.sleep(for: .seconds(2))) != nil else { return }
                await self?.retrySecrets()
            }
        }
    }

    private func retrySecrets() {
        secretRetry = nil
        structureChanged()
    }

    /// Whether a Secret kept with `held` keys has every key `wanted` reads.
    static func covers(_ held: Translator.SecretKeys?, _ wanted: Translator.SecretKeys) -> Bool {
        guard let held else { return false }  // not held at all
        guard let have = held else { return true }  // every key held
        guard let want = wanted else { return false }
        return want.isSubset(of: have)
    }

    private func storeCRD(_ kind: SourceRef.Kind, _ key: String, _ o: JSONValue, _ ref: SourceRef) {
        do {
            switch kind {
            case .apisixRoute: cluster.apisixRoutes[key] = try ApisixRoute(json: o)
            case .apisixUpstream: cluster.apisixUpstreams[key] = try ApisixUpstream(json: o)
            case .apisixTls: cluster.apisixTlses[key] = try ApisixTls(json: o)
            case .apisixConsumer: cluster.apisixConsumers[key] = try ApisixConsumer(json: o)
            case .apisixPluginConfig: cluster.apisixPluginConfigs[key] = try ApisixPluginConfig(json: o)
            case .apisixGlobalRule: cluster.apisixGlobalRules[key] = try ApisixGlobalRule(json: o)
            case .ingress: cluster.ingresses[key] = try Ingress(json: o)
            }
            decodeErrors[ref] = nil
        } catch {
            removeCRD(kind, key)
            decodeErrors[ref] = error.description
        }
    }

    private func removeCRD(_ kind: SourceRef.Kind, _ key: String) {
        switch kind {
        case .apisixRoute: cluster.apisixRoutes[key] = nil
        case .apisixUpstream: cluster.apisixUpstreams[key] = nil
        case .apisixTls: cluster.apisixTlses[key] = nil
        case .apisixConsumer: cluster.apisixConsumers[key] = nil
        case .apisixPluginConfig: cluster.apisixPluginConfigs[key] = nil
        case .apisixGlobalRule: cluster.apisixGlobalRules[key] = nil
        case .ingress: cluster.ingresses[key] = nil
        }
    }

    private func structureChanged() {
        needsTranslate = true
        wake()
    }

    private func endpointsChanged(_ service: String, trigger: Int64?) {
        guard let ids = upstreamsByService[service], !ids.isEmpty else { return }
        let received = ContinuousClock.now
        for id in ids where pendingLatency[id] == nil { pendingLatency[id] = (trigger, received, .max) }
        dirtyServices.insert(service)
        wake()
    }

    // MARK: - Computing what the gateway should have

    func nodes(_ source: EndpointSource) -> JSONValue {
        let labels = podLabels
        let lookup: (String) -> [String: String]? = { labels[$0] }
        if options.watchEndpointSlices {
            return NodeResolver.json(NodeResolver.nodes(source, slices: Array((slices[source.service] ?? [:]).values), podLabels: lookup))
        }
        guard let e = legacyEndpoints[source.service] else { return .object([:]) }
        return NodeResolver.json(NodeResolver.nodes(source, endpoints: e, podLabels: lookup))
    }

    func withNodes(_ id: String) -> JSONValue? {
        guard case .object(var o)? = translation.objects[ObjectKey(.upstreams, id)], let source = translation.endpointSources[id] else { return nil }
        o["nodes"] = nodes(source)
        return .object(o)
    }

    private func prepare(now: ContinuousClock.Instant) async {
        if needsTranslate {
            needsTranslate = false
            // Services whose endpoints changed before this translation are covered by it;
            // those that change during the awaits below stay dirty.
            let covered = dirtyServices
            dirtyServices.removeAll()
            await refreshSecrets()
            var t = translator.translate(cluster)
            for (ref, message) in decodeErrors { t.errors[ref] = message }
            // An object that no longer translates (a typo in an edit) keeps what it last
            // produced, as the APISIX controller keeps the last good config; its status says
            // why it is not updated. Deleting it is what removes its routes.
            for ref in t.errors.keys {
                guard let previous = translation.produced[ref] else { continue }
                for key in previous where t.objects[key] == nil {
                    t.objects[key] = translation.objects[key]
                    if key.kind == .upstreams, let source = translation.endpointSources[key.id] { t.endpointSources[key.id] = source }
                }
                t.produced[ref] = previous
            }
            if t.endpointSources.values.contains(where: { $0.subsetLabels != nil }) && !podsSynced {
                // Subsets select pods by label, and the pods are not listed yet: writing now
                // would empty those upstreams. Translate again once they are.
                if !podInformerStarted { startPodInformer() }
                needsTranslate = true
                dirtyServices.formUnion(covered)
                return
            }
            translation = t
            var byService: [String: [String]] = [:]
            for (id, source) in t.endpointSources { byService[source.service, default: []].append(id) }
            upstreamsByService = byService
            var objects = t.objects
            for id in t.endpointSources.keys { objects[ObjectKey(.upstreams, id)] = withNodes(id) }
            metrics.translationErrors.set(to: Double(t.errors.count))
            metrics.managedObjects.set(to: Double(objects.count))
            for (ref, message) in t.errors where lastStatus[ref]?.message != message {
                logger.warning("cannot translate \(ref)", metadata: ["error": "\(message)"])
            }
            await sync.replaceAll(objects)
            for s in covered { lastServiceFlush[s] = now }
            // Forget what belongs to upstreams and Services that are gone.
            pendingLatency = pendingLatency.filter { t.endpointSources[$0.key] != nil }
            lastServiceFlush = lastServiceFlush.filter { byService[$0.key] != nil }
            warnedTruncated = warnedTruncated.filter { byService[$0] != nil }
        } else {
            for service in dirtyServices where (lastServiceFlush[service].map { now - $0 >= options.coalesceWindow } ?? true) {
                dirtyServices.remove(service)
                lastServiceFlush[service] = now
                for id in upstreamsByService[service] ?? [] { await sync.set(ObjectKey(.upstreams, id), withNodes(id)) }
            }
        }
        for (id, p) in pendingLatency where p.version == .max {
            let key = ObjectKey(.upstreams, id)
            if dirtyServices.contains(translation.endpointSources[id]?.service ?? "") { continue }
            if await sync.isSynced(key) {
                pendingLatency[id] = nil  // nothing changed for it
            } else {
                pendingLatency[id]?.version = await sync.currentVersion(key)
            }
        }
    }

    private func observeLatency(_ written: [(ObjectKey, UInt64)]) {
        guard !pendingLatency.isEmpty else { return }
        let nowMicros = KubeTime.nowMicroseconds()
        let now = ContinuousClock.now
        for (key, version) in written where key.kind == .upstreams {
            guard let p = pendingLatency[key.id], p.version != .max, version >= p.version else { continue }
            pendingLatency[key.id] = nil
            let d = now - p.received
            let eventMs = Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
            metrics.eventToWrite.record(eventMs)
            if let t = p.trigger {
                let latency = Double(max(0, nowMicros - t)) / 1_000_000
                metrics.programmingLatency.record(latency)
                logger.debug("nodes live", metadata: ["upstream": "\(key.id)", "latency_ms": "\(latency * 1000)", "event_to_write_ms": "\(eventMs)"])
            }
        }
    }

    private func startPodInformer() {
        podInformerStarted = true
        let namespaces: [String?] = options.namespaces.isEmpty ? [nil] : options.namespaces
        for ns in namespaces {
            let informer = Informer(api: api, resource: .pods(namespace: ns), pageSize: 500, retain: Informer.stub)
            podInformers.append(informer)
            extraTasks.append(Task { await informer.run { event in await self.handle(.pod, event) } })
        }
    }

    // MARK: - Status

    static func resource(_ kind: SourceRef.Kind, _ namespace: String) -> KubeResource? {
        switch kind {
        case .apisixRoute: return .apisixRoutes(namespace: namespace)
        case .apisixUpstream: return .apisixUpstreams(namespace: namespace)
        case .apisixTls: return .apisixTlses(namespace: namespace)
        case .apisixConsumer: return .apisixConsumers(namespace: namespace)
        case .apisixPluginConfig: return .apisixPluginConfigs(namespace: namespace)
        case .apisixGlobalRule: return .apisixGlobalRules(namespace: namespace)
        case .ingress: return nil
        }
    }

    /// Every condition the object's status holds now (ours and other writers').
    func fullStatus(_ ref: SourceRef) -> ApisixStatus? {
        let key = ClusterState.key(ref.namespace, ref.name)
        switch ref.kind {
        case .apisixRoute: return cluster.apisixRoutes[key]?.status
        case .apisixUpstream: return cluster.apisixUpstreams[key]?.status
        case .apisixTls: return cluster.apisixTlses[key]?.status
        case .apisixConsumer: return cluster.apisixConsumers[key]?.status
        case .apisixPluginConfig: return cluster.apisixPluginConfigs[key]?.status
        case .apisixGlobalRule: return cluster.apisixGlobalRules[key]?.status
        case .ingress: return nil
        }
    }

    func currentStatus(_ ref: SourceRef) -> (condition: KubeCondition?, generation: Int?) {
        let key = ClusterState.key(ref.namespace, ref.name)
        switch ref.kind {
        case .apisixRoute: return cluster.apisixRoutes[key].map { ($0.status.resourcesAvailable, $0.metadata.generation) } ?? (nil, nil)
        case .apisixUpstream: return cluster.apisixUpstreams[key].map { ($0.status.resourcesAvailable, $0.metadata.generation) } ?? (nil, nil)
        case .apisixTls: return cluster.apisixTlses[key].map { ($0.status.resourcesAvailable, $0.metadata.generation) } ?? (nil, nil)
        case .apisixConsumer: return cluster.apisixConsumers[key].map { ($0.status.resourcesAvailable, $0.metadata.generation) } ?? (nil, nil)
        case .apisixPluginConfig: return cluster.apisixPluginConfigs[key].map { ($0.status.resourcesAvailable, $0.metadata.generation) } ?? (nil, nil)
        case .apisixGlobalRule: return cluster.apisixGlobalRules[key].map { ($0.status.resourcesAvailable, $0.metadata.generation) } ?? (nil, nil)
        case .ingress: return (nil, nil)
        }
    }

    /// The API server takes condition messages up to 32 KiB; an error quoting a hostile
    /// value (64 KiB of a field) is cut well below that, on a character boundary, so the
    /// status write is not refused again and again.
    static let maxStatusMessage = 4096

    static func statusMessage(_ m: String) -> String {
        guard m.utf8.count > maxStatusMessage else { return m }
        var out = ""
        var bytes = 0
        for ch in m.unicodeScalars {
            bytes += UTF8.width(ch)
            if bytes > maxStatusMessage - 3 { break }
            out.unicodeScalars.append(ch)
        }
        return out + "..."
    }

    /// Reports `ResourcesAvailable` on every APISIX resource whose outcome is known and
    /// differs from what it already says.
    private func writeStatuses() async {
        guard isLeader else { return }
        let refs = Set(translation.produced.keys).union(translation.errors.keys).filter(\.kind.hasStatus).sorted()
        for ref in refs {
            var outcome: (ok: Bool, message: String)
            if let e = translation.errors[ref] {
                outcome = (false, Self.statusMessage(e))
            } else {
                var refusals: [String] = []
                var pending = false
                for key in (translation.produced[ref] ?? []).sorted() {
                    if let r = await sync.refusal(for: key) { refusals.append(r) } else if !(await sync.isSynced(key)) { pending = true }
                }
                if !refusals.isEmpty {
                    outcome = (false, Self.statusMessage("the gateway refused: " + refusals.joined(separator: "; ")))
                } else if pending {
                    continue
                } else {
                    outcome = (true, "Sync Successfully")
                }
            }
            // The generation that was translated, not the newest one cached: a spec that
            // arrived meanwhile is not yet what the gateway has.
            let (condition, cachedGeneration) = currentStatus(ref)
            let generation = translation.generations[ref] ?? cachedGeneration
            if let last = lastStatus[ref], last.ok == outcome.ok, last.message == outcome.message, last.generation == generation { continue }
            if let c = condition, (c.status == .true) == outcome.ok, c.message == outcome.message, c.observedGeneration == generation {
                lastStatus[ref] = (outcome.ok, outcome.message, generation)
                continue
            }
            guard let resource = Self.resource(ref.kind, ref.namespace) else { continue }
            // A merge patch replaces the whole `conditions` list: it is sent with every other
            // writer's conditions as last seen, ours replaced by type, so theirs survive.
            let status = (fullStatus(ref) ?? ApisixStatus(conditions: condition.map { [$0] } ?? []))
                .setting(.resourcesAvailable(synced: outcome.ok, message: outcome.message, observedGeneration: generation))
            do {
                _ = try await api.mergePatchStatus(resource, name: ref.name, ["status": status.json()])
                lastStatus[ref] = (outcome.ok, outcome.message, generation)
            } catch {
                logger.warning("cannot write the status of \(ref)", metadata: ["error": "\(error)"])
            }
        }
    }
}
