import NIOCore
import NIOHTTP1
import NIOPosix
import SluiceCore

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
        let channel = try await ClientBootstrap(group: group)
            .connectTimeout(.seconds(2))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(WatchStreamHandler(continuation: continuation))
                }
            }
            .connect(host: endpoint.host, port: endpoint.port).get()
        let body: JSONValue = [
            "create_request": [
                "key": .string(Base64.encode(prefix)), "range_end": .string(Base64.encode(rangeEnd(prefix))),
                "start_revision": .string(String(revision)),
            ]
        ]
        let bytes = body.serializedBytes()
        let head = HTTPRequestHead(
            version: .http1_1, method: .POST, uri: "/v3/watch",
            headers: HTTPHeaders([("Host", endpoint.description), ("Content-Type", "application/json"), ("Content-Length", String(bytes.count))]))
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        channel.write(HTTPClientRequestPart.body(.byteBuffer(channel.allocator.buffer(bytes: bytes))), promise: nil)
        try await channel.writeAndFlush(HTTPClientRequestPart.end(nil))
        // The handler ends the stream; closing the channel on cancellation ends the watch.
        await withTaskCancellationHandler {
            try? await channel.closeFuture.get()
        } onCancel: {
            channel.close(promise: nil)
        }
    }
}

/// Splits the gateway's stream of newline-separated JSON messages and turns each into an
/// `EtcdWatchMessage`.
final class WatchStreamHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart

    let continuation: AsyncThrowingStream<EtcdWatchMessage, Error>.Continuation
    private var pending: [UInt8] = []
    private var status = 0
    private var finished = false

    init(continuation: AsyncThrowingStream<EtcdWatchMessage, Error>.Continuation) {
        self.continuation = continuation
    }

    private func finish(_ error: Error?) {
        guard !finished else { return }
        finished = true
        if let error { continuation.finish(throwing: error) } else { continuation.finish() }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            status = Int(h.status.code)
        case .body(let buffer):
            pending += buffer.readableBytesView
            guard status == 200 else { return }
            while let nl = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = Array(pending[..<nl])
                pending.removeSubrange(...nl)
                if line.allSatisfy({ $0 == 0x20 || $0 == 0x0D }) { continue }
                handle(line, context)
            }
        case .end:
            if status != 200 {
                finish(EtcdError(.server(status: status), "etcd watch refused: \(String(decoding: pending, as: UTF8.self))"))
            } else {
                finish(EtcdError(.unavailable, "etcd ended the watch"))
            }
            context.close(promise: nil)
        }
    }

    private func handle(_ line: [UInt8], _ context: ChannelHandlerContext) {
        guard let message = try? JSONValue.parse(line) else {
            finish(EtcdError(.protocolError, "etcd watch sent invalid JSON"))
            context.close(promise: nil)
            return
        }
        if let error = message["error"] {
            finish(EtcdError(.protocolError, "etcd watch error: \(error)"))
            context.close(promise: nil)
            return
        }
        guard let result = message["result"] else { return }
        let revision = EtcdClient.int64(result["header"]?["revision"])
        if result["canceled"] == .bool(true) {
            let compacted = EtcdClient.int64(result["compact_revision"])
            if compacted > 0 {
                continuation.yield(.compacted(revision: compacted))
                finish(EtcdError(.compacted(revision: compacted), "etcd compacted the watch's start revision"))
            } else {
                finish(EtcdError(.unavailable, "etcd canceled the watch"))
            }
            context.close(promise: nil)
            return
        }
        if result["created"] == .bool(true) {
            continuation.yield(.created(revision: revision))
            return
        }
        var events: [EtcdWatchEvent] = []
        for e in result["events"]?.arrayValue ?? [] {
            guard let kvJSON = e["kv"], let kv = try? EtcdClient.keyValue(kvJSON) else { continue }
            events.append(EtcdWatchEvent(isDelete: e["type"]?.stringValue == "DELETE", kv: kv))
        }
        if !events.isEmpty { continuation.yield(.events(events, revision: revision)) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish(EtcdError(.unavailable, "etcd watch connection closed"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        finish(EtcdError(.unavailable, "etcd watch failed: \(error)"))
        context.close(promise: nil)
    }
}
