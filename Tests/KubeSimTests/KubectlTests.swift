import Foundation
import KubeSim
import KubeSimServer
import NIOCore
import NIOPosix
import SluiceCore
import SluiceTesting
import Testing

/// The simulator checked with the real kubectl (installed on these machines).
@Suite struct KubectlTests {
    static let group = MultiThreadedEventLoopGroup.singleton

    final class Kubectl: @unchecked Sendable {
        // `buffer` is guarded by `lock`.
        let process = Process()
        private let pipe = Pipe()
        private let lock = NSLock()
        private var buffer = Data()

        init(_ args: [String], kubeconfig: String) throws {
            guard let path = ["/usr/bin/kubectl", "/usr/local/bin/kubectl"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
                throw TestClientError(description: "kubectl is not installed")
            }
            process.executableURL = URL(fileURLWithPath: path)
            process.arguments = ["--kubeconfig", kubeconfig] + args
            process.environment = ["HOME": NSTemporaryDirectory(), "PATH": "/usr/bin:/bin"]
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

        var output: String {
            lock.lock()
            defer { lock.unlock() }
            return String(decoding: buffer, as: UTF8.self)
        }

        /// Waits for exit (bounded) and returns (status, output).
        func finish(timeout: Duration = .seconds(30)) async -> (Int32?, String) {
            let deadline = ContinuousClock.now + timeout
            while process.isRunning && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
            if process.isRunning {
                process.terminate()
                return (nil, output)
            }
            try? await Task.sleep(for: .milliseconds(50))  // let the last output arrive
            return (process.terminationStatus, output)
        }
    }

    func withSim(_ body: (SimHTTPServer, String) async throws -> Void) async throws {
        let server = try await SimHTTPServer.start(state: SimState(), group: Self.group, bookmarkInterval: .milliseconds(200))
        let dir = NSTemporaryDirectory() + "kube-sim-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let kubeconfig = "\(dir)/config"
        try SimHTTPServer.kubeconfig(url: "http://127.0.0.1:\(server.port)").write(toFile: kubeconfig, atomically: true, encoding: .utf8)
        try await body(server, kubeconfig)
        await server.stop()
        try? FileManager.default.removeItem(atPath: dir)
    }

    func run(_ args: [String], _ kubeconfig: String) async throws -> (Int32?, String) {
        await (try Kubectl(args, kubeconfig: kubeconfig)).finish()
    }

    @Test func discoveryVersionAndAPIResources() async throws {
        try await withSim { _, kubeconfig in
            let (status, out) = try await run(["api-resources"], kubeconfig)
            #expect(status == 0, "\(out)" as Comment)
            #expect(out.contains("endpointslices"))
            #expect(out.contains("apisixroutes"))
            #expect(out.contains("svc"))
            let (vs, version) = try await run(["version"], kubeconfig)
            #expect(vs == 0)
            #expect(version.contains("Server Version: v1.32.0-sluice-kube-sim"))
        }
    }

    @Test func createGetLabelDeleteAndWatch() async throws {
        try await withSim { server, kubeconfig in
            let file = NSTemporaryDirectory() + "svc-\(UUID().uuidString).yaml"
            try "apiVersion: v1\nkind: Service\nmetadata: {name: httpbin}\nspec: {ports: [{name: http, port: 80, targetPort: 8080}]}\n"
                .write(toFile: file, atomically: true, encoding: .utf8)
            // kubectl reads the server's OpenAPI v3 and, finding fieldValidation, leaves
            // validation to the server.
            let watch = try Kubectl(["get", "services", "--watch", "--output-watch-events", "-o", "json"], kubeconfig: kubeconfig)
            var (status, out) = try await run(["create", "-f", file], kubeconfig)
            #expect(status == 0, "\(out)" as Comment)
            #expect(out.contains("service/httpbin created"))
            (status, out) = try await run(["get", "services", "-o", "json"], kubeconfig)
            let list = try JSONValue.parse(out)
            #expect(list["items"]?.arrayValue?.first?["spec"]?["ports"]?.arrayValue?.first?["port"] == .int(80))
            // An APISIX custom resource through kubectl apply, twice (create, then patch).
            let route = NSTemporaryDirectory() + "ar-\(UUID().uuidString).yaml"
            for host in ["httpbin.org", "httpbin.example"] {
                try """
                    apiVersion: apisix.apache.org/v2
                    kind: ApisixRoute
                    metadata: {name: httpbin-route}
                    spec: {http: [{name: rule1, match: {hosts: [\(host)], paths: [/get]}, backends: [{serviceName: httpbin, servicePort: 80}]}]}
                    """.write(toFile: route, atomically: true, encoding: .utf8)
                (status, out) = try await run(["apply", "-f", route], kubeconfig)
                #expect(status == 0, "\(out)" as Comment)
            }
            (status, out) = try await run(["get", "ar", "httpbin-route", "-o", "jsonpath={.spec.http[0].match.hosts[0]}"], kubeconfig)
            #expect(out == "httpbin.example", "\(out)" as Comment)
            (status, out) = try await run(["label", "service", "httpbin", "tier=front"], kubeconfig)
            #expect(status == 0, "\(out)" as Comment)
            (status, out) = try await run(["delete", "service", "httpbin"], kubeconfig)
            #expect(out.contains("deleted"))
            (status, out) = try await run(["get", "services"], kubeconfig)
            #expect(out.contains("No resources found"))
            // The watch saw all three changes.
            let deadline = ContinuousClock.now + .seconds(15)
            while !watch.output.contains("DELETED") && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
            watch.process.terminate()
            let events = watch.output
            #expect(events.contains("ADDED"), "\(events)" as Comment)
            #expect(events.contains("MODIFIED"))
            #expect(events.contains("DELETED"))
            #expect(server.state.currentResourceVersion > 1)
        }
    }

    @Test func aWatchFromACompactedVersionGets410AndBookmarksFlow() async throws {
        try await withSim { server, _ in
            let svc: JSONValue = ["metadata": ["name": "a"], "spec": [:]]
            _ = try server.state.write { s throws(APIError) in try s.create(SimState.defaultResources[1], namespace: "default", svc) }
            let old = server.state.currentResourceVersion
            _ = try server.state.write { s throws(APIError) in try s.delete(SimState.defaultResources[1], namespace: "default", name: "a") }
            server.state.compact()
            let (gone, _) = try await RawHTTP.exchange(
                port: server.port, group: Self.group,
                "GET /api/v1/namespaces/default/services?watch=1&resourceVersion=\(old) HTTP/1.1\r\nHost: sim\r\n\r\n",
                timeout: .seconds(10), until: { $0.contains("\"type\":\"ERROR\"") })
            #expect(gone.contains("\"code\":410"))
            let now = server.state.currentResourceVersion
            let (bookmarks, _) = try await RawHTTP.exchange(
                port: server.port, group: Self.group,
                "GET /api/v1/namespaces/default/services?watch=1&allowWatchBookmarks=true&resourceVersion=\(now) HTTP/1.1\r\nHost: sim\r\n\r\n",
                timeout: .seconds(10), until: { $0.contains("BOOKMARK") })
            #expect(bookmarks.contains("\"type\":\"BOOKMARK\""))
            #expect(bookmarks.contains("\"resourceVersion\":\"\(now)\""))
        }
    }
}
