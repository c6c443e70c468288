import Synchronization
import NIOCore
import NIOHTTP1
import SluiceCore

/// What a plugin's rewrite or access phase decides.
public enum PluginAction: Sendable {
    /// Go on with the next plugin.
    case next
    /// End the request here with this response; the upstream is not contacted.
    case respond(PluginReply)
    /// Wait this long (limit-req, limit-conn, fault-injection), then answer with `then`, or
    /// go on with the next plugin. The request's body waits in the gateway meanwhile.
    case delay(nanoseconds: UInt64, then: PluginReply? = nil)
    /// Decide when this completes (a call to Redis); the proxy waits without blocking its
    /// event loop. The decision's action must not itself be `.wait`.
    case wait(EventLoopFuture<PluginDecision>)
}

/// What an asynchronous plugin decided, with the response headers it adds (applied on the
/// request's own event loop).
public struct PluginDecision: Sendable {
    public var action: PluginAction
    public var responseHeaders: [(String, String)]
    public init(_ action: PluginAction, responseHeaders: [(String, String)] = []) {
        self.action = action
        self.responseHeaders = responseHeaders
    }
}

/// A response a plugin gives instead of the upstream's.
public struct PluginReply: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(String, String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// `{"message":"..."}` and a newline: APISIX's authentication rejections, byte for byte
    /// (its JSON answers end with a newline, and clients comparing bodies notice).
    public static func message(_ status: Int, _ text: String, headers: [(String, String)] = []) -> PluginReply {
        PluginReply(status: status, headers: [("Content-Type", "application/json")] + headers, body: line(["message": .string(text)]))
    }

    /// `{"error_msg":"..."}` and a newline when a message is configured, else an empty body.
    public static func errorMessage(_ status: Int, _ text: String?) -> PluginReply {
        guard let text else { return PluginReply(status: status) }
        return PluginReply(status: status, headers: [("Content-Type", "application/json")], body: line(["error_msg": .string(text)]))
    }

    private static func line(_ object: JSONValue) -> [UInt8] {
        var bytes = object.serializedBytes()
        bytes.append(0x0A)
        return bytes
    }
}

/// The response as the header filters see and change it.
public struct PluginResponse {
    public var status: Int
    public var headers: HTTPHeaders
    /// Set by a filter that rewrites the body (response-rewrite, echo). The proxy then
    /// drops Content-Length and passes the upstream body through `transformBody`.
    public var bodyRewritten = false
    /// Set with `bodyRewritten` when the new body does not depend on the upstream's: the
    /// proxy then discards the upstream body instead of collecting it.
    public var upstreamBodyUnused = false

    public init(status: Int, headers: HTTPHeaders) {
        self.status = status
        self.headers = headers
    }
}

/// What the log phase learns about the finished exchange.
public struct PluginLogInfo: Sendable {
    public var status: Int
    public var upstreamStatus: Int?
    public var latencyNanos: UInt64
    public var upstreamLatencyNanos: UInt64?
    public var requestBytes: Int
    public var responseBytes: Int
    public var node: String?

    public init(status: Int, upstreamStatus: Int?, latencyNanos: UInt64, upstreamLatencyNanos: UInt64?, requestBytes: Int, responseBytes: Int, node: String?) {
        self.status = status
        self.upstreamStatus = upstreamStatus
        self.latencyNanos = latencyNanos
        self.upstreamLatencyNanos = upstreamLatencyNanos
        self.requestBytes = requestBytes
        self.responseBytes = responseBytes
        self.node = node
    }
}

/// A running plugin: one instance per config per snapshot (its config compiled once), shared
/// by every event loop, so it holds no per-request state; that lives in the request
/// context. Every phase has a default that does nothing.
public protocol HTTPPlugin: AnyObject, Sendable {
    static var name: String { get }
    var name: String { get }
    func rewrite(_ r: PluginRequest) -> PluginAction
    func access(_ r: PluginRequest) -> PluginAction
    func headerFilter(_ r: PluginRequest, _ response: inout PluginResponse)
    /// The whole upstream body (when `bodyRewritten` was set), returned changed.
    func transformBody(_ r: PluginRequest, _ body: [UInt8]) -> [UInt8]
    func log(_ r: PluginRequest, _ info: PluginLogInfo)
    /// Whether `headerFilter`, `transformBody` or `log` do anything (the proxy skips the
    /// response side for chains where none does).
    var hasResponsePhases: Bool { get }
    var hasLogPhase: Bool { get }
}

extension HTTPPlugin {
    public var name: String { Self.name }
    public func rewrite(_ r: PluginRequest) -> PluginAction { .next }
    public func access(_ r: PluginRequest) -> PluginAction { .next }
    public func headerFilter(_ r: PluginRequest, _ response: inout PluginResponse) {}
    public func transformBody(_ r: PluginRequest, _ body: [UInt8]) -> [UInt8] { body }
    public func log(_ r: PluginRequest, _ info: PluginLogInfo) {}
    public var hasResponsePhases: Bool { false }
    public var hasLogPhase: Bool { false }
}

/// One plugin of a chain, with its `_meta`.
public struct ChainEntry: Sendable {
    public let plugin: any HTTPPlugin
    public let priority: Int
    public let filter: VarsExpression?
    public let errorResponse: JSONValue?
    /// The config came from a consumer (runs after authentication, auth plugins excluded).
    public let fromConsumer: Bool
}

/// The plugins of one route (service, plugin_config and route merged) or one global
/// rule, sorted by descending priority. Built once per snapshot.
public final class PluginChain: Sendable {
    public let entries: [ChainEntry]
    public let hasResponsePhases: Bool
    public let hasLogPhase: Bool
    /// The configs the chain was built from, by plugin name (for merging consumer plugins).
    public let configs: [String: JSONValue]

    public init(entries: [ChainEntry], configs: [String: JSONValue]) {
        self.entries = entries.sorted { $0.priority != $1.priority ? $0.priority > $1.priority : $0.plugin.name < $1.plugin.name }
        self.configs = configs
        self.hasResponsePhases = entries.contains { $0.plugin.hasResponsePhases }
        self.hasLogPhase = entries.contains { $0.plugin.hasLogPhase }
    }

    public var isEmpty: Bool { entries.isEmpty }
    public static let empty = PluginChain(entries: [], configs: [:])

    /// Whether the chain has the plugin `name`.
    public func contains(_ name: String) -> Bool { entries.contains { $0.plugin.name == name } }
}

/// Where a compiled plugin keeps state that must outlive a snapshot (rate-limit counters,
/// breaker state): keyed by the owning object and the plugin config, so that a route edit
/// that leaves the plugin's config alone keeps its counters. Read while compiling only.
public final class PluginStateStore: @unchecked Sendable {
    // Used by the snapshot compiler only, which runs one compile at a time.
    private var states: [String: AnyObject] = [:]
    private var used: Set<String> = []
    /// What plugins need to know of the gateway's listeners (redirect's https port).
    public let listeners = ListenerFacts()

    public init() {}

    /// The state for `key`, made by `make` the first time.
    public func state<T: AnyObject>(_ key: String, _ make: () -> T) -> T {
        used.insert(key)
        if let s = states[key] as? T { return s }
        let s = make()
        states[key] = s
        return s
    }

    /// Forgets the states no compile asked for since the previous `sweep` (their plugins
    /// are gone from the config; snapshots still in use keep their own references).
    public func sweep() {
        states = states.filter { used.contains($0.key) }
        used.removeAll(keepingCapacity: true)
    }

    public var count: Int { states.count }
}

/// Facts about the gateway's listeners, known once they are bound, read by plugins at
/// request time (an atomic load; no lock).
public final class ListenerFacts: Sendable {
    private let https = Atomic<Int>(0)
    public init() {}
    /// The first TLS listener's port, nil before it is bound or without one.
    public var httpsPort: Int? {
        let p = https.load(ordering: .relaxed)
        return p > 0 ? p : nil
    }
    public func setHTTPSPort(_ port: Int) { https.store(port, ordering: .relaxed) }
}

/// What compiling a plugin config needs besides the config.
public struct PluginCompileContext {
    /// `routes/1`, `services/2`, `global_rules/3`, `consumers/jack`: the owner of the config.
    public var owner: String
    public var state: PluginStateStore
    /// Where the prometheus plugin reports (nil: nowhere).
    public var metrics: HTTPMetrics?

    public init(owner: String, state: PluginStateStore, metrics: HTTPMetrics? = nil) {
        self.owner = owner
        self.state = state
        self.metrics = metrics
    }
}

/// Builds running plugins from validated configs.
public enum PluginFactory {
    typealias Make = @Sendable (JSONValue, inout PluginCompileContext) -> any HTTPPlugin

    static let makers: [String: Make] = {
        var m: [String: Make] = [:]
        m[KeyAuthPlugin.name] = { c, _ in KeyAuthPlugin(c) }
        m[BasicAuthPlugin.name] = { c, _ in BasicAuthPlugin(c) }
        m[JWTAuthPlugin.name] = { c, _ in JWTAuthPlugin(c) }
        m[ConsumerRestrictionPlugin.name] = { c, _ in ConsumerRestrictionPlugin(c) }
        m[IPRestrictionPlugin.name] = { c, _ in IPRestrictionPlugin(c) }
        m[URIBlockerPlugin.name] = { c, _ in URIBlockerPlugin(c) }
        m[CORSPlugin.name] = { c, _ in CORSPlugin(c) }
        m[RealIPPlugin.name] = { c, _ in RealIPPlugin(c) }
        m[ClientControlPlugin.name] = { c, _ in ClientControlPlugin(c) }
        m[RequestIDPlugin.name] = { c, _ in RequestIDPlugin(c) }
        m[FaultInjectionPlugin.name] = { c, _ in FaultInjectionPlugin(c) }
        m[MockingPlugin.name] = { c, _ in MockingPlugin(c) }
        m[ProxyRewritePlugin.name] = { c, _ in ProxyRewritePlugin(c) }
        m[RedirectPlugin.name] = { c, ctx in RedirectPlugin(c, listeners: ctx.state.listeners) }
        m[ResponseRewritePlugin.name] = { c, _ in ResponseRewritePlugin(c) }
        m[EchoPlugin.name] = { c, _ in EchoPlugin(c) }
        m[LimitCountPlugin.name] = { c, ctx in LimitCountPlugin(c, ctx) }
        m[LimitReqPlugin.name] = { c, ctx in LimitReqPlugin(c, ctx) }
        m[LimitConnPlugin.name] = { c, ctx in LimitConnPlugin(c, ctx) }
        m[TrafficSplitPlugin.name] = { c, ctx in TrafficSplitPlugin(c, ctx) }
        m[APIBreakerPlugin.name] = { c, ctx in APIBreakerPlugin(c, ctx) }
        m[PrometheusPlugin.name] = { c, ctx in PrometheusPlugin(c, ctx) }
        return m
    }()

    /// The plugins this build runs.
    public static var available: Set<String> { Set(makers.keys) }

    /// A chain from validated configs (`_meta.disable`d ones left out).
    public static func chain(_ configs: [String: JSONValue], _ ctx: inout PluginCompileContext, fromConsumer: Bool = false) -> PluginChain {
        var entries: [ChainEntry] = []
        for (name, config) in configs.sorted(by: { $0.key < $1.key }) {
            guard let make = makers[name], let spec = PluginCatalog.all[name] else { continue }
            let meta = config["_meta"]
            if meta?["disable"] == true { continue }
            if fromConsumer && spec.isAuth { continue }  // a consumer's credentials, not a plugin to run
            let filter = meta?["filter"].flatMap { try? VarsExpression.parse($0, path: "") }
            let plugin = make(config, &ctx)
            entries.append(ChainEntry(
                plugin: plugin, priority: PluginLimits.int(meta?["priority"], Int(Int32.min)...Int(Int32.max), default: spec.priority), filter: filter,
                errorResponse: meta?["error_response"], fromConsumer: fromConsumer))
        }
        return PluginChain(entries: entries, configs: configs)
    }

    /// A stable text of a config, for state keys: equal configs give equal keys.
    static func fingerprint(_ config: JSONValue) -> String {
        var c = config
        if case .object(var o) = c {
            o.removeValue(forKey: "_meta")
            c = .object(o)
        }
        return String(StableHash.fnv1a(c.serializedBytes()), radix: 36)
    }
}

enum StableHash {
    static func fnv1a(_ bytes: [UInt8]) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes {
            h ^= UInt64(b)
            h &*= 0x0000_0100_0000_01B3
        }
        return h
    }
}

/// The plugins of one request, run in APISIX's order: each global rule's rewrite then
/// access; the route's rewrite; after authentication, the consumer's plugins merged over
/// the route's (consumer wins) and their rewrite; then access. The response phases run
/// global rules first, then the route's merged list.
public final class PluginRun {
    public enum Outcome {
        case done
        case respond(PluginReply)
        case delay(nanoseconds: UInt64, then: PluginReply?)
        /// Call `resume` with the future's result.
        case wait(EventLoopFuture<PluginDecision>)
    }

    enum Phase { case rewrite, access }

    public let request: PluginRequest
    let globals: [PluginChain]
    let route: PluginChain
    /// The route's entries, with a consumer's merged in once one authenticated.
    private(set) var effective: [ChainEntry]
    private var queue: [(ChainEntry, Phase)] = []
    private var position = 0
    private var consumerMerged = false
    private var logged = false
    private var waitingEntry: ChainEntry?

    public init(request: PluginRequest, route: PluginChain, globals: [PluginChain]) {
        self.request = request
        self.globals = globals
        self.route = route
        self.effective = route.entries
        for g in globals {
            for e in g.entries { queue.append((e, .rewrite)) }
            for e in g.entries { queue.append((e, .access)) }
        }
        for e in route.entries { queue.append((e, .rewrite)) }
    }

    /// Whether the response needs the plugins (header filters, body rewrites, headers they
    /// left for the response, or a log phase).
    public var hasResponseWork: Bool {
        !request.responseHeaders.isEmpty || globals.contains { $0.hasResponsePhases } || effective.contains { $0.plugin.hasResponsePhases }
    }

    private func passes(_ e: ChainEntry) -> Bool { e.filter?.evaluate(request) ?? true }

    /// Runs plugins until one answers or asks for a delay, or all have run. After a delay,
    /// call again to go on.
    public func advance() -> Outcome {
        while true {
            if position == queue.count {
                if consumerMerged { return .done }
                mergeConsumer()
                if position == queue.count { return .done }
            }
            let (entry, phase) = queue[position]
            position += 1
            guard passes(entry) else { continue }
            let action = phase == .rewrite ? entry.plugin.rewrite(request) : entry.plugin.access(request)
            if let outcome = outcome(action, entry) { return outcome }
        }
    }

    /// What `action` means for the run; nil: go on with the next plugin.
    private func outcome(_ action: PluginAction, _ entry: ChainEntry) -> Outcome? {
        switch action {
        case .next: return nil
        case .respond(let reply): return .respond(withErrorResponse(reply, entry))
        // No plugin holds a request longer than PluginLimits.maxDelayNanos (a day), whatever
        // its arithmetic made of its config.
        case .delay(let n, let then): return .delay(nanoseconds: min(n, PluginLimits.maxDelayNanos), then: then.map { withErrorResponse($0, entry) })
        case .wait(let f):
            waitingEntry = entry
            return .wait(f)
        }
    }

    /// Goes on after a `.wait` with what its future decided.
    public func resume(_ decision: PluginDecision) -> Outcome {
        guard let entry = waitingEntry else { return advance() }
        waitingEntry = nil
        request.responseHeaders += decision.responseHeaders
        if case .wait = decision.action { return .respond(PluginReply(status: 500)) }
        return outcome(decision.action, entry) ?? advance()
    }

    private func withErrorResponse(_ reply: PluginReply, _ entry: ChainEntry) -> PluginReply {
        var r = reply
        // A status the client can be sent (the proxy turns it into HTTPResponseStatus, which
        // traps on a negative one): plugins read theirs within 100...599 already.
        if !(100...599).contains(r.status) { r.status = 500 }
        guard r.status >= 400, let e = entry.errorResponse else { return r }
        switch e {
        case .string(let s):
            r.body = Array(s.utf8)
            r.headers.removeAll { $0.0.lowercased() == "content-type" }
            r.headers.append(("Content-Type", "text/plain"))
        default:
            r.body = e.serializedBytes()
            r.headers.removeAll { $0.0.lowercased() == "content-type" }
            r.headers.append(("Content-Type", "application/json"))
        }
        return r
    }

    /// After the route's rewrite: a consumer's plugins replace the route's of the same name
    /// and run their rewrite; then the access phase of the merged list.
    private func mergeConsumer() {
        consumerMerged = true
        if let consumer = request.consumer, !consumer.chain.isEmpty {
            let names = Set(consumer.chain.entries.map { $0.plugin.name })
            var merged = route.entries.filter { !names.contains($0.plugin.name) }
            merged += consumer.chain.entries
            merged.sort { $0.priority != $1.priority ? $0.priority > $1.priority : $0.plugin.name < $1.plugin.name }
            effective = merged
            for e in consumer.chain.entries { queue.append((e, .rewrite)) }
        }
        for e in effective { queue.append((e, .access)) }
    }

    private var responseEntries: [ChainEntry] { globals.flatMap(\.entries) + effective }

    /// The header filters, on an upstream response or a plugin's reply.
    public func headerFilters(_ response: inout PluginResponse) {
        request.status = response.status
        for (k, v) in request.responseHeaders { response.headers.replaceOrAdd(name: k, value: v) }
        for e in responseEntries where e.plugin.hasResponsePhases && passes(e) {
            e.plugin.headerFilter(request, &response)
            request.status = response.status
        }
    }

    /// The body filters, on the whole body (only when a header filter set `bodyRewritten`).
    public func transformBody(_ body: [UInt8]) -> [UInt8] {
        var b = body
        for e in responseEntries where e.plugin.hasResponsePhases && passes(e) { b = e.plugin.transformBody(request, b) }
        return b
    }

    /// The log phase, once.
    public func log(_ info: PluginLogInfo) {
        guard !logged else { return }
        logged = true
        request.status = info.status
        for e in responseEntries where e.plugin.hasLogPhase { e.plugin.log(request, info) }
    }
}

extension PluginFactory {
    /// A consumer with its credentials and its other plugins compiled.
    public static func compileConsumer(_ c: Consumer, state: PluginStateStore, metrics: HTTPMetrics? = nil) -> CompiledConsumer {
        var ctx = PluginCompileContext(owner: "consumers/\(c.username)", state: state, metrics: metrics)
        let credentials = c.plugins.filter { PluginCatalog.all[$0.key]?.isAuth == true }
        return CompiledConsumer(username: c.username, labels: c.labels, credentials: credentials, chain: chain(c.plugins, &ctx, fromConsumer: true))
    }

    /// The inline upstreams of a traffic-split config, by the snapshot key the plugin
    /// will ask for.
    public static func splitUpstreams(owner: String, _ configs: [String: JSONValue]) -> [(key: String, upstream: Upstream)] {
        guard let c = configs["traffic-split"], c["_meta"]?["disable"] != true else { return [] }
        var out: [(String, Upstream)] = []
        for (i, rule) in (c["rules"]?.arrayValue ?? []).enumerated() {
            for (j, w) in (rule["weighted_upstreams"]?.arrayValue ?? []).enumerated() {
                if let u = w["upstream"], let decoded = try? Upstream.decode(u, path: "") {
                    out.append((TrafficSplitPlugin.upstreamKey(owner: owner, rule: i, entry: j), decoded))
                }
            }
        }
        return out
    }

    /// A route's plugins: the service's, overridden by the route's, plus a plugin config's
    /// for names neither has.
    public static func routeConfigs(_ route: Route, service: Service?, pluginConfig: PluginSet?) -> [String: JSONValue] {
        var merged = service?.plugins ?? [:]
        for (k, v) in route.plugins { merged[k] = v }
        for (k, v) in pluginConfig?.plugins ?? [:] where route.plugins[k] == nil { merged[k] = v }
        return merged
    }
}
