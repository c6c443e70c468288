import SluiceCore

/// Keeps a local copy of a collection and reports its changes: a (paged) list, then a
/// watch from the list's resourceVersion with bookmarks; on 410 Gone a fresh list is
/// diffed against the copy, so objects that still exist are never reported deleted and
/// nothing that changed meanwhile is missed; on a lost connection the watch resumes from
/// the last resourceVersion seen, with backoff. resourceVersions are compared for equality
/// only, never ordered.
///
/// With `watchList`, the initial state comes from one watch with `sendInitialEvents`
/// instead of a list (the API server streams it, the client holds no full list response);
/// a server that refuses it gets a plain list instead.
///
/// Indexes keep the cache searchable by a derived value, e.g. EndpointSlices by the
/// `kubernetes.io/service-name` label, so a consumer reads one Service's slices without
/// scanning all of them.
///
/// `retain` says what the cache keeps of each object (by default all of it). A consumer that
/// keeps its own decoded copy, or that needs only some objects (Secrets), passes
/// `Informer.stub`: the cache then holds only what diffing needs (key, resourceVersion,
/// labels), while the handler still gets every added and updated object whole; `old`
/// values and deletions carry what was retained. A list is applied page by page, so a list
/// never holds more than one page of whole objects either.
public actor Informer {
    public enum Event: Sendable {
        case added(JSONValue)
        case updated(old: JSONValue, new: JSONValue)
        case deleted(JSONValue)
    }

    /// Values an object is indexed under (none: not indexed).
    public typealias IndexFunction = @Sendable (JSONValue) -> [String]

    public let api: KubeAPI
    public let resource: KubeResource
    public let selector: KubeSelector
    public let pageSize: Int
    public let watchList: Bool
    /// A resource the server does not serve (404 on list: a CRD that is not installed)
    /// counts as listed and empty, and is looked for again every `missingRetry`.
    public let missingIsEmpty: Bool
    public let missingRetry: Duration
    /// The last list found the resource missing.
    public private(set) var isMissing = false
    public private(set) var cache: [String: JSONValue] = [:]
    public private(set) var resourceVersion = ""
    /// Lists after the first one (after 410 Gone).
    public private(set) var relists = 0
    /// Watches started (the first, and each resume).
    public private(set) var watches = 0
    /// Initial states that came from a WatchList stream rather than a list.
    public private(set) var watchListSyncs = 0
    private var synced = false
    private var watchListRefused = false
    private let indexers: [String: IndexFunction]
    private let retain: (@Sendable (JSONValue) -> JSONValue)?
    /// index name → value → object keys.
    private var indexes: [String: [String: Set<String>]] = [:]

    public init(
        api: KubeAPI, resource: KubeResource, selector: KubeSelector = .everything, pageSize: Int = 500, watchList: Bool = false,
        indexers: [String: IndexFunction] = [:], missingIsEmpty: Bool = false, missingRetry: Duration = .seconds(30),
        retain: (@Sendable (JSONValue) -> JSONValue)? = nil
    ) {
        self.api = api
        self.retain = retain
        self.missingIsEmpty = missingIsEmpty
        self.missingRetry = missingRetry
        self.resource = resource
        self.selector = selector
        self.pageSize = pageSize
        self.watchList = watchList
        self.indexers = indexers
        for name in indexers.keys { indexes[name] = [:] }
    }

    /// An index of objects by one label's value.
    public static func labelIndex(_ label: String) -> IndexFunction {
        { o in o["metadata"]?["labels"]?[label]?.stringValue.map { [$0] } ?? [] }
    }

    public var hasSynced: Bool { synced }

    /// What `retain` keeps for a consumer that holds its own copy: `metadata.name`,
    /// `namespace`, `uid`, `resourceVersion`, `generation` and `labels`, and a Secret's `type`.
    /// No `data`, no `spec`, no `status`.
    public static let stub: @Sendable (JSONValue) -> JSONValue = { o in
        var meta: [String: JSONValue] = [:]
        for k in ["name", "namespace", "uid", "resourceVersion", "generation", "labels"] {
            if let v = o["metadata"]?[k] { meta[k] = v }
        }
        var out: [String: JSONValue] = ["metadata": .object(meta)]
        if let t = o["type"], case .string = t { out["type"] = t }
        return .object(out)
    }

    public static func key(_ o: JSONValue) -> String {
        "\(o["metadata"]?["namespace"]?.stringValue ?? "")/\(o["metadata"]?["name"]?.stringValue ?? "")"
    }

    static func rv(_ o: JSONValue) -> String { o["metadata"]?["resourceVersion"]?.stringValue ?? "" }

    /// The cached objects whose index `name` has `value`, e.g.
    /// `byIndex("service", "default/httpbin")`.
    public func byIndex(_ name: String, _ value: String) -> [JSONValue] {
        guard let keys = indexes[name]?[value] else { return [] }
        return keys.compactMap { cache[$0] }
    }

    /// The values index `name` currently has objects under.
    public func indexValues(_ name: String) -> [String] { indexes[name].map { Array($0.keys) } ?? [] }

    private func store(_ key: String, _ given: JSONValue?) {
        let old = cache[key]
        let new = given.map { retain?($0) ?? $0 }
        if let new { cache[key] = new } else { cache.removeValue(forKey: key) }
        guard !indexers.isEmpty else { return }
        for (name, f) in indexers {
            let before = old.map(f) ?? []
            let after = new.map(f) ?? []
            if before == after { continue }
            for v in before where !after.contains(v) {
                indexes[name]?[v]?.remove(key)
                if indexes[name]?[v]?.isEmpty == true { indexes[name]?[v] = nil }
            }
            for v in after { indexes[name, default: [:]][v, default: []].insert(key) }
        }
    }

    /// Runs until the task is cancelled, calling `handler` for every change in order.
    public func run(_ handler: @Sendable (Event) async -> Void) async {
        var needList = true
        var backoffMs: UInt64 = 100
        while !Task.isCancelled {
            do {
                if needList {
                    if watchList && !watchListRefused, var rest = try await streamInitialState(handler) {
                        // The WatchList stream carries on as the watch after its initial state.
                        needList = false
                        if try await follow(&rest, handler, onEvent: { backoffMs = 100 }) { needList = true }
                        continue
                    }
                    try await relist(handler)
                    needList = false
                }
                watches += 1
                // The server ends each watch after 5-10 minutes (a random length, as client-go
                // asks), so a connection that died without a FIN is replaced in bounded time.
                var events = api.watch(resource, resourceVersion: resourceVersion, selector: selector, timeoutSeconds: Int.random(in: 300...600))
                    .makeAsyncIterator()
                let gone = try await follow(&events, handler) { backoffMs = 100 }
                if gone { needList = true }
                continue  // a watch that ended normally is resumed at once
            } catch let e as KubeAPIError where e.isGone {
                needList = true
                continue
            } catch let e as KubeAPIError where e.code == 404 && missingIsEmpty && needList {
                // Not served: nothing of it exists. Look again later (the CRD may be installed).
                if !isMissing || !synced { await applyInitialState([:], resourceVersion: "", handler) }
                isMissing = true
                try? await Task.sleep(for: missingRetry)
                continue
            } catch {
                try? await Task.sleep(nanoseconds: backoffMs * 1_000_000)
                backoffMs = min(backoffMs * 2, 5_000)
            }
        }
    }

    /// Applies a watch's events to the cache until it ends; true when it ended with 410 Gone.
    private func follow(
        _ events: inout AsyncThrowingStream<KubeWatchEvent, Error>.Iterator, _ handler: @Sendable (Event) async -> Void, onEvent: () -> Void
    ) async throws -> Bool {
        while let event = try await events.next(isolation: #isolation) {
            onEvent()
            if await receive(event, handler) { return true }
        }
        return false
    }

    /// Applies one watch event to the cache and reports it; true for 410 Gone.
    func receive(_ event: KubeWatchEvent, _ handler: @Sendable (Event) async -> Void) async -> Bool {
        switch event {
        case .added(let o), .modified(let o):
            let k = Self.key(o)
            let old = cache[k]
            store(k, o)
            resourceVersion = Self.rv(o)
            if let old { await handler(.updated(old: old, new: o)) } else { await handler(.added(o)) }
        case .deleted(let o):
            let k = Self.key(o)
            resourceVersion = Self.rv(o)
            if let old = cache[k] {
                store(k, nil)
                await handler(.deleted(old))
            }
        case .bookmark(let rv, _):
            if !rv.isEmpty { resourceVersion = rv }
        case .error(let e):
            if e.isGone { return true }
        }
        return false
    }

    /// The initial state from a WatchList stream, diffed against the cache like a list;
    /// returns the rest of the stream, to be followed as the watch. nil when the server
    /// refused WatchList (the caller lists instead).
    private func streamInitialState(_ handler: @Sendable (Event) async -> Void) async throws -> AsyncThrowingStream<KubeWatchEvent, Error>.Iterator? {
        var listed = Set<String>()
        var listRV = ""
        watches += 1
        var iterator = api.watch(resource, resourceVersion: "", selector: selector, sendInitialEvents: true).makeAsyncIterator()
        do {
            initial: while let event = try await iterator.next(isolation: #isolation) {
                switch event {
                case .added(let o), .modified(let o):
                    listed.insert(Self.key(o))
                    await applyListed(o, handler)
                case .deleted(let o):
                    let k = Self.key(o)
                    listed.remove(k)
                    if let old = cache[k] {
                        store(k, nil)
                        await handler(.deleted(old))
                    }
                case .bookmark(let rv, let end):
                    if end {
                        listRV = rv
                        break initial
                    }
                case .error(let e):
                    if e.isGone { throw e }
                    watchListRefused = true
                    return nil
                }
            }
        } catch let e as KubeAPIError where (400..<500).contains(e.code) && e.code != 410 {
            watchListRefused = true  // e.g. 400/422 from a server without WatchList
            return nil
        }
        guard !listRV.isEmpty else {
            // The stream ended before the initial state was complete: a server that ignored
            // sendInitialEvents never marks its end.
            watchListRefused = true
            return nil
        }
        await finishInitialState(listed, resourceVersion: listRV, handler)
        watchListSyncs += 1
        return iterator
    }

    /// Lists everything (page by page) and reports the difference to the cache.
    private func relist(_ handler: @Sendable (Event) async -> Void) async throws {
        // Each page is applied as it arrives (adds and updates reported at once); what the
        // list no longer has is reported deleted at its end.
        var listed = Set<String>()
        var token: String? = nil
        var listRV = ""
        var done = false
        while !done {
            let page: (items: [JSONValue], resourceVersion: String, continue: String?)
            do {
                page = try await api.list(resource, selector: selector, limit: pageSize, continue: token)
            } catch let e as KubeAPIError where e.isGone && token != nil {
                // The continue token expired mid-list: start the list over (what was
                // applied from the first pages is compared again, so nothing is lost).
                listed = []
                token = nil
                continue
            }
            for item in page.items {
                listed.insert(Self.key(item))
                await applyListed(item, handler)
            }
            listRV = page.resourceVersion
            token = page.continue
            done = token == nil
        }
        isMissing = false
        await finishInitialState(listed, resourceVersion: listRV, handler)
    }

    /// One object of a list (or of a WatchList's initial state), compared with the cache.
    private func applyListed(_ o: JSONValue, _ handler: @Sendable (Event) async -> Void) async {
        let k = Self.key(o)
        if let old = cache[k] {
            if Self.rv(old) != Self.rv(o) {
                store(k, o)
                await handler(.updated(old: old, new: o))
            }
        } else {
            store(k, o)
            await handler(.added(o))
        }
    }

    /// The end of a list: what the cache has and the list had not is gone.
    private func finishInitialState(_ listed: Set<String>, resourceVersion listRV: String, _ handler: @Sendable (Event) async -> Void) async {
        if synced { relists += 1 }
        for (k, old) in cache where !listed.contains(k) {
            store(k, nil)
            await handler(.deleted(old))
        }
        resourceVersion = listRV
        synced = true
    }

    /// A CRD that is not served: everything cached is gone.
    private func applyInitialState(_ listed: [String: JSONValue], resourceVersion listRV: String, _ handler: @Sendable (Event) async -> Void) async {
        for o in listed.values { await applyListed(o, handler) }
        await finishInitialState(Set(listed.keys), resourceVersion: listRV, handler)
    }
}
