import Logging
import NIOCore
import NIOPosix
import SluiceCore
import SluiceProxy
import SluiceServer
import SluiceTesting
import Testing

/// A gateway on 127.0.0.1 with a free port, in this process, plus helpers to reconfigure it.
struct Gateway {
    static let group = MultiThreadedEventLoopGroup.singleton
    let server: GatewayServer
    let port: Int

    static func start(
        workers: Int = 2, settings: ProxySettings = ProxySettings(), maxConnections: Int? = nil, accessLog: AccessLog? = nil, _ json: String? = nil
    ) async throws -> Gateway {
        var config = GatewayServer.Configuration()
        config.proxyListen = [ListenAddress(host: "127.0.0.1", port: 0)]
        config.workers = workers
        config.settings = settings
        config.maxConnections = maxConnections
        config.accessLog = accessLog
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        let server = try await GatewayServer.make(configuration: config, logger: logger)
        let addresses = try await server.start()
        let gateway = Gateway(server: server, port: try #require(addresses.first?.port))
        if let json { try await gateway.apply(json) }
        return gateway
    }

    /// Applies a declarative config given as JSON.
    func apply(_ json: String) async throws {
        let state = try DeclarativeConfig.decode(try JSONValue.parse(json)).get()
        try await server.apply(state)
    }

    func client() async throws -> TestHTTPClient {
        try await TestHTTPClient.connect(port: port, group: Gateway.group)
    }

    func stop() async {
        await server.shutdown(gracePeriod: .seconds(5))
    }

    /// Upstream connections opened by all loops.
    func upstreamConnectionsOpened() async throws -> Int {
        try await server.inspectLoops { $0.upstreamConnectionsOpened }.reduce(0, +)
    }
}

func startUpstream(_ name: String, closeAfterHead: Bool = false) async throws -> TestUpstream {
    try await TestUpstream.start(name: name, group: Gateway.group, closeAfterHead: closeAfterHead)
}

/// A port on 127.0.0.1 where nothing listens (bound, then closed).
func deadPort() async throws -> Int {
    let channel = try await ServerBootstrap(group: Gateway.group).bind(host: "127.0.0.1", port: 0).get()
    let port = channel.localAddress!.port!
    try await channel.close()
    return port
}

/// Polls `condition` until it holds or `timeout` passes.
func eventually(timeout: Duration = .seconds(10), _ condition: () async throws -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
}

func routeJSON(uri: String = "/*", nodes: [String], extra: String = "", upstreamExtra: String = "") -> String {
    let n = nodes.map { "\"\($0)\":1" }.joined(separator: ",")
    return #"{"routes":[{"id":"r1","uri":"\#(uri)","upstream":{"nodes":{\#(n)}\#(upstreamExtra)}\#(extra)}]}"#
}
