import KubeSim
import SluiceCore
import Testing

func pods(_ range: Range<Int>, ready: Bool = true) -> [SimPod] {
    range.map { SimPod(name: "web-\($0)", ip: "10.1.\($0 / 250).\($0 % 250 + 1)", ready: ready) }
}

@Suite struct EndpointSliceControllerTests {
    let ports = [SimServicePort(name: "http", port: 8080)]

    /// Applies a plan to a list of slices (by name).
    func apply(_ plan: EndpointSliceController.Plan, to slices: inout [String: JSONValue]) {
        for s in plan.create + plan.update { slices[s["metadata"]!["name"]!.stringValue!] = s }
        for n in plan.delete { slices[n] = nil }
    }

    func count(_ slices: [String: JSONValue]) -> Int { slices.values.reduce(0) { $0 + ($1["endpoints"]?.arrayValue?.count ?? 0) } }

    @Test func slicesHoldAtMost100AndAPodChangeTouchesOneSlice() {
        var controller = EndpointSliceController()
        var slices: [String: JSONValue] = [:]
        apply(controller.reconcile(service: "web", namespace: "default", ports: ports, pods: pods(0..<250), existing: [], triggerTime: "t0"), to: &slices)
        #expect(slices.count == 3)
        #expect(count(slices) == 250)
        #expect(slices.values.allSatisfy { ($0["endpoints"]?.arrayValue?.count ?? 0) <= 100 })
        #expect(slices.values.allSatisfy { $0["metadata"]?["labels"]?["kubernetes.io/service-name"] == "web" })
        // One pod becomes not ready: exactly one slice is rewritten.
        var changed = pods(0..<250)
        changed[7].ready = false
        let plan = controller.reconcile(service: "web", namespace: "default", ports: ports, pods: changed, existing: Array(slices.values), triggerTime: "t1")
        #expect(plan.create.isEmpty && plan.delete.isEmpty)
        #expect(plan.update.count == 1)
        apply(plan, to: &slices)
        // A pod replaced by a new one (rolling update step): the new one fills the slice that changes anyway.
        var rolled = changed
        rolled.remove(at: 120)
        rolled.append(SimPod(name: "web-new", ip: "10.9.9.9"))
        let step = controller.reconcile(service: "web", namespace: "default", ports: ports, pods: rolled, existing: Array(slices.values), triggerTime: "t2")
        #expect(step.update.count == 1 && step.create.isEmpty && step.delete.isEmpty)
        apply(step, to: &slices)
        #expect(count(slices) == 250)
    }

    @Test func scalingTo2000Makes20SlicesAndBackDownDeletesEmptyOnes() {
        var controller = EndpointSliceController()
        var slices: [String: JSONValue] = [:]
        apply(controller.reconcile(service: "web", namespace: "default", ports: ports, pods: pods(0..<2000), existing: [], triggerTime: "t"), to: &slices)
        #expect(slices.count == 20)
        #expect(count(slices) == 2000)
        apply(controller.reconcile(service: "web", namespace: "default", ports: ports, pods: [], existing: Array(slices.values), triggerTime: "t"), to: &slices)
        #expect(slices.isEmpty)
    }

    @Test func legacyEndpointsAreTruncatedAt1000() {
        let big = EndpointSliceController.legacyEndpoints(service: "web", namespace: "default", ports: ports, pods: pods(0..<2000))
        #expect(big["metadata"]?["annotations"]?["endpoints.kubernetes.io/over-capacity"] == "truncated")
        #expect(big["subsets"]?.arrayValue?.first?["addresses"]?.arrayValue?.count == 1000)
        let small = EndpointSliceController.legacyEndpoints(service: "web", namespace: "default", ports: ports, pods: pods(0..<10) + pods(10..<12, ready: false))
        #expect(small["metadata"]?["annotations"] == nil)
        #expect(small["subsets"]?.arrayValue?.first?["notReadyAddresses"]?.arrayValue?.count == 2)
    }
}
