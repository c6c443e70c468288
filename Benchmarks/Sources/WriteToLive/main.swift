// Write-to-live latency of the Admin API: the time from sending a PUT to its 2xx, which
// Sluice sends only once the change is live on every event loop. Each write is then checked
// with a request through the proxy. Real sockets on 127.0.0.1, embedded store with fsync.
//
//   swift run -c release WriteToLive [routes=10000] [single=1000]
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import SluiceAdmin
import SluiceCore
import SluiceServer
import SluiceStore
import SluiceTesting

func percentile(_ sorted: [Double], _ p: Double) -> Double {
    guard !sorted.isEmpty else { return .nan }
    return sorted[min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.down)))]
}

func ms(_ d: Duration) -> Double {
    let (s, a) = d.components
    return Double(s) * 1000 + Double(a) / 1e15
}

let args = CommandLine.arguments
let routeCount = args.count > 1 ? Int(args[1]) ?? 10_000 : 10_000
let singleCount = args.count > 2 ? Int(args[2]) ?? 1_000 : 1_000

let group = MultiThreadedEventLoopGroup.singleton
var logger = Logger(label: "bench")
logger.logLevel = .error
var config = GatewayServer.Configuration()
config.proxyListen = [ListenAddress(host: "127.0.0.1", port: 0)]
config.workers = 2
let server = try await GatewayServer.make(configuration: config, logger: logger)
let proxyPort = try await server.start()[0].port!
let dir = NSTemporaryDirectory() + "sluice-wtl-\(getpid())"
let service = ConfigService(store: try EmbeddedStore(directory: dir), publisher: { try await server.apply($0, changes: $1) })
try await service.start()
let key = "bench-key-0123456789"
let admin = try await APIServer.start(
    name: "admin", listen: ListenAddress(host: "127.0.0.1", port: 0),
    handler: AdminAPI(service: service, keys: [key: .admin], allowed: []), group: group, logger: logger)
let upstream = try await TestUpstream.start(name: "origin", group: group)
let adminClient = try await TestHTTPClient.connect(port: admin.localAddress!.port!, group: group)
let proxy = try await TestHTTPClient.connect(port: proxyPort, group: group)
let headers = [("X-API-KEY", key), ("Content-Type", "application/json")]

func put(_ path: String, _ body: String) async throws -> Duration {
    let start = ContinuousClock.now
    let r = try await adminClient.request(.PUT, "/apisix/admin\(path)", headers: headers, body: ByteBuffer(string: body))
    let elapsed = ContinuousClock.now - start
    guard r.status.code / 100 == 2 else { fatalError("PUT \(path): \(r.status) \(r.bodyString)") }
    return elapsed
}

_ = try await put("/upstreams/u", #"{"nodes":{"\#(upstream.address)":1}}"#)

// 1. Single writes: one route changed again and again, table otherwise empty.
var single: [Double] = []
for i in 0..<singleCount {
    let d = try await put("/routes/one", #"{"uri":"/one","upstream_id":"u","desc":"v\#(i)"}"#)
    single.append(ms(d))
    guard try await proxy.request(.GET, "/one").status == .ok else { fatalError("route not live") }
}
single.sort()
print("single writes (\(singleCount)): p50 \(String(format: "%.2f", percentile(single, 0.5))) ms, p99 \(String(format: "%.2f", percentile(single, 0.99))) ms")

// 2. Routes loaded one by one: does write-to-live stay flat as the table grows?
print("routes loaded one by one (\(routeCount)):")
print("| routes in table | p50 ms | p99 ms |")
print("|---:|---:|---:|")
var bucket: [Double] = []
let bucketSize = max(1, routeCount / 10)
let total = ContinuousClock.now
for i in 0..<routeCount {
    let d = try await put("/routes/r\(i)", #"{"uri":"/r\#(i)/*","upstream_id":"u"}"#)
    bucket.append(ms(d))
    if i % 97 == 0 {
        guard try await proxy.request(.GET, "/r\(i)/x").status == .ok else { fatalError("route r\(i) not live") }
    }
    if bucket.count == bucketSize {
        bucket.sort()
        print("| \(i + 1) | \(String(format: "%.2f", percentile(bucket, 0.5))) | \(String(format: "%.2f", percentile(bucket, 0.99))) |")
        bucket.removeAll()
    }
}
print("total for \(routeCount) routes: \(String(format: "%.1f", ms(ContinuousClock.now - total) / 1000)) s")
await adminClient.close()
await proxy.close()
await admin.close()
await server.shutdown(gracePeriod: .seconds(1))
try? FileManager.default.removeItem(atPath: dir)
