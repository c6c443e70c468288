import Logging
import SluiceAdmin
import SluiceCore
import SluiceEtcd
import SluiceStore
import Synchronization

/// Keeps a gateway's config in step with etcd: a watch from the revision it loaded, each
/// batch of changes applied as one snapshot; on compaction a full re-read; on a lost
/// connection, or a watch silent past its idle timeout (`EtcdClient.watchLiveness`),
/// reconnection with exponential backoff and jitter from the last applied revision. While
/// etcd is unreachable the proxy keeps serving its last config.
public final class EtcdSync: StoreHealth {
    public let store: EtcdStore
    public let service: ConfigService
    public let logger: Logger

    /// Why a watch ended and was set up again: `sluice_etcd_watch_restarts_total{reason}`.
    public enum RestartReason: String, Sendable, CaseIterable {
        /// Nothing (event, progress notification, confirming probe) within the idle timeout.
        case silent
        /// The connection failed or etcd ended or refused the watch.
        case lost
        /// The start revision was compacted: everything was read again.
        case compacted
    }

    private struct State {
        var watching = false
        var restarts: [RestartReason: Int] = [:]
    }
    private let state = Mutex(State())

    /// True while the watch is established and has shown progress within its idle timeout:
    /// false from the moment a watch is declared silent or lost until a replacement is created.
    public var reachable: Bool { state.withLock { $0.watching } }

    /// Watches replaced, by reason.
    public var watchRestarts: [RestartReason: Int] { state.withLock { $0.restarts } }

    public var metricsText: String {
        let restarts = watchRestarts
        var out = "# HELP sluice_etcd_watch_restarts_total etcd watches ended and set up again, by reason (silent: nothing within the idle timeout)\n"
        out += "# TYPE sluice_etcd_watch_restarts_total counter\n"
        for reason in RestartReason.allCases {
            out += "sluice_etcd_watch_restarts_total{reason=\"\(reason.rawValue)\"} \(restarts[reason] ?? 0)\n"
        }
        return out
    }

    public init(store: EtcdStore, service: ConfigService, logger: Logger) {
        self.store = store
        self.service = service
        self.logger = logger
    }

    /// Runs until the task is cancelled.
    public func run() async {
        var backoffMs: Int64 = 100
        var lost = false
        while !Task.isCancelled {
            let applied = await service.revision
            let from = applied < Int64.max ? applied + 1 : applied
            var retryAtOnce = false
            let reason: RestartReason
            do {
                for try await message in store.client.watch(prefix: store.prefix + "/", fromRevision: from) {
                    switch message {
                    case .created:
                        backoffMs = 100
                        state.withLock { $0.watching = true }
                        if lost { logger.info("etcd watch set up again", metadata: ["from_revision": "\(from)"]) }
                        lost = false
                    case .events(let events, let revision):
                        await apply(events, revision: revision)
                    case .undecodable(let reasons, let revision):
                        for r in reasons {
                            logger.error("etcd event does not decode; skipped", metadata: ["revision": "\(revision)", "error": "\(r)"])
                        }
                        await service.noteSkipped(reasons.count)
                    case .progress:
                        break  // the watch's liveness is the client's business
                    case .compacted(let revision):
                        logger.warning("etcd compacted past this gateway's revision; reading everything again", metadata: ["compact_revision": "\(revision)"])
                        let errors = try await service.reload()
                        let skipped = store.skippedAtLastLoad
                        for s in skipped { logger.error("etcd value is not JSON; skipped", metadata: ["key": "\(s.key)", "error": "\(s.reason)"]) }
                        await service.noteSkipped(skipped.count)
                        for e in errors { logger.error("stored object skipped", metadata: ["error": "\(e)"]) }
                    }
                }
                reason = .lost
                logger.warning("etcd watch ended; retrying", metadata: ["retry_in_ms": "\(backoffMs)"])
            } catch let error as EtcdError {
                switch error.code {
                case .compacted:
                    reason = .compacted
                    retryAtOnce = true  // reloaded above: watch again at once
                case .watchSilent(let memberAnswered):
                    reason = .silent
                    // The member answered a probe: only this watch is stuck; a new one at once.
                    retryAtOnce = memberAnswered
                    logger.warning(
                        "etcd watch silent past its idle timeout; replacing it",
                        metadata: ["error": "\(error)", "retry_in_ms": "\(memberAnswered ? 0 : backoffMs)"])
                default:
                    reason = .lost
                    logger.warning("etcd watch lost; retrying", metadata: ["error": "\(error)", "retry_in_ms": "\(backoffMs)"])
                }
            } catch {
                reason = .lost
                logger.warning("etcd watch lost; retrying", metadata: ["error": "\(error)", "retry_in_ms": "\(backoffMs)"])
            }
            if Task.isCancelled {
                state.withLock { $0.watching = false }
                return
            }
            state.withLock {
                $0.watching = false
                $0.restarts[reason, default: 0] += 1
            }
            lost = reason != .compacted
            if retryAtOnce { continue }
            // Exponential backoff with up to 50 % jitter, so replicas do not reconnect in step.
            try? await Task.sleep(for: .milliseconds(backoffMs + Int64.random(in: 0...backoffMs / 2)))
            backoffMs = min(backoffMs * 2, 5_000)
        }
        state.withLock { $0.watching = false }
    }

    private func apply(_ events: [EtcdWatchEvent], revision: Int64) async {
        var storeEvents: [StoreEvent] = []
        var notJSON = 0
        for e in events {
            guard let (kind, id) = store.parse(key: e.kv.key) else { continue }
            if e.isDelete {
                storeEvents.append(.delete(kind: kind, id: id, revision: e.kv.modRevision))
                continue
            }
            do {
                let value = try JSONValue.parse(e.kv.value)
                storeEvents.append(.put(StoreEntry(kind: kind, id: id, value: value, createdIndex: e.kv.createRevision, modifiedIndex: e.kv.modRevision)))
            } catch {
                notJSON += 1
                logger.error("etcd value is not JSON; previous config stays live", metadata: ["key": "\(e.kv.key)", "error": "\(error)"])
            }
        }
        if notJSON > 0 { await service.noteSkipped(notJSON) }
        for error in await service.applyExternal(storeEvents, revision: revision) {
            logger.error("etcd object does not validate; previous config stays live", metadata: ["error": "\(error)"])
        }
    }
}
