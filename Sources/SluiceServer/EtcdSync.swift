import Logging
import SluiceAdmin
import SluiceCore
import SluiceEtcd
import SluiceStore
import Synchronization

/// Keeps a gateway's config in step with etcd: a watch from the revision it loaded, each
/// batch of changes applied as one snapshot; on compaction a full re-read; on a lost
/// connection, reconnection with exponential backoff and jitter. While etcd is unreachable
/// the proxy keeps serving its last config.
public final class EtcdSync: StoreHealth {
    public let store: EtcdStore
    public let service: ConfigService
    public let logger: Logger
    private let watching = Mutex(false)

    /// True while the watch is established.
    public var reachable: Bool { watching.withLock { $0 } }

    public init(store: EtcdStore, service: ConfigService, logger: Logger) {
        self.store = store
        self.service = service
        self.logger = logger
    }

    /// Runs until the task is cancelled.
    public func run() async {
        var backoffMs: Int64 = 100
        while !Task.isCancelled {
            let from = await service.revision + 1
            do {
                for try await message in store.client.watch(prefix: store.prefix + "/", fromRevision: from) {
                    switch message {
                    case .created:
                        backoffMs = 100
                        watching.withLock { $0 = true }
                    case .events(let events, let revision):
                        await apply(events, revision: revision)
                    case .compacted(let revision):
                        logger.warning("etcd compacted past this gateway's revision; reading everything again", metadata: ["compact_revision": "\(revision)"])
                        for e in try await service.reload() { logger.error("stored object skipped", metadata: ["error": "\(e)"]) }
                    }
                }
            } catch let error as EtcdError {
                if case .compacted = error.code { continue }  // reloaded above: watch again at once
                logger.warning("etcd watch lost; retrying", metadata: ["error": "\(error)", "retry_in_ms": "\(backoffMs)"])
            } catch {
                logger.warning("etcd watch lost; retrying", metadata: ["error": "\(error)", "retry_in_ms": "\(backoffMs)"])
            }
            watching.withLock { $0 = false }
            if Task.isCancelled { return }
            // Exponential backoff with up to 50 % jitter, so replicas do not reconnect in step.
            try? await Task.sleep(for: .milliseconds(backoffMs + Int64.random(in: 0...backoffMs / 2)))
            backoffMs = min(backoffMs * 2, 5_000)
        }
    }

    private func apply(_ events: [EtcdWatchEvent], revision: Int64) async {
        var storeEvents: [StoreEvent] = []
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
                logger.error("etcd value is not JSON; previous config stays live", metadata: ["key": "\(e.kv.key)", "error": "\(error)"])
            }
        }
        for error in await service.applyExternal(storeEvents, revision: revision) {
            logger.error("etcd object does not validate; previous config stays live", metadata: ["error": "\(error)"])
        }
    }
}
