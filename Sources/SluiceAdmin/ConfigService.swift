import SluiceCore
import SluiceStore

/// A write refused or failed, with the HTTP status the Admin API answers with.
public struct AdminError: Error, Sendable, CustomStringConvertible {
    public var status: Int
    public var message: String
    public init(_ status: Int, _ message: String) {
        self.status = status
        self.message = message
    }
    public var description: String { message }
}

/// The one place config changes go through: it validates a write in full against the
/// current config, stores it, compiles the result and publishes it to the data plane, and
/// only then returns. Being an actor, it applies writes one at a time, in order.
public actor ConfigService {
    /// Compiles and publishes a config; `changes` names the objects written since the last
    /// call (nil: everything may have changed).
    public typealias Publisher = @Sendable (ConfigState, [ConfigChange]?) async throws -> Void
    /// Compiles one validated object on its own (the data plane's compiler), before it is
    /// stored; `scratch` holds that object alone. Throws what compilation cannot take.
    public typealias TrialCompiler = @Sendable (ResourceKind, String, ConfigState) throws(ConfigError) -> Void
    /// The form an object is stored in (private keys encrypted with the keyring); reading
    /// it back must decode to the same object.
    public typealias StoredForm = @Sendable (ResourceKind, JSONValue) -> JSONValue

    private let store: (any ConfigStore)?
    private let publisher: Publisher
    private let trialCompile: TrialCompiler?
    private let storedForm: StoredForm?
    /// The inverse: a stored object with its encrypted plugin fields decrypted (APISIX's
    /// `data_encryption`), as it is served and as the Admin API's GET shows it.
    private let plainForm: StoredForm?
    private var entries: [ResourceKind: [String: StoreEntry]] = [:]
    private(set) var state = ConfigState()
    public let readOnly: Bool
    private var localRevision: Int64 = 0
    // Writes and applied store changes run one at a time, start to finish. An actor alone
    // would interleave them at every `await` (reentrancy): a store echo of a write could be
    // applied before the write itself finished, compiling twice and copying the whole
    // config because the interrupted write still held it.
    private var busy = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    private func acquire() async {
        if !busy {
            busy = true
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    private func release() {
        if waiters.isEmpty {
            busy = false
        } else {
            waiters.removeFirst().resume()  // stays busy: handed over
        }
    }

    /// The store revision this config reflects (from `start`, `reload` and applied changes).
    public private(set) var revision: Int64 = 0
    private let clock: @Sendable () -> Int64

    /// A service backed by a writable store.
    public init(
        store: any ConfigStore, publisher: @escaping Publisher, trialCompile: TrialCompiler? = nil,
        storedForm: StoredForm? = nil, plainForm: StoredForm? = nil, clock: @escaping @Sendable () -> Int64 = ConfigService.unixTime
    ) {
        self.store = store
        self.publisher = publisher
        self.trialCompile = trialCompile
        self.storedForm = storedForm
        self.plainForm = plainForm
        self.readOnly = false
        self.clock = clock
    }

    /// A read-only service fed by `replaceAll` (standalone mode).
    public init(readOnlyPublisher publisher: @escaping Publisher) {
        self.store = nil
        self.publisher = publisher
        self.trialCompile = nil
        self.storedForm = nil
        self.plainForm = nil
        self.readOnly = true
        self.clock = ConfigService.unixTime
    }

    public static let unixTime: @Sendable () -> Int64 = {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec)
    }

    /// Loads every stored object and publishes the result. Objects that do not validate
    /// (written by an older version, or straight into the store) are skipped and returned as
    /// errors naming their keys; everything else is served.
    @discardableResult
    public func start() async throws -> [ConfigError] {
        await acquire()
        defer { release() }
        return try await loadAll()
    }

    private func loadAll() async throws -> [ConfigError] {
        guard let store else { return [] }
        let (all, revision) = try await store.load()
        self.revision = revision
        var errors: [ConfigError] = []
        var state = ConfigState()
        var entries: [ResourceKind: [String: StoreEntry]] = [:]
        for e in all {
            do throws(ConfigError) {
                try state.set(e.kind, id: e.id, value: plain(e.kind, e.value), path: e.key)
                entries[e.kind, default: [:]][e.id] = e
            } catch {
                errors.append(error)
            }
        }
        // Objects whose references broke are dropped too, so the rest can be served.
        for err in state.referenceErrors() { errors.append(err) }
        skippedObjects += errors.count
        self.state = state
        self.entries = entries
        try await publisher(state, nil)
        return errors
    }

    /// Re-reads the whole store (after a watch lost its place, e.g. to compaction) and
    /// publishes the result as one change.
    @discardableResult
    public func reload() async throws -> [ConfigError] {
        await acquire()
        defer { release() }
        reloads += 1
        return try await loadAll()
    }

    /// Full re-reads after `start` (for metrics and tests).
    public private(set) var reloads = 0

    /// Stored objects skipped because they do not validate (or are not JSON), counted from
    /// every load and every applied store change: `sluice_config_objects_skipped_total`.
    public private(set) var skippedObjects = 0

    /// Counts objects a store skipped before they reached this service (values that are not JSON).
    public func noteSkipped(_ count: Int) { skippedObjects += max(0, count) }

    /// Applies changes someone else wrote to the store (another replica, `etcdctl`), in one
    /// snapshot. An object that does not validate is skipped, its previous value stays live,
    /// and the error is returned naming its key. Changes this service wrote itself, or older
    /// ones, are recognised by revision and skipped.
    @discardableResult
    public func applyExternal(_ events: [StoreEvent], revision: Int64) async -> [ConfigError] {
        await acquire()
        defer { release() }
        var errors: [ConfigError] = []
        var changes: [ConfigChange] = []
        for event in events {
            switch event {
            case .put(let e):
                if let current = entries[e.kind]?[e.id], current.modifiedIndex >= e.modifiedIndex { continue }
                do throws(ConfigError) {
                    try state.set(e.kind, id: e.id, value: plain(e.kind, e.value), path: e.key)
                    entries[e.kind, default: [:]][e.id] = e
                    changes.append(ConfigChange(e.kind, e.id))
                } catch {
                    errors.append(error)
                }
            case .delete(let kind, let id, _):
                guard entries[kind]?[id] != nil else { continue }
                entries[kind]?[id] = nil
                try? state.set(kind, id: id, value: nil)
                changes.append(ConfigChange(kind, id))
            }
        }
        self.revision = max(self.revision, revision)
        skippedObjects += errors.count
        if !changes.isEmpty {
            do {
                try await publisher(state, changes)
            } catch {
                errors.append(ConfigError(path: "", "publishing the store's changes failed: \(error)"))
            }
        }
        return errors
    }

    /// Standalone mode: the whole config replaced at once from the file's objects.
    public func replaceAll(_ objects: [(kind: ResourceKind, id: String, value: JSONValue)], state: ConfigState) async throws {
        await acquire()
        defer { release() }
        localRevision += 1
        var entries: [ResourceKind: [String: StoreEntry]] = [:]
        for o in objects {
            entries[o.kind, default: [:]][o.id] = StoreEntry(kind: o.kind, id: o.id, value: o.value, createdIndex: localRevision, modifiedIndex: localRevision)
        }
        try await publisher(state, nil)
        self.entries = entries
        self.state = state
    }

    // MARK: Reads

    /// The object as stored (encrypted fields encrypted).
    public func get(_ kind: ResourceKind, _ id: String) -> StoreEntry? { entries[kind]?[id] }

    public func list(_ kind: ResourceKind) -> [StoreEntry] {
        (entries[kind] ?? [:]).values.sorted { ($0.createdIndex, $0.id) < ($1.createdIndex, $1.id) }
    }

    /// The object as the Admin API's GET shows it: encrypted plugin fields decrypted, as
    /// APISIX's GET answers.
    public func read(_ kind: ResourceKind, _ id: String) -> StoreEntry? { entries[kind]?[id].map(readable) }

    public func readAll(_ kind: ResourceKind) -> [StoreEntry] { list(kind).map(readable) }

    private func readable(_ e: StoreEntry) -> StoreEntry {
        guard plainForm != nil else { return e }
        var e = e
        e.value = plain(e.kind, e.value)
        return e
    }

    private func plain(_ kind: ResourceKind, _ value: JSONValue) -> JSONValue { plainForm?(kind, value) ?? value }

    public var currentState: ConfigState { state }

    // MARK: Writes

    /// Validates `body` as a complete object of `kind` and stores it. Returns the entry and
    /// whether it was created.
    public func put(_ kind: ResourceKind, id: String?, body: JSONValue, ttl: Int? = nil) async throws(AdminError) -> (StoreEntry, created: Bool) {
        await acquire()
        defer { release() }
        return try await putLocked(kind, id: id, body: body, ttl: ttl)
    }

    private func putLocked(_ kind: ResourceKind, id: String?, body: JSONValue, ttl: Int?) async throws(AdminError) -> (StoreEntry, created: Bool) {
        let store = try writableStore()
        guard case .object(var object) = body else { throw AdminError(400, "invalid configuration: the body must be a JSON object") }
        let resolvedID: String
        if let id {
            if let bodyID = object["id"], (try? ObjectID.read(bodyID, path: "id")) != id, kind != .consumers {
                throw AdminError(400, "wrong \(kind.singular) id")
            }
            if kind == .consumers, let username = object["username"], username.stringValue != id {
                throw AdminError(400, "wrong username")
            }
            resolvedID = id
        } else if kind == .consumers, let username = object["username"]?.stringValue {
            resolvedID = username
        } else {
            do {
                resolvedID = try await store.nextID()
            } catch {
                throw storeFailure(error)
            }
        }
        guard ObjectID.isValid(resolvedID) else {
            throw AdminError(400, "invalid configuration: id: must match ^[a-zA-Z0-9-_.]{1,64}$, got \"\(resolvedID)\"")
        }
        let existing = entries[kind]?[resolvedID]
        let now = clock()
        // The id as the body gave it when it is the same (`"id": 1` stays a number, as APISIX stores it).
        if kind != .consumers, !(object["id"]?.intValue.map { String($0) == resolvedID } ?? false) { object["id"] = .string(resolvedID) }
        object["create_time"] = existing?.value["create_time"] ?? .int(now)
        object["update_time"] = .int(now)
        let value = JSONValue.object(object)
        // Decode the one object on its own, and check its references against the live config:
        // neither step copies the whole config, so a write costs the same at 10 or 10,000 routes.
        var scratch = ConfigState()
        do throws(ConfigError) {
            try scratch.set(kind, id: resolvedID, value: value)
        } catch {
            throw AdminError(400, "invalid configuration: \(error)")
        }
        for ref in scratch.references(of: kind, id: resolvedID) where !state.contains(ref.kind, ref.id) {
            throw AdminError(400, "invalid configuration: \(ref.field): \(ref.kind.singular) \"\(ref.id)\" not found")
        }
        if let conflict = state.conflict(of: kind, id: resolvedID, in: scratch) { throw AdminError(400, conflict) }
        // Compiled before it is stored: an object the data plane cannot take is never persisted.
        if let trialCompile {
            do throws(ConfigError) {
                try trialCompile(kind, resolvedID, scratch)
            } catch {
                throw AdminError(400, "invalid configuration: \(error)")
            }
        }
        let entry: StoreEntry
        do {
            entry = try await store.put(
                kind: kind, id: resolvedID, value: storedForm?(kind, value) ?? value, expectedModifiedIndex: existing?.modifiedIndex ?? 0,
                requiring: scratch.references(of: kind, id: resolvedID).map { ($0.kind, $0.id) }, ttl: ttl)
        } catch {
            throw storeFailure(error)
        }
        entries[kind, default: [:]][resolvedID] = entry
        revision = max(revision, entry.modifiedIndex)
        state.adopt(kind, id: resolvedID, from: scratch)  // decoded and validated above
        try await publish([ConfigChange(kind, resolvedID)])
        return (entry, existing == nil)
    }

    /// JSON merge patch of `body` into the stored object (`null` removes a field), or, with
    /// `subpath`, `body` replaces the field at that path.
    public func patch(_ kind: ResourceKind, id: String, subpath: [String], body: JSONValue) async throws(AdminError) -> StoreEntry {
        await acquire()
        defer { release() }
        _ = try writableStore()
        guard let existing = entries[kind]?[id] else { throw AdminError(404, "Key not found") }
        var merged: JSONValue
        if subpath.isEmpty {
            guard case .object = body else { throw AdminError(400, "invalid configuration: the body must be a JSON object") }
            // Merged into the plain form, so that fields are encrypted once, when stored again.
            merged = plain(kind, existing.value).mergePatched(with: body)
        } else {
            guard let replaced = Self.replace(plain(kind, existing.value), at: subpath[...], with: body) else {
                throw AdminError(400, "invalid configuration: \(subpath.joined(separator: ".")): the path does not exist in the object")
            }
            merged = replaced
        }
        if case .object(var o) = merged {
            o.removeValue(forKey: "update_time")
            merged = .object(o)
        }
        let (entry, _) = try await putLocked(kind, id: id, body: merged, ttl: nil)
        return entry
    }

    static func replace(_ value: JSONValue, at path: ArraySlice<String>, with newValue: JSONValue) -> JSONValue? {
        guard let key = path.first else { return newValue }
        switch value {
        case .object(var o):
            if path.count == 1 {
                if case .null = newValue { o.removeValue(forKey: key) } else { o[key] = newValue }
                return .object(o)
            }
            guard let child = o[key], let replaced = replace(child, at: path.dropFirst(), with: newValue) else { return nil }
            o[key] = replaced
            return .object(o)
        case .array(var a):
            guard let i = Int(key), a.indices.contains(i), let replaced = replace(a[i], at: path.dropFirst(), with: newValue) else { return nil }
            a[i] = replaced
            return .array(a)
        default:
            return nil
        }
    }

    /// Deletes an object. Refused while another object refers to it, unless `force`.
    public func delete(_ kind: ResourceKind, id: String, force: Bool) async throws(AdminError) {
        await acquire()
        defer { release() }
        let store = try writableStore()
        guard entries[kind]?[id] != nil else { throw AdminError(404, "Key not found") }
        let users = state.referrers(of: kind, id: id)
        if !users.isEmpty && !force {
            // APISIX's wording: "this service directly", "this plugin config".
            let what = kind == .services ? "service directly" : kind == .pluginConfigs ? "plugin config" : kind.singular
            throw AdminError(400, "can not delete this \(what), \(users.joined(separator: ", ")) \(users.count == 1 ? "is" : "are") still using it now")
        }
        do {
            if let deletedAt = try await store.delete(kind: kind, id: id) { revision = max(revision, deletedAt) }
        } catch {
            throw storeFailure(error)
        }
        entries[kind]?[id] = nil
        try? state.set(kind, id: id, value: nil)
        try await publish([ConfigChange(kind, id)])
    }

    /// Validates a body without storing it (`/schema/validate`).
    public func validate(_ kind: ResourceKind, body: JSONValue) throws(AdminError) {
        var scratch = ConfigState()
        do throws(ConfigError) {
            try scratch.set(kind, id: "validate", value: body)
        } catch {
            throw AdminError(400, "invalid configuration: \(error)")
        }
    }

    // MARK: Helpers

    private func writableStore() throws(AdminError) -> any ConfigStore {
        guard let store, !readOnly else { throw AdminError(405, "the Admin API is read-only in standalone mode") }
        return store
    }

    private func publish(_ changes: [ConfigChange]) async throws(AdminError) {
        do {
            try await publisher(state, changes)
        } catch {
            throw AdminError(503, "stored, but publishing to the data plane failed: \(error)")
        }
    }

    private func storeFailure(_ error: Error) -> AdminError {
        if let e = error as? StoreError {
            switch e.code {
            case .conflict: return AdminError(409, e.message)
            case .unavailable: return AdminError(503, "config store unavailable: \(e.message)")
            case .corrupt: return AdminError(500, e.message)
            case .unsupported: return AdminError(400, e.message)
            }
        }
        return AdminError(503, "config store unavailable: \(error)")
    }
}

#if canImport(Glibc)
import Glibc
#endif
