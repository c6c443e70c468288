import Foundation
import NIOCore
import NIOPosix

/// A real Redis (Debian's `redis-server`) on a free loopback port, without persistence, for
/// tests. Fails, never skips, when Redis is not installed.
public final class RedisTestServer: @unchecked Sendable {
    // Mutable state is only touched by the test that owns the server, one call at a time.
    public let port: Int
    private var process: Process?

    public static func binary() throws -> String {
        for path in ["/usr/bin/redis-server", "/usr/local/bin/redis-server"] where FileManager.default.isExecutableFile(atPath: path) {
            return path
        }
        throw TestClientError(description: "redis-server is not installed: apt-get install -y redis-server (.ci/run does)")
    }

    public static func start(group: EventLoopGroup) async throws -> RedisTestServer {
        var lastError: Error = TestClientError(description: "redis-server did not start")
        for _ in 0..<4 {
            let server = RedisTestServer(port: try await EtcdTestServer.freePort(group))
            do {
                try await server.launch(group: group)
                return server
            } catch {
                lastError = error
                await server.stop()
            }
        }
        throw lastError
    }

    private init(port: Int) { self.port = port }

    /// Starts redis-server (again, after `stop`, on the same port; the data is gone).
    public func launch(group: EventLoopGroup) async throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try Self.binary())
        p.arguments = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "no"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        process = p
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if !p.isRunning { throw TestClientError(description: "redis-server exited at start (port \(port) taken?)") }
            if await ping(group: group) { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw TestClientError(description: "redis-server did not answer PING within 10 s")
    }

    /// Whether the server answers PING.
    public func ping(group: EventLoopGroup) async -> Bool {
        // RawHTTP sends and collects bytes, whatever the protocol.
        let reply = try? await RawHTTP.exchange(port: port, group: group, "PING\r\n", timeout: .seconds(1), until: { $0.contains("PONG") })
        return reply?.response.contains("+PONG") == true
    }

    /// Stops the server at once (SIGKILL: no persistence to flush) and waits, bounded, until
    /// its port no longer answers.
    public func stop() async {
        guard let p = process else { return }
        process = nil
        kill(p.processIdentifier, SIGKILL)
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline, await ping(group: MultiThreadedEventLoopGroup.singleton) {
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    deinit {
        if let p = process, p.isRunning { kill(p.processIdentifier, SIGKILL) }
    }
}
