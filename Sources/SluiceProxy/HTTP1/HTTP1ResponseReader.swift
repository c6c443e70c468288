import NIOCore
import NIOHTTP1

/// Reads HTTP/1.0 and HTTP/1.1 responses from an upstream connection's bytes, one event at a
/// time: a head with its body framing, body parts, then the end. Interim (1xx) responses other
/// than 101 are skipped. Everything that cannot be framed unambiguously is refused with
/// `HTTP1ReadError.badResponse`.
///
/// As with `HTTP1RequestReader`, fields and body parts are slices of the input, and the bytes
/// of an incomplete head, chunk-size line or trailer section stay in `buffer` until the caller
/// appends more and calls again.
public struct HTTP1ResponseReader {
    public enum Event {
        case head(ResponseHead, BodyFraming)
        case body(ByteBuffer)
        case end(HeaderBlock?)
    }

    /// Bounds the field names and values of a head (and of a trailer section); the head's
    /// bytes, status line and line ends included, may exceed it by 1024.
    public let maxHeaderBytes: Int
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

    public init(maxHeaderBytes: Int) {
        self.maxHeaderBytes = max(0, maxHeaderBytes)
        maxHead = saturatingAdd(self.maxHeaderBytes, 1024)
    }

    /// True while no byte of the next response has been read: the connection may be reused
    /// or closed without losing anything.
    public var isIdle: Bool {
        guard case .head = state else { return false }
        return parse.cursor.scanned == 0 && !parse.statusLineDone
    }

    /// Consumes bytes from `buffer` (moves its reader index); returns the next event, or nil
    /// when more bytes are needed. `requestMethod` is the method of the request this response
    /// answers (HEAD: no body). After `.head` call again even when `buffer` is empty: a
    /// response without a body ends without further bytes. After a 101 head and its `.end`,
    /// the remaining bytes belong to the upgraded protocol. After an error it must not be
    /// called again.
    public mutating func read(_ buffer: inout ByteBuffer, requestMethod: HTTPMethod) throws(HTTP1ReadError) -> Event? {
        while true {
            switch state {
            case .head:
                do {
                    guard let event = try readHead(&buffer, requestMethod: requestMethod) else { return nil }
                    if let event { return event }
                    // An interim response was skipped: read on.
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
                    throw .badResponse(why)
                }
            case .end:
                state = .head
                parse = HeadState()
                return .end(nil)
            case .failed:
                throw .badResponse("malformed response")
            }
        }
    }

    /// The connection closed: a body that runs until the close ends here (returns `.end`);
    /// anything else cut short throws `badResponse`; between messages it returns nil.
    public mutating func connectionClosed() throws(HTTP1ReadError) -> Event? {
        switch state {
        case .head:
            if isIdle { return nil }
            state = .failed
            throw .badResponse("response head cut short")
        case .end:
            state = .head
            parse = HeadState()
            return .end(nil)
        case .body(let body):
            if body.endsAtClose {
                state = .head
                parse = HeadState()
                return .end(nil)
            }
            state = .failed
            throw .badResponse("response body cut short")
        case .failed:
            return nil
        }
    }

    // MARK: Head

    private struct HeadState {
        var preamble = 0
        var cursor = LineCursor()
        var statusLineDone = false
        var status = 0
        var version = HTTPVersion.http1_1
        var fields: [HeaderBlock.Field] = []
        var counted = 0
        var contentLengths = 0
        var contentLength = 0
        var transferEncodings = 0
        /// The final coding of the last Transfer-Encoding field is `chunked`.
        var chunkedIsFinal = false
    }

    private enum HeadOutcome {
        case needMore
        case fault(String)
        case complete(Int)
    }

    /// nil: more bytes needed; `.some(nil)`: an interim response was skipped.
    private mutating func readHead(_ buffer: inout ByteBuffer, requestMethod: HTTPMethod) throws(HTTP1ReadError) -> Event?? {
        if buffer.readableBytes < parse.cursor.scanned { parse = HeadState() }
        if parse.cursor.scanned == 0 && !parse.statusLineDone {
            let skip = buffer.withUnsafeReadableBytes { raw in
                var i = 0
                while i < raw.count && (raw[i] == HTTP1Bytes.cr || raw[i] == HTTP1Bytes.lf) { i &+= 1 }
                return i
            }
            if skip > 0 {
                buffer.moveReaderIndex(forwardBy: skip)
                parse.preamble = saturatingAdd(parse.preamble, skip)
                if parse.preamble > maxHead { throw .badResponse("response head too large") }
            }
            if buffer.readableBytes == 0 { return nil }
        }
        switch buffer.withUnsafeReadableBytes({ raw in scanHead(raw) }) {
        case .needMore:
            return nil
        case .fault(let why):
            throw .badResponse(why)
        case .complete(let length):
            let status = parse.status
            if status < 200 && status != 101 {
                buffer.moveReaderIndex(forwardBy: length)
                parse = HeadState()
                return .some(nil)
            }
            let framing: BodyFraming
            if parse.transferEncodings > 0 && parse.contentLengths > 0 {
                throw .badResponse("both Content-Length and Transfer-Encoding")
            }
            if status == 101 || status == 204 || status == 304 || requestMethod == .HEAD {
                framing = .none
            } else if parse.transferEncodings > 0 {
                framing = parse.chunkedIsFinal ? .chunked : .untilClose
            } else if parse.contentLengths > 0 {
                framing = .length(parse.contentLength)
            } else {
                framing = .untilClose
            }
            guard let bytes = buffer.readSlice(length: length) else { throw .badResponse("malformed response") }
            let head = ResponseHead(status: status, version: parse.version, fields: HeaderBlock(bytes: bytes, fields: parse.fields))
            parse = HeadState()
            state = BodyReader(framing, maxTrailerBytes: maxHeaderBytes).map { .body($0) } ?? .end
            return .some(.head(head, framing))
        }
    }

    private mutating func scanHead(_ raw: UnsafeRawBufferPointer) -> HeadOutcome {
        let limit = saturatingAdd(max(0, maxHead &- parse.preamble), 1)
        while true {
            switch parse.cursor.next(raw, limit: limit) {
            case .needMore:
                return .needMore
            case .overLimit:
                return .fault("response head too large")
            case .line(let start, let lf):
                if !parse.statusLineDone {
                    if let why = statusLine(raw, lf: lf) { return .fault(why) }
                    parse.statusLineDone = true
                    continue
                }
                if lf == start &+ 1 && raw[start] == HTTP1Bytes.cr { return .complete(lf &+ 1) }
                switch FieldLine.parse(raw, start: start, lf: lf) {
                case .failure(let fault): return .fault(fault.reason)
                case .success(let line):
                    if let why = field(raw, line) { return .fault(why) }
                }
            }
        }
    }

    /// Checks `HTTP/1.x SP 3DIGIT [SP reason-phrase] CRLF`, LF at `lf`.
    private mutating func statusLine(_ raw: UnsafeRawBufferPointer, lf: Int) -> String? {
        guard lf > 0, raw[lf &- 1] == HTTP1Bytes.cr else { return "malformed status line" }
        let end = lf &- 1
        guard end >= 12, HTTP1Bytes.matches(raw, at: 0, "HTTP/1."), raw[7] == UInt8(ascii: "0") || raw[7] == UInt8(ascii: "1")
        else { return "unsupported response version" }
        guard raw[8] == HTTP1Bytes.sp else { return "malformed status line" }
        var status = 0
        for i in 9..<12 {
            let c = raw[i]
            guard c >= 0x30 && c <= 0x39 else { return "invalid status code" }
            status = status &* 10 &+ Int(c &- 0x30)
        }
        guard status >= 100 && status <= 599 else { return "invalid status code" }
        if end > 12 {
            guard raw[12] == HTTP1Bytes.sp else { return "invalid status code" }
            for i in 13..<end where !HTTP1Bytes.isFieldValue(raw[i]) { return "invalid reason phrase" }
        }
        parse.status = status
        parse.version = raw[7] == UInt8(ascii: "1") ? .http1_1 : .http1_0
        parse.fields.reserveCapacity(16)
        return nil
    }

    private mutating func field(_ raw: UnsafeRawBufferPointer, _ line: FieldLine) -> String? {
        var field = line.field
        field.kind = KnownField.classify(UnsafeRawBufferPointer(rebasing: raw[line.nameStart..<line.nameEnd]))
        parse.counted = saturatingAdd(parse.counted, (line.nameEnd &- line.nameStart) &+ (line.valueEnd &- line.valueStart))
        if parse.counted > maxHeaderBytes { return "response head too large" }
        switch field.kind {
        case .contentLength:
            guard let n = parseContentLength(raw, line.valueStart, line.valueEnd) else { return "invalid Content-Length" }
            if parse.contentLengths > 0 && n != parse.contentLength { return "conflicting Content-Length" }
            parse.contentLengths &+= 1
            parse.contentLength = n
        case .transferEncoding:
            parse.transferEncodings &+= 1
            // The final coding: after the last comma, without whitespace.
            var i = line.valueEnd
            while i > line.valueStart && raw[i &- 1] != UInt8(ascii: ",") { i &-= 1 }
            while i < line.valueEnd && HTTP1Bytes.isOWS(raw[i]) { i &+= 1 }
            parse.chunkedIsFinal = HTTP1Bytes.equalsIgnoringCase(raw, i, line.valueEnd, "chunked")
        default:
            break
        }
        parse.fields.append(field)
        return nil
    }
}
