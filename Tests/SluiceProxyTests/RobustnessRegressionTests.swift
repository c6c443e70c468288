import NIOCore
import NIOEmbedded
import NIOHTTP1
import SluiceCore
import SluiceProxy
import Testing

/// Regressions of the robustness review (issue 12) at the proxy, on an EmbeddedChannel: each
/// route answers locally (mocking, ip-restriction), so no upstream is needed.
@Suite struct RobustnessRegressionTests {
    /// A dual-stack listener (`::`), as where IPv4 clients arrive mapped.
    func channel(_ config: String, client: String) throws -> EmbeddedChannel {
        try proxyChannel(config, client: client, local: "::")
    }

    func send(_ channel: EmbeddedChannel, _ text: String) throws -> String {
        try? channel.writeInbound(ByteBuffer(string: text))
        var out = ""
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { out += String(buffer: buffer) }
        return out
    }

    static let hostRoutes = #"""
        {"routes":[
          {"id":"scoped","uri":"/x","hosts":["api.example.com"],"plugins":{"mocking":{"response_example":"scoped","with_mock_header":false}},"upstream":{"nodes":{"127.0.0.1:9":1}}},
          {"id":"open","uri":"/x","plugins":{"mocking":{"response_example":"open","with_mock_header":false}},"upstream":{"nodes":{"127.0.0.1:9":1}}}]}
        """#

    /// `Host: api.example.com.` is the host-scoped route's host, as NGINX's $host strips the
    /// dot; it used to fall through to the host-less route.
    @Test(arguments: ["api.example.com", "api.example.com.", "API.Example.COM.:8080"])
    func aTrailingDotHostReachesItsHostScopedRoute(_ host: String) throws {
        let c = try channel(Self.hostRoutes, client: "192.0.2.7")
        let out = try send(c, "GET /x HTTP/1.1\r\nHost: \(host)\r\n\r\n")
        #expect(out.hasPrefix("HTTP/1.1 200"), "\(out)")
        #expect(out.hasSuffix("scoped"), "\(out)")
        _ = try? c.finish()
    }

    static let blacklist = #"""
        {"routes":[{"id":"1","uri":"/x","plugins":{"ip-restriction":{"blacklist":["10.0.0.0/8"]}},
          "upstream":{"nodes":{"127.0.0.1:9":1}}}]}
        """#

    /// An IPv4 client of a dual-stack listener arrives as ::ffff:a.b.c.d: IPv4 rules apply to
    /// it (this was a blacklist bypass).
    @Test func anIPv4MappedClientMeetsIPv4Rules() throws {
        let mapped = try channel(Self.blacklist, client: "::ffff:10.1.2.3")
        let out = try send(mapped, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(out.hasPrefix("HTTP/1.1 403"), "\(out)")
        _ = try? mapped.finish()
        let other = try channel(Self.blacklist, client: "::ffff:192.0.2.9")
        // Let through: on to the (unreachable) upstream.
        #expect(try send(other, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n").hasPrefix("HTTP/1.1 502"))
        _ = try? other.finish()
    }

    @Test func mappedAddressesAndBlocksUnmap() {
        #expect(IPAddress("::ffff:10.1.2.3")?.unmapped == IPAddress("10.1.2.3"))
        #expect(IPAddress("::1")?.unmapped == IPAddress("::1"))
        #expect(CIDR("10.0.0.0/8")!.contains(IPAddress("::ffff:10.9.9.9")!.unmapped))
        #expect(CIDR("::ffff:10.0.0.0/104")!.contains(IPAddress("10.200.0.1")!))
        #expect(!CIDR("::ffff:10.0.0.0/104")!.contains(IPAddress("11.0.0.1")!))
    }

    /// A value from a `vars` `in` list at 1e19 (an integral double past Int64) used to trap
    /// when it was turned into text.
    @Test func varsOperandsAtExtremesDecodeAndEvaluate() throws {
        for v in ["1e19", "-1e308", "1e308", "9223372036854775808", "18446744073709551616", "1e-9"] {
            let json = try JSONValue.parse(#"[["arg_x","in",[\#(v)]],["arg_y",">",\#(v)],["arg_z","==",\#(v)]]"#)
            let e = try VarsExpression.parse(json, path: "vars")
            #expect(!e.evaluate(NoVars([.arg("x"): "1", .arg("y"): "2", .arg("z"): "3"])))
        }
        #expect(FieldReader.format(1e19) == "1e+19")
        #expect(FieldReader.format(-4) == "-4")
    }

    /// Every object is compiled on its own before it is stored; a valid one compiles.
    @Test func theTrialCompileTakesValidObjects() throws {
        let state = try DeclarativeConfig.decode(try JSONValue.parse(Self.blacklist)).get()
        try SnapshotCompiler.trialCompile(.routes, id: "1", scratch: state)
    }
}
