import SluiceCore

/// Keeps a local copy of a collection and reports its changes: a (paged) list, then a
/// watch from the list's resourceVersion with bookmarks; on 410 Gone a fresh list is
/// diffed against the copy, so objects that still exist are never reported deleted and
/// nothing that changed meanwhile is missed; on a lost connection the watch resumes from
/// the last resourceVersion seen, with backoff. resourceVersions are compared for equality
/// only, never ordered.
public actor Informer {
    public enum Event: Sendable {
        case added(JSONValue)
        case updated(old: JSONValue, new: JSONValue)
        case deleted(JSONValue)
    }

    public let api: KubeAPI
    public let resource: KubeResource
    public let labelSelector: String?
    public let pageSize: Int
    public private(set) var cache: [String: JSONValue] = [:]
    public private(set) var resourceVersion = ""
    /// Lists after the first one (after 410 Gone).
    public private(set) var relists = 0
    /// Watches started (the first, and each resume).
    public private(set) var watches = 0
    private var synced = false

    public init(api: KubeAPI, resource: KubeResource, labelSelector: String? = nil, pageSize: Int = 500) {
        self.api = api
        self.resource = resource
        self.labelSelector = labelSelector
        self.pageSize = pageSize
    }

    public var hasSynced: Bool { synced }

    static func key(_ o: JSONValue) -> String {
        "\(o["metadata"]?["namespace"]?.stringValue ?? "")/\(o["metadata"]?["name"]?.stringValue ?? "")"
    }

    static func rv(_ o: JSONValue) -> String { o["metadata"]?["resourceVersion"]?.stringValue ?? "" }

    /// Runs until the task is cancelled, calling `handler` for every change in order.
    public func run(_ handler: @Sendable (Event) async -> Void) async {
        var needList = true
        var backoffMs: UInt64 = 100
        while !Task.isCancelled {
            do {
                if needList {
                    try await relist(handler)
                    needList = false
                }
                watches += 1
                var gone = false
                for try await event in api.watch(resource, resourceVersion: resourceVersion, labelSelector: labelSelector) {
                    backoffMs = 100
                    switch event {
                    case .added(let o), .modified(let o):
                        let k = Self.key(o)
                        let old = cache[k]
                        cache[k] = o
                        resourceVersion = Self.rv(o)
                        if let old { await handler(.updated(old: old, new: o)) } else { await handler(.added(o)) }
                    case .deleted(let o):
                        let k = Self.key(o)
                        resourceVersion = Self.rv(o)
                        if let old = cache.removeValue(forKey: k) { await handler(.deleted(old)) }
                    case .bookmark(let rv):
                        if !rv.isEmpty { resourceVersion = rv }
                    case .error(let e):
                        if e.isGone { gone = true }
                    }
                    if gone { break }
                }
                if gone { needList = true }
                continue  // a watch that ended normally is resumed at once
            } catch let e as KubeAPIError where e.isGone {
                needList = true
                continue
            } catch {
                try? await Task.sleep(nanoseconds: backoffMs * 1_000_000)
                backoffMs = min(backoffMs * 2, 5_000)
            }
        }
    }

    /// Lists everything (page by page) and reports the difference to the cache.
    private func relist(_ handler: @Sendable (Event) async -> Void) async throws {
        var listed: [String: JSONValue] = [:]
        var token: String? = nil
        var listRV = ""
        var done = false
        while !done {
            let page: (items: [JSONValue], resourceVersion: String, continue: String?)
            do {
                page = try await api.list(resource, labelSelector: labelSelector, limit: pageSize, continue: token)
            } catch let e as KubeAPIError where e.isGone && token != nil {
                // The continue token expired mid-list: start the list over.
                listed = [:]
                token = nil
                continue
            }
            for item in page.items { listed[Self.key(item)] = item }
            listRV = page.resourceVersion
            token = page.continue
            done = token == nil
        }
        if synced { relists += 1 }
        for (k, o) in listed {
            if let old = cache[k] {
                if Self.rv(old) != Self.rv(o) { await handler(.updated(old: old, new: o)) }
            } else {
                await handler(.added(o))
            }
        }
        for (k, old) in cache where listed[k] == nil { await handler(.deleted(old)) }
        cache = listed
        resourceVersion = listRV
        synced = true
    }
}
