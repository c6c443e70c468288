import NIOCore
import NIOHTTP1
import NIOPosix
import SluiceCore
import SluiceHTTPClient
import Synchronization

/// One change in a watch.
public struct EtcdWatchEvent: Sendable, Hashable {
    public var isDelete: Bool
    public var kv: EtcdKeyValue
}

/// What a watch stream delivers.
public enum EtcdWatchMessage: Sendable {
    /// The watch is set up; changes after `revision` follow.
    case created(revision: Int64)
    case events([EtcdWatchEvent], revision: Int64)
    /// Events etcd sent that could not be decoded (a key or value that is not base64): each
    /// described by its reason. They are not applied.
    case undecodable([String], revision: Int64)
    /// etcd's progress notification: nothing under the prefix changed up to `revision`.
    case progress(revision: Int64)
    /// The start revision was compacted away: read everything again.
    case compacted(revision: Int64)
}

extension EtcdClient {
    /// Watches every key under `prefix` from `revision` on, over a connection of its own, kept
    /// alive as `watchLiveness` says. The stream ends with an error when the connection is
    /// lost or the watch goes silent past its idle timeout (`EtcdError.Code.watchSilent`); the
    /// caller reconnects. Members are tried in random order until one creates the watch.
    public nonisolated func watch(prefix: String, fromRevision revision: Int64) -> AsyncThrowingStream<EtcdWatchMessage, Error> {
        let endpoints = self.endpoints
        let group = self.group
        let liveness = self.watchLiveness.effective
        return AsyncThrowingStream { continuation in
            let task = Task {
                var lastError = EtcdError(.unavailable, "no etcd endpoint configured")
                for endpoint in endpoints.shuffled() {
                    let (error, created) = await Self.runWatch(
                        endpoint, group: group, prefix: prefix, revision: revision, liveness: liveness, continuation: continuation)
                    lastError = error
                    // Once created (or compacted), messages were delivered from this member:
                    // the caller resumes from what it applied.
                    if case .compacted = error.code { break }
                    if created || Task.isCancelled { break }
                }
                continuation.finish(throwing: lastError)
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    /// Runs one watch on `endpoint` until it ends; returns why, and whether it was created.
    static func runWatch(
        _ endpoint: EtcdEndpoint, group: EventLoopGroup, prefix: String, revision: Int64, liveness: EtcdWatchLiveness,
        continuation: AsyncThrowingStream<EtcdWatchMessage, Error>.Continuation
    ) async -> (EtcdError, created: Bool) {
        var create: [String: JSONValue] = [
            "key": .string(Base64.encode(prefix)), "range_end": .string(Base64.encode(rangeEnd(prefix))),
            "start_revision": .string(String(revision)),
        ]
        if liveness.progressNotify { create["progress_notify"] = true }
        let body = JSONValue.object(["create_request": .object(create)]).serializedBytes()
        let connection: WatchConnection
        do {
            connection = try await WatchConnection.open(endpoint, group: group, liveness: liveness, body: body)
        } catch {
            return (EtcdError(.unavailable, "etcd \(endpoint) watch: cannot connect: \(error)"), false)
        }
        let progress = WatchProgress()
        let prober = Prober(endpoint: endpoint, group: group, prefix: prefix, timeout: liveness.probeTimeout)
        let ending: EtcdError = await withTaskGroup(of: EtcdError?.self) { tasks in
            tasks.addTask { await read(connection.parts, endpoint: endpoint, progress: progress, continuation: continuation) }
            tasks.addTask { await deadline(progress, idleTimeout: liveness.idleTimeout, endpoint: endpoint) }
            if let interval = liveness.probeInterval {
                tasks.addTask {
                    await prober.run(progress, interval: interval)
                    return nil
                }
            }
            var ending: EtcdError? = nil
            while ending == nil, let result = await tasks.next() { ending = result }
            tasks.cancelAll()
            // Fails a probe in flight at once, so the group ends without waiting for its timeout.
            await prober.close()
            return ending ?? EtcdError(.unavailable, "etcd \(endpoint) watch was stopped")
        }
        await connection.close()
        return (ending, progress.snapshot.created)
    }

    /// Reads the stream's lines until it ends; returns why it ended.
    private static func read(
        _ parts: AsyncThrowingStream<WatchConnection.Part, Error>, endpoint: EtcdEndpoint, progress: WatchProgress,
        continuation: AsyncThrowingStream<EtcdWatchMessage, Error>.Continuation
    ) async -> EtcdError {
        var status = 0
        do {
            for try await part in parts {
                switch part {
                case .status(let code):
                    status = code
                case .line(let bytes):
                    guard status == 200 else {
                        return EtcdError(.server(status: status), "etcd \(endpoint) refused the watch: \(String(decoding: bytes.prefix(500), as: UTF8.self))")
                    }
                    let parsed = WatchMessageParser.parse(bytes)
                    if parsed.ending == nil || parsed.revision != nil {
                        let created = parsed.messages.contains { if case .created = $0 { true } else { false } }
                        progress.heard(revision: parsed.revision, created: created)
                    }
                    for message in parsed.messages { continuation.yield(message) }
                    if let ending = parsed.ending { return ending }
                }
            }
        } catch {
            return EtcdError(.unavailable, "etcd \(endpoint) watch connection lost: \(error)")
        }
        if Task.isCancelled { return EtcdError(.unavailable, "etcd \(endpoint) watch was stopped") }
        return EtcdError(.unavailable, "etcd \(endpoint) ended the watch")
    }

    /// Returns when nothing has confirmed the watch for `idleTimeout`; nil when cancelled first.
    private static func deadline(_ progress: WatchProgress, idleTimeout: Duration, endpoint: EtcdEndpoint) async -> EtcdError? {
        while !Task.isCancelled {
            let state = progress.snapshot
            let now = ContinuousClock.now
            let due = state.lastProgress + idleTimeout
            if now >= due {
                let answered = state.lastContact.map { now - $0 < idleTimeout } ?? false
                return EtcdError(
                    .watchSilent(memberAnswered: answered),
                    "etcd \(endpoint) watch silent for \(idleTimeout)" + (answered ? " while the store moved on" : " and its member did not answer"))
            }
            do { try await Task.sleep(until: due, clock: .continuous) } catch { return nil }
        }
        return nil
    }
}

/// The liveness probe of one watch: a linearizable range (a ReadIndex through the leader) on
/// the watch's member, over a connection of its own, whose header revision is compared with
/// the watch's.
final class Prober: Sendable {
    let endpoint: EtcdEndpoint
    let group: EventLoopGroup
    let body: JSONValue
    let timeout: Duration
    private struct State {
        var connection: EtcdConnection?
        var closed = false
    }
    private let state = Mutex(State())

    init(endpoint: EtcdEndpoint, group: EventLoopGroup, prefix: String, timeout: Duration) {
        self.endpoint = endpoint
        self.group = group
        // One key that need not exist: the answer's header carries the store's revision.
        self.body = ["key": .string(Base64.encode(prefix)), "count_only": true]
        self.timeout = timeout
    }

    /// Probes while the watch has been silent for `interval`, once per `interval`, until cancelled.
    func run(_ progress: WatchProgress, interval: Duration) async {
        var lastProbe: ContinuousClock.Instant? = nil
        while !Task.isCancelled {
            let state = progress.snapshot
            var due = state.lastProgress + interval
            if let lastProbe { due = max(due, lastProbe + interval) }
            // Before the watch is created there is no revision to compare with.
            if state.revision == nil { due = max(due, ContinuousClock.now + interval) }
            if ContinuousClock.now < due {
                do { try await Task.sleep(until: due, clock: .continuous) } catch { return }
                continue
            }
            lastProbe = ContinuousClock.now
            if let revision = try? await probe() { progress.probeAnswered(revision: revision) }
        }
    }

    /// The member's current revision, read linearizably.
    func probe() async throws -> Int64 {
        let started = ContinuousClock.now
        let conn = try await connection()
        let remaining = max(timeout - (ContinuousClock.now - started), .milliseconds(1))
        do {
            let answer = try await conn.post("/v3/kv/range", body, timeout: remaining.timeAmount)
            guard let revision = EtcdClient.revision(answer["header"]?["revision"]) else {
                throw EtcdError(.protocolError, "etcd \(endpoint) answered a probe without a revision")
            }
            return revision
        } catch {
            await conn.close()
            throw error
        }
    }

    private func connection() async throws -> EtcdConnection {
        if let c = state.withLock({ $0.connection }), c.isActive { return c }
        let conn = try await EtcdConnection.connect(endpoint, group: group, timeout: timeout.timeAmount)
        let (kept, replaced) = state.withLock { s -> (Bool, EtcdConnection?) in
            if s.closed { return (false, nil) }
            defer { s.connection = conn }
            return (true, s.connection)
        }
        await replaced?.close()
        guard kept else {
            await conn.close()
            throw CancellationError()
        }
        return conn
    }

    /// Closes the probe's connection (failing a probe in flight); no probe connects after.
    func close() async {
        let conn = state.withLock { s -> EtcdConnection? in
            s.closed = true
            defer { s.connection = nil }
            return s.connection
        }
        await conn?.close()
    }
}

/// The watch's own HTTP/1.1 connection: keepalive socket options, the create request as the
/// body, the chunked answer split into lines.
struct WatchConnection: Sendable {
    typealias Part = HTTP1Connection.StreamPart

    let channel: Channel
    let parts: AsyncThrowingStream<Part, Error>

    /// A line longer than this ends the watch (etcd's own limit on a message is far lower).
    static let maxLine = 64 << 20

    static func bootstrap(group: EventLoopGroup, liveness: EtcdWatchLiveness) -> ClientBootstrap {
        var bootstrap = ClientBootstrap(group: group)
            .connectTimeout(min(liveness.idleTimeout, .seconds(5)).timeAmount)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
        for (option, value) in liveness.keepalive?.socketOptions ?? [] { bootstrap = bootstrap.channelOption(option, value: value) }
        return bootstrap
    }

    static func open(_ endpoint: EtcdEndpoint, group: EventLoopGroup, liveness: EtcdWatchLiveness, body: [UInt8]) async throws -> WatchConnection {
        try endpoint.checkConnectable()
        let (parts, continuation) = AsyncThrowingStream<Part, Error>.makeStream()
        let channel: Channel
        do {
            channel = try await bootstrap(group: group, liveness: liveness)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        try channel.pipeline.syncOperations.addHandler(
                            LineStreamHandler(continuation: continuation, maxLine: maxLine, closedMessage: "the watch's connection closed"))
                    }
                }
                .connect(host: endpoint.host, port: endpoint.port).get()
        } catch {
            continuation.finish(throwing: error)
            throw error
        }
        continuation.onTermination = { _ in channel.close(promise: nil) }
        var headers = HTTPHeaders([("Host", endpoint.description), ("Content-Type", "application/json")])
        headers.add(name: "Content-Length", value: String(body.count))
        channel.write(HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: .POST, uri: "/v3/watch", headers: headers)), promise: nil)
        channel.write(HTTPClientRequestPart.body(.byteBuffer(channel.allocator.buffer(bytes: body))), promise: nil)
        try await channel.writeAndFlush(HTTPClientRequestPart.end(nil))
        return WatchConnection(channel: channel, parts: parts)
    }

    func close() async { try? await channel.close() }
}

/// Turns one JSON message of the gateway's watch stream into `EtcdWatchMessage`s. Nothing
/// etcd sends can trap here: numbers that do not parse are absent, events that do not
/// decode are reported as `undecodable`.
enum WatchMessageParser {
    struct Parsed {
        var messages: [EtcdWatchMessage] = []
        /// The header's revision, when the message had a valid one.
        var revision: Int64?
        /// The error that ends the stream, if this message ends it.
        var ending: EtcdError?
    }

    static func parse(_ line: [UInt8]) -> Parsed {
        var parsed = Parsed()
        guard let message = try? JSONValue.parse(line) else {
            parsed.ending = EtcdError(.protocolError, "etcd watch sent invalid JSON")
            return parsed
        }
        if let error = message["error"] {
            parsed.ending = EtcdError(.protocolError, "etcd watch error: \(error)")
            return parsed
        }
        guard let result = message["result"] else { return parsed }
        parsed.revision = EtcdClient.revision(result["header"]?["revision"])
        let revision = parsed.revision ?? 0
        if result["canceled"] == .bool(true) {
            if let compacted = EtcdClient.revision(result["compact_revision"]) {
                parsed.messages.append(.compacted(revision: compacted))
                parsed.ending = EtcdError(.compacted(revision: compacted), "etcd compacted the watch's start revision")
            } else {
                let reason = result["cancel_reason"]?.stringValue ?? "no reason given"
                parsed.ending = EtcdError(.unavailable, "etcd canceled the watch: \(reason)")
            }
            return parsed
        }
        if result["created"] == .bool(true) {
            parsed.messages.append(.created(revision: revision))
            return parsed
        }
        var events: [EtcdWatchEvent] = []
        var undecodable: [String] = []
        let all = result["events"]?.arrayValue ?? []
        for e in all {
            do {
                guard let kvJSON = e["kv"] else { throw EtcdError(.protocolError, "an event without a key-value") }
                events.append(EtcdWatchEvent(isDelete: e["type"]?.stringValue == "DELETE", kv: try EtcdClient.keyValue(kvJSON)))
            } catch {
                undecodable.append("\(error)")
            }
        }
        if !undecodable.isEmpty { parsed.messages.append(.undecodable(undecodable, revision: revision)) }
        if !events.isEmpty { parsed.messages.append(.events(events, revision: revision)) }
        // Neither created nor events: etcd's progress notification (its header only).
        if all.isEmpty, let r = parsed.revision { parsed.messages.append(.progress(revision: r)) }
        return parsed
    }
}
