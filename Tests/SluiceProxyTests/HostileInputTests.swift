import NIOCore
import NIOEmbedded
import NIOHTTP1
import SluiceCore
import SluiceProxy
import Testing

/// A proxy pipeline on an EmbeddedChannel serving the declarative `config`, connected from
/// `client` to `local`:9080 (the embedded loop cannot connect anywhere upstream).
func proxyChannel(_ config: String, client: String = "192.0.2.7", local: String = "127.0.0.1") throws -> EmbeddedChannel {
    let channel = EmbeddedChannel()
    channel.remoteAddress = try SocketAddress(ipAddress: client, port: 40000)
    channel.localAddress = try SocketAddress(ipAddress: local, port: 9080)
    let loop = LoopContext(eventLoop: channel.eventLoop)
    let state = try DeclarativeConfig.decode(try JSONValue.parse(config)).get()
    loop.install(SnapshotCompiler().compile(state))
    try HTTP1ListenerFactory(settings: ProxySettings()).configure(channel, loop: loop)
    try channel.connect(to: channel.remoteAddress!).wait()
    return channel
}

/// The proxy's answers to malformed and ambiguous requests, on an EmbeddedChannel: none of
/// these may reach an upstream (the route's only node is unreachable, and the embedded loop
/// cannot connect anywhere), and the framing ones must close the connection.
@Suite struct HostileInputTests {
    func makeChannel() throws -> EmbeddedChannel {
        try proxyChannel(#"{"routes":[{"id":"1","uri":"/app/*","upstream":{"nodes":{"127.0.0.1:9":1}}}]}"#)
    }

    func send(_ channel: EmbeddedChannel, _ text: String) throws -> String {
        try? channel.writeInbound(ByteBuffer(string: text))
        var out = ""
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { out += String(buffer: buffer) }
        return out
    }

    @Test func unknownRouteGets404JSONAndKeepsTheConnection() throws {
        let channel = try makeChannel()
        let out = try send(channel, "GET /nothing HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(out.hasPrefix("HTTP/1.1 404 Not Found\r\n"))
        #expect(out.hasSuffix("{\"error_msg\":\"404 Route Not Found\"}\n"))
        #expect(channel.isActive)
        // Pipelined requests are answered in order.
        let two = try send(channel, "GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(two.split(separator: "HTTP/1.1 404 Not Found").count == 2 && two.hasPrefix("HTTP/1.1 404"))
        _ = try? channel.finish()
    }

    @Test(arguments: [
        ("both CL and TE", "POST /app/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("duplicate CL", "POST /app/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"),
        ("conflicting CL", "POST /app/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
        ("obs-fold", "GET /app/x HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n"),
        ("no Host in HTTP/1.1", "GET /app/x HTTP/1.1\r\nAccept: */*\r\n\r\n"),
        ("two Hosts", "GET /app/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
        ("space before colon", "GET /app/x HTTP/1.1\r\nHost : a\r\n\r\n"),
        ("garbage", "\u{01}\u{02}\u{03} nonsense\r\n\r\n"),
    ])
    func ambiguousFramingGets400AndClose(_ name: String, _ request: String) throws {
        let channel = try makeChannel()
        let out = try send(channel, request)
        #expect(out.hasPrefix("HTTP/1.1 400 Bad Request\r\n"), "\(name): \(out)" as Comment)
        #expect(!channel.isActive, "\(name): connection must be closed" as Comment)
    }

    @Test func malformedChunkedBodyClosesTheConnection() throws {
        let channel = try makeChannel()
        _ = try send(channel, "POST /app/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
        #expect(!channel.isActive)
    }

    @Test func unsupportedTransferEncodingGets501() throws {
        let channel = try makeChannel()
        let out = try send(channel, "POST /app/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n")
        #expect(out.hasPrefix("HTTP/1.1 501") || out.hasPrefix("HTTP/1.1 400"), "\(out)" as Comment)
        #expect(!channel.isActive)
    }

    @Test func oversizedHeadersGet431() throws {
        let channel = try makeChannel()
        let big = String(repeating: "x", count: 33 * 1024)
        let out = try send(channel, "GET /app/x HTTP/1.1\r\nHost: a\r\nX-Big: \(big)\r\n\r\n")
        #expect(out.hasPrefix("HTTP/1.1 431"), "\(out.prefix(80))" as Comment)
        #expect(!channel.isActive)
    }

    @Test func oversizedURIGets414() throws {
        let channel = try makeChannel()
        let long = String(repeating: "a", count: 9 * 1024)
        let out = try send(channel, "GET /app/\(long) HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(out.hasPrefix("HTTP/1.1 414"), "\(out.prefix(80))" as Comment)
        #expect(!channel.isActive)
    }

    @Test func uriJustUnderTheLimitIsRouted() throws {
        let channel = try makeChannel()
        let long = String(repeating: "a", count: 7 * 1024)
        let out = try send(channel, "GET /nothing/\(long) HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(out.hasPrefix("HTTP/1.1 404"))
    }

    @Test(arguments: ["/app/../../etc/passwd", "/%2e%2e/app/x", "/app/%zz"])
    func pathsThatCannotBeNormalizedGet400(_ path: String) throws {
        let channel = try makeChannel()
        let out = try send(channel, "GET \(path) HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(out.hasPrefix("HTTP/1.1 400"), "\(out)" as Comment)
    }

    @Test func dotSegmentsAreResolvedBeforeRouting() throws {
        let channel = try makeChannel()
        // /app/../nothing is /nothing: a route miss, not a match of /app/*.
        let out = try send(channel, "GET /app/../nothing HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(out.hasPrefix("HTTP/1.1 404"))
    }

    @Test func connectMethodIsRefused() throws {
        let channel = try makeChannel()
        let out = try send(channel, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        #expect(out.hasPrefix("HTTP/1.1 405") || out.hasPrefix("HTTP/1.1 400"), "\(out)" as Comment)
        #expect(!channel.isActive)
    }
}
