#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore

/// Byte classes of RFC 9110 and RFC 9112 as both HTTP/1 readers apply them.
enum HTTP1Bytes {
    static let cr: UInt8 = 0x0D
    static let lf: UInt8 = 0x0A
    static let sp: UInt8 = 0x20
    static let htab: UInt8 = 0x09
    static let colon: UInt8 = 0x3A

    /// `tchar`, as two bit masks over 0...127.
    @inline(__always)
    static func isToken(_ c: UInt8) -> Bool {
        if c < 64 { return (0x03FF_6CFA_0000_0000 as UInt64) >> c & 1 == 1 }
        if c < 128 { return (0x57FF_FFFF_C7FF_FFFE as UInt64) >> (c &- 64) & 1 == 1 }
        return false
    }

    /// A byte allowed inside a field value: HTAB, SP, VCHAR and obs-text (no other control
    /// byte, no DEL).
    @inline(__always)
    static func isFieldValue(_ c: UInt8) -> Bool { c >= 0x20 ? c != 0x7F : c == htab }

    @inline(__always)
    static func isOWS(_ c: UInt8) -> Bool { c == sp || c == htab }

    @inline(__always)
    static func lower(_ c: UInt8) -> UInt8 { c >= 0x41 && c <= 0x5A ? c | 0x20 : c }

    @inline(__always)
    static func hexValue(_ c: UInt8) -> Int? {
        switch c {
        case 0x30...0x39: return Int(c &- 0x30)
        case 0x41...0x46: return Int(c &- 0x37)
        case 0x61...0x66: return Int(c &- 0x57)
        default: return nil
        }
    }

    /// Whether `raw[start..<end]` equals `lower` ignoring ASCII case.
    @inline(__always)
    static func equalsIgnoringCase(_ raw: UnsafeRawBufferPointer, _ start: Int, _ end: Int, _ lower: StaticString) -> Bool {
        let n = lower.utf8CodeUnitCount
        guard end &- start == n else { return false }
        let l = lower.utf8Start
        for i in 0..<n where HTTP1Bytes.lower(raw[start &+ i]) != l[i] { return false }
        return true
    }

    /// Whether `raw` holds exactly `s` at `at` (case-sensitive).
    @inline(__always)
    static func matches(_ raw: UnsafeRawBufferPointer, at: Int, _ s: StaticString) -> Bool {
        let n = s.utf8CodeUnitCount
        guard at >= 0, raw.count &- at >= n else { return false }
        let p = s.utf8Start
        for i in 0..<n where raw[at &+ i] != p[i] { return false }
        return true
    }

    /// The index of the first LF in `raw[from..<to]`, if any.
    @inline(__always)
    static func firstLF(_ raw: UnsafeRawBufferPointer, from: Int, to: Int) -> Int? {
        guard from < to, let base = raw.baseAddress else { return nil }
        guard let hit = memchr(base + from, Int32(lf), to &- from) else { return nil }
        return base.distance(to: UnsafeRawPointer(hit))
    }
}

/// Adds two non-negative bounds without trapping.
@inline(__always)
func saturatingAdd(_ a: Int, _ b: Int) -> Int {
    let (s, o) = a.addingReportingOverflow(b)
    return o ? Int.max : s
}

/// The largest body length or chunk size accepted (2^62): beyond any real body, and far from
/// `Int.max` so that no arithmetic on it can overflow.
let maxBodyLength = 1 << 62

/// Finds the lines of a head that arrives in pieces, resuming where the last search stopped.
/// Offsets are relative to the head's first byte, which stays at the buffer's reader index
/// until the head is complete.
struct LineCursor {
    /// Where the current line starts.
    var lineStart = 0
    /// Bytes already searched for the current line's LF.
    var scanned = 0

    enum Step {
        /// A line `[start, lf)`, LF at `lf`.
        case line(start: Int, lf: Int)
        /// No LF yet in the bytes available.
        case needMore
        /// No LF before `limit`: the line, or the head, is too long.
        case overLimit
    }

    /// The next line whose LF lies before `limit` (an offset).
    mutating func next(_ raw: UnsafeRawBufferPointer, limit: Int) -> Step {
        let end = min(raw.count, limit)
        if let lf = HTTP1Bytes.firstLF(raw, from: max(scanned, lineStart), to: end) {
            let start = lineStart
            lineStart = lf &+ 1
            scanned = lineStart
            return .line(start: start, lf: lf)
        }
        scanned = max(end, lineStart)
        return raw.count >= limit ? .overLimit : .needMore
    }
}

/// One field line, `name: value`, with offsets relative to the head's first byte.
struct FieldLine {
    var nameStart: Int
    var nameEnd: Int
    /// The value, without leading or trailing whitespace.
    var valueStart: Int
    var valueEnd: Int
    /// The end of the value with its trailing whitespace (the CR).
    var rawValueEnd: Int

    var field: HeaderBlock.Field {
        HeaderBlock.Field(
            nameStart: UInt32(truncatingIfNeeded: nameStart), nameLength: UInt32(truncatingIfNeeded: nameEnd &- nameStart),
            valueStart: UInt32(truncatingIfNeeded: valueStart), valueLength: UInt32(truncatingIfNeeded: valueEnd &- valueStart),
            kind: .other)
    }

    struct Fault: Error {
        enum Kind {
            case obsFold
            case badName
            case badValue
            case bareLF
        }

        var kind: Kind
        /// Name and value bytes before the offending byte, as the former decoder counted them
        /// against maxHeaderBytes: when they exceed it, the size is what the head broke first.
        var counted: Int

        var reason: String {
            switch kind {
            case .obsFold: return "obsolete line folding"
            case .badName: return "invalid header name"
            case .badValue: return "invalid header value"
            case .bareLF: return "bare LF"
            }
        }
    }

    /// Parses the field line `raw[start..<lf]` (LF at `lf`). With `partial`, `lf` is only
    /// where the bytes received so far end, and the line is checked as far as it goes (the
    /// result's offsets then mean nothing).
    static func parse(_ raw: UnsafeRawBufferPointer, start: Int, lf: Int, partial: Bool = false) -> Result<FieldLine, Fault> {
        let hasCR = !partial && lf > start && raw[lf &- 1] == HTTP1Bytes.cr
        let end = hasCR ? lf &- 1 : lf
        // Received so far: a lone CR may be the start of the head's final CRLF.
        if partial && end &- start == 1 && raw[start] == HTTP1Bytes.cr {
            return .success(FieldLine(nameStart: start, nameEnd: start, valueStart: start, valueEnd: start, rawValueEnd: start))
        }
        if start < end && HTTP1Bytes.isOWS(raw[start]) { return .failure(Fault(kind: .obsFold, counted: 0)) }
        var i = start
        while i < end && HTTP1Bytes.isToken(raw[i]) { i &+= 1 }
        if partial && i == end { return .success(FieldLine(nameStart: start, nameEnd: i, valueStart: i, valueEnd: i, rawValueEnd: i)) }
        guard i > start, i < end, raw[i] == HTTP1Bytes.colon else {
            return .failure(Fault(kind: i == end && !hasCR ? .bareLF : .badName, counted: i &- start))
        }
        let nameEnd = i
        i &+= 1
        while i < end && HTTP1Bytes.isOWS(raw[i]) { i &+= 1 }
        let valueStart = i
        var valueEnd = i
        while i < end {
            let c = raw[i]
            guard HTTP1Bytes.isFieldValue(c) else {
                // Received so far: a CR as the last byte may still be followed by its LF.
                if partial && c == HTTP1Bytes.cr && i == end &- 1 { break }
                return .failure(Fault(kind: .badValue, counted: (nameEnd &- start) &+ (i &- valueStart)))
            }
            i &+= 1
            if !HTTP1Bytes.isOWS(c) { valueEnd = i }
        }
        if !hasCR && !partial { return .failure(Fault(kind: .bareLF, counted: (nameEnd &- start) &+ (end &- valueStart))) }
        return .success(FieldLine(nameStart: start, nameEnd: nameEnd, valueStart: valueStart, valueEnd: valueEnd, rawValueEnd: end))
    }
}

/// Parses a Content-Length value (already trimmed): digits only, at most `maxBodyLength`.
func parseContentLength(_ raw: UnsafeRawBufferPointer, _ start: Int, _ end: Int) -> Int? {
    guard start < end else { return nil }
    var n = 0
    for i in start..<end {
        let c = raw[i]
        guard c >= 0x30 && c <= 0x39 else { return nil }
        let (m, o1) = n.multipliedReportingOverflow(by: 10)
        let (sum, o2) = m.addingReportingOverflow(Int(c &- 0x30))
        guard !o1, !o2, sum <= maxBodyLength else { return nil }
        n = sum
    }
    return n
}

/// Reads a chunked body (RFC 9112 section 7.1): chunk sizes, data, and the trailer section.
/// Chunk data is handed out as slices of the input; a chunk-size line or the trailers stay
/// in the buffer until they are complete.
struct ChunkedBodyReader {
    /// The longest chunk-size line, extensions included.
    static let maxChunkLine = 4096

    enum Phase {
        case size
        case data(remaining: Int)
        case dataEnd
        case trailers
    }

    enum Step {
        case body(ByteBuffer)
        case end(HeaderBlock?)
        case needMore
        case fault(String)
    }

    private var phase = Phase.size
    private var cursor = LineCursor()
    private var trailerFields: [HeaderBlock.Field] = []
    let maxTrailerBytes: Int

    init(maxTrailerBytes: Int) {
        self.maxTrailerBytes = maxTrailerBytes
    }

    mutating func read(_ buffer: inout ByteBuffer) -> Step {
        while true {
            switch phase {
            case .size:
                if buffer.readableBytes < cursor.scanned { cursor = LineCursor() }
                let found: SizeLine? = buffer.withUnsafeReadableBytes { raw in
                    switch cursor.next(raw, limit: Self.maxChunkLine) {
                    case .needMore: return nil
                    case .overLimit: return .fault("chunk extension too long")
                    case .line(_, let lf): return Self.parseSizeLine(raw, lf: lf)
                    }
                }
                guard let found else { return .needMore }
                switch found {
                case .fault(let why): return .fault(why)
                case .size(let size, let lf):
                    buffer.moveReaderIndex(forwardBy: lf &+ 1)
                    cursor = LineCursor()
                    phase = size == 0 ? .trailers : .data(remaining: size)
                }
            case .data(let remaining):
                let n = min(remaining, buffer.readableBytes)
                guard n > 0, let slice = buffer.readSlice(length: n) else { return .needMore }
                phase = n == remaining ? .dataEnd : .data(remaining: remaining &- n)
                return .body(slice)
            case .dataEnd:
                guard let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { return .needMore }
                guard first == HTTP1Bytes.cr else { return .fault("missing CRLF after chunk data") }
                guard let second = buffer.getInteger(at: buffer.readerIndex &+ 1, as: UInt8.self) else { return .needMore }
                guard second == HTTP1Bytes.lf else { return .fault("missing CRLF after chunk data") }
                buffer.moveReaderIndex(forwardBy: 2)
                phase = .size
            case .trailers:
                return readTrailers(&buffer)
            }
        }
    }

    private enum TrailerScan {
        case needMore
        /// The section, its final CRLF included, takes this many bytes.
        case done(Int)
        case fault(String)
    }

    private mutating func readTrailers(_ buffer: inout ByteBuffer) -> Step {
        if buffer.readableBytes < cursor.scanned {
            cursor = LineCursor()
            trailerFields.removeAll(keepingCapacity: true)
        }
        let limit = saturatingAdd(maxTrailerBytes, 1)
        let scan: TrailerScan = buffer.withUnsafeReadableBytes { raw in
            while true {
                switch cursor.next(raw, limit: limit) {
                case .needMore: return .needMore
                case .overLimit: return .fault("trailer section too large")
                case .line(let start, let lf):
                    if lf == start &+ 1 && raw[start] == HTTP1Bytes.cr { return .done(lf &+ 1) }
                    switch FieldLine.parse(raw, start: start, lf: lf) {
                    case .failure(let f): return .fault(f.reason)
                    case .success(let line):
                        var field = line.field
                        field.kind = KnownField.classify(UnsafeRawBufferPointer(rebasing: raw[line.nameStart..<line.nameEnd]))
                        // The head decided the framing: these are refused here, as before.
                        if field.kind == .contentLength || field.kind == .transferEncoding { return .fault("framing field in trailers") }
                        trailerFields.append(field)
                    }
                }
            }
        }
        switch scan {
        case .needMore: return .needMore
        case .fault(let why): return .fault(why)
        case .done(let length):
            defer {
                cursor = LineCursor()
                trailerFields = []
                phase = .size
            }
            if trailerFields.isEmpty {
                buffer.moveReaderIndex(forwardBy: length)
                return .end(nil)
            }
            guard let slice = buffer.readSlice(length: length) else { return .fault("trailer section lost") }
            return .end(HeaderBlock(bytes: slice, fields: trailerFields))
        }
    }

    private enum SizeLine {
        case size(Int, lf: Int)
        case fault(String)
    }

    /// Parses `chunk-size [ chunk-ext ] CRLF`, LF at `lf`: the size, or why not.
    private static func parseSizeLine(_ raw: UnsafeRawBufferPointer, lf: Int) -> SizeLine {
        guard lf > 0, raw[lf &- 1] == HTTP1Bytes.cr else { return .fault("invalid chunk size line") }
        let end = lf &- 1
        var i = 0
        var size = 0
        while i < end, let d = HTTP1Bytes.hexValue(raw[i]) {
            let (m, o1) = size.multipliedReportingOverflow(by: 16)
            let (sum, o2) = m.addingReportingOverflow(d)
            guard !o1, !o2, sum <= maxBodyLength else { return .fault("chunk size too large") }
            size = sum
            i &+= 1
        }
        guard i > 0 else { return .fault("invalid chunk size") }
        if i == end { return .size(size, lf: lf) }
        guard raw[i] == UInt8(ascii: ";") else { return .fault("invalid chunk size") }
        // chunk-ext = *( ";" name [ "=" value ] ), without whitespace, as the former decoder
        // required (it also allowed an empty name before `;` or `=`, and token characters
        // before a quoted value). The extensions are skipped.
        let semicolon = UInt8(ascii: ";"), quote = UInt8(ascii: "\""), backslash = UInt8(ascii: "\\")
        while true {
            i &+= 1
            guard i < end else { return .fault("invalid chunk extension") }
            while i < end && HTTP1Bytes.isToken(raw[i]) { i &+= 1 }
            if i == end { return .size(size, lf: lf) }
            if raw[i] == semicolon { continue }
            guard raw[i] == UInt8(ascii: "=") else { return .fault("invalid chunk extension") }
            i &+= 1
            if i == end { return .size(size, lf: lf) }
            // A value: token characters, then perhaps a quoted string.
            while i < end && HTTP1Bytes.isToken(raw[i]) { i &+= 1 }
            if i < end && raw[i] == quote {
                i &+= 1
                while true {
                    guard i < end else { return .fault("invalid chunk extension") }
                    let q = raw[i]
                    i &+= 1
                    if q == quote { break }
                    if q == backslash {
                        guard i < end, HTTP1Bytes.isFieldValue(raw[i]) else { return .fault("invalid chunk extension") }
                        i &+= 1
                    } else if q < 0x20 && q != HTTP1Bytes.htab {
                        return .fault("invalid chunk extension")
                    }
                }
            }
            if i == end { return .size(size, lf: lf) }
            guard raw[i] == semicolon else { return .fault("invalid chunk extension") }
        }
    }
}

/// The body of one message, after its head: a fixed length, chunks, or everything up to the
/// connection's close. Shared by the request and response readers.
struct BodyReader {
    private enum State {
        case length(remaining: Int)
        case chunked(ChunkedBodyReader)
        case untilClose
        case failed
    }

    enum Step {
        case body(ByteBuffer)
        case needMore
        case end(HeaderBlock?)
        case fault(String)
    }

    private var state: State

    /// nil for framings with no body bytes to read (`.none`, `.length(0)`).
    init?(_ framing: BodyFraming, maxTrailerBytes: Int) {
        switch framing {
        case .length(let n) where n > 0: state = .length(remaining: n)
        case .chunked: state = .chunked(ChunkedBodyReader(maxTrailerBytes: maxTrailerBytes))
        case .untilClose: state = .untilClose
        default: return nil
        }
    }

    /// The next part of the body from `buffer` (its bytes are sliced, not copied).
    mutating func read(_ buffer: inout ByteBuffer) -> Step {
        switch state {
        case .length(let remaining):
            let n = min(remaining, buffer.readableBytes)
            guard n > 0, let part = buffer.readSlice(length: n) else { return .needMore }
            if n == remaining {
                state = .length(remaining: 0)
                return .body(part)
            }
            state = .length(remaining: remaining &- n)
            return .body(part)
        case .chunked(var chunks):
            state = .failed  // the chunk reader's storage stays uniquely referenced while it runs
            let step = chunks.read(&buffer)
            switch step {
            case .body(let part):
                state = .chunked(chunks)
                return .body(part)
            case .needMore:
                state = .chunked(chunks)
                return .needMore
            case .end(let trailers): return .end(trailers)
            case .fault(let why): return .fault(why)
            }
        case .untilClose:
            let n = buffer.readableBytes
            guard n > 0, let part = buffer.readSlice(length: n) else { return .needMore }
            return .body(part)
        case .failed:
            return .fault("malformed body")
        }
    }

    /// Whether the last `read` delivered the final bytes of a fixed-length body.
    var isComplete: Bool {
        if case .length(0) = state { return true }
        return false
    }

    var endsAtClose: Bool {
        if case .untilClose = state { return true }
        return false
    }
}
