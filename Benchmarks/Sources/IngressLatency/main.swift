// Slice change → gateway node set updated, end to end, with every part in its own process:
// kube-sim (the API server), `sluice serve` (the gateway) and, in the push modes,
// `sluice ingress` (the controller). Release binaries.
//
//   swift run -c release IngressLatency BIN_DIR slices|endpoints|discovery ENDPOINTS [changes=40]
//
// slices:    the controller follows EndpointSlices and writes upstream nodes to the Admin API
// endpoints: the same, following the legacy Endpoints object (--watch-endpointslice false)
// discovery: no controller; the gateway follows the slices itself (discovery_type: kubernetes)
//
// A change removes one pod or adds it back (one slice is updated; kube-sim, like the
// EndpointSlice controller, refills the slice with room). Changes are 250 ms apart so
// that none is coalesced with the one before. Latency is from the slice's
// `endpoints.kubernetes.io/last-change-trigger-time` (stamped by kube-sim when it writes the
// slice, in microseconds) to the moment the new nodes are live in the gateway: the Admin
// API's answer to the controller's write (it answers once the change is live), or the
// gateway publishing the snapshot in discovery mode. Both are logged at debug level by the
// process that sees it, on the same clock as kube-sim's.
import Foundation
import KubeClient
import NIOCore
import NIOHTTP1
import NIOPosix
import SluiceCore
import SluiceHTTPClient

/// Unbuffered, so nothing is lost if the process dies.
func say(_ text: String) { FileHandle.standardOutput.write(Data((text + "\n").utf8)) }

let args = CommandLine.arguments
guard args.count >= 4, ["slices", "endpoints", "discovery"].contains(args[2]), let endpoints = Int(args[3]) else {
    say("usage: IngressLatency BIN_DIR slices|endpoints|discovery ENDPOINTS [changes=40]")
    exit(2)
}
let bin = args[1]
let mode = args[2]
let changes = args.count > 4 ? Int(args[4]) ?? 40 : 40
let group = MultiThreadedEventLoopGroup.singleton
let dir = NSTemporaryDirectory() + "ingress-latency-\(getpid())"
try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
let key = "bench-admin-key-0123"

/// A child process whose output is kept.
final class Child: @unchecked Sendable {
    let process = Process()
    private let lock = NSLock()
    private var buffer = Data()
    init(_ path: String, _ arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        pipe.fileHandleForReading.readabilityHandler = { [weak self] h in
            let d = h.availableData
            guard let self, !d.isEmpty else { return }
            self.lock.lock()
            self.buffer.append(d)
            self.lock.unlock()
        }
        try process.run()
    }
    var text: String {
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: buffer, as: UTF8.self)
    }
    /// CPU seconds (user + system) from /proc.
    var cpu: Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return (Double(fields[11]) ?? 0) / 100 + (Double(fields[12]) ?? 0) / 100
    }
    func stop() {
        if process.isRunning { process.terminate() }
    }
}

func freePort() throws -> Int {
    let ch = try ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).wait()
    let p = ch.localAddress?.port ?? 0
    try ch.close().wait()
    return p
}

func waitFor(_ what: String, timeout: Double = 300, onTimeout: () -> Void = {}, _ condition: () async throws -> Bool) async throws {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if (try? await condition()) == true { return }
        try await Task.sleep(for: .milliseconds(50))
    }
    say("timed out waiting for \(what)")
    onTimeout()
    exit(1)
}

func request(_ port: Int, _ method: HTTPMethod, _ path: String, _ body: String? = nil) async throws -> (Int, JSONValue) {
    // One retry: a keep-alive race or a listener still starting is not what is measured.
    for attempt in 0..<2 {
        do {
            let c = try await HTTP1Connection.connect(host: "127.0.0.1", port: port, group: group)
            defer { Task { await c.close() } }
            let r = try await c.request(
                method, path, headers: [("X-API-KEY", key), ("Content-Type", "application/json")], body: body.map { Array($0.utf8) },
                timeout: .seconds(600))
            return (r.status, (try? JSONValue.parse(r.body)) ?? .null)
        } catch where attempt == 0 {
            try await Task.sleep(for: .milliseconds(100))
        }
    }
    throw HTTP1ClientError("\(method.rawValue) 127.0.0.1:\(port)\(path) failed twice")
}

func latencies(_ text: String, _ marker: String) -> [Double] {
    text.split(separator: "\n").filter { $0.contains(marker) }.compactMap { line in
        line.split(separator: " ").first { $0.hasPrefix("latency_ms=") }.flatMap { Double($0.dropFirst("latency_ms=".count)) }
    }
}

func metric(_ port: Int, _ path: String, _ series: String) async throws -> Double {
    let text: String
    do {
        let c = try await HTTP1Connection.connect(host: "127.0.0.1", port: port, group: group)
        defer { Task { await c.close() } }
        text = String(decoding: try await c.request(.GET, path).body, as: UTF8.self)
    } catch {
        say("metrics at 127.0.0.1:\(port)\(path): \(error)")
        throw error
    }
    for l in text.split(separator: "\n") where l.hasPrefix(series + " ") { return Double(l.split(separator: " ").last ?? "") ?? 0 }
    return 0
}

// 1. The API server, with the Service's pods (slices of 100).
let simPort = try freePort()
let sim = try Child("\(bin)/kube-sim", ["--listen", "127.0.0.1:\(simPort)", "--write-kubeconfig", "\(dir)/kubeconfig", "--bookmark-interval", "5"])
defer { sim.stop() }
try await waitFor("kube-sim") { FileManager.default.fileExists(atPath: "\(dir)/kubeconfig") && sim.text.contains("listening") }
func scale(_ n: Int) async throws {
    let c = try await HTTP1Connection.connect(host: "127.0.0.1", port: simPort, group: group)
    defer { Task { await c.close() } }
    let r = try await c.request(.POST, "/sim/scale?namespace=default&service=httpbin&replicas=\(n)&port=8080", timeout: .seconds(600))
    guard r.status == 200 else { say("scale failed: \(r.status) \(String(decoding: r.body, as: UTF8.self))"); exit(1) }
}
say("kube-sim up; scaling to \(endpoints)")
try await scale(endpoints)
say("scaled")

// 2. The gateway.
let admin = try freePort(), metricsPort = try freePort(), control = try freePort()
var serveArgs = ["serve", "--data-dir", "\(dir)/data", "--admin-key", key, "--proxy-listen", "127.0.0.1:\(try freePort())",
                 "--admin-listen", "127.0.0.1:\(admin)", "--control-listen", "127.0.0.1:\(control)", "--metrics-listen", "127.0.0.1:\(metricsPort)",
                 "--workers", "1", "--log-level", "debug"]
if mode == "discovery" { serveArgs += ["--kubernetes-discovery", "\(dir)/kubeconfig"] }
let gateway = try Child("\(bin)/sluice", serveArgs)
say("gateway started")
defer { gateway.stop() }
try await waitFor("the gateway") { try await request(admin, .GET, "/apisix/admin/routes").0 == 200 }

// 3. What routes to the Service.
var controller: Child? = nil
let visible = mode == "endpoints" ? min(endpoints, 1000) : endpoints
let controllerMetrics = try freePort()
if mode == "discovery" {
    _ = try await request(admin, .PUT, "/apisix/admin/upstreams/httpbin", #"{"discovery_type":"kubernetes","service_name":"default/httpbin:http"}"#)
    _ = try await request(admin, .PUT, "/apisix/admin/routes/httpbin", #"{"uri":"/get","upstream_id":"httpbin"}"#)
    try await waitFor("discovery to see \(visible) nodes") {
        let (_, dump) = try await request(control, .GET, "/v1/discovery/kubernetes/dump")
        let service = dump["endpoints"]?.arrayValue?.first { $0["name"]?.stringValue == "default/httpbin" }
        return service?["value"]?["http"]?.arrayValue?.count == visible
    }
} else {
    let api = KubeAPI(try KubeConfigLoader.fromFiles(["\(dir)/kubeconfig"], context: nil), group: group)
    say("creating the ApisixRoute")
    _ = try await api.create(.apisixRoutes(namespace: "default"), try JSONValue.parse(#"""
        {"metadata": {"name": "httpbin-route", "namespace": "default"},
         "spec": {"http": [{"name": "rule1", "match": {"hosts": ["httpbin.org"], "paths": ["/get"]},
                            "backends": [{"serviceName": "httpbin", "servicePort": 80}]}]}}
        """#))
    controller = try Child("\(bin)/sluice", [
        "ingress", "--kubeconfig", "\(dir)/kubeconfig", "--admin-url", "http://127.0.0.1:\(admin)", "--admin-key", key, "--leader-elect", "false",
        "--watch-endpointslice", mode == "slices" ? "true" : "false", "--metrics-listen", "127.0.0.1:\(controllerMetrics)", "--log-level", "debug",
        "--resync-interval", "3600",
    ])
    try await waitFor("the controller to write \(visible) nodes") {
        let (_, u) = try await request(admin, .GET, "/apisix/admin/upstreams/default_httpbin_80")
        return u["value"]?["nodes"]?.objectValue?.count == visible
    }
}
defer { controller?.stop() }
let modifiedBefore = try await request(admin, .GET, "/apisix/admin/upstreams/\(mode == "discovery" ? "httpbin" : "default_httpbin_80")").1["modifiedIndex"]?.intValue

// 4. The changes.
let marker = mode == "discovery" ? "kubernetes discovery: nodes live" : "nodes live"
let logOf: () -> String = { mode == "discovery" ? gateway.text : controller?.text ?? "" }
let seenBefore = latencies(logOf(), marker).count
let bytesBefore = mode == "discovery" ? 0 : try await metric(controllerMetrics, "/metrics", "sluice_ingress_gateway_write_bytes_total")
let readBefore = mode == "discovery" ? 0 : try await metric(controllerMetrics, "/metrics", "sluice_ingress_apiserver_read_bytes_total")
let cpuBefore = (gateway.cpu, controller?.cpu ?? 0)
var applied = 0
for i in 0..<changes {
    try await scale(i % 2 == 0 ? endpoints - 1 : endpoints)
    // In Endpoints mode above 1,000 pods the truncated object may not change at all.
    if mode == "endpoints" && endpoints >= 1000 {
        try await Task.sleep(for: .milliseconds(250))
        continue
    }
    try await waitFor("change \(i) to go live", timeout: 30, onTimeout: { say(logOf().split(separator: "\n").suffix(15).joined(separator: "\n")) }) {
        latencies(logOf(), marker).count > seenBefore + applied
    }
    applied += 1
    try await Task.sleep(for: .milliseconds(250))
}
try await Task.sleep(for: .milliseconds(500))
let samples = Array(latencies(logOf(), marker).dropFirst(seenBefore)).sorted()
let bytes = mode == "discovery" ? 0 : try await metric(controllerMetrics, "/metrics", "sluice_ingress_gateway_write_bytes_total") - bytesBefore
let read = mode == "discovery" ? 0 : try await metric(controllerMetrics, "/metrics", "sluice_ingress_apiserver_read_bytes_total") - readBefore
let cpu = (gateway.cpu - cpuBefore.0, (controller?.cpu ?? 0) - cpuBefore.1)
let modifiedAfter = try await request(admin, .GET, "/apisix/admin/upstreams/\(mode == "discovery" ? "httpbin" : "default_httpbin_80")").1["modifiedIndex"]?.intValue

func pct(_ p: Double) -> String {
    guard !samples.isEmpty else { return "-" }
    return String(format: "%.1f", samples[min(samples.count - 1, Int(Double(samples.count) * p))])
}
say("mode=\(mode) endpoints=\(endpoints) visible_nodes=\(visible) changes=\(changes) measured=\(samples.count)")
say("latency_ms p50=\(pct(0.5)) p99=\(pct(0.99)) max=\(samples.last.map { String(format: "%.1f", $0) } ?? "-")")
say(String(format: "per change: bytes written to the gateway=%.0f, bytes the controller read from the API server=%.0f", bytes / Double(changes), read / Double(changes)))
say(String(format: "per change: gateway CPU %.2f ms, controller CPU %.2f ms", cpu.0 * 1000 / Double(changes), cpu.1 * 1000 / Double(changes)))
say("store writes to the upstream during the changes: \((modifiedAfter ?? 0) - (modifiedBefore ?? 0) > 0 ? "yes" : "none") (modifiedIndex \(modifiedBefore ?? 0) → \(modifiedAfter ?? 0))")
