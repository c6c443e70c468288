// Replica-to-replica propagation through etcd: two in-process gateways (A and B) share a
// real etcd started here; a route written through A's config service is timed until B's
// proxy serves it. Then the throughput of writing many routes through A, and the time until
// B has them all.
//
//   swift run -c release EtcdPropagation [writes=1000] [bulk=10000]
import Foundation
import Logging
import NIOCore
import NIOPosix
import SluiceAdmin
import SluiceCore
import SluiceEtcd
import SluiceServer
import SluiceTesting

func ms(_ d: Duration) -> Double {
    let (s, a) = d.components
    return Double(s) * 1000 + Double(a) / 1e15
}

func percentile(_ sorted: [Double], _ p: Double) -> Double { sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] }

let args = CommandLine.arguments
let writes = args.count > 1 ? Int(args[1]) ?? 1000 : 1000
let bulk = args.count > 2 ? Int(args[2]) ?? 10_000 : 10_000
let group = MultiThreadedEventLoopGroup.singleton
let logger: Logger = {
    var l = Logger(label: "bench")
    l.logLevel = .error
    return l
}()

let etcd = try await EtcdTestServer.start(group: group)
let upstream = try await TestUpstream.start(name: "origin", group: group)

@MainActor func replica() async throws -> (GatewayServer, ConfigService, Int, Task<Void, Never>) {
    var config = GatewayServer.Configuration()
    config.proxyListen = [ListenAddress(host: "127.0.0.1", port: 0)]
    config.workers = 1
    let server = try await GatewayServer.make(configuration: config, logger: logger)
    let port = try await server.start()[0].port!
    let store = EtcdStore(client: EtcdClient(endpoints: [EtcdEndpoint(url: etcd.url)!], group: group))
    let service = ConfigService(store: store, publisher: { try await server.apply($0, changes: $1) })
    try await service.start()
    let sync = EtcdSync(store: store, service: service, logger: logger)
    return (server, service, port, Task { await sync.run() })
}

let (serverA, a, _, syncA) = try await replica()
let (serverB, b, portB, syncB) = try await replica()
let proxyB = try await TestHTTPClient.connect(port: portB, group: group)
_ = try await a.put(.upstreams, id: "u", body: try JSONValue.parse(#"{"nodes":{"\#(upstream.address)":1}}"#))

var latencies: [Double] = []
for i in 0..<writes {
    let start = ContinuousClock.now
    _ = try await a.put(.routes, id: "p\(i)", body: try JSONValue.parse(#"{"uri":"/p\#(i)","upstream_id":"u"}"#))
    while try await proxyB.request(.GET, "/p\(i)").status != .ok {}
    latencies.append(ms(ContinuousClock.now - start))
}
latencies.sort()
print("propagation A→B (\(writes) writes, each: Admin write on A until B's proxy serves it): p50 \(String(format: "%.2f", percentile(latencies, 0.5))) ms, p99 \(String(format: "%.2f", percentile(latencies, 0.99))) ms")

let start = ContinuousClock.now
// etcd alone: the same transaction the store sends, without compiling or publishing.
let raw = EtcdClient(endpoints: [EtcdEndpoint(url: etcd.url)!], group: group)
let rawStart = ContinuousClock.now
for i in 0..<1000 {
    _ = try await raw.put("/bench/k\(i)", Array(#"{"uri":"/x"}"#.utf8), ifModRevision: 0)
}
print("etcd txn alone (compare-and-put + read back, JSON gateway): \(String(format: "%.2f", ms(ContinuousClock.now - rawStart) / 1000)) ms per write")
await raw.close()

var lap = ContinuousClock.now
for i in 0..<bulk {
    _ = try await a.put(.routes, id: "b\(i)", body: try JSONValue.parse(#"{"uri":"/b\#(i)/*","upstream_id":"u"}"#))
    if (i + 1) % max(1, bulk / 10) == 0 {
        print("  writes \(i + 1 - bulk / 10)..\(i + 1): \(String(format: "%.2f", ms(ContinuousClock.now - lap) / Double(max(1, bulk / 10)))) ms per write")
        lap = ContinuousClock.now
    }
}
let written = ContinuousClock.now - start
while await b.list(.routes).count < writes + bulk { try await Task.sleep(for: .milliseconds(5)) }
let seen = ContinuousClock.now - start
print("\(bulk) route writes through A, one at a time: \(String(format: "%.1f", ms(written) / 1000)) s (\(Int(Double(bulk) / (ms(written) / 1000))) writes/s); all served by B after \(String(format: "%.1f", ms(seen) / 1000)) s")

syncA.cancel()
syncB.cancel()
await proxyB.close()
await serverA.shutdown(gracePeriod: .seconds(1))
await serverB.shutdown(gracePeriod: .seconds(1))
await upstream.stop()
await etcd.remove()
