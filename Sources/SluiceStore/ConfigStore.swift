import SluiceCore

/// One stored object: its kind, id, JSON value and revisions (etcd's create and mod
/// revisions; the Admin API shows them as `createdIndex` / `modifiedIndex`).
public struct StoreEntry: Sendable, Hashable {
    public var kind: ResourceKind
    public var id: String
    public var value: JSONValue
    public var createdIndex: Int64
    public var modifiedIndex: Int64

    public init(kind: ResourceKind, id: String, value: JSONValue, createdIndex: Int64, modifiedIndex: Int64) {
        self.kind = kind
        self.id = id
        self.value = value
        self.createdIndex = createdIndex
        self.modifiedIndex = modifiedIndex
    }

    /// `/apisix/routes/1`
    public var key: String { "/apisix/\(kind.rawValue)/\(id)" }
}

/// A change as the store reports it.
public enum StoreEvent: Sendable, Hashable {
    case put(StoreEntry)
    case delete(kind: ResourceKind, id: String, revision: Int64)
}

public struct StoreError: Error, Sendable, CustomStringConvertible {
    public enum Code: Sendable, Hashable {
        /// A compare-and-swap failed: the object changed since it was read.
        case conflict
        /// The store cannot be reached or written right now.
        case unavailable
        /// The stored data is damaged.
        case corrupt
        /// This store cannot do what was asked.
        case unsupported
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}

/// What every config store offers: a full read at a revision, conditional writes, and the
/// revision each write produced. The embedded store and etcd implement it.
public protocol ConfigStore: AnyObject, Sendable {
    /// Every entry and the store's current revision.
    func load() async throws -> (entries: [StoreEntry], revision: Int64)

    /// Writes `value` under kind/id. With `expectedModifiedIndex`, only if the stored entry
    /// still has that mod revision (0: only if absent). Returns the stored entry.
    func put(kind: ResourceKind, id: String, value: JSONValue, expectedModifiedIndex: Int64?) async throws -> StoreEntry

    /// Like `put`, and only if every object in `requiring` exists in the store at the moment
    /// of the write (a store shared by replicas checks references there, atomically). With
    /// `ttl` (seconds) the object is deleted by the store when it expires.
    func put(
        kind: ResourceKind, id: String, value: JSONValue, expectedModifiedIndex: Int64?,
        requiring: [(kind: ResourceKind, id: String)], ttl: Int?
    ) async throws -> StoreEntry

    /// Deletes kind/id. Returns the revision of the delete, or nil when it was not there.
    func delete(kind: ResourceKind, id: String) async throws -> Int64?

    /// The next revision number, for generated ids (`POST`).
    func nextID() async throws -> String
}

extension ConfigStore {
    /// For a store with a single writer (the embedded one), references were checked by that
    /// writer against the same data: nothing more to check here.
    public func put(
        kind: ResourceKind, id: String, value: JSONValue, expectedModifiedIndex: Int64?,
        requiring: [(kind: ResourceKind, id: String)], ttl: Int?
    ) async throws -> StoreEntry {
        if ttl != nil { throw StoreError(.unsupported, "ttl needs the etcd store (--etcd)") }
        return try await put(kind: kind, id: id, value: value, expectedModifiedIndex: expectedModifiedIndex)
    }
}
