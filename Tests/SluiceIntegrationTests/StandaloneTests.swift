import Foundation
import Logging
import NIOCore
import NIOHTTP1
import SluiceAdmin
import SluiceCore
import SluiceServer
import SluiceTesting
import Testing

@Suite struct StandaloneTests {
    @Test func fileChangesGoLiveAndInvalidEditsKeepThePreviousConfig() async throws {
        let up = try await startUpstream("a")
        let gw = try await Gateway.start()
        let dir = makeTemporaryDirectory()
        let file = "\(dir)/routes.yaml"
        func write(_ text: String) throws { try text.write(toFile: file, atomically: true, encoding: .utf8) }
        try write(#"routes: [{id: "1", uri: /one, upstream: {nodes: {"\#(up.address)": 1}}}]\#n"#)
        let server = gw.server
        let service = ConfigService(readOnlyPublisher: { try await server.apply($0, changes: $1) })
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let source = StandaloneSource(path: file, service: service, logger: logger, pollInterval: .milliseconds(50))
        let fingerprint = try await source.loadInitial()
        let watcher = Task { await source.watch(from: fingerprint) }
        let client = try await gw.client()
        #expect(try await client.request(.GET, "/one").status == .ok)

        try write(#"routes: [{id: "2", uri: /two, upstream: {nodes: {"\#(up.address)": 1}}}]\#n"#)
        #expect(try await eventually { try await client.request(.GET, "/two").status == .ok })
        #expect(try await client.request(.GET, "/one").status == .notFound)

        // An invalid edit: the previous config stays live.
        try write(#"routes: [{id: "3", uri: three, upstream: {nodes: {"\#(up.address)": 1}}}]\#n"#)
        #expect(try await eventually { source.rejectedEdits == 1 })
        #expect(try await client.request(.GET, "/two").status == .ok)
        #expect(source.appliedEdits == 1)
        // The read-only Admin view shows the file's objects.
        #expect(await service.get(.routes, "2") != nil)
        #expect(await service.get(.routes, "3") == nil)

        watcher.cancel()
        await client.close()
        await gw.stop()
        await up.stop()
    }

    @Test func controlAPIShowsWhatIsServed() async throws {
        let gw = try await AdminGateway.start()
        let c = try await gw.adminClient()
        #expect(try await c.call(.PUT, "/upstreams/u", #"{"nodes":{"127.0.0.1:1":1}}"#).status == 201)
        #expect(try await c.call(.PUT, "/routes/r", #"{"uri":"/r","upstream_id":"u"}"#).status == 201)
        let api = ControlAPI(service: gw.service)
        func get(_ path: String) async -> APIResponse {
            await api.handle(APIRequest(method: "GET", uri: path, headers: [], body: [], remoteAddress: nil))
        }
        #expect(await get("/v1/routes").body.arrayValue?.count == 1)
        #expect(await get("/v1/route/r").body["uri"] == "/r")
        #expect(await get("/v1/route/missing").status == 404)
        #expect(await get("/v1/upstreams").body.arrayValue?.first?["id"] == "u")
        #expect(await get("/v1/upstream/u").status == 200)
        #expect(await get("/v1/services").body == [])
        #expect(await get("/v1/healthcheck").status == 200)
        #expect(await get("/v1/schema").body["routes"] != nil)
        await c.close()
        await gw.stop()
    }
}
