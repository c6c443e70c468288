// What following a big Service costs the client: kube-sim runs as its own process (so
// its work is not counted), this process runs one Informer on EndpointSlices or on the
// legacy Endpoints, decoding every object it receives as the controller does, and reports
// its own CPU time (getrusage), the bytes it read from the API server, its peak RSS, and
// the endpoints it can see.
//
//   swift run -c release InformerLoad KUBE_SIM_BINARY slices|endpoints rollout|scale|sync [pods=5000] [batch=10]
//
// rollout: N pods, then a rolling update replacing all of them `batch` at a time.
// scale:   N pods appear at once, then one pod is removed (the cost of one pod change).
// sync:    N pods exist; the informer starts (paged list, 500 per page).
import Foundation
import KubeClient
import NIOCore
import NIOPosix
import SluiceCore
import SluiceHTTPClient

let args = CommandLine.arguments
guard args.count >= 4 else {
    print("usage: InformerLoad KUBE_SIM_BINARY slices|endpoints rollout|scale|sync [pods=5000] [batch=10]")
    exit(2)
}
let simBinary = args[1]
let useSlices = args[2] == "slices"
let scenario = args[3]
let pods = args.count > 4 ? Int(args[4]) ?? 5000 : 5000
let batch = args.count > 5 ? Int(args[5]) ?? 10 : 10
let group = MultiThreadedEventLoopGroup.singleton

func cpuSeconds() -> Double {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    return Double(u.ru_utime.tv_sec) + Double(u.ru_utime.tv_usec) / 1e6 + Double(u.ru_stime.tv_sec) + Double(u.ru_stime.tv_usec) / 1e6
}

func peakRSSMiB() -> Double {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    return Double(u.ru_maxrss) / 1024
}

// kube-sim in its own process.
let dir = NSTemporaryDirectory() + "informer-load-\(getpid())"
try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
let sim = Process()
sim.executableURL = URL(fileURLWithPath: simBinary)
sim.arguments = ["--listen", "127.0.0.1:0", "--write-kubeconfig", "\(dir)/config", "--bookmark-interval", "1"]
let out = Pipe()
sim.standardOutput = out
try sim.run()
defer { sim.terminate() }
var port = 0
var line = Data()
while port == 0 {
    let d = out.fileHandleForReading.availableData
    if d.isEmpty { fatalError("kube-sim exited") }
    line.append(d)
    if let text = String(data: line, encoding: .utf8), let r = text.range(of: "listening on http://127.0.0.1:") {
        port = Int(text[r.upperBound...].prefix { $0.isNumber }) ?? 0
    }
}

let connection = try KubeConfigLoader.fromFiles(["\(dir)/config"], context: nil)
let api = KubeAPI(connection, group: group)

/// A scenario step; returns the simulator's resourceVersion after it.
@discardableResult
func simPost(_ path: String) async throws -> Int64 {
    let conn = try await HTTP1Connection.connect(host: "127.0.0.1", port: port, group: group)
    let r = try await conn.request(.POST, path, timeout: .seconds(3600))
    await conn.close()
    guard r.status == 200, let rv = (try JSONValue.parse(r.body))["resourceVersion"]?.stringValue.flatMap({ Int64($0) }) else {
        fatalError("kube-sim \(path): \(r.status) \(String(decoding: r.body, as: UTF8.self))")
    }
    return rv
}

let resource: KubeResource = useSlices ? .endpointSlices(namespace: "default") : .endpoints(namespace: "default")
let initialRV = try await simPost("/sim/scale?namespace=default&service=web&replicas=\(scenario == "scale" ? 1 : pods)")

// The informer decodes every object into the typed model, as the controller does.
final class Counter: @unchecked Sendable {
    let lock = NSLock()
    var events = 0
    var decodeErrors = 0
    func add(_ ok: Bool) {
        lock.lock()
        events += 1
        if !ok { decodeErrors += 1 }
        lock.unlock()
    }
}
let counter = Counter()
let informer = Informer(api: api, resource: resource)
nonisolated(unsafe) var task: Task<Void, Never>? = nil
func startInformer() {
  task = Task {
    await informer.run { e in
        let o: JSONValue
        switch e {
        case .added(let x), .updated(_, let x), .deleted(let x): o = x
        }
        if useSlices { counter.add((try? EndpointSlice(json: o)) != nil) } else { counter.add((try? Endpoints(json: o)) != nil) }
    }
  }
}

func visibleEndpoints() async -> Int {
    let cache = await informer.cache
    if useSlices { return cache.values.reduce(0) { $0 + ($1["endpoints"]?.arrayValue?.count ?? 0) } }
    return cache.values.reduce(0) { $0 + ($1["subsets"]?.arrayValue?.reduce(0) { $0 + ($1["addresses"]?.arrayValue?.count ?? 0) } ?? 0) }
}

/// Converged: the informer has read up to the simulator's resourceVersion after the
/// scenario step (a change of its own resource, or a bookmark, at most 1 s later). This
/// reads resourceVersions as the simulator's integers: a benchmark of our own simulator,
/// not something a client may do with a real API server.
func converged(to target: Int64) async throws {
    let deadline = ContinuousClock.now + .seconds(600)
    while ContinuousClock.now < deadline {
        if let rv = Int64(await informer.resourceVersion), rv >= target { return }
        try await Task.sleep(for: .milliseconds(5))
    }
    fatalError("the informer did not converge within 600 s")
}

func measure(_ label: String, _ body: () async throws -> Int64) async throws {
    let cpu0 = cpuSeconds(), bytes0 = api.bytesReceived.value, events0 = counter.events
    let start = ContinuousClock.now
    try await converged(to: try await body())
    let elapsed = ContinuousClock.now - start
    let cpu1 = cpuSeconds(), bytes1 = api.bytesReceived.value
    let (s, a) = elapsed.components
    print(String(
        format: "%@ %@: cpu %.2f s, received %.2f MiB, events %d, visible endpoints %d, wall %.1f s, peak RSS %.0f MiB",
        useSlices ? "slices" : "endpoints", label, cpu1 - cpu0, Double(bytes1 - bytes0) / 1_048_576, counter.events - events0,
        await visibleEndpoints(), Double(s) + Double(a) / 1e18, peakRSSMiB()))
}

switch scenario {
case "rollout":
    try await measure("initial sync of \(pods) pods") { startInformer(); return initialRV }
    try await measure("rolling update of \(pods) pods, \(batch) at a time") {
        try await simPost("/sim/rollout?namespace=default&service=web&batch=\(batch)")
    }
case "sync":
    try await measure("initial sync of \(pods) pods") { startInformer(); return initialRV }
case "scale":
    try await measure("initial sync") { startInformer(); return initialRV }
    try await measure("scale 1 -> \(pods) pods") { try await simPost("/sim/scale?namespace=default&service=web&replicas=\(pods)") }
    try await measure("one pod removed") { try await simPost("/sim/scale?namespace=default&service=web&replicas=\(pods - 1)") }
default:
    print("unknown scenario \(scenario)")
}
if counter.decodeErrors > 0 { print("decode errors: \(counter.decodeErrors)") }
task?.cancel()
