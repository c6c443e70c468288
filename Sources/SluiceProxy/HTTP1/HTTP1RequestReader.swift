import NIOCore
import NIOHTTP1

/// Reads HTTP/1.0 and HTTP/1.1 requests from a connection's bytes, one event at a time: a
/// head with its body framing, body parts, then the end. It refuses whatever could be framed
/// two ways (RFC 9112 section 6.3, and the gateway's own rules), and bounds every byte it
/// waits for.
///
/// The head's fields stay in the bytes they arrived in (a `HeaderBlock` over a slice of the
/// input); body parts are slices of the input too. While a head, a chunk-size line or a
/// trailer section is incomplete its bytes stay in `buffer` (the reader index does not move
/// past them): the caller appends the next bytes to the same buffer and calls again, and the
/// reader resumes where it stopped.
public struct HTTP1RequestReader {
    public enum Event {
        case head(RequestHead, BodyFraming)
        case body(ByteBuffer)
        case end(HeaderBlock?)
    }

    public let limits: HTTP1Limits
    /// The request line's LF may be at most this far into the head.
    private let maxRequestLine: Int
    /// The head's last LF may be at most this far from the first byte read for it.
    private let maxHead: Int

    private enum State {
        case head
        /// Reading the body; `.end` follows it.
        case body(BodyReader)
        /// The body is complete: `.end` is next.
        case end
        case failed
    }

    private var state = State.head
    private var parse = HeadState()

    public init(limits: HTTP1Limits = HTTP1Limits()) {
        self.limits = limits
        let uri = max(0, limits.maxURIBytes), fields = max(0, limits.maxHeaderBytes)
        maxRequestLine = saturatingAdd(uri, 32)
        maxHead = saturatingAdd(saturatingAdd(uri, fields), 1024)
    }

    /// True while no byte of the next head has been consumed (between messages): the
    /// connection may be closed quietly. Empty lines before a request do not count.
    public var isIdle: Bool {
        guard case .head = state else { return false }
        return parse.cursor.scanned == 0 && !parse.requestLineDone
    }

    /// A new head is expected: forget any scanning state of the last one. Harmless at any
    /// point between messages (what is in the buffer is scanned again).
    public mutating func expectHead() {
        if case .head = state { parse = HeadState() }
    }

    /// Consumes bytes from `buffer` (moves its reader index); returns the next event, or nil
    /// when more bytes are needed. After `.head` call again even when `buffer` is empty: a
    /// message without a body ends without further bytes. After `.end` it is ready for the next
    /// (pipelined) request head. After an error it must not be called again.
    public mutating func read(_ buffer: inout ByteBuffer) throws(HTTP1ReadError) -> Event? {
        switch state {
        case .head:
            do {
                return try readHead(&buffer)
            } catch {
                state = .failed
                throw error
            }
        case .body(var body):
            state = .failed  // the body reader stays uniquely referenced while it runs
            switch body.read(&buffer) {
            case .body(let part):
                state = body.isComplete ? .end : .body(body)
                return .body(part)
            case .needMore:
                state = .body(body)
                return nil
            case .end(let trailers):
                state = .head
                parse = HeadState()
                return .end(trailers)
            case .fault(let why):
                throw .badRequest(why)
            }
        case .end:
            state = .head
            parse = HeadState()
            return .end(nil)
        case .failed:
            throw .badRequest("malformed request")
        }
    }

    // MARK: Head

    /// What is known of the head being read. Offsets are relative to its first byte.
    private struct HeadState {
        /// Empty lines skipped before the request line.
        var preamble = 0
        var cursor = LineCursor()
        var requestLineDone = false
        var method = HTTPMethod.GET
        var targetStart = 0
        var targetEnd = 0
        var version = HTTPVersion.http1_1
        var fields: [HeaderBlock.Field] = []
        /// Target, names and values, as the former decoder counted them against maxHeaderBytes.
        var counted = 0
        var contentLengths = 0
        var contentLength = 0
        var transferEncodings = 0
        /// The last Transfer-Encoding field ends with `chunked` (RFC 9112's "final coding").
        var chunkedIsFinal = false
        /// The Transfer-Encoding value is exactly `chunked`, the only one supported.
        var chunkedOnly = false
        var hosts = 0
    }

    private enum HeadOutcome {
        case needMore
        case fault(HTTP1ReadError)
        /// The head takes this many bytes, its final CRLF included.
        case complete(Int)
    }

    private mutating func readHead(_ buffer: inout ByteBuffer) throws(HTTP1ReadError) -> Event? {
        if buffer.readableBytes < parse.cursor.scanned {
            // The caller dropped bytes it was asked to keep: start this head again.
            parse = HeadState()
        }
        if parse.cursor.scanned == 0 && !parse.requestLineDone {
            // RFC 9112 section 2.2: empty lines before a request line are ignored (bare CRs
            // too, as the former decoder did). They count against the head's bound.
            let skip = buffer.withUnsafeReadableBytes { raw in
                var i = 0
                while i < raw.count && (raw[i] == HTTP1Bytes.cr || raw[i] == HTTP1Bytes.lf) { i &+= 1 }
                return i
            }
            if skip > 0 {
                buffer.moveReaderIndex(forwardBy: skip)
                parse.preamble = saturatingAdd(parse.preamble, skip)
                if parse.preamble > maxHead { throw .headersTooLarge }
            }
            if buffer.readableBytes == 0 { return nil }
        }
        let outcome = buffer.withUnsafeReadableBytes { raw in scanHead(raw) }
        switch outcome {
        case .needMore: return nil
        case .fault(let error): throw error
        case .complete(let length):
            let framing = try framing()
            guard let target = buffer.getString(at: buffer.readerIndex &+ parse.targetStart, length: parse.targetEnd &- parse.targetStart),
                let bytes = buffer.readSlice(length: length)
            else { throw .badRequest("malformed request") }
            let head = RequestHead(method: parse.method, target: target, version: parse.version,
                                   fields: HeaderBlock(bytes: bytes, fields: parse.fields))
            parse = HeadState()
            state = BodyReader(framing, maxTrailerBytes: limits.maxHeaderBytes).map { .body($0) } ?? .end
            return .head(head, framing)
        }
    }

    /// Finds and checks the head's lines in `raw`, from where the last call stopped.
    private mutating func scanHead(_ raw: UnsafeRawBufferPointer) -> HeadOutcome {
        // The final LF may be at offset maxHead - preamble at most.
        let headLimit = saturatingAdd(max(0, maxHead &- parse.preamble), 1)
        while true {
            let lineLimit = parse.requestLineDone ? headLimit : min(saturatingAdd(maxRequestLine, 1), headLimit)
            switch parse.cursor.next(raw, limit: lineLimit) {
            case .needMore:
                return .needMore
            case .overLimit:
                // Nothing more may be buffered. A malformed start still answers 400, as if
                // each byte had been checked on arrival.
                if !parse.requestLineDone {
                    if !Self.isValidRequestLinePrefix(raw, end: lineLimit) { return .fault(.badRequest("malformed request line")) }
                    return .fault(lineLimit == saturatingAdd(maxRequestLine, 1) ? .uriTooLong : .headersTooLarge)
                }
                if case .failure(let fault) = FieldLine.parse(raw, start: parse.cursor.lineStart, lf: lineLimit, partial: true) {
                    return .fault(lineFault(fault))
                }
                return .fault(.headersTooLarge)
            case .line(let start, let lf):
                if !parse.requestLineDone {
                    if let error = requestLine(raw, lf: lf) { return .fault(error) }
                    parse.requestLineDone = true
                    continue
                }
                if lf == start &+ 1 && raw[start] == HTTP1Bytes.cr { return .complete(lf &+ 1) }
                switch FieldLine.parse(raw, start: start, lf: lf) {
                case .failure(let fault): return .fault(lineFault(fault))
                case .success(let line):
                    if let error = field(raw, line) { return .fault(error) }
                }
            }
        }
    }

    /// A malformed field line is answered 400, unless the bytes before the offending one
    /// already broke the size bound.
    private func lineFault(_ fault: FieldLine.Fault) -> HTTP1ReadError {
        saturatingAdd(parse.counted, fault.counted) > limits.maxHeaderBytes ? .headersTooLarge : .badRequest(fault.reason)
    }

    /// Checks `method SP request-target SP HTTP-version CRLF`, LF at `lf`.
    private mutating func requestLine(_ raw: UnsafeRawBufferPointer, lf: Int) -> HTTP1ReadError? {
        guard lf > 0, raw[lf &- 1] == HTTP1Bytes.cr else { return .badRequest("malformed request line") }
        let end = lf &- 1
        var i = 0
        while i < end && HTTP1Bytes.isToken(raw[i]) { i &+= 1 }
        guard i > 0, i < end, raw[i] == HTTP1Bytes.sp else { return .badRequest("invalid method") }
        let methodEnd = i
        i &+= 1
        let targetStart = i
        while i < end && Self.isTargetByte(raw[i]) { i &+= 1 }
        guard i > targetStart, i < end, raw[i] == HTTP1Bytes.sp else { return .badRequest("invalid request target") }
        let targetEnd = i
        i &+= 1
        guard end &- i == 8, HTTP1Bytes.matches(raw, at: i, "HTTP/1."),
            raw[i &+ 7] == UInt8(ascii: "0") || raw[i &+ 7] == UInt8(ascii: "1")
        else { return .badRequest("unsupported HTTP version") }
        let isConnect = methodEnd == 7 && HTTP1Bytes.matches(raw, at: 0, "CONNECT")
        if let why = Self.targetFault(raw, targetStart, targetEnd, isConnect: isConnect) { return .badRequest(why) }
        if targetEnd &- targetStart > limits.maxURIBytes { return .uriTooLong }
        parse.method = Self.method(raw, methodEnd)
        parse.targetStart = targetStart
        parse.targetEnd = targetEnd
        parse.version = raw[i &+ 7] == UInt8(ascii: "1") ? .http1_1 : .http1_0
        parse.counted = targetEnd &- targetStart
        parse.fields.reserveCapacity(16)
        return nil
    }

    /// Records one field line and applies the framing rules that a single line decides.
    private mutating func field(_ raw: UnsafeRawBufferPointer, _ line: FieldLine) -> HTTP1ReadError? {
        var field = line.field
        field.kind = KnownField.classify(UnsafeRawBufferPointer(rebasing: raw[line.nameStart..<line.nameEnd]))
        parse.counted = saturatingAdd(parse.counted, (line.nameEnd &- line.nameStart) &+ (line.rawValueEnd &- line.valueStart))
        if parse.counted > limits.maxHeaderBytes { return .headersTooLarge }
        switch field.kind {
        case .contentLength:
            parse.contentLengths &+= 1
            if parse.contentLengths > 1 { return .badRequest("duplicate Content-Length") }
            if parse.transferEncodings > 0 { return .badRequest("both Content-Length and Transfer-Encoding") }
            // Digits, then spaces only (a tab there was refused before too).
            var digitsEnd = line.valueStart
            while digitsEnd < line.rawValueEnd && raw[digitsEnd] >= 0x30 && raw[digitsEnd] <= 0x39 { digitsEnd &+= 1 }
            var i = digitsEnd
            while i < line.rawValueEnd && raw[i] == HTTP1Bytes.sp { i &+= 1 }
            guard i == line.rawValueEnd, let n = parseContentLength(raw, line.valueStart, digitsEnd) else {
                return .badRequest("invalid Content-Length")
            }
            parse.contentLength = n
        case .transferEncoding:
            parse.transferEncodings &+= 1
            // After a field that ended with chunked no other coding may follow.
            if parse.chunkedIsFinal { return .badRequest("duplicate Transfer-Encoding") }
            switch Self.chunkedPosition(raw, line.valueStart, line.rawValueEnd) {
            case .notFinal: return .badRequest("chunked is not the final transfer coding")
            case .final: parse.chunkedIsFinal = true
            case .absent: parse.chunkedIsFinal = false
            }
            parse.chunkedOnly = HTTP1Bytes.equalsIgnoringCase(raw, line.valueStart, line.valueEnd, "chunked")
        case .host:
            parse.hosts &+= 1
        default:
            break
        }
        parse.fields.append(field)
        return nil
    }

    /// The body framing the complete head declares, or why it cannot be framed.
    private func framing() throws(HTTP1ReadError) -> BodyFraming {
        let http10 = parse.version == .http1_0
        if parse.transferEncodings > 0 {
            if parse.contentLengths > 0 { throw .badRequest("both Content-Length and Transfer-Encoding") }
            if parse.transferEncodings > 1 { throw .badRequest("duplicate Transfer-Encoding") }
            if http10 { throw .badRequest("Transfer-Encoding in HTTP/1.0") }
            if !parse.chunkedOnly { throw .notImplemented("unsupported Transfer-Encoding") }
        }
        if parse.hosts > 1 { throw .badRequest("duplicate Host") }
        if parse.hosts == 0 && !http10 { throw .badRequest("missing Host") }
        // A CONNECT request has no content (RFC 9110 section 9.3.6), whatever its fields say.
        if parse.method == .CONNECT { return .none }
        if parse.transferEncodings > 0 { return .chunked }
        if parse.contentLengths > 0 { return .length(parse.contentLength) }
        return .none
    }

    private enum ChunkedPosition { case absent, final, notFinal }

    /// Where `chunked` is among the codings of a Transfer-Encoding value: a coding is
    /// `chunked` when, after optional whitespace, it is that word followed by spaces only.
    private static func chunkedPosition(_ raw: UnsafeRawBufferPointer, _ start: Int, _ end: Int) -> ChunkedPosition {
        var i = start
        while true {
            while i < end && HTTP1Bytes.isOWS(raw[i]) { i &+= 1 }
            if end &- i >= 7 && HTTP1Bytes.equalsIgnoringCase(raw, i, i &+ 7, "chunked") {
                var j = i &+ 7
                while j < end && raw[j] == HTTP1Bytes.sp { j &+= 1 }
                if j == end { return .final }
                if raw[j] == UInt8(ascii: ",") { return .notFinal }
            }
            while i < end && raw[i] != UInt8(ascii: ",") { i &+= 1 }
            if i == end { return .absent }
            i &+= 1
        }
    }

    /// Whether `raw[0..<end]`, a request line whose end has not arrived, could still be valid.
    private static func isValidRequestLinePrefix(_ raw: UnsafeRawBufferPointer, end: Int) -> Bool {
        var i = 0
        while i < end && HTTP1Bytes.isToken(raw[i]) { i &+= 1 }
        if i == end { return true }
        guard i > 0, raw[i] == HTTP1Bytes.sp else { return false }
        i &+= 1
        let targetStart = i
        while i < end && isTargetByte(raw[i]) { i &+= 1 }
        // The version cannot make the line this long.
        guard i == end && i > targetStart else { return false }
        let isConnect = targetStart == 8 && HTTP1Bytes.matches(raw, at: 0, "CONNECT ")
        return targetFault(raw, targetStart, end, isConnect: isConnect, prefix: true) == nil
    }

    /// A byte allowed in a request target: visible ASCII.
    @inline(__always)
    private static func isTargetByte(_ c: UInt8) -> Bool { c > 0x20 && c < 0x7F }

    /// Refuses the targets the former decoder refused: a target starts with `/` or `*`, or is
    /// `scheme://authority` (alphabetic scheme) with the authority limited to userinfo
    /// characters, brackets and single `@`s, up to a `/` or `?`. CONNECT's target is an
    /// authority from the start. With `prefix`, `raw[start..<end]` is only the target's start.
    private static func targetFault(_ raw: UnsafeRawBufferPointer, _ start: Int, _ end: Int, isConnect: Bool, prefix: Bool = false) -> String? {
        let fault = "invalid request target"
        var i = start
        if !isConnect {
            guard i < end else { return prefix ? nil : fault }
            let c = raw[i]
            if c == UInt8(ascii: "/") || c == UInt8(ascii: "*") { return nil }
            while i < end && isAlpha(raw[i]) { i &+= 1 }
            guard i > start else { return fault }
            for k in 0..<3 {
                if i == end { return prefix ? nil : fault }
                guard raw[i] == (k == 0 ? UInt8(ascii: ":") : UInt8(ascii: "/")) else { return fault }
                i &+= 1
            }
        }
        var afterAt = false
        while i < end {
            let c = raw[i]
            if c == UInt8(ascii: "/") || c == UInt8(ascii: "?") { return nil }
            if c == UInt8(ascii: "@") {
                if afterAt { return fault }
                afterAt = true
            } else {
                guard isAuthorityByte(c) else { return fault }
                afterAt = false
            }
            i &+= 1
        }
        return nil
    }

    @inline(__always)
    private static func isAlpha(_ c: UInt8) -> Bool { (c | 0x20) >= 0x61 && (c | 0x20) <= 0x7A }

    /// Unreserved and sub-delimiter characters, `%`, `:`, `[` and `]`.
    @inline(__always)
    private static func isAuthorityByte(_ c: UInt8) -> Bool {
        if c < 64 { return (0x2FFF_7FF2_0000_0000 as UInt64) >> c & 1 == 1 }
        if c < 128 { return (0x47FF_FFFE_AFFF_FFFE as UInt64) >> (c &- 64) & 1 == 1 }
        return false
    }

    /// The method, without a `String` for the common ones.
    private static func method(_ raw: UnsafeRawBufferPointer, _ end: Int) -> HTTPMethod {
        @inline(__always) func eq(_ s: StaticString) -> Bool {
            let p = s.utf8Start
            for i in 0..<end where raw[i] != p[i] { return false }
            return true
        }
        switch end {
        case 3:
            if eq("GET") { return .GET }
            if eq("PUT") { return .PUT }
        case 4:
            if eq("POST") { return .POST }
            if eq("HEAD") { return .HEAD }
        case 5:
            if eq("PATCH") { return .PATCH }
            if eq("TRACE") { return .TRACE }
        case 6:
            if eq("DELETE") { return .DELETE }
        case 7:
            if eq("OPTIONS") { return .OPTIONS }
            if eq("CONNECT") { return .CONNECT }
        default:
            break
        }
        return HTTPMethod(rawValue: String(decoding: UnsafeRawBufferPointer(rebasing: raw[0..<end]), as: UTF8.self))
    }
}
