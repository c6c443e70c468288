import Foundation
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

    public static func binary() throws -> String {
        for path in ["/usr/bin/etcd", "/usr/local/bin/etcd"] where FileManager.default.isExecutableFile(atPath: path) {
            return path
        }
        throw TestClientError(description: "etcd is not installed: apt-get install -y etcd-server (.ci/run does)")
    }

    public static func start(group: EventLoopGroup) async throws -> EtcdTestServer {
        // A port found free can be taken by a parallel test before etcd binds it: etcd then
        // exits at once, and we try again on other ports.
        var lastError: Error = TestClientError(description: "etcd did not start")
        for _ in 0..<4 {
            let server = EtcdTestServer(clientPort: try await freePort(group), peerPort: try await freePort(group))
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
        self.directory = NSTemporaryDirectory() + "sluice-etcd-\(UUID().uuidString)"
    }

    /// Starts etcd (again, after `stop`, on the same ports and data).
    public func launch(group: EventLoopGroup) async throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try Self.binary())
        let client = "http://127.0.0.1:\(clientPort)", peer = "http://127.0.0.1:\(peerPort)"
        p.arguments = [
            "--name", "test", "--data-dir", "\(directory)/data", "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "test=\(peer)",
            "--heartbeat-interval", "10", "--election-timeout", "100",
        ]
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
                return
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
