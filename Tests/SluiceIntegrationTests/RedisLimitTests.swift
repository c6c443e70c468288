import Foundation
import NIOCore
import SluiceCore
import SluiceTesting
import SluiceYAML
import Testing

/// limit-count with `policy: redis` against a real redis-server: the count is shared by
/// every gateway that uses the same Redis.
@Suite struct RedisLimitTests {
    static func route(_ upstream: String, redisPort: Int, extra: String = "") -> String {
        #"routes: [{id: "1", uri: "/*", upstream: {nodes: {"\#(upstream)": 1}}, plugins: {limit-count: {count: 3, time_window: 60, key: remote_addr, policy: redis, redis_host: 127.0.0.1, redis_port: \#(redisPort), redis_timeout: 500\#(extra)}}}]\#n"#
    }

    /// Two `sluice serve` processes with the same config: requests alternate between them
    /// and the fourth is refused, whichever gateway it reaches.
    @Test func twoGatewayProcessesShareOneCount() async throws {
        let redis = try await RedisTestServer.start(group: Gateway.group)
        let up = try await startUpstream("origin")
        let dir = makeTemporaryDirectory()
        try Self.route(up.address, redisPort: redis.port).write(toFile: "\(dir)/c.yaml", atomically: true, encoding: .utf8)
        let a = try GatewayProcess.serve(["--standalone", "c.yaml", "--data-dir", "a", "--workers", "1"], directory: dir)
        let b = try GatewayProcess.serve(["--standalone", "c.yaml", "--data-dir", "b", "--workers", "1"], directory: dir)
        defer {
            a.kill(SIGKILL)
            b.kill(SIGKILL)
        }
        let ca = try await TestHTTPClient.connect(port: try await a.ports().proxy, group: Gateway.group)
        let cb = try await TestHTTPClient.connect(port: try await b.ports().proxy, group: Gateway.group)
        var remaining: [String] = []
        for (i, client) in [ca, cb, ca].enumerated() {
            let r = try await client.request(.GET, "/")
            #expect(r.status == .ok, "request \(i)")
            remaining.append(r.headers.first(name: "x-ratelimit-remaining") ?? "?")
        }
        #expect(remaining == ["2", "1", "0"])
        for client in [cb, ca] {
            let r = try await client.request(.GET, "/")
            #expect(r.status == .serviceUnavailable)
            #expect(r.headers.first(name: "x-ratelimit-limit") == "3")
            let reset = Int(r.headers.first(name: "x-ratelimit-reset") ?? "") ?? -1
            #expect((1...60).contains(reset))
        }
        await ca.close()
        await cb.close()
        await up.stop()
        await redis.stop()
    }

    /// Redis unreachable: 500 `failed to limit count`, or the request passes with
    /// `allow_degradation`; when Redis is back, counting resumes.
    @Test func redisDownFailsClosedUnlessDegradationIsAllowed() async throws {
        let redis = try await RedisTestServer.start(group: Gateway.group)
        let up = try await startUpstream("origin")
        let yaml = { (extra: String) in Self.route(up.address, redisPort: redis.port, extra: extra) }
        let gw = try await Gateway.start(try Self.json(yaml("")))
        let client = try await gw.client()
        #expect(try await client.request(.GET, "/").status == .ok)
        await redis.stop()
        var r = try await client.request(.GET, "/")
        #expect(r.status == .internalServerError)
        #expect(String(buffer: r.body) == #"{"error_msg":"failed to limit count"}"# + "\n")
        try await gw.apply(try Self.json(yaml(", allow_degradation: true")))
        r = try await client.request(.GET, "/")
        #expect(r.status == .ok)
        try await redis.launch(group: Gateway.group)
        // The client reconnects on the next command; the count starts again (no persistence).
        #expect(try await eventually { try await client.request(.GET, "/").headers.first(name: "x-ratelimit-remaining") == "2" })
        await redis.stop()
        await client.close()
        await gw.stop()
        await up.stop()
    }

    /// The in-process gateway takes JSON: the same YAML, converted.
    static func json(_ yaml: String) throws -> String { try YAMLDocument.parse(yaml).serialized() }
}
