import NIOCore
import NIOHTTP1
import NIOPosix
import SluiceCore
import SluiceHTTPClient

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
    /// The start revision was compacted away: read everything again.
    case compacted(revision: Int64)
}

extension EtcdClient {
    /// Watches every key under `prefix` from `revision` on, over a connection of its own.
    /// The stream ends with an error when the connection is lost; the caller reconnects.
    public nonisolated func watch(prefix: String, fromRevision revision: Int64) -> AsyncThrowingStream<EtcdWatchMessage, Error> {
        let endpoints = self.endpoints
        let group = self.group
        return AsyncThrowingStream { continuation in
            let task = Task {
                var lastError: Error = EtcdError(.unavailable, "no etcd endpoint configured")
                for endpoint in endpoints.shuffled() {
                    do {
                        try await Self.runWatch(endpoint, group: group, prefix: prefix, revision: revision, continuation: continuation)
                        return
                    } catch {
                        lastError = error
                    }
                }
                continuation.finish(throwing: lastError)
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    static func runWatch(
        _ endpoint: EtcdEndpoint, group: EventLoopGroup, prefix: String, revision: Int64,
        continuation: AsyncThrowingStream<EtcdWatchMessage, Error>.Continuation
    ) async throws {
        let body: JSONValue = [
            "create_request": [
                "key": .string(Base64.encode(prefix)), "range_end": .string(Base64.encode(rangeEnd(prefix))),
                "start_revision": .string(String(revision)),
            ]
        ]
        let lines = HTTP1Connection.stream(
            host: endpoint.host, port: endpoint.port, group: group, method: .POST, path: "/v3/watch",
            headers: [("Content-Type", "application/json")], body: body.serializedBytes())
        var status = 0
        var parser = WatchMessageParser(continuation: continuation)
        do {
            for try await part in lines {
                switch part {
                case .status(let code):
                    status = code
                case .line(let bytes):
                    guard status == 200 else {
                        throw EtcdError(.server(status: status), "etcd watch refused: \(String(decoding: bytes, as: UTF8.self))")
                    }
                    if let ending = parser.handle(bytes) { throw ending }
                }
            }
        } catch let error as EtcdError {
            continuation.finish(throwing: error)
            return
        } catch {
            continuation.finish(throwing: EtcdError(.unavailable, "etcd watch connection lost: \(error)"))
            return
        }
        continuation.finish(throwing: EtcdError(.unavailable, "etcd ended the watch"))
    }
}

/// Turns each JSON message of the gateway's watch stream into an `EtcdWatchMessage`;
/// returns the error that ends the stream, if the message ends it.
struct WatchMessageParser {
    let continuation: AsyncThrowingStream<EtcdWatchMessage, Error>.Continuation

    func handle(_ line: [UInt8]) -> EtcdError? {
        guard let message = try? JSONValue.parse(line) else { return EtcdError(.protocolError, "etcd watch sent invalid JSON") }
        if let error = message["error"] { return EtcdError(.protocolError, "etcd watch error: \(error)") }
        guard let result = message["result"] else { return nil }
        let revision = EtcdClient.int64(result["header"]?["revision"])
        if result["canceled"] == .bool(true) {
            let compacted = EtcdClient.int64(result["compact_revision"])
            if compacted > 0 {
                continuation.yield(.compacted(revision: compacted))
                return EtcdError(.compacted(revision: compacted), "etcd compacted the watch's start revision")
            }
            return EtcdError(.unavailable, "etcd canceled the watch")
        }
        if result["created"] == .bool(true) {
            continuation.yield(.created(revision: revision))
            return nil
        }
        var events: [EtcdWatchEvent] = []
        for e in result["events"]?.arrayValue ?? [] {
            guard let kvJSON = e["kv"], let kv = try? EtcdClient.keyValue(kvJSON) else { continue }
            events.append(EtcdWatchEvent(isDelete: e["type"]?.stringValue == "DELETE", kv: kv))
        }
        if !events.isEmpty { continuation.yield(.events(events, revision: revision)) }
        return nil
    }
}
