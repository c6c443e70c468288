import NIOCore
import NIOEmbedded
import NIOSSL
import SluiceTLS
import SluiceTesting
import Testing

/// The pre-handshake ClientHello reader, against hellos BoringSSL (via NIOSSL) really sends,
/// and against hand-built and mutated ones.
@Suite struct ClientHelloTests {
    /// The first flight of a NIOSSL client: one or more TLS records holding the ClientHello.
    static func realHello(serverName: String?) throws -> [UInt8] {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.applicationProtocols = ["h2", "http/1.1"]
        configuration.certificateVerification = .none
        let context = try NIOSSLContext(configuration: configuration)
        let channel = EmbeddedChannel()
        defer { _ = try? channel.finish() }
        try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: context, serverHostname: serverName))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 443)).wait()
        var bytes: [UInt8] = []
        while let chunk = try channel.readOutbound(as: ByteBuffer.self) {
            bytes += chunk.readableBytesView
        }
        return bytes
    }

    static func read(_ bytes: some Sequence<UInt8>) -> ClientHelloResult {
        ClientHelloReader.read(ByteBuffer(bytes: Array(bytes)))
    }

    static func hello(_ result: ClientHelloResult) -> ClientHello? {
        if case .complete(let hello) = result { return hello }
        return nil
    }

    static func isMalformed(_ result: ClientHelloResult) -> Bool {
        if case .malformed = result { return true }
        return false
    }

    @Test func realHelloWithSNI() throws {
        let bytes = try Self.realHello(serverName: "api.example.com")
        let parsed = try #require(Self.hello(Self.read(bytes)))
        #expect(parsed.serverName == "api.example.com")
        #expect(parsed.alpn == ["h2", "http/1.1"])
        #expect(parsed.supportedVersions.contains(0x0304))
        #expect(parsed.legacyVersion == 0x0303)
        #expect(parsed.signatureAlgorithms.contains(0x0403))
        #expect(parsed.cipherSuites.contains(0x1301))
        #expect(parsed.acceptsECDSA)
    }

    @Test func realHelloWithoutSNI() throws {
        let parsed = try #require(Self.hello(Self.read(try Self.realHello(serverName: nil))))
        #expect(parsed.serverName == nil)
        #expect(parsed.alpn == ["h2", "http/1.1"])
    }

    @Test func readerDoesNotConsume() throws {
        let buffer = ByteBuffer(bytes: try Self.realHello(serverName: "a.test"))
        _ = ClientHelloReader.read(buffer)
        #expect(buffer.readableBytes > 0)
        var offset = ByteBuffer(bytes: [0xAA, 0xBB])
        offset.writeImmutableBuffer(buffer)
        offset.moveReaderIndex(forwardBy: 2)
        #expect(Self.hello(ClientHelloReader.read(offset))?.serverName == "a.test")
    }

    @Test func byteByByteNeedsMoreUntilTheEnd() throws {
        let bytes = try Self.realHello(serverName: "api.example.com")
        let expected = Self.read(bytes)
        #expect(Self.hello(expected) != nil)
        for end in 0..<bytes.count {
            let partial = Self.read(bytes[..<end])
            guard partial == .needMoreBytes else {
                Issue.record("prefix of \(end)/\(bytes.count) bytes gave \(partial)")
                return
            }
        }
        // Bytes after the hello (an early second flight) change nothing.
        #expect(Self.read(bytes + [0x17, 0x03, 0x03]) == expected)
    }

    /// Re-frames the handshake message of a single-record hello into records of `sizes`
    /// bytes (the last takes the rest).
    static func reframe(_ bytes: [UInt8], sizes: [Int]) -> [UInt8] {
        let payload = Array(bytes[5...])
        var out: [UInt8] = []
        var start = 0
        for (i, size) in sizes.enumerated() where start < payload.count {
            let end = i == sizes.count - 1 ? payload.count : min(start + size, payload.count)
            out += [0x16, 0x03, 0x01, UInt8((end - start) >> 8), UInt8((end - start) & 0xFF)]
            out += payload[start..<end]
            start = end
        }
        return out
    }

    @Test func helloSplitOverRecords() throws {
        let bytes = try Self.realHello(serverName: "api.example.com")
        let expected = Self.read(bytes)
        try #require(Self.hello(expected) != nil)
        // Mid-body, inside the 4-byte handshake header, and many small records.
        for sizes in [[100, 0], [2, 0], [1, 1, 1, 1, 0], Array(repeating: 7, count: 400)] {
            let reframed = Self.reframe(bytes, sizes: sizes)
            #expect(Self.read(reframed) == expected, "\(sizes.prefix(4))")
            #expect(Self.read(reframed.dropLast()) == .needMoreBytes)
        }
    }

    @Test func plainHTTPIsNotTLS() {
        #expect(Self.read(Array("GET / HTTP/1.1\r\nHost: a\r\n\r\n".utf8)) == .notTLS)
        #expect(Self.read(Array("G".utf8)) == .notTLS)
        #expect(Self.read([0x16, 0x02]) == .notTLS)
        #expect(Self.read([0x80, 0x2E, 0x01]) == .notTLS)  // SSLv2-style hello
        #expect(Self.read([]) == .needMoreBytes)
        #expect(Self.read([0x16]) == .needMoreBytes)
        #expect(Self.read([0x16, 0x03, 0x01, 0x00]) == .needMoreBytes)
    }

    @Test func badLengthsAreMalformed() throws {
        let bytes = try Self.realHello(serverName: "api.example.com")
        // An empty record, a record over 2^14 bytes, a non-ClientHello message.
        #expect(Self.isMalformed(Self.read([0x16, 0x03, 0x01, 0x00, 0x00])))
        #expect(Self.isMalformed(Self.read([0x16, 0x03, 0x01, 0x40, 0x01])))
        #expect(Self.isMalformed(Self.read([0x16, 0x03, 0x01, 0x00, 0x01, 0x02])))
        // A handshake length beyond maxBytes is refused before its bytes arrive.
        #expect(Self.isMalformed(Self.read([0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x01, 0x00, 0x00])))
        // A record other than handshake in the middle of the hello.
        var interleaved = Self.reframe(bytes, sizes: [50, 0])
        interleaved[55] = 0x17
        #expect(Self.isMalformed(Self.read(interleaved)))

        // The handshake message claims fewer bytes than its fields need: truncated body.
        var short = bytes
        let length = Int(bytes[6]) << 16 | Int(bytes[7]) << 8 | Int(bytes[8])
        let cut = length - 40
        short[6] = UInt8(cut >> 16); short[7] = UInt8((cut >> 8) & 0xFF); short[8] = UInt8(cut & 0xFF)
        #expect(Self.isMalformed(Self.read(short)))
        // The cipher suites vector claims to run past the message.
        var suites = bytes
        let suitesAt = 5 + 4 + 2 + 32 + 1 + Int(bytes[5 + 4 + 2 + 32])
        suites[suitesAt] = 0xFF
        #expect(Self.isMalformed(Self.read(suites)))
    }

    // MARK: Hand-built hellos, for what NIOSSL cannot be made to send.

    static func vector16(_ bytes: [UInt8]) -> [UInt8] { [UInt8(bytes.count >> 8), UInt8(bytes.count & 0xFF)] + bytes }
    static func vector8(_ bytes: [UInt8]) -> [UInt8] { [UInt8(bytes.count)] + bytes }
    static func u16s(_ values: [UInt16]) -> [UInt8] { values.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] } }

    static func built(suites: [UInt16] = [0xC02F], extensions: [(UInt16, [UInt8])]?) -> [UInt8] {
        var body: [UInt8] = [0x03, 0x03] + [UInt8](repeating: 7, count: 32) + [0]
        body += vector16(u16s(suites)) + vector8([0])
        if let extensions {
            body += vector16(extensions.flatMap { u16s([$0.0]) + vector16($0.1) })
        }
        let message = [0x01, 0x00, UInt8(body.count >> 8), UInt8(body.count & 0xFF)] + body
        return [0x16, 0x03, 0x01] + vector16(message)
    }

    static func sni(_ name: String) -> (UInt16, [UInt8]) {
        (0, vector16([0] + vector16(Array(name.utf8))))
    }

    @Test func serverNameIsNormalized() {
        #expect(Self.hello(Self.read(Self.built(extensions: [Self.sni("API.Example.COM.")])))?.serverName == "api.example.com")
        #expect(Self.hello(Self.read(Self.built(extensions: [Self.sni("under_score-1.test")])))?.serverName == "under_score-1.test")
        for bad in ["a b.test", "a/b", "ünï.test", ".", "a\u{0}b", String(repeating: "a", count: 256)] {
            let parsed = Self.hello(Self.read(Self.built(extensions: [Self.sni(bad)])))
            #expect(parsed != nil && parsed?.serverName == nil, "\(bad.prefix(8))")
        }
        // An empty list, an empty name, and a list length that leaves bytes over are malformed.
        #expect(Self.isMalformed(Self.read(Self.built(extensions: [(0, Self.vector16([]))]))))
        #expect(Self.isMalformed(Self.read(Self.built(extensions: [(0, Self.vector16([0, 0, 0]))]))))
        #expect(Self.isMalformed(Self.read(Self.built(extensions: [(0, Self.sni("a.test").1 + [0])]))))
        // The same extension twice.
        #expect(Self.isMalformed(Self.read(Self.built(extensions: [Self.sni("a.test"), Self.sni("b.test")]))))
    }

    @Test func ecdsaSupport() {
        let tls12ECDSA: [UInt16] = [0xC02B, 0xC02F]
        let rsaOnly: [UInt16] = [0xC02F, 0x009C]
        let sigalgs = { (values: [UInt16]) in (UInt16(13), Self.vector16(Self.u16s(values))) }
        let tls13 = (UInt16(43), Self.vector8(Self.u16s([0x0304, 0x0303])))
        func accepts(_ suites: [UInt16], _ extensions: [(UInt16, [UInt8])]?) -> Bool? {
            Self.hello(Self.read(Self.built(suites: suites, extensions: extensions)))?.acceptsECDSA
        }
        // No signature_algorithms (and no extensions at all): the suites decide.
        #expect(accepts(tls12ECDSA, nil) == true)
        #expect(accepts(rsaOnly, nil) == false)
        #expect(accepts(rsaOnly, []) == false)
        // With signature_algorithms: an ECDSA scheme, and a way to use it.
        #expect(accepts(tls12ECDSA, [sigalgs([0x0804, 0x0403])]) == true)
        #expect(accepts(tls12ECDSA, [sigalgs([0x0804, 0x0401])]) == false)
        #expect(accepts([0x1301], [sigalgs([0x0403]), tls13]) == true)
        #expect(accepts([0x1301], [sigalgs([0x0804]), tls13]) == false)
        #expect(accepts(rsaOnly, [sigalgs([0x0403])]) == false)
        // Empty or odd-length lists are malformed.
        #expect(Self.isMalformed(Self.read(Self.built(extensions: [sigalgs([])]))))
        #expect(Self.isMalformed(Self.read(Self.built(extensions: [(13, Self.vector16([4, 3, 1]))]))))
        #expect(Self.isMalformed(Self.read(Self.built(suites: [], extensions: nil))))
    }

    @Test func alpnVectors() {
        let alpn = { (names: [String]) in (UInt16(16), Self.vector16(names.flatMap { Self.vector8(Array($0.utf8)) })) }
        #expect(Self.hello(Self.read(Self.built(extensions: [alpn(["h2", "http/1.1"])])))?.alpn == ["h2", "http/1.1"])
        #expect(Self.isMalformed(Self.read(Self.built(extensions: [alpn([])]))))
        #expect(Self.isMalformed(Self.read(Self.built(extensions: [alpn(["h2", ""])]))))
    }

    @Test func alerts() {
        #expect(TLSAlert.fatal(TLSAlert.unrecognizedName) == [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 112])
        #expect(TLSAlert.fatal(TLSAlert.handshakeFailure).last == 40)
        #expect(TLSAlert.fatal(TLSAlert.protocolVersion).last == 70)
    }

    /// Random mutations of real and re-framed hellos: every one gets an answer, no trap.
    @Test func mutationsNeverCrash() throws {
        let seeds = [try Self.realHello(serverName: "api.example.com"), try Self.realHello(serverName: nil)]
        let inputs = seeds + seeds.map { Self.reframe($0, sizes: [3, 60, 0]) }
        var rng = SeededGenerator(seed: 0x5151_CE00)
        var counts: [String: Int] = [:]
        for _ in 0..<20_000 {
            var bytes = inputs[Int.random(in: 0..<inputs.count, using: &rng)]
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                let at = Int.random(in: 0..<bytes.count, using: &rng)
                switch Int.random(in: 0..<5, using: &rng) {
                case 0: bytes[at] = UInt8.random(in: 0...255, using: &rng)
                case 1: bytes[at] ^= 1 << UInt8.random(in: 0...7, using: &rng)
                case 2: bytes.removeSubrange(at...)
                    if bytes.isEmpty { bytes = [0x16] }
                case 3: bytes.insert(UInt8.random(in: 0...255, using: &rng), at: at)
                default: bytes[at] = [0x00, 0xFF, 0x7F, 0x80][Int.random(in: 0..<4, using: &rng)]
                }
            }
            switch Self.read(bytes) {
            case .needMoreBytes: counts["needMoreBytes", default: 0] += 1
            case .notTLS: counts["notTLS", default: 0] += 1
            case .malformed: counts["malformed", default: 0] += 1
            case .complete: counts["complete", default: 0] += 1
            }
        }
        #expect(counts.values.reduce(0, +) == 20_000)
        #expect(counts["malformed", default: 0] > 0)
        #expect(counts["complete", default: 0] > 0)
    }
}
