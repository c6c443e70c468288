import SluiceCore
@testable import SluiceIngress
import Synchronization
import Testing

/// A gateway in memory that records every call, and can be told to fail.
final class FakeGateway: GatewayWriter {
    enum Op: Equatable, CustomStringConvertible {
        case list(ResourceKind)
        case put(ObjectKey, JSONValue)
        case patch(ObjectKey, JSONValue)
        case delete(ObjectKey)

        var description: String {
            switch self {
            case .list(let k): return "list \(k.rawValue)"
            case .put(let k, let v): return "put \(k) \(v.serialized())"
            case .patch(let k, let v): return "patch \(k) \(v.serialized())"
            case .delete(let k): return "delete \(k)"
            }
        }
    }

    struct Failure {
        var error: any Error
        /// How many more calls fail.
        var times: Int
        /// Only writes of this value fail (nil: any).
        var value: JSONValue?
    }

    struct State {
        var objects: [ObjectKey: JSONValue] = [:]
        /// Every call, including the ones that failed.
        var ops: [Op] = []
        var failures: [ObjectKey: Failure] = [:]
        var listFailure: (any Error)?
        var beforeWrite: (@Sendable (ObjectKey, JSONValue?) async -> Void)?
        var bytes = 0

        mutating func failure(_ key: ObjectKey, _ value: JSONValue?) -> (any Error)? {
            guard var f = failures[key], f.times > 0, f.value == nil || f.value == value else { return nil }
            f.times -= 1
            failures[key] = f
            return f.error
        }
    }

    let state = Mutex(State())
    let supportsPatch: Bool

    init(supportsPatch: Bool = true, objects: [ObjectKey: JSONValue] = [:]) {
        self.supportsPatch = supportsPatch
        state.withLock { $0.objects = objects }
    }

    var bytesWritten: Int { state.withLock { $0.bytes } }
    var ops: [Op] { state.withLock { $0.ops } }
    var objects: [ObjectKey: JSONValue] {
        get { state.withLock { $0.objects } }
        set { state.withLock { $0.objects = newValue } }
    }
    /// The calls that write (puts, patches, deletes), failed ones included.
    var writes: [Op] { ops.filter { if case .list = $0 { return false } else { return true } } }
    var lists: [ResourceKind] { ops.compactMap { if case .list(let k) = $0 { return k } else { return nil } } }
    func clearOps() { state.withLock { $0.ops = [] } }

    func fail(_ key: ObjectKey, permanent: Bool, times: Int = .max, value: JSONValue? = nil, _ message: String = "refused") {
        state.withLock { $0.failures[key] = Failure(error: GatewayWriteError(permanent: permanent, message), times: times, value: value) }
    }
    func fail(_ key: ObjectKey, with error: any Error, times: Int = 1) {
        state.withLock { $0.failures[key] = Failure(error: error, times: times, value: nil) }
    }
    func failLists(_ error: (any Error)?) { state.withLock { $0.listFailure = error } }
    func clearFailures() { state.withLock { $0.failures = [:] } }
    /// Runs before each put, patch or delete is applied (the write is then "in flight").
    func beforeWrite(_ hook: @escaping @Sendable (ObjectKey, JSONValue?) async -> Void) { state.withLock { $0.beforeWrite = hook } }

    func listManaged(_ kind: ResourceKind) async throws -> [String: JSONValue] {
        try state.withLock { s in
            s.ops.append(.list(kind))
            if let e = s.listFailure { throw e }
            var out: [String: JSONValue] = [:]
            for (k, v) in s.objects where k.kind == kind && v["labels"]?["managed-by"] == "sluice-ingress" { out[k.id] = v }
            return out
        }
    }

    func put(_ key: ObjectKey, _ value: JSONValue) async throws {
        if let hook = state.withLock({ $0.beforeWrite }) { await hook(key, value) }
        try state.withLock { s in
            s.ops.append(.put(key, value))
            if let e = s.failure(key, value) { throw e }
            s.bytes += value.serializedBytes().count
            s.objects[key] = value
        }
    }

    func patch(_ key: ObjectKey, _ patch: JSONValue) async throws -> Bool {
        if let hook = state.withLock({ $0.beforeWrite }) { await hook(key, patch) }
        return try state.withLock { s in
            s.ops.append(.patch(key, patch))
            if let e = s.failure(key, nil) { throw e }
            guard let old = s.objects[key] else { return false }
            s.bytes += patch.serializedBytes().count
            s.objects[key] = old.mergePatched(with: patch)
            return true
        }
    }

    func delete(_ key: ObjectKey) async throws {
        if let hook = state.withLock({ $0.beforeWrite }) { await hook(key, nil) }
        try state.withLock { s in
            s.ops.append(.delete(key))
            if let e = s.failure(key, nil) { throw e }
            s.objects[key] = nil
        }
    }
}

struct Unreachable: Error, CustomStringConvertible {
    var description: String { "connection refused" }
}

@Suite struct GatewaySyncTests {
    let u1 = ObjectKey(.upstreams, "u1")
    let r1 = ObjectKey(.routes, "r1")

    func upstream(_ nodes: JSONValue = ["10.0.0.1:80": 100]) -> JSONValue { ["nodes": nodes, "labels": managedBy] }
    func route(_ uri: String = "/a", upstream: String = "u1") -> JSONValue { ["uris": [.string(uri)], "upstream_id": .string(upstream), "labels": managedBy] }

    @Test func writesOnlyWhatDiffers() async {
        let gw = FakeGateway()
        let sync = GatewaySync(writer: gw, concurrency: 1)
        await sync.replaceAll([u1: upstream(), r1: route()])
        #expect(await sync.pendingCount == 2)
        let first = await sync.flush()
        #expect(first.outcome == .done)
        #expect(first.written.map { $0.0 } == [u1, r1])
        #expect(gw.lists == GatewaySync.writeOrder)  // the first flush lists every kind
        #expect(gw.writes == [.put(u1, upstream()), .put(r1, route())])
        #expect(gw.objects == [u1: upstream(), r1: route()])

        gw.clearOps()
        await sync.replaceAll([u1: upstream(), r1: route()])
        let second = await sync.flush()
        #expect(second.outcome == .done)
        #expect(second.written.isEmpty)
        #expect(gw.ops.isEmpty)

        await sync.replaceAll([u1: upstream(), r1: route("/b")])
        _ = await sync.flush()
        #expect(gw.ops == [.put(r1, route("/b"))])
        #expect(await sync.puts == 3)
        #expect(await sync.pendingCount == 0)
        #expect(await sync.isSynced(r1))
        #expect(await sync.desiredValue(r1) == route("/b"))
    }

    /// Every object ever created and deleted left a version (and a `.null` copy of what was
    /// written) behind: tables keyed by Kubernetes names that only grew.
    @Test func aDeletedObjectLeavesNothingBehind() async {
        let gw = FakeGateway()
        let sync = GatewaySync(writer: gw, concurrency: 1)
        await sync.replaceAll([u1: upstream(), r1: route()])
        #expect(await sync.flush().outcome == .done)
        await sync.replaceAll([u1: upstream()])
        #expect(await sync.flush().outcome == .done)
        #expect(gw.objects == [u1: upstream()])
        #expect(await sync.currentVersion(r1) == 0)
        #expect(await sync.isSynced(r1))
        // Wanted again: written again, whole.
        gw.clearOps()
        await sync.replaceAll([u1: upstream(), r1: route()])
        #expect(await sync.flush().outcome == .done)
        #expect(gw.writes == [.put(r1, route())])
    }

    @Test func putsReferentsFirstAndDeletesReferrersFirst() async {
        let gw = FakeGateway()
        let sync = GatewaySync(writer: gw, concurrency: 1)
        let keys: [ObjectKey] = [
            ObjectKey(.streamRoutes, "s"), ObjectKey(.routes, "r"), ObjectKey(.ssls, "t"), ObjectKey(.globalRules, "g"),
            ObjectKey(.consumers, "c"), ObjectKey(.upstreams, "u"), ObjectKey(.pluginConfigs, "p"),
        ]
        await sync.replaceAll(Dictionary(uniqueKeysWithValues: keys.map { ($0, ["labels": managedBy, "id": .string($0.id)]) }))
        #expect(await sync.flush().outcome == .done)
        let putKinds: [ResourceKind] = gw.writes.compactMap { if case .put(let k, _) = $0 { return k.kind } else { return nil } }
        #expect(putKinds == [.pluginConfigs, .upstreams, .consumers, .globalRules, .ssls, .routes, .streamRoutes])

        gw.clearOps()
        await sync.replaceAll([:])
        #expect(await sync.flush().outcome == .done)
        let deleteKinds: [ResourceKind] = gw.writes.compactMap { if case .delete(let k) = $0 { return k.kind } else { return nil } }
        #expect(deleteKinds == [.streamRoutes, .routes, .ssls, .globalRules, .consumers, .upstreams, .pluginConfigs])
        #expect(gw.writes.count == 7)
        #expect(gw.objects.isEmpty)
        #expect(await sync.deletes == 7)
    }

    @Test func withConcurrencyEveryUpstreamIsWrittenBeforeAnyRoute() async {
        let gw = FakeGateway()
        let sync = GatewaySync(writer: gw, concurrency: 8)
        var desired: [ObjectKey: JSONValue] = [:]
        for i in 0..<20 {
            desired[ObjectKey(.upstreams, "u\(i)")] = upstream()
            desired[ObjectKey(.routes, "r\(i)")] = route(upstream: "u\(i)")
        }
        await sync.replaceAll(desired)
        #expect(await sync.flush().outcome == .done)
        let kinds: [ResourceKind] = gw.writes.compactMap { if case .put(let k, _) = $0 { return k.kind } else { return nil } }
        #expect(kinds == Array(repeating: .upstreams, count: 20) + Array(repeating: .routes, count: 20))
        #expect(gw.objects == desired)
    }

    @Test func managedOrphansAreDeletedAndMatchingObjectsAreNotRewritten() async {
        let theirs = ObjectKey(.routes, "theirs")
        let old = ObjectKey(.routes, "old")
        let oldUpstream = ObjectKey(.upstreams, "old")
        let gw = FakeGateway(objects: [
            u1: upstream(), old: route("/old", upstream: "old"), oldUpstream: upstream(["10.9.9.9:80": 1]), theirs: ["uris": ["/theirs"], "upstream_id": "x"],
        ])
        let sync = GatewaySync(writer: gw, concurrency: 1)
        await sync.replaceAll([u1: upstream(), r1: route()])
        #expect(await sync.flush().outcome == .done)
        #expect(gw.writes == [.put(r1, route()), .delete(old), .delete(oldUpstream)])
        #expect(gw.objects.keys.sorted() == [r1, theirs, u1].sorted())
        #expect(await sync.relists == 1)
        #expect(await sync.isSynced(u1))
    }

    @Test func aRelistRepairsAGatewayThatLostObjects() async {
        let gw = FakeGateway()
        let sync = GatewaySync(writer: gw, concurrency: 1)
        await sync.replaceAll([u1: upstream(), r1: route()])
        _ = await sync.flush()
        gw.objects = [:]
        gw.clearOps()
        _ = await sync.flush()
        #expect(gw.ops.isEmpty)  // no relist asked: nothing is known to differ
        await sync.requestRelist()
        _ = await sync.flush()
        #expect(gw.lists == GatewaySync.writeOrder)
        #expect(gw.writes == [.put(u1, upstream()), .put(r1, route())])
        #expect(await sync.relists == 2)
    }

    @Test func anObjectAddedAndRemovedBeforeAFlushIsNeverWritten() async {
        let gw = FakeGateway()
        let sync = GatewaySync(writer: gw, concurrency: 1)
        await sync.set(r1, route())
        await sync.set(r1, nil)
        #expect(await sync.flush().outcome == .done)
        #expect(gw.writes.isEmpty)
        #expect(await sync.pendingCount == 0)
    }

    // MARK: nodes patch

    @Test func aNodeOnlyChangeIsPatchedWithTheChangedAndRemovedNodes() async {
        let gw = FakeGateway()
        let sync = GatewaySync(writer: gw, concurrency: 1)
        await sync.set(u1, upstream(["10.0.0.1:80": 100, "10.0.0.2:80": 100, "10.0.0.3:80": 100]))
        _ = await sync.flush()
        gw.clearOps()
        let changed = upstream(["10.0.0.1:80": 100, "10.0.0.3:80": 50, "10.0.0.4:80": 100])
        await sync.set(u1, changed)
        #expect(await sync.flush().outcome == .done)
        #expect(gw.ops == [.patch(u1, ["nodes": ["10.0.0.2:80": .null, "10.0.0.3:80": 50, "10.0.0.4:80": 100]])])
        #expect(gw.objects[u1] == changed)
        #expect(await sync.patches == 1)
        #expect(await sync.puts == 1)
        #expect(await sync.isSynced(u1))
    }

    @Test func aChangeBeyondTheNodesIsAPut() async {
        let gw = FakeGateway()
        let sync = GatewaySync(writer: gw, concurrency: 1)
        await sync.set(u1, upstream())
        _ = await sync.flush()
        gw.clearOps()
        var changed = upstream(["10.0.0.2:80": 100])
        changed = changed.mergePatched(with: ["retries": 2])
        await sync.set(u1, changed)
        _ = await sync.flush()
        #expect(gw.ops == [.put(u1, changed)])
    }

    @Test func aWriterWithoutPatchGetsAPut() async {
        let gw = FakeGateway(supportsPatch: false)
        let sync = GatewaySync(writer: gw, concurrency: 1)
        await sync.set(u1, upstream())
        _ = await sync.flush()
        await sync.set(u1, upstream(["10.0.0.2:80": 100]))
        _ = await sync.flush()
        #expect(gw.writes == [.put(u1, upstream()), .put(u1, upstream(["10.0.0.2:80": 100]))])
        #expect(await sync.patches == 0)
    }

    @Test func aPatchOfAVanishedObjectFallsBackToAPut() async {
        let gw = FakeGateway()
        let sync = GatewaySync(writer: gw, concurrency: 1)
        await sync.set(u1, upstream())
        _ = await sync.flush()
        gw.objects = [:]
        gw.clearOps()
        await sync.set(u1, upstream(["10.0.0.2:80": 100]))
        #expect(await sync.flush().outcome == .done)
        #expect(gw.ops == [.patch(u1, ["nodes": ["10.0.0.1:80": .null, "10.0.0.2:80": 100]]), .put(u1, upstream(["10.0.0.2:80": 100]))])
        #expect(gw.objects[u1] == upstream(["10.0.0.2:80": 100]))
        #expect(await sync.puts == 2)
    }

    @Test func nodesPatchIsOnlyForNodeMapsThatDiffer() {
        let a: JSONValue = ["nodes": ["a:1": 1, "b:1": 1], "type": "roundrobin"]
        #expect(GatewaySync.nodesPatch(from: a, to: ["nodes": ["a:1": 2], "type": "roundrobin"]) == ["nodes": ["a:1": 2, "b:1": .null]])
        #expect(GatewaySync.nodesPatch(from: a, to: a) == nil)
        #expect(GatewaySync.nodesPatch(from: a, to: ["nodes": ["a:1": 1], "type": "chash"]) == nil)
        #expect(GatewaySync.nodesPatch(from: a, to: ["nodes": [["host": "a", "port": 1, "weight": 1]], "type": "roundrobin"]) == nil)
        #expect(GatewaySync.nodesPatch(from: ["type": "roundrobin"], to: a) == nil)
        #expect(GatewaySync.nodesPatch(from: ["nodes": [:]], to: ["nodes": ["a:1": 1]]) == ["nodes": ["a:1": 1]])
    }

    // MARK: failures

    @Test func aPermanentRefusalIsReportedAndNotRetriedUntilTheValueChanges() async {
        let gw = FakeGateway()
        gw.fail(r1, permanent: true, "PUT routes/r1: 400 invalid uris")
        let sync = GatewaySync(writer: gw, concurrency: 1)
        await sync.replaceAll([u1: upstream(), r1: route()])
        let first = await sync.flush()
        #expect(first.outcome == .done)
        #expect(first.written.map { $0.0 } == [u1])
        #expect(await sync.refusal(for: r1) == "PUT routes/r1: 400 invalid uris")
        #expect(!(await sync.isSynced(r1)))
        #expect(await sync.isSynced(u1))
        #expect(await sync.pendingCount == 0)

        gw.clearOps()
        await sync.replaceAll([u1: upstream(), r1: route()])  // the same value again
        #expect(await sync.flush().outcome == .done)
        #expect(gw.ops.isEmpty)
        #expect(await sync.refusal(for: r1) != nil)

        gw.clearFailures()
        await sync.set(r1, route("/fixed"))
        #expect(await sync.refusal(for: r1) == nil)
        #expect(await sync.flush().outcome == .done)
        #expect(gw.ops == [.put(r1, route("/fixed"))])
        #expect(await sync.isSynced(r1))
    }

    /// An upstream the gateway refuses makes its route fail with "not found"; once the
    /// upstream is fixed and written, the route (unchanged) is sent again by itself.
    @Test func aRouteRefusedForItsMissingUpstreamIsSentAgainOnceTheUpstreamIsWritten() async {
        let gw = FakeGateway()
        let bad = upstream(["10.0.0.1:80": 100, "bad": 1])
        gw.fail(u1, permanent: true, value: bad, "PUT upstreams/u1: 400 invalid configuration: nodes.bad: must be host:port")
        gw.fail(r1, permanent: true, times: 1, #"PUT routes/r1: 400 invalid configuration: upstream_id: upstream "u1" not found"#)
        let sync = GatewaySync(writer: gw, concurrency: 1)
        await sync.replaceAll([u1: bad, r1: route()])
        #expect(await sync.flush().outcome == .done)
        #expect(await sync.refusal(for: u1) != nil)
        #expect(await sync.refusal(for: r1) != nil)

        await sync.set(u1, upstream())  // fixed; the route itself did not change
        #expect(await sync.flush().outcome == .done)
        #expect(await sync.isSynced(u1))
        #expect(await sync.pendingCount == 1)  // the route, marked for sending again
        #expect(await sync.flush().outcome == .done)
        #expect(await sync.isSynced(r1))
        #expect(gw.objects[r1] == route())
    }

    /// A key whose desired value flips from present to absent while an earlier batch of the
    /// same flush is in flight is not PUT as null: it waits for the next flush's deletes.
    @Test func aKeyRemovedDuringAFlushIsNotPutAsNull() async {
        let gw = FakeGateway()
        let sync = GatewaySync(writer: gw, concurrency: 1)
        let u2 = ObjectKey(.upstreams, "u2")
        await sync.replaceAll([u1: upstream(), u2: upstream()])
        gw.beforeWrite { key, _ in
            if key == u1 { await sync.set(u2, nil) }
        }
        #expect(await sync.flush().outcome == .done)
        #expect(!gw.writes.contains(.put(u2, .null)))
        #expect(gw.objects[u2] == nil)
        #expect(await sync.desiredValue(u2) == nil)
    }

    @Test func aRefusedValueIsNotRetriedByARelist() async {
        let gw = FakeGateway()
        gw.fail(r1, permanent: true)
        let sync = GatewaySync(writer: gw, concurrency: 1)
        await sync.replaceAll([u1: upstream(), r1: route()])
        _ = await sync.flush()
        gw.clearOps()
        await sync.requestRelist()  // as the resync timer, or any transient failure, does
        #expect(await sync.flush().outcome == .done)
        #expect(gw.writes.isEmpty)
        #expect(await sync.refusal(for: r1) == "refused")
    }

    @Test func aTransientFailureAsksForARetryThatRelistsAndWrites() async {
        let gw = FakeGateway()
        gw.fail(r1, permanent: false, times: 1, "PUT routes/r1: 503 busy")
        let sync = GatewaySync(writer: gw, concurrency: 1)
        await sync.replaceAll([u1: upstream(), r1: route()])
        let first = await sync.flush()
        #expect(first.outcome == .retry("PUT routes/r1: 503 busy"))
        #expect(first.written.map { $0.0 } == [u1])
        #expect(await sync.refusal(for: r1) == nil)
        #expect(await sync.pendingCount == 1)
        #expect(!(await sync.isSynced(r1)))

        gw.clearOps()
        let second = await sync.flush()
        #expect(second.outcome == .done)
        #expect(gw.lists == GatewaySync.writeOrder)
        #expect(gw.writes == [.put(r1, route())])  // u1 is listed as written: not rewritten
        #expect(await sync.relists == 2)
        #expect(await sync.isSynced(r1))
        #expect(gw.objects[r1] == route())
    }

    @Test func anyOtherErrorIsTransient() async {
        let gw = FakeGateway()
        gw.fail(u1, with: Unreachable())
        let sync = GatewaySync(writer: gw, concurrency: 1)
        await sync.replaceAll([u1: upstream(), r1: route()])
        let first = await sync.flush()
        #expect(first.outcome == .retry("connection refused"))
        // The routes wait for their upstreams.
        #expect(gw.writes == [.put(u1, upstream())])
        #expect(await sync.flush().outcome == .done)
        #expect(gw.objects == [u1: upstream(), r1: route()])
    }

    @Test func aFailedListAsksForARetryAndWritesNothing() async {
        let gw = FakeGateway()
        gw.failLists(GatewayWriteError(permanent: false, "GET routes: 500"))
        let sync = GatewaySync(writer: gw, concurrency: 1)
        await sync.replaceAll([u1: upstream()])
        #expect(await sync.flush().outcome == .retry("GET routes: 500"))
        #expect(gw.writes.isEmpty)
        #expect(await sync.relists == 0)
        gw.failLists(nil)
        #expect(await sync.flush().outcome == .done)
        #expect(gw.writes == [.put(u1, upstream())])
    }

    @Test func aKindTheGatewayRefusesToListIsSkipped() async {
        let gw = FakeGateway()
        gw.failLists(GatewayWriteError(permanent: true, "404 stream_routes"))
        let sync = GatewaySync(writer: gw, concurrency: 1)
        await sync.replaceAll([u1: upstream()])
        #expect(await sync.flush().outcome == .done)
        #expect(gw.writes == [.put(u1, upstream())])
        #expect(await sync.relists == 1)
    }

    // MARK: changes while writing

    @Test func aValueChangedWhileItsWriteWasInFlightEndsWithTheNewestWritten() async {
        let gw = FakeGateway()
        let sync = GatewaySync(writer: gw, concurrency: 1)
        let old = route("/old")
        let newer = route("/newer")
        gw.beforeWrite { key, value in
            if key == ObjectKey(.routes, "r1"), value == old { await sync.set(key, newer) }
        }
        await sync.set(r1, old)
        let v1 = await sync.currentVersion(r1)
        let first = await sync.flush()
        #expect(first.outcome == .done)
        #expect(first.written.map { $0.0 } == [r1])
        #expect(first.written.first?.1 == v1)
        let v2 = await sync.currentVersion(r1)
        #expect(v2 > v1)
        #expect(gw.objects[r1] == old)
        #expect(!(await sync.isSynced(r1)))
        #expect(await sync.pendingCount == 1)

        let second = await sync.flush()
        #expect(second.written.first?.1 == v2)
        #expect(gw.objects[r1] == newer)
        #expect(gw.writes == [.put(r1, old), .put(r1, newer)])
        #expect(await sync.isSynced(r1))
    }

    @Test func aRefusalOfAValueReplacedInFlightIsNotReportedForTheNewOne() async {
        let gw = FakeGateway()
        let sync = GatewaySync(writer: gw, concurrency: 1)
        let bad = route("/bad")
        let good = route("/good")
        gw.fail(r1, permanent: true, value: bad)
        gw.beforeWrite { key, value in
            if key == ObjectKey(.routes, "r1"), value == bad { await sync.set(key, good) }
        }
        await sync.set(r1, bad)
        #expect(await sync.flush().outcome == .done)
        #expect(await sync.refusal(for: r1) == nil)
        #expect(await sync.pendingCount == 1)
        #expect(await sync.flush().outcome == .done)
        #expect(gw.objects[r1] == good)
        #expect(await sync.isSynced(r1))
    }

    @Test func anObjectDeletedWhileItsPutWasInFlightIsDeletedNext() async {
        let gw = FakeGateway()
        let sync = GatewaySync(writer: gw, concurrency: 1)
        gw.beforeWrite { key, value in
            if key == ObjectKey(.routes, "r1"), value != nil { await sync.set(key, nil) }
        }
        await sync.set(r1, route())
        // The same flush reaches the deletes after the put has landed, and sees the newer nil.
        #expect(await sync.flush().outcome == .done)
        #expect(gw.objects[r1] == nil)
        #expect(gw.writes == [.put(r1, route()), .delete(r1)])
        #expect(await sync.pendingCount == 0)
        _ = await sync.flush()
        #expect(gw.writes.count == 2)
    }
}
