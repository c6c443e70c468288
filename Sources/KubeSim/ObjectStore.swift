import SluiceCore

/// Which collection an object belongs to: `apps/v1 deployments`, `v1 services` (core group "").
public struct ResourceType: Sendable, Hashable, CustomStringConvertible {
    public var group: String
    public var version: String
    public var plural: String
    public var kind: String
    public var namespaced: Bool
    public var shortNames: [String]

    public init(group: String, version: String, plural: String, kind: String, namespaced: Bool = true, shortNames: [String] = []) {
        self.group = group
        self.version = version
        self.plural = plural
        self.kind = kind
        self.namespaced = namespaced
        self.shortNames = shortNames
    }

    public var apiVersion: String { group.isEmpty ? version : "\(group)/\(version)" }
    public var description: String { "\(plural).\(apiVersion)" }
}

/// A change as a watch delivers it.
public struct WatchEvent: Sendable {
    public enum Kind: String, Sendable { case ADDED, MODIFIED, DELETED, BOOKMARK }
    public var type: Kind
    public var object: JSONValue
    public var resourceVersion: Int64
    /// The object before a MODIFIED change: a watch with a selector sees an object that
    /// starts matching as ADDED and one that stops matching as DELETED.
    public var previous: JSONValue?

    public init(type: Kind, object: JSONValue, resourceVersion: Int64, previous: JSONValue? = nil) {
        self.type = type
        self.object = object
        self.resourceVersion = resourceVersion
        self.previous = previous
    }

    /// This event as a watch on `namespace` with these selectors sees it, or nil.
    public func seen(namespace: String?, selector: LabelSelector, fields: FieldSelector) -> WatchEvent? {
        func matches(_ o: JSONValue) -> Bool {
            let meta = o["metadata"]
            if let namespace, meta?["namespace"]?.stringValue != namespace { return false }
            return selector.matches(meta?["labels"]?.objectValue?.compactMapValues(\.stringValue) ?? [:]) && fields.matches(o)
        }
        let now = matches(object)
        guard type == .MODIFIED, let previous else { return now ? self : nil }
        switch (matches(previous), now) {
        case (true, true): return self
        case (false, true): return WatchEvent(type: .ADDED, object: object, resourceVersion: resourceVersion)
        case (true, false): return WatchEvent(type: .DELETED, object: object, resourceVersion: resourceVersion)
        case (false, false): return nil
        }
    }
}

/// What the simulated API server answers when a request cannot be served, with the HTTP
/// status and `reason` of a Kubernetes `Status`.
public struct APIError: Error, Sendable, CustomStringConvertible {
    public var code: Int
    public var reason: String
    public var message: String
    public var description: String { "\(code) \(reason): \(message)" }

    public init(code: Int, reason: String, message: String) {
        self.code = code
        self.reason = reason
        self.message = message
    }

    static func notFound(_ what: String) -> APIError { APIError(code: 404, reason: "NotFound", message: "\(what) not found") }
    static func alreadyExists(_ what: String) -> APIError { APIError(code: 409, reason: "AlreadyExists", message: "\(what) already exists") }
    static func conflict(_ what: String) -> APIError {
        APIError(code: 409, reason: "Conflict", message: "Operation cannot be fulfilled on \(what): the object has been modified; please apply your changes to the latest version and try again")
    }
    static func gone(_ rv: Int64, oldest: Int64) -> APIError {
        APIError(code: 410, reason: "Expired", message: "too old resource version: \(rv) (\(oldest))")
    }
    static func invalid(_ message: String) -> APIError { APIError(code: 422, reason: "Invalid", message: message) }
}

/// The storage of the Kubernetes API simulator: objects by resource type, one global
/// resourceVersion (a counter shown as an opaque string), and a bounded history of changes
/// from which watches resume. A watch or a continued list older than the history is
/// answered `410 Gone`, as the real API server does after etcd compaction.
public struct ObjectStore: Sendable {
    private var objects: [ResourceType: [String: JSONValue]] = [:]
    private var history: [(type: ResourceType, event: WatchEvent)] = []
    public private(set) var resourceVersion: Int64 = 1
    /// The oldest resourceVersion a watch can start from: the history holds every change
    /// after it.
    public private(set) var oldestWatchable: Int64 = 1
    public var historyLimit: Int
    private var uidCounter = 0

    public init(historyLimit: Int = 10_000) { self.historyLimit = historyLimit }

    static func key(_ namespace: String?, _ name: String) -> String { "\(namespace ?? "")/\(name)" }

    public func get(_ type: ResourceType, namespace: String?, name: String) throws(APIError) -> JSONValue {
        guard let o = objects[type]?[Self.key(namespace, name)] else { throw .notFound("\(type.plural) \"\(name)\"") }
        return o
    }

    public mutating func create(_ type: ResourceType, namespace: String?, _ object: JSONValue) throws(APIError) -> JSONValue {
        guard case .object(var o) = object, case .object(var meta)? = o["metadata"] ?? .object([:]) else {
            throw .invalid("the object must be a JSON object with metadata")
        }
        var name = meta["name"]?.stringValue ?? ""
        if name.isEmpty, let prefix = meta["generateName"]?.stringValue {
            uidCounter += 1
            name = prefix + String(uidCounter, radix: 36)
        }
        guard !name.isEmpty else { throw .invalid("metadata.name: Required value") }
        let key = Self.key(type.namespaced ? namespace : nil, name)
        if objects[type]?[key] != nil { throw .alreadyExists("\(type.plural) \"\(name)\"") }
        resourceVersion += 1
        uidCounter += 1
        meta["name"] = .string(name)
        if type.namespaced { meta["namespace"] = .string(namespace ?? "default") }
        meta["uid"] = .string("00000000-0000-4000-8000-\(String(repeating: "0", count: max(0, 12 - String(uidCounter).count)))\(uidCounter)")
        meta["resourceVersion"] = .string(String(resourceVersion))
        meta["generation"] = .int(1)
        meta["creationTimestamp"] = .string("2026-01-01T00:00:00Z")
        o["metadata"] = .object(meta)
        o["apiVersion"] = .string(type.apiVersion)
        o["kind"] = .string(type.kind)
        let stored = JSONValue.object(o)
        objects[type, default: [:]][key] = stored
        record(type, .ADDED, stored)
        return stored
    }

    /// Replaces an object. A `metadata.resourceVersion` in the new object must equal the
    /// stored one (optimistic concurrency); `generation` moves when `spec` changes.
    public mutating func update(_ type: ResourceType, namespace: String?, name: String, _ object: JSONValue) throws(APIError) -> JSONValue {
        let key = Self.key(type.namespaced ? namespace : nil, name)
        guard let old = objects[type]?[key], case .object(let oldObject) = old, case .object(let oldMeta)? = oldObject["metadata"] else {
            throw .notFound("\(type.plural) \"\(name)\"")
        }
        guard case .object(var o) = object else { throw .invalid("the object must be a JSON object") }
        var meta = o["metadata"]?.objectValue ?? [:]
        if let rv = meta["resourceVersion"]?.stringValue, rv != oldMeta["resourceVersion"]?.stringValue {
            throw .conflict("\(type.plural) \"\(name)\"")
        }
        resourceVersion += 1
        for k in ["name", "namespace", "uid", "creationTimestamp"] { meta[k] = oldMeta[k] }
        if type.hasStatusSubresource {
            // status is written through /status only.
            o["status"] = oldObject["status"]
            if o["status"] == nil { o.removeValue(forKey: "status") }
        }
        let generation = oldMeta["generation"]?.intValue ?? 1
        meta["generation"] = .int(o["spec"] != oldObject["spec"] ? generation + 1 : generation)
        meta["resourceVersion"] = .string(String(resourceVersion))
        o["metadata"] = .object(meta)
        o["apiVersion"] = .string(type.apiVersion)
        o["kind"] = .string(type.kind)
        let stored = JSONValue.object(o)
        objects[type, default: [:]][key] = stored
        record(type, .MODIFIED, stored, previous: old)
        return stored
    }

    /// Writes the status subresource: the stored object with `status` taken from `object`;
    /// a `metadata.resourceVersion` in `object` must be current. `generation` does not move.
    public mutating func updateStatus(_ type: ResourceType, namespace: String?, name: String, _ object: JSONValue) throws(APIError) -> JSONValue {
        guard type.hasStatusSubresource else { throw APIError(code: 404, reason: "NotFound", message: "\(type.plural) have no status subresource") }
        let key = Self.key(type.namespaced ? namespace : nil, name)
        guard let old = objects[type]?[key], case .object(var o) = old, case .object(var meta)? = o["metadata"] else {
            throw .notFound("\(type.plural) \"\(name)\"")
        }
        if let rv = object["metadata"]?["resourceVersion"]?.stringValue, rv != meta["resourceVersion"]?.stringValue {
            throw .conflict("\(type.plural) \"\(name)\"")
        }
        resourceVersion += 1
        o["status"] = object["status"]
        if o["status"] == nil { o.removeValue(forKey: "status") }
        meta["resourceVersion"] = .string(String(resourceVersion))
        o["metadata"] = .object(meta)
        let stored = JSONValue.object(o)
        objects[type, default: [:]][key] = stored
        record(type, .MODIFIED, stored, previous: old)
        return stored
    }

    public mutating func mergePatchStatus(_ type: ResourceType, namespace: String?, name: String, _ patch: JSONValue) throws(APIError) -> JSONValue {
        let current = try get(type, namespace: namespace, name: name)
        var merged = current.mergePatched(with: patch)
        if patch["metadata"]?["resourceVersion"] == nil, case .object(var o) = merged, case .object(var m)? = o["metadata"] {
            m["resourceVersion"] = current["metadata"]?["resourceVersion"]
            o["metadata"] = .object(m)
            merged = .object(o)
        }
        return try updateStatus(type, namespace: namespace, name: name, merged)
    }

    /// JSON patch (RFC 6902, `application/json-patch+json`); a `test` that fails is a 422.
    public mutating func jsonPatch(_ type: ResourceType, namespace: String?, name: String, _ patch: JSONValue) throws(APIError) -> JSONValue {
        let current = try get(type, namespace: namespace, name: name)
        let patched: JSONValue
        do throws(JSONPatchError) {
            patched = try current.applyingJSONPatch(patch)
        } catch {
            throw .invalid("the JSON patch cannot be applied: \(error)")
        }
        return try update(type, namespace: namespace, name: name, patched)
    }

    /// JSON merge patch (RFC 7386, `application/merge-patch+json`).
    public mutating func mergePatch(_ type: ResourceType, namespace: String?, name: String, _ patch: JSONValue) throws(APIError) -> JSONValue {
        let current = try get(type, namespace: namespace, name: name)
        var merged = current.mergePatched(with: patch)
        // A patch never carries a stale resourceVersion precondition unless it names one.
        if patch["metadata"]?["resourceVersion"] == nil, case .object(var o) = merged, case .object(var m)? = o["metadata"] {
            m["resourceVersion"] = current["metadata"]?["resourceVersion"]
            o["metadata"] = .object(m)
            merged = .object(o)
        }
        return try update(type, namespace: namespace, name: name, merged)
    }

    public mutating func delete(_ type: ResourceType, namespace: String?, name: String) throws(APIError) -> JSONValue {
        let key = Self.key(type.namespaced ? namespace : nil, name)
        guard let old = objects[type]?.removeValue(forKey: key) else { throw .notFound("\(type.plural) \"\(name)\"") }
        resourceVersion += 1
        var final = old
        if case .object(var o) = old, case .object(var m)? = o["metadata"] {
            m["resourceVersion"] = .string(String(resourceVersion))
            o["metadata"] = .object(m)
            final = .object(o)
        }
        record(type, .DELETED, final)
        return final
    }

    private mutating func record(_ type: ResourceType, _ kind: WatchEvent.Kind, _ object: JSONValue, previous: JSONValue? = nil) {
        history.append((type, WatchEvent(type: kind, object: object, resourceVersion: resourceVersion, previous: previous)))
        if history.count > historyLimit {
            let drop = history.count - historyLimit
            oldestWatchable = history[drop - 1].event.resourceVersion
            history.removeFirst(drop)
        }
    }

    /// Forgets history up to now: watches from any earlier resourceVersion get 410.
    public mutating func compact() {
        history.removeAll()
        oldestWatchable = resourceVersion
    }

    /// One page of a list, sorted by namespace/name, with the list's resourceVersion and a
    /// continue token when more remain.
    public func list(
        _ type: ResourceType, namespace: String?, selector: LabelSelector = .everything, fields: FieldSelector = .everything, limit: Int? = nil,
        continue token: String? = nil
    ) throws(APIError) -> (items: [JSONValue], resourceVersion: Int64, continue: String?) {
        var after = ""
        var listRV = resourceVersion
        if let token, !token.isEmpty {
            let parts = token.split(separator: "|", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, let rv = Int64(parts[0]) else { throw .invalid("invalid continue token") }
            // The real server serves a continued list from the same etcd snapshot; this one pages
            // through current objects, and answers 410 once that snapshot's revision left the
            // history, as the real one does after compaction.
            if rv < oldestWatchable { throw .gone(rv, oldest: oldestWatchable) }
            after = String(parts[1])
            listRV = rv
        }
        let all = (objects[type] ?? [:])
            .filter { key, value in
                (namespace == nil || key.hasPrefix("\(namespace!)/")) && key > after
                    && selector.matches(value["metadata"]?["labels"]?.objectValue?.compactMapValues(\.stringValue) ?? [:])
                    && fields.matches(value)
            }
            .sorted { $0.key < $1.key }
        if let limit, limit > 0, all.count > limit {
            let page = all.prefix(limit)
            return (page.map(\.value), listRV, "\(listRV)|\(page.last!.key)")
        }
        return (all.map(\.value), listRV, nil)
    }

    /// Every change after `since`, of any type (the last few entries of the history).
    public func recentEvents(since: Int64) -> [(type: ResourceType, event: WatchEvent)] {
        var i = history.count
        while i > 0 && history[i - 1].event.resourceVersion > since { i -= 1 }
        return Array(history[i...])
    }

    /// Changes after `since` for `type` (and `namespace`, `selector`), oldest first.
    public func events(
        _ type: ResourceType, namespace: String?, selector: LabelSelector = .everything, fields: FieldSelector = .everything, since: Int64
    ) throws(APIError) -> [WatchEvent] {
        // The history holds every change after `oldestWatchable`.
        if since < oldestWatchable { throw .gone(since, oldest: oldestWatchable) }
        return history.compactMap { entry in
            guard entry.type == type, entry.event.resourceVersion > since else { return nil }
            return entry.event.seen(namespace: namespace, selector: selector, fields: fields)
        }
    }
}
