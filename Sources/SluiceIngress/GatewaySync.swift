import SluiceCore

/// Keeps the gateway's managed objects equal to the desired ones, writing only what
/// differs. One flush runs at a time and each object's newest desired value is what gets
/// written, so a late write never lands over a newer one: every change bumps the object's
/// version, a write in flight records the version it carried, and the object stays dirty
/// until its newest version is written.
public actor GatewaySync {
    public enum Outcome: Sendable, Equatable {
        /// Everything dirty was written (or refused for good, see `refusal(for:)`).
        case done
        /// The gateway could not be reached or failed; try again later (and relist then).
        case retry(String)
    }

    /// Kinds in the order objects may be created: an object is written after those it
    /// refers to, and deleted before them.
    public static let writeOrder: [ResourceKind] = [.pluginConfigs, .upstreams, .services, .consumers, .globalRules, .ssls, .routes, .streamRoutes]

    public let writer: GatewayWriter
    public let concurrency: Int
    private var desired: [ObjectKey: JSONValue] = [:]
    private var written: [ObjectKey: JSONValue] = [:]
    private var version: [ObjectKey: UInt64] = [:]
    private var nextVersion: UInt64 = 0
    private var dirty: Set<ObjectKey> = []
    private var refused: [ObjectKey: String] = [:]
    private var needsRelist = true
    private var flushing = false

    public private(set) var puts = 0
    public private(set) var patches = 0
    public private(set) var deletes = 0
    public private(set) var relists = 0

    public init(writer: GatewayWriter, concurrency: Int = 8) {
        self.writer = writer
        self.concurrency = max(1, concurrency)
    }

    /// Replaces the whole desired state (after a full translation).
    public func replaceAll(_ objects: [ObjectKey: JSONValue]) {
        for (k, v) in objects where desired[k] != v { set(k, v) }
        for k in Array(desired.keys) where objects[k] == nil { set(k, nil) }
    }

    /// Changes one desired object (nil: it should not exist).
    public func set(_ key: ObjectKey, _ value: JSONValue?) {
        guard desired[key] != value else { return }
        desired[key] = value
        nextVersion += 1
        version[key] = nextVersion
        refused[key] = nil
        dirty.insert(key)
    }

    public func desiredValue(_ key: ObjectKey) -> JSONValue? { desired[key] }
    public func currentVersion(_ key: ObjectKey) -> UInt64 { version[key] ?? 0 }
    public var pendingCount: Int { dirty.count }
    /// Forces the next flush to list the gateway's objects first (e.g. on a resync timer,
    /// to repair a gateway that lost its store).
    public func requestRelist() { needsRelist = true }

    /// Why the gateway refused this object's current desired value, if it did.
    public func refusal(for key: ObjectKey) -> String? { refused[key] }
    /// Whether the object's current desired value is on the gateway.
    public func isSynced(_ key: ObjectKey) -> Bool { !dirty.contains(key) && refused[key] == nil }

    /// Writes everything dirty. Returns the objects written and the versions they carried.
    /// `proceed` is asked before each batch of writes: a controller that lost its
    /// leadership stops writing between batches instead of finishing the flush.
    public func flush(proceed: @Sendable () async -> Bool = { true }) async -> (outcome: Outcome, written: [(ObjectKey, UInt64)]) {
        guard !flushing else { return (.done, []) }
        flushing = true
        defer { flushing = false }
        if needsRelist {
            do {
                try await relist()
            } catch {
                return (.retry("\(error)"), [])
            }
        }
        var done: [(ObjectKey, UInt64)] = []
        let work = dirty
        // Creates and updates, referents first.
        for kind in Self.writeOrder {
            let keys = work.filter { $0.kind == kind && desired[$0] != nil }.sorted()
            if let failure = await run(keys, deleting: false, &done, proceed, { key, value, previous in
                if let previous, self.writer.supportsPatch, let patch = Self.nodesPatch(from: previous, to: value) {
                    if try await self.writer.patch(key, patch) { return .patched }
                }
                try await self.writer.put(key, value)
                return .put
            }) {
                needsRelist = true
                return (.retry(failure), done)
            }
        }
        // Deletes, referrers first.
        for kind in Self.writeOrder.reversed() {
            let keys = work.filter { $0.kind == kind && desired[$0] == nil }.sorted()
            if let failure = await run(keys, deleting: true, &done, proceed, { key, _, _ in
                try await self.writer.delete(key)
                return .deleted
            }) {
                needsRelist = true
                return (.retry(failure), done)
            }
        }
        return (.done, done)
    }

    enum Done: Sendable { case put, patched, deleted }

    struct WriteOutcome: Sendable {
        var index: Int
        var done: Done?
        var error: Error?
    }

    /// Runs the writes for `keys`, `concurrency` at a time; returns the first transient
    /// failure, if any.
    private func run(
        _ keys: [ObjectKey], deleting: Bool, _ done: inout [(ObjectKey, UInt64)], _ proceed: @Sendable () async -> Bool,
        _ write: @escaping @Sendable (ObjectKey, JSONValue, JSONValue?) async throws -> Done
    ) async -> String? {
        var failure: String? = nil
        var index = 0
        while index < keys.count && failure == nil {
            guard await proceed() else { return "stopped: no longer the leader" }
            let batch = keys[index..<min(index + concurrency, keys.count)]
            index += batch.count
            let jobs: [(ObjectKey, JSONValue, JSONValue?, UInt64)] = batch.compactMap { k in
                guard dirty.contains(k) else { return nil }
                // The desired value may have changed while an earlier batch was in flight
                // (the actor is reentrant at each await): a key that now belongs to the
                // other phase stays dirty for the next flush.
                guard (desired[k] == nil) == deleting else { return nil }
                if desired[k] == nil && written[k] == nil {
                    dirty.remove(k)  // nothing to delete
                    return nil
                }
                if let d = desired[k], written[k] == d {
                    dirty.remove(k)  // already there
                    return nil
                }
                return (k, desired[k] ?? .null, written[k], version[k] ?? 0)
            }
            // Children return only their job's index and outcome; the job's key and value
            // are read back from `jobs` here.
            let outcomes = await withTaskGroup(of: WriteOutcome.self) { group in
                for (index, job) in jobs.enumerated() {
                    let (k, value, previous, _) = job
                    group.addTask {
                        do {
                            return WriteOutcome(index: index, done: try await write(k, value, previous), error: nil)
                        } catch {
                            return WriteOutcome(index: index, done: nil, error: error)
                        }
                    }
                }
                var out: [WriteOutcome] = []
                for await r in group { out.append(r) }
                return out
            }
            for o in outcomes {
                let (k, value, _, v) = jobs[o.index]
                if let how = o.done {
                    switch how {
                    case .put: puts += 1
                    case .patched: patches += 1
                    case .deleted: deletes += 1
                    }
                    // (Not `how == .deleted ? nil : value`: JSONValue takes `nil` as a literal,
                    // which kept a `.null` for every deleted object.)
                    if how == .deleted { written[k] = nil } else { written[k] = value }
                    done.append((k, v))
                    if version[k] == v {
                        dirty.remove(k)
                        // A deleted object that stays deleted leaves nothing behind: the
                        // tables are bounded by the objects that exist, not by every id ever.
                        if how == .deleted && desired[k] == nil { version[k] = nil }
                    }
                    if how != .deleted { retryReferrers(of: k) }
                } else if let e = o.error as? GatewayWriteError, e.permanent {
                    if version[k] == v {
                        refused[k] = e.message
                        dirty.remove(k)
                    }
                } else {
                    failure = failure ?? "\(o.error.map { "\($0)" } ?? "no outcome")"
                }
            }
        }
        return failure
    }

    /// Objects refused because `key` did not exist yet (the gateway's answer names it:
    /// `upstream "x" not found`) are worth sending again now that it does; they go out
    /// with the next flush.
    private func retryReferrers(of key: ObjectKey) {
        guard !refused.isEmpty else { return }
        let marker = "\"\(key.id)\" not found"
        for (k, message) in refused where message.contains(marker) && desired[k] != nil {
            refused[k] = nil
            dirty.insert(k)
        }
    }

    /// Reads the managed objects the gateway has, so that what differs (including objects
    /// it lost, and orphans no longer desired) is marked dirty.
    private func relist() async throws {
        var listed: [ObjectKey: JSONValue] = [:]
        for kind in Self.writeOrder {
            let objects: [String: JSONValue]
            do {
                objects = try await writer.listManaged(kind)
            } catch let e as GatewayWriteError where e.permanent {
                continue  // a kind this gateway does not serve has nothing to list
            }
            for (id, v) in objects { listed[ObjectKey(kind, id)] = v }
        }
        relists += 1
        needsRelist = false
        for (k, v) in listed {
            // An object listed with its private keys encrypted holds the desired value.
            if let d = desired[k], d != v, Self.holds(listed: v, desired: d, kind: k.kind) { listed[k] = d }
        }
        written = listed
        for k in Set(listed.keys).union(desired.keys) {
            // A value the gateway refused is not sent again until it changes.
            if refused[k] != nil && desired[k] != nil { continue }
            if desired[k] != listed[k] {
                if dirty.insert(k).inserted, desired[k] == nil {
                    // An orphan: give it a version so its deletion is tracked like any write.
                    nextVersion += 1
                    version[k] = nextVersion
                }
            } else if refused[k] == nil {
                dirty.remove(k)
            }
        }
    }

    /// Whether an object as the gateway lists it holds the `desired` value. A gateway with a
    /// keyring (`--keyring`, as APISIX's `data_encryption`) stores private keys encrypted and
    /// lists them so: an `ssls` object's `key` and `keys` and an upstream's
    /// `tls.client_key` that are not PEM (PEM starts with `---`, as APISIX tells them apart)
    /// stand for the PEM key desired when everything else is equal. Everything else includes
    /// the certificate, and the gateway takes only the key that matches its certificate, so
    /// the key cannot differ. An `ssls` object's keys are left out of listings altogether
    /// (as APISIX's); absent, they stand for the desired ones on the same grounds. Without
    /// this, every certificate would be written again at every relist.
    static func holds(listed: JSONValue, desired: JSONValue, kind: ResourceKind) -> Bool {
        func isPEM(_ v: JSONValue?) -> Bool { v?.stringValue?.hasPrefix("---") == true }
        func isStored(_ v: JSONValue?) -> Bool { v?.stringValue.map { !$0.hasPrefix("---") } ?? false }
        /// `listed[field]` and `desired[field]` with an encrypted key standing for a PEM one.
        func masked(_ l: inout [String: JSONValue], _ d: inout [String: JSONValue], _ field: String) {
            if (isStored(l[field]) || l[field] == nil) && isPEM(d[field]) {
                l[field] = .null
                d[field] = .null
            } else if l[field] == nil, case .array(let da)? = d[field], da.allSatisfy({ isPEM($0) }) {
                d[field] = nil
            } else if case .array(var la)? = l[field], case .array(var da)? = d[field], la.count == da.count {
                for i in la.indices where isStored(la[i]) && isPEM(da[i]) {
                    la[i] = .null
                    da[i] = .null
                }
                l[field] = .array(la)
                d[field] = .array(da)
            }
        }
        guard case .object(var l) = listed, case .object(var d) = desired else { return false }
        switch kind {
        case .ssls:
            masked(&l, &d, "key")
            masked(&l, &d, "keys")
        case .upstreams:
            guard case .object(var lt)? = l["tls"], case .object(var dt)? = d["tls"] else { return false }
            masked(&lt, &dt, "client_key")
            l["tls"] = .object(lt)
            d["tls"] = .object(dt)
        default:
            return false
        }
        return l == d
    }

    /// When two upstreams differ only in their nodes (both as `{"host:port": weight}`),
    /// the merge patch that turns one into the other: the changed nodes and `null` for the
    /// removed ones, so a pod change sends a few bytes however large the Service is.
    static func nodesPatch(from old: JSONValue, to new: JSONValue) -> JSONValue? {
        guard case .object(var a) = old, case .object(var b) = new, case .object(let oldNodes)? = a["nodes"],
            case .object(let newNodes)? = b["nodes"]
        else { return nil }
        a["nodes"] = nil
        b["nodes"] = nil
        guard a == b else { return nil }
        var delta: [String: JSONValue] = [:]
        for (k, v) in newNodes where oldNodes[k] != v { delta[k] = v }
        for k in oldNodes.keys where newNodes[k] == nil { delta[k] = .null }
        guard !delta.isEmpty else { return nil }
        return ["nodes": .object(delta)]
    }
}
