import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import SluiceAdmin
import SluiceCore
import SluiceServer
import SluiceStore
import SluiceTesting
import Testing

#if canImport(Glibc)
import Glibc
#endif

let adminKey = "test-admin-key-0123456789"
let viewerKey = "test-viewer-key-0123456789"

func makeTemporaryDirectory() -> String {
    var template = Array("/tmp/sluice-test-XXXXXX".utf8CString)
    return template.withUnsafeMutableBufferPointer { buf in String(cString: mkdtemp(buf.baseAddress!)!) }
}

/// A gateway with the Admin API on an embedded store in a temporary directory.
struct AdminGateway {
    let gateway: Gateway
    let service: ConfigService
    let admin: APIServer
    let adminPort: Int
    let directory: String

    static func start(directory: String? = nil, allowed: [CIDR] = [], readOnly: Bool = false) async throws -> AdminGateway {
        let gateway = try await Gateway.start()
        let dir = directory ?? makeTemporaryDirectory()
        let server = gateway.server
        let publisher: ConfigService.Publisher = { state, changes in try await server.apply(state, changes: changes) }
        let service: ConfigService
        if readOnly {
            service = ConfigService(readOnlyPublisher: publisher)
        } else {
            service = ConfigService(store: try EmbeddedStore(directory: dir), publisher: publisher, trialCompile: GatewayServer.trialCompile)
            try await service.start()
        }
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        let api = AdminAPI(service: service, keys: [adminKey: .admin, viewerKey: .viewer], allowed: allowed)
        let admin = try await APIServer.start(
            name: "admin", listen: ListenAddress(host: "127.0.0.1", port: 0), handler: api, group: Gateway.group, logger: logger)
        return AdminGateway(gateway: gateway, service: service, admin: admin, adminPort: try #require(admin.localAddress?.port), directory: dir)
    }

    func adminClient() async throws -> AdminClient {
        AdminClient(http: try await TestHTTPClient.connect(port: adminPort, group: Gateway.group))
    }

    func stop() async {
        await admin.close()
        await gateway.stop()
    }
}

/// Admin API calls with the key, JSON in and out.
struct AdminClient {
    let http: TestHTTPClient

    func call(_ method: HTTPMethod, _ path: String, _ body: String? = nil, key: String? = adminKey) async throws -> (status: Int, json: JSONValue, headers: HTTPHeaders) {
        var headers: [(String, String)] = [("Content-Type", "application/json")]
        if let key { headers.append(("X-API-KEY", key)) }
        let r = try await http.request(method, "/apisix/admin\(path)", headers: headers, body: body.map { ByteBuffer(string: $0) })
        let json = (try? JSONValue.parse(r.bodyString)) ?? .string(r.bodyString)
        return (Int(r.status.code), json, r.headers)
    }

    func close() async { await http.close() }
}
