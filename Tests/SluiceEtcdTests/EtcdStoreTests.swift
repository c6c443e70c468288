import NIOCore
import NIOPosix
import SluiceCore
import SluiceEtcd
import SluiceStore
import SluiceTesting
import Testing

/// Against a real etcd 3.4 started by the test.
@Suite struct EtcdStoreTests {
    static let group = MultiThreadedEventLoopGroup.singleton

    func makeStore(_ etcd: EtcdTestServer, prefix: String = "/apisix") throws -> EtcdStore {
        EtcdStore(client: EtcdClient(endpoints: [try #require(EtcdEndpoint(url: etcd.url))], group: Self.group), prefix: prefix)
    }

    @Test func putLoadCompareAndSwapAndDelete() async throws {
        let etcd = try await EtcdTestServer.start(group: Self.group)
        let store = try makeStore(etcd)
        let a = try await store.put(kind: .routes, id: "1", value: ["uri": "/a"], expectedModifiedIndex: 0)
        #expect(a.createdIndex == a.modifiedIndex)
        // Create-if-absent refuses an existing key.
        await #expect(throws: StoreError.self) {
            _ = try await store.put(kind: .routes, id: "1", value: ["uri": "/b"], expectedModifiedIndex: 0)
        }
        let b = try await store.put(kind: .routes, id: "1", value: ["uri": "/b"], expectedModifiedIndex: a.modifiedIndex)
        #expect(b.modifiedIndex > a.modifiedIndex)
        #expect(b.createdIndex == a.createdIndex)
        // A stale revision is refused.
        await #expect(throws: StoreError.self) {
            _ = try await store.put(kind: .routes, id: "1", value: ["uri": "/c"], expectedModifiedIndex: a.modifiedIndex)
        }
        _ = try await store.put(kind: .upstreams, id: "u", value: ["nodes": ["127.0.0.1:1": 1]], expectedModifiedIndex: nil)
        let (entries, revision) = try await store.load()
        #expect(entries.count == 2)
        #expect(entries.first { $0.kind == .routes }?.value == ["uri": "/b"])
        #expect(revision >= b.modifiedIndex)
        #expect(try await store.delete(kind: .upstreams, id: "u") != nil)
        #expect(try await store.delete(kind: .upstreams, id: "u") == nil)
        #expect(try await store.nextID().count == 20)
        await etcd.remove()
    }

    @Test func referencesAreCheckedInTheSameTransaction() async throws {
        let etcd = try await EtcdTestServer.start(group: Self.group)
        let store = try makeStore(etcd)
        // The route refers to an upstream another replica has not created (or just deleted).
        await #expect(throws: StoreError.self) {
            _ = try await store.put(
                kind: .routes, id: "r", value: ["uri": "/r", "upstream_id": "u"], expectedModifiedIndex: 0,
                requiring: [(.upstreams, "u")], ttl: nil)
        }
        #expect(try await store.load().entries.isEmpty)
        _ = try await store.put(kind: .upstreams, id: "u", value: ["nodes": ["127.0.0.1:1": 1]], expectedModifiedIndex: 0)
        let r = try await store.put(
            kind: .routes, id: "r", value: ["uri": "/r", "upstream_id": "u"], expectedModifiedIndex: 0, requiring: [(.upstreams, "u")], ttl: nil)
        #expect(r.id == "r")
        await etcd.remove()
    }

    @Test func readsWhatAPISIXToolingWritesAndSkipsWhatIsNotJSON() async throws {
        let etcd = try await EtcdTestServer.start(group: Self.group)
        _ = try etcd.etcdctl(["put", "/apisix/routes/7", #"{"uri":"/from-etcdctl","upstream":{"nodes":{"127.0.0.1:80":1}}}"#])
        _ = try etcd.etcdctl(["put", "/apisix/routes/8", "{not json"])
        _ = try etcd.etcdctl(["put", "/apisix/other/thing", "x"])  // not a config kind: ignored
        _ = try etcd.etcdctl(["put", "/elsewhere/routes/9", "{}"])  // outside the prefix
        let store = try makeStore(etcd)
        let (entries, skipped, _) = try await store.loadAll()
        #expect(entries.map(\.id) == ["7"])
        #expect(entries.first?.value["uri"] == "/from-etcdctl")
        #expect(skipped.map(\.key) == ["/apisix/routes/8"])
        await etcd.remove()
    }

    @Test func aStoppedEtcdIsReportedAsUnavailable() async throws {
        let etcd = try await EtcdTestServer.start(group: Self.group)
        let store = try makeStore(etcd)
        _ = try await store.put(kind: .routes, id: "1", value: ["uri": "/a"], expectedModifiedIndex: nil)
        await etcd.stop()
        do {
            _ = try await store.put(kind: .routes, id: "2", value: ["uri": "/b"], expectedModifiedIndex: nil)
            Issue.record("a write to a stopped etcd succeeded")
        } catch let e as StoreError {
            #expect(e.code == .unavailable)
        }
        // Back up: the same client works again.
        try await etcd.launch(group: Self.group)
        #expect(try await store.load().entries.count == 1)
        await etcd.remove()
    }
}
