import KubeSim
import SluiceCore
import Testing

let services = ResourceType(group: "", version: "v1", plural: "services", kind: "Service")
let slices = ResourceType(group: "discovery.k8s.io", version: "v1", plural: "endpointslices", kind: "EndpointSlice")

func object(_ name: String, labels: [String: String] = [:], spec: JSONValue = [:]) -> JSONValue {
    ["metadata": ["name": .string(name), "labels": .object(labels.mapValues { .string($0) })], "spec": spec]
}

@Suite struct ObjectStoreTests {
    @Test func createGetUpdateDeleteWithResourceVersions() throws {
        var store = ObjectStore()
        let created = try store.create(services, namespace: "default", object("web", spec: ["ports": [["port": 80]]]))
        #expect(created["metadata"]?["namespace"] == "default")
        #expect(created["metadata"]?["generation"] == 1)
        #expect(created["kind"] == "Service")
        let rv1 = try #require(created["metadata"]?["resourceVersion"]?.stringValue)
        #expect(throws: APIError.self) { try store.create(services, namespace: "default", object("web")) }
        // Optimistic concurrency: an update naming a stale resourceVersion is refused.
        var changed = created
        changed = changed.mergePatched(with: ["spec": ["ports": [["port": 8080]]]])
        let updated = try store.update(services, namespace: "default", name: "web", changed)
        #expect(updated["metadata"]?["generation"] == 2)
        #expect(updated["metadata"]?["resourceVersion"]?.stringValue != rv1)
        do {
            _ = try store.update(services, namespace: "default", name: "web", changed)  // still carries rv1
            Issue.record("stale update accepted")
        } catch {
            #expect(error.code == 409)
            #expect(error.reason == "Conflict")
        }
        let patched = try store.mergePatch(services, namespace: "default", name: "web", ["metadata": ["labels": ["tier": "front"]]])
        #expect(patched["metadata"]?["labels"]?["tier"] == "front")
        #expect(patched["metadata"]?["generation"] == 2)  // spec unchanged
        _ = try store.delete(services, namespace: "default", name: "web")
        #expect(throws: APIError.self) { try store.get(services, namespace: "default", name: "web") }
    }

    @Test func listsFilterByNamespaceAndLabelsAndPage() throws {
        var store = ObjectStore()
        for i in 0..<25 {
            _ = try store.create(slices, namespace: i % 5 == 0 ? "other" : "default", object("s\(i)", labels: ["kubernetes.io/service-name": i % 2 == 0 ? "a" : "b"]))
        }
        let a = try store.list(slices, namespace: "default", selector: try LabelSelector("kubernetes.io/service-name=a"))
        #expect(a.items.count == (0..<25).filter { $0 % 5 != 0 && $0 % 2 == 0 }.count)  // 10
        var seen: [String] = []
        var token: String? = nil
        repeat {
            let page = try store.list(slices, namespace: nil, limit: 10, continue: token)
            seen += page.items.compactMap { $0["metadata"]?["name"]?.stringValue }
            token = page.continue
        } while token != nil
        #expect(seen.count == 25)
        #expect(Set(seen).count == 25)
    }

    @Test func watchesResumeFromAResourceVersionAndExpireAfterCompaction() throws {
        var store = ObjectStore()
        _ = try store.create(services, namespace: "default", object("a"))
        let listRV = try store.list(services, namespace: nil).resourceVersion
        _ = try store.create(services, namespace: "default", object("b"))
        _ = try store.mergePatch(services, namespace: "default", name: "a", ["metadata": ["labels": ["x": "1"]]])
        _ = try store.delete(services, namespace: "default", name: "b")
        let events = try store.events(services, namespace: nil, since: listRV)
        #expect(events.map(\.type) == [.ADDED, .MODIFIED, .DELETED])
        #expect(events.map { $0.object["metadata"]?["name"]?.stringValue } == ["b", "a", "b"])
        store.compact()
        do {
            _ = try store.events(services, namespace: nil, since: listRV)
            Issue.record("a watch from before compaction was served")
        } catch {
            #expect(error.code == 410)
        }
        #expect(try store.events(services, namespace: nil, since: store.resourceVersion).isEmpty)
    }

    @Test func historyLimitExpiresOldWatches() throws {
        var store = ObjectStore(historyLimit: 3)
        let start = store.resourceVersion
        for i in 0..<5 { _ = try store.create(services, namespace: "default", object("s\(i)")) }
        #expect(throws: APIError.self) { try store.events(services, namespace: nil, since: start) }
        #expect(try store.events(services, namespace: nil, since: store.resourceVersion - 3).count == 3)
    }

    @Test(arguments: [
        ("app=web", ["app": "web"], true), ("app=web", ["app": "api"], false),
        ("app!=web", ["app": "api"], true), ("app!=web", [:], true),
        ("tier", ["tier": "x"], true), ("!canary", ["canary": "1"], false),
        ("env in (prod, staging)", ["env": "staging"], true), ("env in (prod)", [:], false),
        ("env notin (dev)", [:], true), ("app=web,env in (prod,staging),!canary", ["app": "web", "env": "prod"], true),
    ])
    func labelSelectors(_ text: String, _ labels: [String: String], _ matches: Bool) throws {
        #expect(try LabelSelector(text).matches(labels) == matches)
    }
}
