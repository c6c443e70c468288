import Logging
import NIOCore
import NIOHTTP1
import SluiceAdmin
import SluiceCore
import SluiceEtcd
import SluiceServer
import SluiceTesting
import Testing

/// A gateway whose config lives in etcd, kept in step by `EtcdSync`.
struct EtcdGateway {
    let gateway: Gateway
    let service: ConfigService
    let store: EtcdStore
    var sync: Task<Void, Never>

    static func start(_ etcd: EtcdTestServer) async throws -> EtcdGateway {
        let gateway = try await Gateway.start()
        let store = EtcdStore(client: EtcdClient(endpoints: [try #require(EtcdEndpoint(url: etcd.url))], group: Gateway.group))
        let server = gateway.server
        let service = ConfigService(store: store, publisher: { state, changes in try await server.apply(state, changes: changes) })
        try await service.start()
        var logger = Logger(label: "etcd-test")
        logger.logLevel = .critical
        let sync = EtcdSync(store: store, service: service, logger: logger)
        return EtcdGateway(gateway: gateway, service: service, store: store, sync: Task { await sync.run() })
    }

    mutating func restartSync() {
        var logger = Logger(label: "etcd-test")
        logger.logLevel = .critical
        let sync = EtcdSync(store: store, service: service, logger: logger)
        self.sync = Task { await sync.run() }
    }

    func stop() async {
        sync.cancel()
        await gateway.stop()
    }
}

@Suite struct EtcdGatewayTests {
    @Test func aWriteThroughOneReplicaIsServedByTheOther() async throws {
        let etcd = try await EtcdTestServer.start(group: Gateway.group)
        let up = try await startUpstream("a")
        let a = try await EtcdGateway.start(etcd)
        let b = try await EtcdGateway.start(etcd)
        let clientB = try await b.gateway.client()
        _ = try await a.service.put(.upstreams, id: "u", body: try JSONValue.parse(#"{"nodes":{"\#(up.address)":1}}"#))
        var latencies: [Duration] = []
        for i in 0..<20 {
            let start = ContinuousClock.now
            _ = try await a.service.put(.routes, id: "r\(i)", body: try JSONValue.parse(#"{"uri":"/r\#(i)","upstream_id":"u"}"#))
            #expect(try await eventually { try await clientB.request(.GET, "/r\(i)").status == .ok })
            latencies.append(ContinuousClock.now - start)
        }
        latencies.sort()
        print("replica propagation over etcd, 20 writes: p50 \(latencies[10]), max \(latencies[19])")
        await clientB.close()
        await a.stop()
        await b.stop()
        await up.stop()
        await etcd.remove()
    }

    @Test func etcdctlWritesAreServedAndInvalidOnesSkipped() async throws {
        let etcd = try await EtcdTestServer.start(group: Gateway.group)
        let up = try await startUpstream("a")
        let g = try await EtcdGateway.start(etcd)
        let client = try await g.gateway.client()
        _ = try etcd.etcdctl(["put", "/apisix/routes/x", #"{"uri":"/x","upstream":{"nodes":{"\#(up.address)":1}}}"#])
        #expect(try await eventually { try await client.request(.GET, "/x").status == .ok })
        // Not JSON, then JSON that does not validate: both skipped, /x keeps working.
        _ = try etcd.etcdctl(["put", "/apisix/routes/x", "{broken"])
        _ = try etcd.etcdctl(["put", "/apisix/routes/x", #"{"uri":"no-slash","upstream":{"nodes":{"\#(up.address)":1}}}"#])
        _ = try etcd.etcdctl(["put", "/apisix/routes/y", #"{"uri":"/y","upstream":{"nodes":{"\#(up.address)":1}}}"#])
        #expect(try await eventually { try await client.request(.GET, "/y").status == .ok })  // later changes applied
        #expect(try await client.request(.GET, "/x").status == .ok)  // the previous value of x stays live
        _ = try etcd.etcdctl(["del", "/apisix/routes/y"])
        #expect(try await eventually { try await client.request(.GET, "/y").status == .notFound })
        await client.close()
        await g.stop()
        await up.stop()
        await etcd.remove()
    }

    @Test func anObjectWrittenWithATTLExpiresOnEveryReplica() async throws {
        let etcd = try await EtcdTestServer.start(group: Gateway.group)
        let up = try await startUpstream("a")
        let a = try await EtcdGateway.start(etcd)
        let b = try await EtcdGateway.start(etcd)
        _ = try await a.service.put(.routes, id: "t", body: try JSONValue.parse(#"{"uri":"/t","upstream":{"nodes":{"\#(up.address)":1}}}"#), ttl: 4)
        let clientA = try await a.gateway.client(), clientB = try await b.gateway.client()
        #expect(try await clientA.request(.GET, "/t").status == .ok)
        #expect(try await eventually { try await clientB.request(.GET, "/t").status == .ok })
        // The lease expires (4 s): etcd deletes the key and both replicas drop the route.
        #expect(try await eventually(timeout: .seconds(20)) { try await clientA.request(.GET, "/t").status == .notFound })
        #expect(try await eventually(timeout: .seconds(20)) { try await clientB.request(.GET, "/t").status == .notFound })
        await clientA.close()
        await clientB.close()
        await a.stop()
        await b.stop()
        await up.stop()
        await etcd.remove()
    }

    @Test func aReplicaThatMissedACompactionCatchesUp() async throws {
        let etcd = try await EtcdTestServer.start(group: Gateway.group)
        let up = try await startUpstream("a")
        let a = try await EtcdGateway.start(etcd)
        var b = try await EtcdGateway.start(etcd)
        b.sync.cancel()  // b is cut off from etcd's changes...
        await b.sync.value  // ...once its watch has really stopped
        _ = try await a.service.put(.upstreams, id: "u", body: try JSONValue.parse(#"{"nodes":{"\#(up.address)":1}}"#))
        for i in 0..<5 {
            _ = try await a.service.put(.routes, id: "c\(i)", body: try JSONValue.parse(#"{"uri":"/c\#(i)","upstream_id":"u"}"#))
        }
        try await a.service.delete(.routes, id: "c0", force: false)
        let revision = try await a.store.client.revision()  // etcd's own, current revision
        let compacted = try etcd.etcdctl(["compact", String(revision)])
        #expect(compacted.contains("compacted revision"), "\(compacted)" as Comment)
        b.restartSync()
        let client = try await b.gateway.client()
        #expect(try await eventually { try await client.request(.GET, "/c4").status == .ok })
        #expect(try await client.request(.GET, "/c0").status == .notFound)
        #expect(await b.service.list(.routes).count == 4)
        #expect(await b.service.reloads == 1)  // it caught up by re-reading, as it had to
        await client.close()
        await a.stop()
        await b.stop()
        await up.stop()
        await etcd.remove()
    }

    @Test func whileEtcdIsDownTheProxyServesAndWritesFailWith503() async throws {
        let etcd = try await EtcdTestServer.start(group: Gateway.group)
        let up = try await startUpstream("a")
        let g = try await EtcdGateway.start(etcd)
        _ = try await g.service.put(.routes, id: "r", body: try JSONValue.parse(#"{"uri":"/r","upstream":{"nodes":{"\#(up.address)":1}}}"#))
        let client = try await g.gateway.client()
        #expect(try await client.request(.GET, "/r").status == .ok)
        await etcd.stop()
        // Three seconds of requests (at most 5,000) with etcd gone: none may fail.
        var failures = 0, sent = 0
        let until = ContinuousClock.now + .seconds(3)
        while ContinuousClock.now < until && sent < 5_000 {
            sent += 1
            if try await client.request(.GET, "/r").status != .ok { failures += 1 }
        }
        #expect(sent > 100)
        #expect(failures == 0)
        do {
            _ = try await g.service.put(.routes, id: "s", body: try JSONValue.parse(#"{"uri":"/s","upstream":{"nodes":{"\#(up.address)":1}}}"#))
            Issue.record("a write with etcd down succeeded")
        } catch let error as AdminError {
            #expect(error.status == 503)
        }
        try await etcd.launch(group: Gateway.group)
        _ = try await g.service.put(.routes, id: "s", body: try JSONValue.parse(#"{"uri":"/s","upstream":{"nodes":{"\#(up.address)":1}}}"#))
        #expect(try await client.request(.GET, "/s").status == .ok)
        await client.close()
        await g.stop()
        await up.stop()
        await etcd.remove()
    }
}
