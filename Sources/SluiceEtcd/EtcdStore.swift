import NIOCore
import SluiceCore
import SluiceStore
import Synchronization

/// The config store for many gateway replicas: etcd v3, keys laid out as APISIX lays them
/// out (`/apisix/routes/1`, `/apisix/upstreams/1`, ...), so an existing APISIX etcd can be
/// served and APISIX tooling can write to it.
public final class EtcdStore: ConfigStore {
    public let client: EtcdClient
    public let prefix: String
    private let lastSkipped = Mutex<[SkippedKey]>([])

    public init(client: EtcdClient, prefix: String = "/apisix") {
        self.client = client
        self.prefix = prefix.hasSuffix("/") ? String(prefix.dropLast()) : prefix
    }

    public func key(_ kind: ResourceKind, _ id: String) -> String { "\(prefix)/\(kind.rawValue)/\(id)" }

    /// kind and id of a key under the prefix, or nil for keys that are not config objects.
    public func parse(key: String) -> (ResourceKind, String)? {
        guard key.hasPrefix(prefix + "/") else { return nil }
        let parts = key.dropFirst(prefix.count + 1).split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let kind = ResourceKind(rawValue: String(parts[0])), ObjectID.isValid(String(parts[1])) else {
            return nil
        }
        return (kind, String(parts[1]))
    }

    /// A value that is not JSON (or a key-value that does not decode), at a key under the prefix.
    public struct SkippedKey: Sendable, Hashable {
        public var key: String
        public var reason: String
    }

    /// Every config object and the revision they were read at; values that are not JSON are
    /// returned apart, by key.
    public func loadAll() async throws -> (entries: [StoreEntry], skipped: [SkippedKey], revision: Int64) {
        let (kvs, undecodable, revision) = try await client.rangeReportingUndecodable(prefix: prefix + "/")
        var entries: [StoreEntry] = []
        var skipped = undecodable.map { SkippedKey(key: "(undecodable)", reason: $0) }
        for kv in kvs {
            guard let (kind, id) = parse(key: kv.key) else { continue }
            do {
                let value = try JSONValue.parse(kv.value)
                entries.append(StoreEntry(kind: kind, id: id, value: value, createdIndex: kv.createRevision, modifiedIndex: kv.modRevision))
            } catch {
                skipped.append(SkippedKey(key: kv.key, reason: "\(error)"))
            }
        }
        lastSkipped.withLock { $0 = skipped }
        return (entries, skipped, revision)
    }

    /// What the last `load` or `loadAll` skipped (`load` has no way to return it): for the
    /// sync loop to log and count after a full re-read.
    public var skippedAtLastLoad: [SkippedKey] { lastSkipped.withLock { $0 } }

    public func load() async throws -> (entries: [StoreEntry], revision: Int64) {
        do {
            let (entries, _, revision) = try await loadAll()
            return (entries, revision)
        } catch {
            throw Self.storeError(error)
        }
    }

    public func put(kind: ResourceKind, id: String, value: JSONValue, expectedModifiedIndex: Int64?) async throws -> StoreEntry {
        try await put(kind: kind, id: id, value: value, expectedModifiedIndex: expectedModifiedIndex, requiring: [], ttl: nil)
    }

    /// One transaction: the compare-and-swap on the object and the existence of every object
    /// it refers to, so a reference deleted concurrently by another replica fails the write.
    public func put(
        kind: ResourceKind, id: String, value: JSONValue, expectedModifiedIndex: Int64?,
        requiring: [(kind: ResourceKind, id: String)], ttl: Int?
    ) async throws -> StoreEntry {
        let kv: EtcdKeyValue?
        do {
            var lease: Int64? = nil
            if let ttl { lease = try await client.grantLease(ttl: ttl) }
            kv = try await client.put(
                key(kind, id), value.serializedBytes(), ifModRevision: expectedModifiedIndex,
                requiringKeys: requiring.map { key($0.kind, $0.id) }, lease: lease)
        } catch {
            throw Self.storeError(error)
        }
        guard let kv else {
            let refs = requiring.map { "\($0.kind.rawValue)/\($0.id)" }.joined(separator: ", ")
            throw StoreError(
                .conflict,
                refs.isEmpty
                    ? "\(kind.rawValue)/\(id) was modified concurrently (expected revision \(expectedModifiedIndex ?? 0))"
                    : "\(kind.rawValue)/\(id) was modified concurrently, or one of \(refs) was deleted")
        }
        return StoreEntry(kind: kind, id: id, value: value, createdIndex: kv.createRevision, modifiedIndex: kv.modRevision)
    }

    public func delete(kind: ResourceKind, id: String) async throws -> Int64? {
        do {
            return try await client.delete(key(kind, id))
        } catch {
            throw Self.storeError(error)
        }
    }

    /// Ids for POST, from etcd's revision: increasing and unique across replicas' writes.
    public func nextID() async throws -> String {
        let revision: Int64
        do {
            revision = try await client.revision()
        } catch {
            throw Self.storeError(error)
        }
        guard revision < Int64.max else { throw StoreError(.corrupt, "etcd's revision is at its maximum") }
        let digits = String(revision + 1)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits
    }

    static func storeError(_ error: Error) -> StoreError {
        if let e = error as? EtcdError {
            switch e.code {
            case .unavailable: return StoreError(.unavailable, e.message)
            default: return StoreError(.corrupt, e.message)
            }
        }
        return StoreError(.unavailable, "\(error)")
    }
}
