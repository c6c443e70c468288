import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A real etcd (Debian's `etcd-server`) on free loopback ports with a temporary data dir,
/// for tests. Fails, never skips, when etcd is not installed.
public final class EtcdTestServer: @unchecked Sendable {
    // Mutable state is only touched by the test that owns the server, one call at a time.
    public let clientPort: Int
    public let url: String
    private let peerPort: Int
    private let directory: String
    private var process: Process?
    /// More command-line flags for etcd (e.g. `--experimental-watch-progress-notify-interval`).
    public private(set) var extraArguments: [String] = []

    public static func binary() throws -> String {
        for path in ["/usr/bin/etcd", "/usr/local/bin/etcd"] where FileManager.default.isExecutableFile(atPath: path) {
            return path
        }
        throw TestClientError(description: "etcd is not installed: apt-get install -y etcd-server (.ci/run does)")
    }

    public static func start(group: EventLoopGroup, extraArguments: [String] = []) async throws -> EtcdTestServer {
        // A port found free can be taken by a parallel test before etcd binds it: etcd then
        // exits at once, and we try again on other ports.
        var lastError: Error = TestClientError(description: "etcd did not start")
        for _ in 0..<4 {
            let server = EtcdTestServer(clientPort: try await freePort(group), peerPort: try await freePort(group))
            server.extraArguments = extraArguments
            do {
                try await server.launch(group: group)
                return server
            } catch {
                lastError = error
                await server.remove()
            }
        }
        throw lastError
    }

    static func freePort(_ group: EventLoopGroup) async throws -> Int {
        let channel = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
        let port = channel.localAddress?.port ?? 0
        try await channel.close()
        return port
    }

    private init(clientPort: Int, peerPort: Int) {
        self.clientPort = clientPort
        self.peerPort = peerPort
        self.url = "http://127.0.0.1:\(clientPort)"
        let id = UUID().uuidString
        self.directory = NSTemporaryDirectory() + "sluice-etcd-\(id)"
        self.name = "test-" + id.prefix(8).lowercased()
    }

    /// The member's name, unique: a port found free can also be handed to a parallel test's
    /// etcd, and the health check must not take that one's answer for ours.
    private let name: String

    /// Starts etcd (again, after `stop`, on the same ports and data).
    public func launch(group: EventLoopGroup) async throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try Self.binary())
        let client = "http://127.0.0.1:\(clientPort)", peer = "http://127.0.0.1:\(peerPort)"
        p.arguments = [
            "--name", name, "--data-dir", "\(directory)/data", "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "\(name)=\(peer)",
            "--heartbeat-interval", "10", "--election-timeout", "100",
        ] + extraArguments
        p.environment = ["PATH": "/usr/bin:/bin"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try p.run()
        process = p
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            if !p.isRunning {
                throw TestClientError(description: "etcd exited at start (port \(clientPort) or \(peerPort) taken?)")
            }
            if let (response, _) = try? await RawHTTP.exchange(
                port: clientPort, group: group, "GET /health HTTP/1.1\r\nHost: etcd\r\n\r\n", timeout: .seconds(1),
                until: { $0.contains("\"health\":\"true\"") }),
                response.contains("\"health\":\"true\"")
            {
                let ours = "\"name\":\"\(name)\""
                let members = (try? await RawHTTP.exchange(
                    port: clientPort, group: group,
                    "POST /v3/cluster/member/list HTTP/1.1\r\nHost: etcd\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
                    timeout: .seconds(2), until: { $0.contains(ours) }))?.response ?? ""
                if members.contains(ours) && p.isRunning { return }
                if members.contains("\"members\"") {
                    throw TestClientError(description: "port \(clientPort) is another etcd's (taken by a parallel test)")
                }
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestClientError(description: "etcd did not become healthy on port \(clientPort) within 20 s")
    }

    /// Stops etcd (SIGTERM) and waits for it to exit.
    public func stop() async {
        guard let p = process else { return }
        p.terminate()
        let deadline = ContinuousClock.now + .seconds(10)
        while p.isRunning && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        process = nil
    }

    /// Runs `etcdctl` against this server; returns its output.
    public func etcdctl(_ arguments: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/etcdctl")
        p.arguments = ["--endpoints=\(url)"] + arguments
        p.environment = ["ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        p.waitUntilExit()
        return String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    }

    public func remove() async {
        await stop()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// A TCP relay on 127.0.0.1 in front of a server (etcd), that can stop forwarding without
/// closing anything: what a client sees of a stalled middlebox or a half-open connection.
/// While frozen it keeps reading (the sender's TCP sees its data acknowledged, keepalive
/// probes are answered) and holds the bytes; thawed, it delivers them in order.
public final class TCPRelay: Sendable {
    public let port: Int
    private let server: Channel
    private let shared: Shared

    final class Shared: Sendable {
        struct State {
            var freezeNew = false
            var pairs: [NIOLoopBound<RelayPair>] = []
            var accepted = 0
        }
        let state = NIOLockedValueBox(State())
    }

    /// Connections accepted so far.
    public var connectionsAccepted: Int { shared.state.withLockedValue { $0.accepted } }

    public static func start(to targetPort: Int, group: EventLoopGroup) async throws -> TCPRelay {
        let shared = Shared()
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { child in
                let loop = child.eventLoop
                let pair: NIOLoopBound<RelayPair> = shared.state.withLockedValue { s in
                    let p = NIOLoopBound(RelayPair(client: child, frozen: s.freezeNew), eventLoop: loop)
                    s.pairs.append(p)
                    s.accepted += 1
                    return p
                }
                ClientBootstrap(group: loop)
                    .channelOption(.socketOption(.tcp_nodelay), value: 1)
                    .channelInitializer { upstream in
                        upstream.eventLoop.makeCompletedFuture {
                            try upstream.pipeline.syncOperations.addHandler(RelaySide(pair, fromClient: false))
                        }
                    }
                    .connect(host: "127.0.0.1", port: targetPort)
                    .whenComplete { result in
                        switch result {
                        case .success(let upstream): pair.value.connected(upstream)
                        case .failure: child.close(promise: nil)
                        }
                    }
                return loop.makeCompletedFuture { try child.pipeline.syncOperations.addHandler(RelaySide(pair, fromClient: true)) }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        guard let port = server.localAddress?.port else { throw TestClientError(description: "the relay has no port") }
        return TCPRelay(port: port, server: server, shared: shared)
    }

    private init(port: Int, server: Channel, shared: Shared) {
        self.port = port
        self.server = server
        self.shared = shared
    }

    public var url: String { "http://127.0.0.1:\(port)" }

    private func each(_ body: @escaping @Sendable (RelayPair) -> Void, setting freezeNew: Bool? = nil) async {
        let pairs = shared.state.withLockedValue { s in
            if let freezeNew { s.freezeNew = freezeNew }
            return s.pairs
        }
        for pair in pairs { try? await pair.eventLoop.submit { body(pair.value) }.get() }
    }

    /// Every connection, open or new, stops forwarding in both directions; none is closed.
    public func freeze() async { await each({ $0.frozen = true }, setting: true) }

    /// Forwarding resumes (held bytes first), except on connections frozen for good.
    public func thaw() async { await each({ $0.thaw() }, setting: false) }

    /// The connections open now stop forwarding and never resume; new ones are forwarded.
    public func freezeOpenConnections() async {
        await each({
            $0.frozen = true
            $0.frozenForGood = true
        })
    }

    public func stop() async {
        try? await server.close()
        await each({ $0.closeBoth() })
    }
}

/// One relayed connection; lives on its event loop (both of its channels are on it).
final class RelayPair {
    let client: Channel
    var upstream: Channel?
    var frozen: Bool
    var frozenForGood = false
    private var toUpstream: [ByteBuffer] = []
    private var toClient: [ByteBuffer] = []
    private var upstreamClosedWhileFrozen = false
    private var clientClosed = false

    init(client: Channel, frozen: Bool) {
        self.client = client
        self.frozen = frozen
    }

    func connected(_ upstream: Channel) {
        self.upstream = upstream
        // (Not `client.isActive`: the client may not be active yet while its upstream is.)
        if clientClosed { upstream.close(promise: nil) }
        flush()
    }

    func read(_ buffer: ByteBuffer, fromClient: Bool) {
        if fromClient { toUpstream.append(buffer) } else { toClient.append(buffer) }
        flush()
    }

    func inactive(fromClient: Bool) {
        if fromClient {
            clientClosed = true
            upstream?.close(promise: nil)  // the client gave up: nothing to hold for it
        } else if frozen {
            upstreamClosedWhileFrozen = true
        } else {
            client.close(promise: nil)
        }
    }

    func thaw() {
        guard !frozenForGood else { return }
        frozen = false
        flush()
        if upstreamClosedWhileFrozen { client.close(promise: nil) }
    }

    func closeBoth() {
        client.close(promise: nil)
        upstream?.close(promise: nil)
    }

    private func flush() {
        guard !frozen else { return }
        if let upstream, !toUpstream.isEmpty {
            for b in toUpstream { upstream.write(b, promise: nil) }
            toUpstream = []
            upstream.flush()
        }
        if !toClient.isEmpty {
            for b in toClient { client.write(b, promise: nil) }
            toClient = []
            client.flush()
        }
    }
}

final class RelaySide: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let pair: NIOLoopBound<RelayPair>
    let fromClient: Bool

    init(_ pair: NIOLoopBound<RelayPair>, fromClient: Bool) {
        self.pair = pair
        self.fromClient = fromClient
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        pair.value.read(unwrapInboundIn(data), fromClient: fromClient)
    }

    func channelInactive(context: ChannelHandlerContext) {
        pair.value.inactive(fromClient: fromClient)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
