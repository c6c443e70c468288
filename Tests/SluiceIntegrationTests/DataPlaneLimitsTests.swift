import Foundation
import NIOCore
import NIOPosix
import SluiceCore
import SluiceProxy
import SluiceServer
import SluiceTesting
import Testing

/// The timeouts and limits a production proxy has, on real sockets: each one frees what a
/// stalled client or a silent peer would otherwise hold forever.
@Suite struct DataPlaneLimitsTests {
    @Test func aStalledRequestBodyGets408WithinTheBound() async throws {
        let up = try await startUpstream("a")
        var settings = ProxySettings()
        settings.clientBodyTimeout = .milliseconds(400)
        let gw = try await Gateway.start(settings: settings, routeJSON(nodes: [up.address]))
        let start = ContinuousClock.now
        // Three of the ten promised bytes, then nothing.
        let (response, closed) = try await RawHTTP.exchange(
            port: gw.port, group: Gateway.group, "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc", timeout: .seconds(20))
        let elapsed = ContinuousClock.now - start
        #expect(response.hasPrefix("HTTP/1.1 408 Request Timeout\r\n"), "\(response)")
        #expect(response.contains("Connection: close\r\n"))
        #expect(closed)
        #expect(elapsed >= .milliseconds(350) && elapsed < .seconds(10), "\(elapsed)")
        await gw.stop()
        await up.stop()
    }

    @Test func anIdleKeepAliveConnectionIsClosed() async throws {
        let up = try await startUpstream("a")
        var settings = ProxySettings()
        settings.keepaliveTimeout = .milliseconds(300)
        let gw = try await Gateway.start(settings: settings, routeJSON(nodes: [up.address]))
        let client = try await gw.client()
        let sent = ContinuousClock.now
        let r = try await client.request(.GET, "/x")
        #expect(r.status == .ok)
        let closed = try await eventually(timeout: .seconds(10)) { !client.isActive }
        #expect(closed)
        // Closed by the idle timeout (which starts after the response), not right away.
        #expect(ContinuousClock.now - sent >= .milliseconds(300))
        await client.close()
        await gw.stop()
        await up.stop()
    }

    @Test func anIdleTunnelIsClosedAfterTheReadTimeout() async throws {
        let up = try await startUpstream("ws")
        let gw = try await Gateway.start(
            #"{"routes":[{"id":"ws","uri":"/ws","enable_websocket":true,"timeout":{"connect":5,"send":5,"read":3},"upstream":{"nodes":{"\#(up.address)":1}}}]}"#
        )
        let ws = try await TestWebSocketClient.connect(port: gw.port, path: "/ws", group: Gateway.group)
        let opened = ContinuousClock.now
        try await ws.send("hello")
        #expect(try await ws.receive() == "hello")
        // Traffic keeps it open; silence for the read timeout closes it.
        let closed = try await eventually(timeout: .seconds(20)) { !ws.isActive }
        #expect(closed)
        #expect(ContinuousClock.now - opened >= .milliseconds(2900))
        await ws.close()
        await gw.stop()
        await up.stop()
    }

    @Test func acceptsWaitAtTheConnectionCap() async throws {
        let up = try await startUpstream("a")
        let gw = try await Gateway.start(workers: 1, maxConnections: 2, routeJSON(nodes: [up.address]))
        let first = try await gw.client()
        let second = try await gw.client()
        #expect(try await first.request(.GET, "/1").status == .ok)
        #expect(try await second.request(.GET, "/2").status == .ok)
        // A third client is connected by the kernel (backlog) but not accepted: no answer.
        let third = Task {
            try await RawHTTP.exchange(
                port: gw.port, group: Gateway.group, "GET /3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", timeout: .seconds(15))
        }
        try await Task.sleep(for: .milliseconds(500))
        #expect(try await gw.server.inspectLoops { $0.openConnections }.reduce(0, +) == 2)
        // One connection closes: the waiting client is accepted and answered.
        await first.close()
        let (response, _) = try await third.value
        #expect(response.hasPrefix("HTTP/1.1 200 OK"), "\(response)")
        await second.close()
        await gw.stop()
        await up.stop()
    }
}

/// The access log on real sockets: one line per request, with what happened.
@Suite struct AccessLogIntegrationTests {
    func tempPath(_ name: String) -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-al-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir.appendingPathComponent(name).path
    }

    func lines(_ path: String) -> [String] {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    @Test func textLinesRecordProxiedAndLocalAnswers() async throws {
        let up = try await startUpstream("a")
        let path = tempPath("access.log")
        let log = try AccessLog(destination: .file(path), format: .text)
        let dead = try await deadPort()
        let gw = try await Gateway.start(
            accessLog: log,
            #"""
            {"routes":[{"id":"ok","uri":"/ok","upstream":{"nodes":{"\#(up.address)":1}}},
              {"id":"dead","uri":"/dead","upstream":{"nodes":{"127.0.0.1:\#(dead)":1},"retries":0}}]}
            """#)
        let client = try await gw.client()
        #expect(try await client.request(.GET, "/ok?q=1", headers: [("User-Agent", "probe \"x\""), ("Referer", "http://r/")]).status == .ok)
        #expect(try await client.request(.GET, "/missing").status == .notFound)
        #expect(try await client.request(.GET, "/dead").status == .badGateway)
        await client.close()
        await gw.stop()  // flushes every loop's buffer
        #expect(log.flush(timeout: .seconds(5)))
        let all = lines(path)
        #expect(all.count == 3, "\(all)")
        let ok = try #require(all.first { $0.contains("/ok?q=1") })
        #expect(ok.hasPrefix("127.0.0.1 - - ["))
        #expect(ok.contains("\"GET /ok?q=1 HTTP/1.1\" 200 "))
        #expect(ok.contains("\"http://r/\" \"probe \\x22x\\x22\""))
        #expect(ok.contains(" \(up.address) 200 "))
        #expect(ok.hasSuffix("\"http://test.local/ok?q=1\""))
        let missing = try #require(all.first { $0.contains("/missing") })
        #expect(missing.contains("\" 404 ") && missing.contains(" - - - "))
        let failed = try #require(all.first { $0.contains("/dead") })
        #expect(failed.contains("\" 502 ") && failed.contains(" 127.0.0.1:\(dead) - "))
        _ = log.close()
        await up.stop()
    }

    @Test func jsonLinesParseAndNameTheRoute() async throws {
        let up = try await startUpstream("a")
        let path = tempPath("access.json")
        let log = try AccessLog(destination: .file(path), format: .json)
        let gw = try await Gateway.start(accessLog: log, routeJSON(uri: "/j", nodes: [up.address]))
        let client = try await gw.client()
        for _ in 0..<5 { #expect(try await client.request(.GET, "/j").status == .ok) }
        await client.close()
        await gw.stop()
        #expect(log.flush(timeout: .seconds(5)))
        let all = lines(path)
        #expect(all.count == 5)
        for line in all {
            let doc = try JSONValue.parse(line)
            #expect(doc["route_id"]?.stringValue == "r1")
            #expect(doc["status"] == JSONValue.int(200))
            #expect(doc["upstream_addr"]?.stringValue == up.address)
        }
        _ = log.close()
        await up.stop()
    }

    @Test func sigusr1AfterMoveWritesANewFile() async throws {
        let up = try await startUpstream("a")
        let path = tempPath("access.log")
        let dir = (path as NSString).deletingLastPathComponent
        let config = dir + "/apisix.json"
        try #"{"routes":[{"id":"1","uri":"/*","upstream":{"nodes":{"\#(up.address)":1}}}]}"#.write(toFile: config, atomically: true, encoding: .utf8)
        let gw = try GatewayProcess.serve(["--access-log", path, "--standalone", config, "--workers", "1"], directory: dir)
        defer {
            gw.kill(SIGKILL)
        }
        let ports = try await gw.ports()
        func get(_ p: String) async throws -> String {
            try await RawHTTP.exchange(port: ports.proxy, group: Gateway.group, "GET \(p) HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").response
        }
        #expect(try await get("/before").hasPrefix("HTTP/1.1 200"))
        #expect(try await eventually { lines(path).contains { $0.contains("/before") } })
        try FileManager.default.moveItem(atPath: path, toPath: path + ".1")
        gw.kill(SIGUSR1)
        // Lines written after the signal go to a new file at the old path.
        #expect(try await eventually(timeout: .seconds(10)) {
            _ = try await get("/after")
            return lines(path).contains { $0.contains("/after") }
        })
        #expect(lines(path + ".1").contains { $0.contains("/before") })
        await up.stop()
    }
}
