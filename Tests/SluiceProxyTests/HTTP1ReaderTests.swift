import NIOCore
import NIOHTTP1
import Testing

@testable import SluiceProxy

/// An event as the tests compare it: heads as text, body parts merged.
enum ReadEvent: Equatable, CustomStringConvertible {
    case head(String)
    case body(String)
    case end([String]?)
    case error(HTTP1ReadError)

    var description: String {
        switch self {
        case .head(let h): return "head(\(h.debugDescription))"
        case .body(let b): return "body(\(b.debugDescription))"
        case .end(let t): return "end(\(t.map { $0.description } ?? "nil"))"
        case .error(let e): return "error(\(e))"
        }
    }
}

func describeHTTP1(_ fields: HeaderBlock) -> [String] {
    fields.fields.map { "\(fields.name($0)): \(fields.value($0))" }
}

func describeHTTP1(_ head: RequestHead, _ framing: BodyFraming) -> String {
    "\(head.method.rawValue) \(head.target) \(head.version) \(framing) " + describeHTTP1(head.fields).joined(separator: " | ")
}

func describeHTTP1(_ head: ResponseHead, _ framing: BodyFraming) -> String {
    "\(head.status) \(head.version) \(framing) " + describeHTTP1(head.fields).joined(separator: " | ")
}

extension Array where Element == ReadEvent {
    /// Adjacent body parts as one.
    mutating func appendMerging(_ e: ReadEvent) {
        if case .body(let b) = e, case .body(let a)? = last {
            self[count - 1] = .body(a + b)
        } else {
            append(e)
        }
    }
}

/// Feeds `chunks` to a request reader the way a connection does (appending to one buffer),
/// reading every event after each chunk.
func readRequests(_ chunks: [[UInt8]], limits: HTTP1Limits = HTTP1Limits()) -> [ReadEvent] {
    var reader = HTTP1RequestReader(limits: limits)
    var buffer = ByteBuffer()
    var events: [ReadEvent] = []
    for chunk in chunks {
        buffer.writeBytes(chunk)
        do {
            while let e = try reader.read(&buffer) {
                switch e {
                case .head(let h, let f): events.appendMerging(.head(describeHTTP1(h, f)))
                case .body(let b): events.appendMerging(.body(String(buffer: b)))
                case .end(let t): events.appendMerging(.end(t.map(describeHTTP1)))
                }
            }
        } catch {
            events.append(.error(error))
            return events
        }
        buffer.discardReadBytes()
    }
    return events
}

func readRequests(_ text: String, limits: HTTP1Limits = HTTP1Limits()) -> [ReadEvent] {
    readRequests([Array(text.utf8)], limits: limits)
}

/// The same for responses; `close` ends the input with `connectionClosed()`.
func readResponses(_ chunks: [[UInt8]], methods: [HTTPMethod] = [.GET], close: Bool = false, maxHeaderBytes: Int = 32 * 1024) -> [ReadEvent] {
    var reader = HTTP1ResponseReader(maxHeaderBytes: maxHeaderBytes)
    var buffer = ByteBuffer()
    var events: [ReadEvent] = []
    var answered = 0
    do {
        for chunk in chunks {
            buffer.writeBytes(chunk)
            while let e = try reader.read(&buffer, requestMethod: methods[min(answered, methods.count - 1)]) {
                switch e {
                case .head(let h, let f): events.appendMerging(.head(describeHTTP1(h, f)))
                case .body(let b): events.appendMerging(.body(String(buffer: b)))
                case .end(let t):
                    events.appendMerging(.end(t.map(describeHTTP1)))
                    answered += 1
                }
            }
        }
        if close, let e = try reader.connectionClosed() {
            if case .end(let t) = e { events.appendMerging(.end(t.map(describeHTTP1))) }
        }
    } catch {
        events.append(.error(error))
    }
    return events
}

func readResponses(_ text: String, methods: [HTTPMethod] = [.GET], close: Bool = false) -> [ReadEvent] {
    readResponses([Array(text.utf8)], methods: methods, close: close)
}

/// Every way of cutting `bytes` in two, and once into single bytes.
func everySplit(_ bytes: [UInt8]) -> [[[UInt8]]] {
    var out: [[[UInt8]]] = (1..<bytes.count).map { [Array(bytes[..<$0]), Array(bytes[$0...])] }
    out.append(bytes.map { [$0] })
    return out
}

@Suite struct HTTP1ReaderTests {
    // MARK: Requests

    @Test func pipelinedRequestsInOneBuffer() {
        let events = readRequests(
            "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                + "POST /b?q=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                + "PUT /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
                + "GET /d HTTP/1.0\r\n\r\n")
        #expect(events == [
            .head("GET /a HTTP/1.1 none Host: x"), .end(nil),
            .head("POST /b?q=1 HTTP/1.1 length(5) Host: x | Content-Length: 5"), .body("hello"), .end(nil),
            .head("PUT /c HTTP/1.1 chunked Host: x | Transfer-Encoding: chunked"), .body("abc"), .end(nil),
            .head("GET /d HTTP/1.0 none "), .end(nil),
        ])
    }

    @Test func splitAtEveryOffsetGivesTheSameEvents() {
        let messages = [
            "POST /upload?x=%41 HTTP/1.1\r\nHost: example.com\r\nX-A:  spaced value \t\r\nContent-Length: 11\r\n\r\nhello world"
                + "GET / HTTP/1.1\r\nHost: b\r\n\r\n",
            "\r\nPOST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                + "a;ext=\"q\"\r\n0123456789\r\n01\r\n!\r\n0\r\nTrailer-A: 1\r\n\r\n",
        ]
        for text in messages {
            let bytes = Array(text.utf8)
            let whole = readRequests([bytes])
            #expect(!whole.contains { if case .error = $0 { return true } else { return false } })
            for parts in everySplit(bytes) {
                let events = readRequests(parts)
                #expect(events == whole, "split \(parts.map(\.count))")
                if events != whole { break }
            }
        }
    }

    @Test func fieldsAreRangesOfTheHeadWithKinds() throws {
        var reader = HTTP1RequestReader(limits: HTTP1Limits())
        var buffer = ByteBuffer(string: "\r\nGET /p HTTP/1.1\r\nHOST:  a.example \r\nx-forwarded-for:1.2.3.4\r\nEmpty:\r\nContent-Length: 0\r\n\r\n")
        guard case .head(let head, let framing)? = try reader.read(&buffer) else {
            Issue.record("no head")
            return
        }
        #expect(framing == .length(0))
        #expect(head.method == .GET && head.target == "/p" && head.version == .http1_1)
        let f = head.fields
        #expect(f.fields.map(\.kind) == [.host, .xForwardedFor, .other, .contentLength])
        #expect(describeHTTP1(f) == ["HOST: a.example", "x-forwarded-for: 1.2.3.4", "Empty: ", "Content-Length: 0"])
        #expect(f.first(.host) == "a.example")
        // The block is the head itself: offsets index its bytes.
        #expect(String(buffer: f.bytes).hasPrefix("GET /p HTTP/1.1\r\nHOST:"))
        #expect(f.fields[0].nameStart == 17)
        guard case .end(nil)? = try reader.read(&buffer) else {
            Issue.record("no end")
            return
        }
        #expect(buffer.readableBytes == 0)
        #expect(try reader.read(&buffer) == nil)
        #expect(reader.isIdle)
    }

    @Test func bodyPartsAreSlicesOfTheInput() throws {
        var reader = HTTP1RequestReader(limits: HTTP1Limits())
        var buffer = ByteBuffer(string: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n01234")
        let base = buffer.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) }
        guard case .head? = try reader.read(&buffer) else {
            Issue.record("no head")
            return
        }
        guard case .body(let part)? = try reader.read(&buffer) else {
            Issue.record("no body")
            return
        }
        #expect(String(buffer: part) == "01234")
        #expect(part.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) } == base + 48)
        // A part is what is readable: no waiting for the rest.
        #expect(try reader.read(&buffer) == nil)
        #expect(!reader.isIdle)
        buffer.writeString("567")
        guard case .body(let second)? = try reader.read(&buffer) else {
            Issue.record("no second part")
            return
        }
        #expect(String(buffer: second) == "567")
        buffer.writeString("89GET")
        guard case .body(let third)? = try reader.read(&buffer), case .end(nil)? = try reader.read(&buffer) else {
            Issue.record("no end after the last byte")
            return
        }
        #expect(String(buffer: third) == "89")
        #expect(try reader.read(&buffer) == nil)
        #expect(!reader.isIdle)
        #expect(String(buffer: buffer) == "GET")
    }

    @Test func isIdleBetweenMessagesOnly() throws {
        var reader = HTTP1RequestReader(limits: HTTP1Limits())
        #expect(reader.isIdle)
        var buffer = ByteBuffer(string: "\r\n\r\n")
        #expect(try reader.read(&buffer) == nil)
        #expect(reader.isIdle && buffer.readableBytes == 0)
        buffer.writeString("G")
        #expect(try reader.read(&buffer) == nil)
        #expect(!reader.isIdle && buffer.readableBytes == 1)
        buffer.writeString("ET / HTTP/1.1\r\nHost: a\r\n\r\n")
        guard case .head? = try reader.read(&buffer) else {
            Issue.record("no head")
            return
        }
        #expect(!reader.isIdle)
        guard case .end? = try reader.read(&buffer) else {
            Issue.record("no end")
            return
        }
        #expect(reader.isIdle)
    }

    @Test func chunkedWithExtensionsAndTrailers() {
        let text = "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n"
            + "5;name=value;flag\r\nhello\r\n"
            + "0006;q=\"a b\";r\r\n world\r\n"
            + "A\r\n0123456789\r\n"
            + "000\r\nX-Checksum: abc \r\nServer-Timing: db;dur=5\r\n\r\n"
            + "GET /next HTTP/1.1\r\nHost: a\r\n\r\n"
        let expected: [ReadEvent] = [
            .head("POST /c HTTP/1.1 chunked Host: a | Transfer-Encoding: Chunked"),
            .body("hello world0123456789"),
            .end(["X-Checksum: abc", "Server-Timing: db;dur=5"]),
            .head("GET /next HTTP/1.1 none Host: a"), .end(nil),
        ]
        #expect(readRequests(text) == expected)
        for parts in everySplit(Array(text.utf8)) {
            let events = readRequests(parts)
            #expect(events == expected, "split \(parts.map(\.count))")
            if events != expected { break }
        }
    }

    @Test(arguments: [
        ("not hex", "zz\r\n", "invalid chunk size"),
        ("empty size", "\r\n", "invalid chunk size"),
        ("space then garbage", "5 x\r\nhello\r\n0\r\n\r\n", "invalid chunk size"),
        ("space before extension", "5 ;a\r\nhello\r\n0\r\n\r\n", "invalid chunk size"),
        ("empty extension", "5;\r\nhello\r\n0\r\n\r\n", "invalid chunk extension"),
        ("space in extension", "5;a =b\r\nhello\r\n0\r\n\r\n", "invalid chunk extension"),
        ("open quote in extension", "5;a=\"b\r\nhello\r\n0\r\n\r\n", "invalid chunk extension"),
        ("Content-Length trailer", "0\r\nContent-Length: 5\r\n\r\n", "framing field in trailers"),
        ("size overflow", "1FFFFFFFFFFFFFFFF\r\n", "chunk size too large"),
        ("just above 2^62", "4000000000000001\r\n", "chunk size too large"),
        ("bare LF after size", "5\nhello\r\n0\r\n\r\n", "invalid chunk size line"),
        ("no CRLF after data", "5\r\nhelloX\r\n0\r\n\r\n", "missing CRLF after chunk data"),
        ("bare LF after data", "5\r\nhello\n0\r\n\r\n", "missing CRLF after chunk data"),
        ("control byte in extension", "5;a\u{1}b\r\nhello\r\n0\r\n\r\n", "invalid chunk extension"),
        ("bare CR in extension", "5;a\rb\r\nhello\r\n0\r\n\r\n", "invalid chunk extension"),
        ("obs-fold in trailers", "0\r\nA: 1\r\n 2\r\n\r\n", "obsolete line folding"),
        ("NUL in a trailer", "0\r\nA: 1\u{0}\r\n\r\n", "invalid header value"),
        ("bad trailer name", "0\r\nA B: 1\r\n\r\n", "invalid header name"),
    ])
    func chunkedBodyFaults(_ name: String, _ body: String, _ reason: String) {
        let events = readRequests("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
        #expect(events.last == .error(.badRequest(reason)), "\(name): \(events)")
    }

    @Test func chunkExtensionsAndTrailersAreBounded() {
        let head = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        // 100 KiB of extension without its CRLF: refused once 4 KiB have arrived.
        var reader = HTTP1RequestReader(limits: HTTP1Limits())
        var buffer = ByteBuffer(string: head + "5;")
        var refused: HTTP1ReadError? = nil
        var fed = 0
        do {
            while try reader.read(&buffer) != nil {}
            while fed < 100 * 1024 {
                buffer.writeRepeatingByte(UInt8(ascii: "x"), count: 256)
                fed += 256
                while try reader.read(&buffer) != nil {}
            }
        } catch {
            refused = error
        }
        #expect(refused == .badRequest("chunk extension too long"))
        #expect(fed <= 4096)
        let limits = HTTP1Limits(maxURIBytes: 8192, maxHeaderBytes: 1000)
        let big = head + "0\r\n" + String(repeating: "T: 0123456789\r\n", count: 100) + "\r\n"
        #expect(readRequests(big, limits: limits).last == .error(.badRequest("trailer section too large")))
        let fits = head + "0\r\n" + String(repeating: "T: 0123456789\r\n", count: 60) + "\r\n"
        #expect(readRequests(fits, limits: limits).last == .end(Array(repeating: "T: 0123456789", count: 60)))
    }

    @Test func contentLengthZeroEndsRightAfterTheHead() throws {
        var reader = HTTP1RequestReader(limits: HTTP1Limits())
        var buffer = ByteBuffer(string: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
        guard case .head(_, .length(0))? = try reader.read(&buffer) else {
            Issue.record("no head")
            return
        }
        #expect(buffer.readableBytes == 0)
        guard case .end(nil)? = try reader.read(&buffer) else {
            Issue.record("no end without bytes")
            return
        }
    }

    @Test(arguments: [
        // Request line
        ("lower-case version", "GET / http/1.1\r\nHost: a\r\n\r\n", HTTP1ReadError.badRequest("unsupported HTTP version")),
        ("HTTP/1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", .badRequest("unsupported HTTP version")),
        ("HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", .badRequest("unsupported HTTP version")),
        ("HTTP/0.9 style", "GET /\r\n\r\n", .badRequest("invalid request target")),
        ("two spaces", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", .badRequest("invalid request target")),
        ("tab separator", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", .badRequest("invalid method")),
        ("space before method", " GET / HTTP/1.1\r\nHost: a\r\n\r\n", .badRequest("invalid method")),
        ("trailing space", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", .badRequest("unsupported HTTP version")),
        ("control byte in target", "GET /a\u{1}b HTTP/1.1\r\nHost: a\r\n\r\n", .badRequest("invalid request target")),
        ("DEL in target", "GET /a\u{7F} HTTP/1.1\r\nHost: a\r\n\r\n", .badRequest("invalid request target")),
        ("UTF-8 in target", "GET /é HTTP/1.1\r\nHost: a\r\n\r\n", .badRequest("invalid request target")),
        ("bare LF request line", "GET / HTTP/1.1\nHost: a\r\n\r\n", .badRequest("malformed request line")),
        ("bare LF field line", "GET / HTTP/1.1\r\nHost: a\n\r\n", .badRequest("bare LF")),
        ("bare LF end of head", "GET / HTTP/1.1\r\nHost: a\r\n\n", .badRequest("bare LF")),
        // Fields
        ("space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", .badRequest("invalid header name")),
        ("tab before colon", "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", .badRequest("invalid header name")),
        ("no colon", "GET / HTTP/1.1\r\nHost: a\r\nJunk\r\n\r\n", .badRequest("invalid header name")),
        ("empty name", "GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n", .badRequest("invalid header name")),
        ("obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX: one\r\n two\r\n\r\n", .badRequest("obsolete line folding")),
        ("obs-fold tab", "GET / HTTP/1.1\r\nHost: a\r\nX: one\r\n\ttwo\r\n\r\n", .badRequest("obsolete line folding")),
        ("space-led first field", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", .badRequest("obsolete line folding")),
        ("NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\u{0}b\r\n\r\n", .badRequest("invalid header value")),
        ("bare CR in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", .badRequest("invalid header value")),
        ("control byte in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\u{0B}b\r\n\r\n", .badRequest("invalid header value")),
        ("DEL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\u{7F}\r\n\r\n", .badRequest("invalid header value")),
        // Framing
        ("duplicate CL, same value", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", .badRequest("duplicate Content-Length")),
        ("duplicate CL, other value", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\nhello!", .badRequest("duplicate Content-Length")),
        ("CL list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello", .badRequest("invalid Content-Length")),
        ("CL plus sign", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", .badRequest("invalid Content-Length")),
        ("CL negative", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", .badRequest("invalid Content-Length")),
        ("CL hex", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", .badRequest("invalid Content-Length")),
        ("CL empty", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", .badRequest("invalid Content-Length")),
        ("CL huge", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", .badRequest("invalid Content-Length")),
        ("CL above 2^62", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4611686018427387905\r\n\r\n", .badRequest("invalid Content-Length")),
        ("CL then TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", .badRequest("both Content-Length and Transfer-Encoding")),
        ("TE then CL", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", .badRequest("both Content-Length and Transfer-Encoding")),
        ("TE twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", .badRequest("duplicate Transfer-Encoding")),
        ("TE after chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", .badRequest("duplicate Transfer-Encoding")),
        ("chunked not last", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", .badRequest("chunked is not the final transfer coding")),
        ("TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", .badRequest("Transfer-Encoding in HTTP/1.0")),
        ("xchunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", .notImplemented("unsupported Transfer-Encoding")),
        ("gzip, chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", .notImplemented("unsupported Transfer-Encoding")),
        ("identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", .notImplemented("unsupported Transfer-Encoding")),
        ("TE empty", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n", .notImplemented("unsupported Transfer-Encoding")),
        ("two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", .badRequest("duplicate Host")),
        ("no Host", "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", .badRequest("missing Host")),
    ])
    func refusals(_ name: String, _ request: String, _ error: HTTP1ReadError) {
        let events = readRequests(request)
        #expect(events.last == .error(error), "\(name): \(events)")
        // Refused the same however the bytes arrive.
        #expect(readRequests(Array(request.utf8).map { [$0] }).last == .error(error), "\(name), byte by byte")
    }

    @Test(arguments: [
        "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED \r\n\r\n0\r\n\r\n",
        "GET / HTTP/1.0\r\n\r\n",
        "GET http://a.example/x HTTP/1.1\r\nHost: a\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: caf\u{E9}\r\n\r\n",
        "GET /a?b?c#d HTTP/1.1\r\nHost: a\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\nabcdefg",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\t3  \r\n\r\nabc",
        "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    ])
    func accepted(_ request: String) {
        let events = readRequests(request)
        #expect(events.last == .end(nil), "\(events)")
    }

    /// Bytes fed in 1 KiB pieces until the reader refuses; the refusal must come before the
    /// bound plus one piece has been buffered.
    func feedUntilRefused(_ prefix: String, filler: UInt8, limits: HTTP1Limits = HTTP1Limits()) -> (HTTP1ReadError?, Int) {
        var reader = HTTP1RequestReader(limits: limits)
        var buffer = ByteBuffer(string: prefix)
        var fed = prefix.utf8.count
        do {
            while try reader.read(&buffer) != nil {}
            while fed < 100 * 1024 {
                buffer.writeRepeatingByte(filler, count: 1024)
                fed += 1024
                while try reader.read(&buffer) != nil {}
            }
        } catch {
            return (error, fed)
        }
        return (nil, fed)
    }

    @Test func limitsApplyBeforeTheHeadIsComplete() {
        let limits = HTTP1Limits()
        let maxHead = limits.maxURIBytes + limits.maxHeaderBytes + 1024
        // A request line that never ends.
        var (error, fed) = feedUntilRefused("GET /", filler: UInt8(ascii: "a"))
        #expect(error == .uriTooLong)
        #expect(fed <= limits.maxURIBytes + 32 + 1024 + 5)
        // A field that never ends.
        (error, fed) = feedUntilRefused("GET / HTTP/1.1\r\nHost: a\r\nX: ", filler: UInt8(ascii: "b"))
        #expect(error == .headersTooLarge)
        #expect(fed <= maxHead + 1024 + 30)
        // Endless small fields: the header section bound.
        var (e2, fed2): (HTTP1ReadError?, Int) = (nil, 0)
        do {
            var reader = HTTP1RequestReader(limits: limits)
            var buffer = ByteBuffer(string: "GET / HTTP/1.1\r\nHost: a\r\n")
            while fed2 < 100 * 1024 {
                for _ in 0..<64 { buffer.writeString("X-Field: 0123456789\r\n") }
                fed2 += 64 * 21
                do {
                    while try reader.read(&buffer) != nil {}
                } catch {
                    e2 = error
                    break
                }
            }
        }
        #expect(e2 == .headersTooLarge)
        #expect(fed2 <= maxHead + 64 * 21)
        // Empty lines before a request are bounded too.
        (error, fed) = feedUntilRefused("", filler: HTTP1Bytes.lf)
        #expect(error == .headersTooLarge)
        #expect(fed <= maxHead + 1024)
        // A malformed start is still answered 400, not with the size.
        (error, _) = feedUntilRefused("GET /a\u{1}", filler: UInt8(ascii: "a"))
        #expect(error == .badRequest("malformed request line"))
        (error, _) = feedUntilRefused("GET / HTTP/1.1\r\nX\0: ", filler: UInt8(ascii: "a"))
        #expect(error == .badRequest("invalid header name"))
    }

    @Test func uriAndHeaderLimitsOnCompleteHeads() {
        let limits = HTTP1Limits(maxURIBytes: 100, maxHeaderBytes: 300)
        let okTarget = "/" + String(repeating: "a", count: 99)
        #expect(readRequests("GET \(okTarget) HTTP/1.1\r\nHost: a\r\n\r\n", limits: limits).last == .end(nil))
        #expect(readRequests("GET \(okTarget)b HTTP/1.1\r\nHost: a\r\n\r\n", limits: limits).last == .error(.uriTooLong))
        // Target, names and values count against maxHeaderBytes.
        let value = String(repeating: "v", count: 300 - 100 - 4 - 1 - 1)
        #expect(readRequests("GET \(okTarget) HTTP/1.1\r\nHost: a\r\nX: \(value)\r\n\r\n", limits: limits).last == .end(nil))
        #expect(readRequests("GET \(okTarget) HTTP/1.1\r\nHost: a\r\nX: \(value)v\r\n\r\n", limits: limits).last == .error(.headersTooLarge))
    }

    @Test func afterAnErrorTheReaderStaysFailed() {
        var reader = HTTP1RequestReader(limits: HTTP1Limits())
        var buffer = ByteBuffer(string: "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(throws: HTTP1ReadError.badRequest("duplicate Host")) { try reader.read(&buffer) }
        #expect(throws: HTTP1ReadError.self) { try reader.read(&buffer) }
    }

    @Test func chunkDataIsSlicedNotCopied() throws {
        var reader = HTTP1RequestReader(limits: HTTP1Limits())
        var buffer = ByteBuffer(string: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n")
        let base = buffer.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) }
        guard case .head? = try reader.read(&buffer), case .body(let part)? = try reader.read(&buffer),
            case .end(nil)? = try reader.read(&buffer)
        else {
            Issue.record("unexpected events")
            return
        }
        #expect(String(buffer: part) == "abcd")
        #expect(part.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) } == base + 59)
        #expect(buffer.readableBytes == 0 && reader.isIdle)
    }

    @Test func expectHeadRescansWhatIsBuffered() throws {
        var reader = HTTP1RequestReader(limits: HTTP1Limits())
        var buffer = ByteBuffer(string: "GET / HTTP/1.1\r\nHo")
        #expect(try reader.read(&buffer) == nil)
        reader.expectHead()
        buffer.writeString("st: a\r\n\r\n")
        guard case .head(let head, .none)? = try reader.read(&buffer) else {
            Issue.record("no head")
            return
        }
        #expect(head.fields.first(.host) == "a")
    }

    @Test func methodsAndVersions() {
        #expect(readRequests("PROPFIND /d HTTP/1.1\r\nHost: a\r\n\r\n").first == .head("PROPFIND /d HTTP/1.1 none Host: a"))
        #expect(readRequests("QUERY /q HTTP/1.1\r\nHost: a\r\n\r\n").first == .head("QUERY /q HTTP/1.1 none Host: a"))
        // Any token is a method (RFC 9110 section 9.1); the gateway decides what it serves.
        #expect(readRequests("BREW /pot HTTP/1.1\r\nHost: a\r\n\r\n").first == .head("BREW /pot HTTP/1.1 none Host: a"))
        #expect(readRequests("CONNECT a:443 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n").first
            == .head("CONNECT a:443 HTTP/1.1 none Host: a | Content-Length: 3"))
        #expect(readRequests("GET http://a@b/ HTTP/1.1\r\nHost: a\r\n\r\n").last == .end(nil))
        #expect(readRequests("GET http://a@@b/ HTTP/1.1\r\nHost: a\r\n\r\n").last == .error(.badRequest("invalid request target")))
        #expect(readRequests("GET http://a#b/ HTTP/1.1\r\nHost: a\r\n\r\n").last == .error(.badRequest("invalid request target")))
        #expect(readRequests("GET ftp1://a/ HTTP/1.1\r\nHost: a\r\n\r\n").last == .error(.badRequest("invalid request target")))
        #expect(readRequests("GET a/b HTTP/1.1\r\nHost: a\r\n\r\n").last == .error(.badRequest("invalid request target")))
    }

    // MARK: Responses

    @Test func responseFraming() {
        #expect(readResponses("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc") == [
            .head("200 HTTP/1.1 length(3) Content-Length: 3"), .body("abc"), .end(nil),
        ])
        #expect(readResponses("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", methods: [.HEAD]) == [
            .head("200 HTTP/1.1 none Content-Length: 3"), .end(nil),
        ])
        #expect(readResponses("HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\nHTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n") == [
            .head("204 HTTP/1.1 none Content-Length: 3"), .end(nil),
            .head("304 HTTP/1.1 none Transfer-Encoding: chunked"), .end(nil),
        ])
        #expect(readResponses("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nab\r\n0\r\nT: 1\r\n\r\n") == [
            .head("200 HTTP/1.1 chunked Transfer-Encoding: gzip, chunked"), .body("ab"), .end(["T: 1"]),
        ])
        #expect(readResponses("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok") == [
            .head("200 HTTP/1.1 length(2) Content-Length: 2 | Content-Length: 2"), .body("ok"), .end(nil),
        ])
        #expect(readResponses("HTTP/1.1 200\r\n\r\n") == [.head("200 HTTP/1.1 untilClose ")])
    }

    @Test func interimResponsesAreSkipped() {
        let text = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
            + "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        let expected: [ReadEvent] = [.head("200 HTTP/1.1 length(2) Content-Length: 2"), .body("ok"), .end(nil)]
        #expect(readResponses(text) == expected)
        for parts in everySplit(Array(text.utf8)) {
            let events = readResponses(parts)
            #expect(events == expected, "split \(parts.map(\.count))")
            if events != expected { break }
        }
    }

    @Test func responsesSplitAtEveryOffset() {
        let text = "\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX:  a \r\n\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n"
            + "HTTP/1.1 204 No Content\r\n\r\nHTTP/1.0 200 OK\r\n\r\nrest"
        let expected: [ReadEvent] = [
            .head("200 HTTP/1.1 chunked Transfer-Encoding: chunked | X: a"), .body("abc"), .end(["T: 1"]),
            .head("204 HTTP/1.1 none "), .end(nil),
            .head("200 HTTP/1.0 untilClose "), .body("rest"), .end(nil),
        ]
        #expect(readResponses([Array(text.utf8)], close: true) == expected)
        for parts in everySplit(Array(text.utf8)) {
            let events = readResponses(parts, close: true)
            #expect(events == expected, "split \(parts.map(\.count))")
            if events != expected { break }
        }
    }

    @Test func switchingProtocolsEndsAtTheHead() throws {
        var reader = HTTP1ResponseReader(maxHeaderBytes: 1024)
        var buffer = ByteBuffer(string: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\u{81}\u{0}")
        guard case .head(let head, .none)? = try reader.read(&buffer, requestMethod: .GET), case .end(nil)? = try reader.read(&buffer, requestMethod: .GET) else {
            Issue.record("no 101 head and end")
            return
        }
        #expect(head.status == 101)
        #expect(buffer.readableBytes == 3)  // the upgraded protocol's bytes are left alone
    }

    @Test func untilCloseAndTruncation() {
        #expect(readResponses([Array("HTTP/1.0 200 OK\r\n\r\nsome".utf8), Array(" bytes".utf8)], close: true) == [
            .head("200 HTTP/1.0 untilClose "), .body("some bytes"), .end(nil),
        ])
        #expect(readResponses("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzz", close: true) == [
            .head("200 HTTP/1.1 untilClose Transfer-Encoding: gzip"), .body("zz"), .end(nil),
        ])
        #expect(readResponses("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc", close: true) == [
            .head("200 HTTP/1.1 length(5) Content-Length: 5"), .body("abc"), .error(.badResponse("response body cut short")),
        ])
        #expect(readResponses("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", close: true).last
            == .error(.badResponse("response body cut short")))
        #expect(readResponses("HTTP/1.1 200 OK\r\nContent-Le", close: true) == [.error(.badResponse("response head cut short"))])
        // Between responses a close is quiet.
        #expect(readResponses("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx", close: true) == [
            .head("200 HTTP/1.1 length(1) Content-Length: 1"), .body("x"), .end(nil),
        ])
        var reader = HTTP1ResponseReader(maxHeaderBytes: 1024)
        #expect((try? reader.connectionClosed()) == nil)
    }

    @Test(arguments: [
        ("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", "conflicting Content-Length"),
        ("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n", "both Content-Length and Transfer-Encoding"),
        ("HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\n", "invalid Content-Length"),
        ("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", "obsolete line folding"),
        ("HTTP/1.1 200 OK\r\nX: a\u{0}\r\n\r\n", "invalid header value"),
        ("HTTP/1.1 200 OK\r\nX : a\r\n\r\n", "invalid header name"),
        ("HTTP/1.1 099 Low\r\n\r\n", "invalid status code"),
        ("HTTP/1.1 600 High\r\n\r\n", "invalid status code"),
        ("HTTP/1.1 20 Short\r\n\r\n", "invalid status code"),
        ("HTTP/1.1 2000 Long\r\n\r\n", "invalid status code"),
        ("HTTP/2.0 200 OK\r\n\r\n", "unsupported response version"),
        ("ICY 200 OK\r\n\r\n", "unsupported response version"),
        ("HTTP/1.1 200 OK\nX: a\r\n\r\n", "malformed status line"),
        ("HTTP/1.1 200 O\u{1}K\r\n\r\n", "invalid reason phrase"),
        ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nx\r\n", "invalid chunk size"),
    ])
    func responseRefusals(_ text: String, _ reason: String) {
        #expect(readResponses(text).last == .error(.badResponse(reason)), "\(text.debugDescription)")
    }

    @Test func responseHeadIsBounded() {
        var reader = HTTP1ResponseReader(maxHeaderBytes: 4096)
        var buffer = ByteBuffer(string: "HTTP/1.1 200 OK\r\nX: ")
        var fed = 0
        var refused: HTTP1ReadError? = nil
        do {
            while fed < 100 * 1024 {
                buffer.writeRepeatingByte(UInt8(ascii: "a"), count: 512)
                fed += 512
                while try reader.read(&buffer, requestMethod: .GET) != nil {}
            }
        } catch {
            refused = error
        }
        #expect(refused == .badResponse("response head too large"))
        #expect(fed <= 4096 + 1024 + 512)
    }
}

extension HTTP1RequestReader.Event: Equatable {
    public static func == (a: Self, b: Self) -> Bool {
        switch (a, b) {
        case (.head(let x, let f), .head(let y, let g)): return describeHTTP1(x, f) == describeHTTP1(y, g)
        case (.body(let x), .body(let y)): return x == y
        case (.end(let x), .end(let y)): return x.map(describeHTTP1) == y.map(describeHTTP1)
        default: return false
        }
    }
}

extension HTTP1ResponseReader.Event: Equatable {
    public static func == (a: Self, b: Self) -> Bool {
        switch (a, b) {
        case (.head(let x, let f), .head(let y, let g)): return describeHTTP1(x, f) == describeHTTP1(y, g)
        case (.body(let x), .body(let y)): return x == y
        case (.end(let x), .end(let y)): return x.map(describeHTTP1) == y.map(describeHTTP1)
        default: return false
        }
    }
}
