import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import SluiceCore
import SluiceTesting
import Testing

/// The built `sluice` binary (scripts/test.sh builds it before the tests run).
func sluiceBinary() throws -> String {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    for candidate in [".build/debug/sluice", ".build/x86_64-unknown-linux-gnu/debug/sluice"] {
        let path = root.appendingPathComponent(candidate).path
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    throw TestClientError(description: "the sluice binary is not built: run `swift build --build-tests` first (scripts/test.sh does)")
}


final class GatewayProcess: @unchecked Sendable {
    // `buffer` is guarded by `lock`; the rest is set up once in init.
    let process = Process()
    private let output = Pipe()
    private let lock = NSLock()
    private var buffer = Data()

    init(_ arguments: [String], directory: String) throws {
        process.executableURL = URL(fileURLWithPath: try sluiceBinary())
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        process.standardOutput = output
        process.standardError = output
        output.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            guard let self, !data.isEmpty else { return }
            self.lock.lock()
            self.buffer.append(data)
            self.lock.unlock()
        }
        try process.run()
    }

    /// `sluice serve` with every listener on 127.0.0.1 port 0 (the kernel picks free ports,
    /// so parallel tests never race for one), plus `extra` flags.
    static func serve(_ extra: [String], directory: String) throws -> GatewayProcess {
        try GatewayProcess(
            ["serve", "--proxy-listen", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--control-listen", "127.0.0.1:0",
             "--metrics-listen", "127.0.0.1:0"] + extra, directory: directory)
    }

    struct Ports {
        var proxy = 0, admin = 0, control = 0, metrics = 0, tls = 0
    }

    /// The ports the gateway bound, from its "... listening" log lines, once all four are up.
    func ports(timeout: Duration = .seconds(20)) async throws -> Ports {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            var ports = Ports()
            for line in text.split(separator: "\n") where line.hasSuffix("listening") {
                guard let address = line.split(separator: " ").first(where: { $0.hasPrefix("address=") }),
                    let port = address.split(separator: ":").last.flatMap({ Int($0) })
                else { continue }
                if line.hasSuffix("admin API listening") { ports.admin = port }
                else if line.hasSuffix("control API listening") { ports.control = port }
                else if line.hasSuffix("metrics listening") { ports.metrics = port }
                else if line.hasSuffix("TLS proxy listening") { ports.tls = port }
                else if line.hasSuffix("proxy listening") { ports.proxy = port }
            }
            if ports.proxy > 0 && ports.admin > 0 && ports.control > 0 && ports.metrics > 0 { return ports }
            if !process.isRunning { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw TestClientError(description: "the gateway did not report its listeners: \(text)")
    }

    func kill(_ signal: Int32) { Foundation.kill(process.processIdentifier, signal) }

    /// Waits for exit, up to `timeout`; returns the exit status or nil.
    func waitForExit(timeout: Duration = .seconds(20)) async -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        return process.isRunning ? nil : process.terminationStatus
    }

    /// Everything the process printed so far.
    var text: String {
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: buffer, as: UTF8.self)
    }
}


@Suite struct CommandLineTests {
    @Test func validateExitsZeroOrTwoWithEveryError() async throws {
        let dir = makeTemporaryDirectory()
        try #"routes: [{id: "1", uri: /a, upstream_id: "u"}]\#nupstreams: [{id: u, nodes: {"127.0.0.1:80": 1}}]\#n"#
            .write(toFile: "\(dir)/good.yaml", atomically: true, encoding: .utf8)
        try "routes:\n  - {id: \"1\", uri: a, upstream_id: u}\n  - {id: \"2\", uri: /b, upstream: {nodes: {\"h:0\": 1}}}\n  - {id: \"3\", uri: /c, upstream_id: missing}\n"
            .write(toFile: "\(dir)/bad.yaml", atomically: true, encoding: .utf8)
        let good = try GatewayProcess(["validate", "good.yaml"], directory: dir)
        #expect(await good.waitForExit() == 0)
        let bad = try GatewayProcess(["validate", "bad.yaml"], directory: dir)
        #expect(await bad.waitForExit() == 2)
        let out = bad.text
        #expect(out.contains("routes[0].uri: must start with /"))
        #expect(out.contains("routes[1].upstream.nodes.h:0: port must be 1-65535"))
        #expect(out.contains("routes[2].upstream_id: upstream \"missing\" not found"))
    }

    @Test func badFlagsExitTwo() async throws {
        let dir = makeTemporaryDirectory()
        let unknown = try GatewayProcess(["serve", "--no-such-flag"], directory: dir)
        #expect(await unknown.waitForExit() == 2)
        let badListen = try GatewayProcess(["serve", "--proxy-listen", "nowhere"], directory: dir)
        #expect(await badListen.waitForExit() == 2)
        #expect(badListen.text.contains("--proxy-listen"))
        // A grace period past a day used to pass `>= 0` and trap when turned into nanoseconds.
        let hugeGrace = try GatewayProcess(["serve", "--shutdown-timeout", "1e300"], directory: dir)
        #expect(await hugeGrace.waitForExit() == 2)
        #expect(hugeGrace.text.contains("--shutdown-timeout"))
        let noCommand = try GatewayProcess(["frobnicate"], directory: dir)
        #expect(await noCommand.waitForExit() == 2)
    }

    @Test func sigtermStopsGracefullyWithExitZero() async throws {
        let dir = makeTemporaryDirectory()
        let up = try await startUpstream("slow")
        try #"routes: [{id: "1", uri: "/*", upstream: {nodes: {"\#(up.address)": 1}}}]\#n"#.write(toFile: "\(dir)/c.yaml", atomically: true, encoding: .utf8)
        let p = try GatewayProcess.serve(["--standalone", "c.yaml", "--data-dir", "data", "--workers", "1"], directory: dir)
        let client = try await TestHTTPClient.connect(port: try await p.ports().proxy, group: Gateway.group)
        async let slow = client.request(.GET, "/delay/700")
        #expect(try await eventually { up.requestsServed == 1 })  // in flight
        p.kill(SIGTERM)
        let r = try await slow
        #expect(r.status == .ok)  // the in-flight request finished
        #expect(await p.waitForExit() == 0)
        await up.stop()
    }
}

/// SIGKILL during a burst of Admin API writes: after a restart every write that was
/// acknowledged is there, and the store always opens.
@Suite struct CrashTests {
    @Test func acknowledgedWritesSurviveSIGKILL() async throws {
        let dir = makeTemporaryDirectory()
        var acknowledged: [String] = []
        let killPoints = [37, 91, 150, 203, 277]  // writes before each kill (≥ 500 in total)
        for (round, killAfter) in killPoints.enumerated() {
            let p = try GatewayProcess.serve(["--data-dir", "data", "--admin-key", adminKey, "--workers", "1"], directory: dir)
            let admin = try await p.ports().admin
            let client = AdminClient(http: try await TestHTTPClient.connect(port: admin, group: Gateway.group))
            // Everything acknowledged so far is present.
            let list = try await client.call(.GET, "/routes")
            let present = Set((list.json["list"]?.arrayValue ?? []).compactMap { $0["value"]?["id"]?.stringValue })
            #expect(Set(acknowledged).isSubset(of: present), "round \(round): lost \(Set(acknowledged).subtracting(present).sorted())" as Comment)
            // A burst of writes; the kill lands while writes are in flight.
            var i = 0
            while i < killAfter + 20 {
                if i == killAfter { p.kill(SIGKILL) }
                let id = "r\(round)-\(i)"
                do {
                    let r = try await client.call(.PUT, "/routes/\(id)", #"{"uri":"/\#(id)","upstream":{"nodes":{"127.0.0.1:1":1}}}"#)
                    if r.status == 201 { acknowledged.append(id) }
                } catch {
                    break  // the process is gone
                }
                i += 1
            }
            _ = await p.waitForExit()
            await client.close()
        }
        #expect(acknowledged.count >= 500)
        // Final check after the last kill.
        let p = try GatewayProcess.serve(["--data-dir", "data", "--admin-key", adminKey], directory: dir)
        let admin = try await p.ports().admin
        let client = AdminClient(http: try await TestHTTPClient.connect(port: admin, group: Gateway.group))
        let list = try await client.call(.GET, "/routes")
        let present = Set((list.json["list"]?.arrayValue ?? []).compactMap { $0["value"]?["id"]?.stringValue })
        #expect(Set(acknowledged).isSubset(of: present))
        await client.close()
        p.kill(SIGTERM)
        _ = await p.waitForExit()
    }
}

/// Peak resident memory of a process, from /proc (VmHWM), in bytes.
func peakResidentBytes(_ pid: Int32) -> Int? {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
    for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        let kb = line.split(separator: " ").compactMap { Int($0) }.first
        return kb.map { $0 * 1024 }
    }
    return nil
}

@Suite struct BackPressureTests {
    /// 256 MiB from a fast upstream to a slow client through a gateway process: the gateway
    /// must slow the upstream down rather than buffer the difference.
    @Test func aSlowClientDoesNotMakeTheGatewayBufferTheBody() async throws {
        let dir = makeTemporaryDirectory()
        let up = try await startUpstream("fast")
        try #"routes: [{id: "1", uri: "/*", upstream: {nodes: {"\#(up.address)": 1}}}]\#n"#.write(toFile: "\(dir)/c.yaml", atomically: true, encoding: .utf8)
        let p = try GatewayProcess.serve(["--standalone", "c.yaml", "--data-dir", "data", "--workers", "1"], directory: dir)
        let proxy = try await p.ports().proxy
        // Warm up, then take the baseline.
        _ = try await SlowReader.download(port: proxy, group: Gateway.group, path: "/bytes/1048576", interval: .milliseconds(1))
        let baseline = try #require(peakResidentBytes(p.process.processIdentifier))
        let size = 256 * 1024 * 1024
        let received = try await SlowReader.download(port: proxy, group: Gateway.group, path: "/bytes/\(size)", interval: .microseconds(500))
        #expect(received == size)
        let peak = try #require(peakResidentBytes(p.process.processIdentifier))
        #expect(peak - baseline < 64 * 1024 * 1024, "gateway peak RSS grew by \((peak - baseline) >> 20) MiB" as Comment)

        // The other direction: a fast client uploads to an upstream that reads slowly.
        let client = try await TestHTTPClient.connect(port: proxy, group: Gateway.group)
        let upload = 192 * 1024 * 1024
        let body = TestUpstream.pattern(upload, allocator: ByteBufferAllocator())
        let r = try await client.request(.POST, "/sink", body: body, chunkSize: 256 * 1024, timeout: .seconds(120))
        #expect(r.bodyString == "received \(upload)")
        let peakAfterUpload = try #require(peakResidentBytes(p.process.processIdentifier))
        #expect(peakAfterUpload - baseline < 64 * 1024 * 1024, "gateway peak RSS grew by \((peakAfterUpload - baseline) >> 20) MiB" as Comment)
        await client.close()
        p.kill(SIGTERM)
        _ = await p.waitForExit()
        await up.stop()
    }
}

@Suite struct EtcdProcessTests {
    /// Two `sluice serve --etcd` processes on one etcd: a route written through A's Admin
    /// API is served by B; one written with etcdctl is served by both.
    @Test func twoGatewayProcessesShareTheirConfigThroughEtcd() async throws {
        let etcd = try await EtcdTestServer.start(group: Gateway.group)
        let up = try await startUpstream("origin")
        let dir = makeTemporaryDirectory()
        var processes: [(GatewayProcess, proxy: Int, admin: Int)] = []
        var metricsPorts: [Int] = []
        for _ in 0..<2 {
            let p = try GatewayProcess.serve(["--etcd", etcd.url, "--admin-key", adminKey, "--workers", "1"], directory: dir)
            let ports = try await p.ports()
            processes.append((p, ports.proxy, ports.admin))
            metricsPorts.append(ports.metrics)
        }
        let adminA = AdminClient(http: try await TestHTTPClient.connect(port: processes[0].admin, group: Gateway.group))
        #expect(try await adminA.call(.PUT, "/upstreams/u", #"{"nodes":{"\#(up.address)":1}}"#).status == 201)
        #expect(try await adminA.call(.PUT, "/routes/a", #"{"uri":"/via-a","upstream_id":"u"}"#).status == 201)
        let proxyB = try await TestHTTPClient.connect(port: processes[1].proxy, group: Gateway.group)
        #expect(try await eventually { try await proxyB.request(.GET, "/via-a").status == .ok })
        _ = try etcd.etcdctl(["put", "/apisix/routes/c", #"{"uri":"/via-etcdctl","upstream_id":"u"}"#])
        let proxyA = try await TestHTTPClient.connect(port: processes[0].proxy, group: Gateway.group)
        #expect(try await eventually { try await proxyA.request(.GET, "/via-etcdctl").status == .ok })
        #expect(try await eventually { try await proxyB.request(.GET, "/via-etcdctl").status == .ok })
        // Metrics report etcd as reachable and the revision B has applied.
        let metrics = try await TestHTTPClient.connect(port: metricsPorts[1], group: Gateway.group)
        let text = try await metrics.request(.GET, "/apisix/prometheus/metrics").bodyString
        #expect(text.contains("apisix_etcd_reachable 1"))
        let index = text.split(separator: "\n").first { $0.hasPrefix("apisix_etcd_modify_indexes{key=\"x_etcd_index\"}") }
        #expect((index?.split(separator: " ").last).flatMap { Int($0) } ?? 0 >= 3)
        await metrics.close()
        await proxyA.close()
        await proxyB.close()
        await adminA.close()
        for (p, _, _) in processes {
            p.kill(SIGTERM)
            #expect(await p.waitForExit() == 0)
        }
        await up.stop()
        await etcd.remove()
    }
}

/// APISIX's `data_encryption` of plugin fields, with real processes on a real etcd.
@Suite struct DataEncryptionProcessTests {
    /// A consumer an APISIX left at its defaults wrote (its key-auth key encrypted with
    /// APISIX's default keyring) authenticates through a gateway given no keyring; one given
    /// `--keyring` stores the fields it writes encrypted, as APISIX does (t/node/data_encrypt.t),
    /// answers GET in the clear, and reads both.
    @Test func pluginFieldsAreEncryptedAtRestAndAPISIXWrittenOnesAreRead() async throws {
        let etcd = try await EtcdTestServer.start(group: Gateway.group)
        let up = try await startUpstream("origin")
        let dir = makeTemporaryDirectory()
        // "bar" under APISIX's default first key qeddd145sfvddff3 (openssl enc -aes-128-cbc,
        // key and IV the keyring entry), as an APISIX at its defaults stores it.
        let hex = "qeddd145sfvddff3".utf8.map { String(format: "%02x", $0) }.joined()
        let enc = try await Command.openssl(["enc", "-aes-128-cbc", "-K", hex, "-iv", hex, "-base64", "-A"], input: "bar")
        let encrypted = enc.output.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(encrypted == "+kOEVUuRc5rC5ZwvvAMLwg==", "\(enc.output)")
        _ = try etcd.etcdctl(["put", "/apisix/consumers/jack", #"{"username":"jack","plugins":{"key-auth":{"key":"\#(encrypted)"}}}"#])
        _ = try etcd.etcdctl(["put", "/apisix/routes/r", #"{"uri":"/*","plugins":{"key-auth":{}},"upstream":{"nodes":{"\#(up.address)":1}}}"#])

        let plain = try GatewayProcess.serve(["--etcd", etcd.url, "--admin-key", adminKey, "--workers", "1"], directory: dir)
        let ports = try await plain.ports()
        let proxy = try await TestHTTPClient.connect(port: ports.proxy, group: Gateway.group)
        #expect(try await eventually { try await proxy.request(.GET, "/", headers: [("apikey", "bar")]).status == .ok }, "\(plain.text.suffix(2000))")
        #expect(try await proxy.request(.GET, "/", headers: [("apikey", encrypted)]).status == .unauthorized)
        await proxy.close()
        plain.kill(SIGTERM)
        _ = await plain.waitForExit()

        // With a keyring of its own (first key edd1c9f0985e76a2), writes are encrypted with it.
        let keyed = try GatewayProcess.serve(
            ["--etcd", etcd.url, "--admin-key", adminKey, "--workers", "1", "--keyring", "edd1c9f0985e76a2", "--keyring", "qeddd145sfvddff3"],
            directory: dir)
        let kp = try await keyed.ports()
        let admin = AdminClient(http: try await TestHTTPClient.connect(port: kp.admin, group: Gateway.group))
        let put = try await admin.call(.PUT, "/consumers", #"{"username":"rose","plugins":{"key-auth":{"key":"bar2"},"basic-auth":{"username":"rose","password":"bar"}}}"#)
        #expect(put.status == 201)
        // The answer to a write shows what was stored; GET shows the clear text (as APISIX).
        #expect(put.json["value"]?["plugins"]?["basic-auth"]?["password"] == "77+NmbYqNfN+oLm0aX5akg==", "\(put.json)")
        let stored = try JSONValue.parse(try etcd.etcdctl(["get", "/apisix/consumers/rose", "--print-value-only"]).trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(stored["plugins"]?["basic-auth"]?["password"] == "77+NmbYqNfN+oLm0aX5akg==", "\(stored)")
        #expect(stored["plugins"]?["key-auth"]?["key"] != "bar2")
        let got = try await admin.call(.GET, "/consumers/rose")
        #expect(got.json["value"]?["plugins"]?["key-auth"]?["key"] == "bar2", "\(got.json)")
        #expect(try await admin.call(.GET, "/consumers/jack").json["value"]?["plugins"]?["key-auth"]?["key"] == "bar")
        // A PATCH merges into the clear form: the key is encrypted once, and still works.
        #expect(try await admin.call(.PATCH, "/consumers/rose", #"{"desc":"patched"}"#).status == 200)
        let proxy2 = try await TestHTTPClient.connect(port: kp.proxy, group: Gateway.group)
        #expect(try await eventually { try await proxy2.request(.GET, "/", headers: [("apikey", "bar2")]).status == .ok })
        #expect(try await proxy2.request(.GET, "/", headers: [("apikey", "bar")]).status == .ok)
        await proxy2.close()
        await admin.http.close()
        keyed.kill(SIGTERM)
        #expect(await keyed.waitForExit() == 0)
        await up.stop()
        await etcd.remove()
    }
}
