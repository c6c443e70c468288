import Foundation
import KubeClient
import KubeSim
import KubeSimServer
import NIOCore
import NIOHTTP1
import NIOPosix
import SluiceCore
import SluiceTesting

/// A simulated cluster (kube-sim in this process), a `sluice serve` process and
/// `sluice ingress` processes pointed at both, all on 127.0.0.1.
final class IngressEnvironment: @unchecked Sendable {
    static let group = MultiThreadedEventLoopGroup.singleton
    let dir: String
    let state: SimState
    let control: SimControlPlane
    private(set) var sim: SimHTTPServer
    let simPort: Int
    let kubeconfig: String
    let api: KubeAPI
    private(set) var gateway: GatewayProcess
    private(set) var ports: GatewayProcess.Ports
    var controllers: [GatewayProcess] = []

    /// `gatewayFlags`: more `sluice serve` flags (e.g. `--keyring`), for the first gateway only.
    init(
        podAddresses: [String] = [], maxPerSlice: Int = 100, resources: [ResourceType] = SimState.defaultResources, gatewayFlags: [String] = []
    ) async throws {
        dir = makeTemporaryDirectory()
        state = SimState(resources: resources)
        control = SimControlPlane(state: state, maxPerSlice: maxPerSlice, podAddresses: podAddresses)
        sim = try await SimHTTPServer.start(state: state, group: Self.group, bookmarkInterval: .milliseconds(500), controlPlane: control)
        simPort = sim.port
        kubeconfig = "\(dir)/kubeconfig"
        try SimHTTPServer.kubeconfig(url: "http://127.0.0.1:\(simPort)").write(toFile: kubeconfig, atomically: true, encoding: .utf8)
        api = KubeAPI(try KubeConfigLoader.fromFiles([kubeconfig], context: nil), group: Self.group)
        gateway = try GatewayProcess.serve(["--data-dir", "data", "--admin-key", adminKey, "--workers", "2"] + gatewayFlags, directory: dir)
        ports = try await gateway.ports()
    }

    /// Starts a controller writing to the gateway's Admin API.
    @discardableResult
    func startController(_ extra: [String] = ["--leader-elect", "false"]) throws -> GatewayProcess {
        let c = try GatewayProcess(
            ["ingress", "--kubeconfig", kubeconfig, "--admin-url", "http://127.0.0.1:\(ports.admin)", "--admin-key", adminKey,
             "--metrics-listen", "127.0.0.1:0", "--resync-interval", "2"] + extra, directory: dir)
        controllers.append(c)
        return c
    }

    /// Kills the gateway and starts a new one on an empty store, on the same ports.
    func restartGatewayEmpty() async throws {
        gateway.kill(SIGKILL)
        _ = await gateway.waitForExit()
        let p = ports
        gateway = try GatewayProcess(
            ["serve", "--proxy-listen", "127.0.0.1:\(p.proxy)", "--tls-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:\(p.admin)", "--control-listen", "127.0.0.1:\(p.control)",
             "--metrics-listen", "127.0.0.1:\(p.metrics)", "--data-dir", "data2", "--admin-key", adminKey, "--workers", "2"], directory: dir)
        ports = try await gateway.ports()
    }

    /// Stops kube-sim; `restartSim` brings it back on the same port with the same state.
    func stopSim() async { await sim.stop() }
    func restartSim() async throws {
        sim = try await SimHTTPServer.start(state: state, port: simPort, group: Self.group, bookmarkInterval: .milliseconds(500), controlPlane: control)
    }

    func admin(_ method: HTTPMethod, _ path: String) async throws -> (status: Int, json: JSONValue) {
        let http = try await TestHTTPClient.connect(port: ports.admin, group: Self.group)
        defer { Task { await http.close() } }
        let r = try await http.request(method, "/apisix/admin\(path)", headers: [("X-API-KEY", adminKey)])
        return (Int(r.status.code), (try? JSONValue.parse(r.bodyString)) ?? .null)
    }

    /// The node addresses of a gateway upstream (empty when it does not exist).
    func nodes(_ upstream: String) async throws -> Set<String> {
        let r = try await admin(.GET, "/upstreams/\(upstream)")
        guard r.status == 200, let nodes = r.json["value"]?["nodes"]?.objectValue else { return [] }
        return Set(nodes.keys)
    }

    func modifiedIndex(_ kind: String, _ id: String) async throws -> Int64? {
        try await admin(.GET, "/\(kind)/\(id)").json["modifiedIndex"]?.intValue
    }

    func create(_ resource: KubeResource, _ yamlJSON: String) async throws {
        _ = try await api.create(resource, try JSONValue.parse(yamlJSON))
    }

    func stop() async {
        for c in controllers where c.process.isRunning {
            c.kill(SIGTERM)
            if await c.waitForExit(timeout: .seconds(10)) == nil { c.kill(SIGKILL) }
        }
        gateway.kill(SIGKILL)
        _ = await gateway.waitForExit()
        await sim.stop()
    }
}

/// ApisixRoute `httpbin-route`: host httpbin.org, path /get, backend Service httpbin port 80.
let httpbinRoute = #"""
    {"apiVersion": "apisix.apache.org/v2", "kind": "ApisixRoute", "metadata": {"name": "httpbin-route", "namespace": "default"},
     "spec": {"http": [{"name": "rule1", "match": {"hosts": ["httpbin.org"], "paths": ["/get"]},
                        "backends": [{"serviceName": "httpbin", "servicePort": 80}]}]}}
    """#

/// Real servers for pods: one per loopback address, all on one port.
func startPods(_ addresses: [String], port: Int) async throws -> [String: TestUpstream] {
    var out: [String: TestUpstream] = [:]
    for a in addresses { out[a] = try await TestUpstream.start(name: a, group: IngressEnvironment.group, host: a, port: port) }
    return out
}

/// A port free on 127.0.0.1 (and so, for a listener on another loopback address, very likely free there too).
func freePort() async throws -> Int {
    let ch = try await ServerBootstrap(group: IngressEnvironment.group).bind(host: "127.0.0.1", port: 0).get()
    let port = ch.localAddress?.port ?? 0
    try await ch.close()
    return port
}
