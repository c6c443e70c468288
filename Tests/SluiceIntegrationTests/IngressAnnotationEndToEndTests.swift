import KubeClient
import KubeSim
import KubeSimServer
import NIOCore
import SluiceCore
import SluiceTesting
import Testing

/// Ingress annotations through kube-sim, the controller and a real gateway: rewrite-target,
/// http-to-https, enable-cors, allowlist-source-range and plugin-config-name.
@Suite(.serialized) struct IngressAnnotationEndToEndTests {
    @Test func annotationsWorkThroughTheGateway() async throws {
        let port = try await freePort()
        let addresses = IngressEndToEndTests.loopback(21...22)
        let pods = try await startPods(addresses, port: port)
        let env = try await IngressEnvironment(podAddresses: addresses)
        try env.control.scale(namespace: "default", service: "web", replicas: 2, ports: [SimServicePort(name: "http", port: port)])
        try await env.create(.ingressClasses(), #"{"metadata": {"name": "sluice"}, "spec": {"controller": "sluice.io/ingress-controller"}}"#)
        try await env.create(.apisixPluginConfigs(namespace: "default"), #"""
            {"metadata": {"name": "tagged", "namespace": "default"},
             "spec": {"ingressClassName": "sluice", "plugins": [{"name": "response-rewrite", "enable": true, "config": {"headers": {"set": {"X-Tagged": "yes"}}}}]}}
            """#)
        func ingress(_ name: String, host: String, _ annotations: [String: String]) -> String {
            let a = annotations.map { #""k8s.apisix.apache.org/\#($0.key)": "\#($0.value)""# }.joined(separator: ", ")
            return #"""
                {"metadata": {"name": "\#(name)", "namespace": "default", "annotations": {\#(a)}},
                 "spec": {"ingressClassName": "sluice", "rules": [{"host": "\#(host)", "http": {"paths": [
                   {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"name": "http"}}}}]}}]}}
                """#
        }
        try await env.create(.ingresses(namespace: "default"), ingress("rewrite", host: "rewrite.test", ["rewrite-target": "/headers"]))
        try await env.create(.ingresses(namespace: "default"), ingress("https", host: "https.test", ["http-to-https": "true"]))
        try await env.create(.ingresses(namespace: "default"), ingress("cors", host: "cors.test", ["enable-cors": "true", "cors-allow-origin": "https://app.test"]))
        try await env.create(.ingresses(namespace: "default"), ingress("allow", host: "allow.test", ["allowlist-source-range": "10.0.0.0/8"]))
        try await env.create(.ingresses(namespace: "default"), ingress("pc", host: "pc.test", ["plugin-config-name": "tagged"]))
        let c = try env.startController()
        let client = try await TestHTTPClient.connect(port: env.ports.proxy, group: IngressEnvironment.group)
        #expect(try await eventually(timeout: .seconds(20)) {
            try await client.request(.GET, "/anything", host: "pc.test").headers.first(name: "x-tagged") == "yes"
        }, "\(c.text.suffix(2000))")
        // rewrite-target: the pod sees /headers whatever was asked.
        let rewritten = try await client.request(.GET, "/some/where", host: "rewrite.test")
        #expect(rewritten.status == .ok && rewritten.bodyString.hasPrefix("GET /headers "), "\(rewritten.bodyString)")
        // http-to-https: redirected to the TLS listener.
        let https = try await client.request(.GET, "/x", host: "https.test")
        #expect(https.status == .movedPermanently)
        #expect(https.headers.first(name: "location")?.hasPrefix("https://https.test") == true, "\(https.headers)")
        // enable-cors: the configured origin is allowed.
        let cors = try await client.request(.GET, "/x", host: "cors.test", headers: [("Origin", "https://app.test")])
        #expect(cors.headers.first(name: "access-control-allow-origin") == "https://app.test", "\(cors.headers)")
        // allowlist-source-range: 127.0.0.1 is not in 10.0.0.0/8.
        let refused = try await client.request(.GET, "/x", host: "allow.test")
        #expect(refused.status == .forbidden)
        #expect(refused.bodyString == "{\"message\":\"Your IP address is not allowed\"}\n")
        await client.close()
        await env.stop()
        for p in pods.values { await p.stop() }
    }

    /// `status.loadBalancer` on every owned Ingress, from `--ingress-status-address`: what
    /// `kubectl get ingress` shows as ADDRESS. Ingresses of another class are left alone.
    @Test func ingressStatusShowsTheGatewaysAddress() async throws {
        let env = try await IngressEnvironment(podAddresses: [])
        try env.control.scale(namespace: "default", service: "web", replicas: 0, ports: [SimServicePort(name: "http", port: 80)])
        try await env.create(.ingressClasses(), #"{"metadata": {"name": "sluice"}, "spec": {"controller": "sluice.io/ingress-controller"}}"#)
        for (name, cls) in [("ours", "sluice"), ("theirs", "nginx")] {
            try await env.create(.ingresses(namespace: "default"), #"""
                {"metadata": {"name": "\#(name)", "namespace": "default"},
                 "spec": {"ingressClassName": "\#(cls)", "rules": [{"http": {"paths": [
                   {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"name": "http"}}}}]}}]}}
                """#)
        }
        let c = try env.startController(["--leader-elect", "false", "--ingress-status-address", "192.0.2.10,lb.example.com"])
        var output = ""
        #expect(try await eventually(timeout: .seconds(20)) {
            let r = try await Command.run("/usr/bin/env", [
                "kubectl", "--kubeconfig", env.kubeconfig, "get", "ingress", "-n", "default", "ours",
                "-o", "jsonpath={.status.loadBalancer.ingress[*].ip},{.status.loadBalancer.ingress[*].hostname}",
            ])
            output = r.output
            return r.output.contains("192.0.2.10,lb.example.com")
        }, "\(output)\n\(c.text.suffix(1500))")
        // The ADDRESS column, as kubectl prints it.
        let table = try await Command.run("/usr/bin/env", ["kubectl", "--kubeconfig", env.kubeconfig, "get", "ingress", "-n", "default"])
        let lines = table.output.split(separator: "\n")
        #expect(lines.first?.contains("ADDRESS") == true, "\(table.output)")
        #expect(lines.contains { $0.hasPrefix("ours") && $0.contains("192.0.2.10,lb.example.com") }, "\(table.output)")
        let theirs = try await env.api.get(.ingresses(namespace: "default"), name: "theirs")
        #expect(theirs["status"]?["loadBalancer"]?["ingress"] == nil, "\(theirs)")
        await env.stop()
    }

    /// `--ingress-publish-service`: Ingresses report the load-balancer address of the Service
    /// in front of the gateway, and follow it when it changes.
    @Test func ingressStatusFollowsThePublishService() async throws {
        let env = try await IngressEnvironment(podAddresses: [])
        try env.control.scale(namespace: "default", service: "web", replicas: 0, ports: [SimServicePort(name: "http", port: 80)])
        try await env.create(.ingressClasses(), #"{"metadata": {"name": "sluice"}, "spec": {"controller": "sluice.io/ingress-controller"}}"#)
        try await env.create(.services(namespace: "default"), #"""
            {"metadata": {"name": "gateway", "namespace": "default"}, "spec": {"type": "LoadBalancer", "ports": [{"name": "http", "port": 80}]}}
            """#)
        func publish(_ ip: String) async throws {
            _ = try await env.api.mergePatchStatus(.services(namespace: "default"), name: "gateway", ["status": ["loadBalancer": ["ingress": [["ip": .string(ip)]]]]])
        }
        try await publish("203.0.113.7")
        try await env.create(.ingresses(namespace: "default"), #"""
            {"metadata": {"name": "ours", "namespace": "default"},
             "spec": {"ingressClassName": "sluice", "rules": [{"http": {"paths": [
               {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"name": "http"}}}}]}}]}}
            """#)
        let c = try env.startController(["--leader-elect", "false", "--ingress-publish-service", "default/gateway"])
        func address() async throws -> String? {
            try await env.api.get(.ingresses(namespace: "default"), name: "ours")["status"]?["loadBalancer"]?["ingress"]?.arrayValue?.first?["ip"]?.stringValue
        }
        #expect(try await eventually(timeout: .seconds(20)) { try await address() == "203.0.113.7" }, "\(c.text.suffix(1500))")
        try await publish("203.0.113.8")
        #expect(try await eventually(timeout: .seconds(20)) { try await address() == "203.0.113.8" }, "\(c.text.suffix(1500))")
        await env.stop()
    }
}
