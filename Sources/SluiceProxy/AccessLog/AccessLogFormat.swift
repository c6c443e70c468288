import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The access log's line format (`--access-log-format`).
public enum AccessLogFormat: String, Sendable, CaseIterable {
    /// APISIX's default line, with NGINX's `escape=default`.
    case text
    /// One JSON object per line, the text fields by name plus `route_id` and `request_id`.
    case json
}

/// The zone `$time_local` is written in.
public enum AccessLogTimeZone: Sendable {
    /// The process's local zone (`TZ`, `/etc/localtime`), with its offset, as NGINX does.
    case local
    /// UTC, offset `+0000`.
    case utc
}

/// Turns `AccessLogRecord`s into log lines, appended straight to a `ByteBuffer` with no
/// intermediate `String`. Keeps the formatted `$time_local` of the last second it wrote, so
/// the calendar conversion runs at most once per second of log time, not once per line.
///
/// Not shareable: each event loop's `AccessLogBuffer` has its own.
///
/// Text lines are
/// `$remote_addr - $remote_user [$time_local] $http_host "$request" $status $body_bytes_sent
/// $request_time "$http_referer" "$http_user_agent" $upstream_addr $upstream_status
/// $upstream_response_time "$upstream_scheme://$upstream_host$upstream_uri"`; every value
/// has `"`, `\`, and bytes below 0x20 or from 0x7F up written as `\xHH`, as NGINX's
/// `escape=default` does, so no value can end a field or a line.
public struct AccessLogFormatter {
    public let format: AccessLogFormat
    public let timeZone: AccessLogTimeZone
    /// The epoch second `cachedTime` shows; `Int64.min` before the first line.
    private var cachedSecond: Int64 = .min
    /// `dd/Mon/yyyy:HH:MM:SS +hhmm` for `cachedSecond`.
    private var cachedTime: [UInt8] = []

    public init(format: AccessLogFormat, timeZone: AccessLogTimeZone = .local) {
        self.format = format
        self.timeZone = timeZone
        cachedTime.reserveCapacity(32)
    }

    /// Appends `record` as one line, newline included, to `buffer`: one capacity check and
    /// one write into the buffer's memory per line.
    public mutating func append(_ record: AccessLogRecord, to buffer: inout ByteBuffer) {
        refreshTime(Self.endNanos(record))
        let time = cachedTime
        let format = self.format
        let bound = Self.maximumLength(record, escapedByteWidth: format == .text ? 4 : 6)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: bound) { memory in
            var w = LineWriter(memory: memory)
            switch format {
            case .text: Self.text(record, time: time, into: &w)
            case .json: Self.json(record, time: time, into: &w)
            }
            return w.index
        }
    }

    /// `$time_local` for a wall-clock time in nanoseconds since the epoch, e.g.
    /// `04/Dec/2026:01:12:10 +0000`. Reuses the last result within the same second.
    public mutating func timeLocal(wallNanos: Int64) -> [UInt8] {
        refreshTime(wallNanos)
        return cachedTime
    }

    /// The longest line `r` can make: every string byte escaped to `escapedByteWidth` bytes,
    /// plus room for the field names, separators, numbers and `-`/`null` of missing values.
    /// Wrapping arithmetic can only make the bound too small, which `LineWriter` traps on.
    private static func maximumLength(_ r: AccessLogRecord, escapedByteWidth: Int) -> Int {
        var bytes = r.remoteAddr.utf8.count &+ r.method.utf8.count &+ r.requestURI.utf8.count &+ r.httpVersion.utf8.count
        bytes &+= (r.remoteUser?.utf8.count ?? 0) &+ (r.host?.utf8.count ?? 0)
        bytes &+= (r.referer?.utf8.count ?? 0) &+ (r.userAgent?.utf8.count ?? 0)
        bytes &+= (r.upstreamScheme?.utf8.count ?? 0) &+ (r.upstreamHost?.utf8.count ?? 0) &+ (r.upstreamURI?.utf8.count ?? 0)
        bytes &+= (r.routeID?.utf8.count ?? 0) &+ (r.requestID?.utf8.count ?? 0) &+ (r.error?.utf8.count ?? 0)
        var attempts = 0
        for a in r.upstreams { attempts &+= a.address.utf8.count &* escapedByteWidth &+ 64 }
        return 512 &+ bytes &* escapedByteWidth &+ attempts
    }

    // MARK: - Text

    private static func text(_ r: AccessLogRecord, time: [UInt8], into w: inout LineWriter) {
        escapeText(r.remoteAddr, &w)
        w.write(" - ")
        escapeText(r.remoteUser, &w)
        w.write(" [")
        time.withUnsafeBytes { w.write($0) }
        w.write("] ")
        escapeText(r.host, &w)
        w.write(" \"")
        requestLine(r, &w, escape: escapeText)
        w.write("\" ")
        w.decimal(r.status)
        w.byte(UInt8(ascii: " "))
        w.decimal(r.bodyBytesSent)
        w.byte(UInt8(ascii: " "))
        w.seconds(r.requestTimeNanos)
        w.write(" \"")
        escapeText(r.referer, &w)
        w.write("\" \"")
        escapeText(r.userAgent, &w)
        w.write("\" ")
        addresses(r.upstreams, &w, escape: escapeText)
        w.byte(UInt8(ascii: " "))
        statuses(r.upstreams, &w)
        w.byte(UInt8(ascii: " "))
        responseTimes(r.upstreams, &w)
        w.write(" \"")
        escapeText(r.upstreamScheme, &w)
        w.write("://")
        escapeText(r.upstreamHost, &w)
        escapeText(r.upstreamURI, &w)
        w.write("\"\n")
    }

    // MARK: - JSON

    private static func json(_ r: AccessLogRecord, time: [UInt8], into w: inout LineWriter) {
        w.write("{\"remote_addr\":")
        quoteJSON(r.remoteAddr, &w)
        w.write(",\"remote_user\":")
        quoteJSON(r.remoteUser, &w)
        w.write(",\"time_local\":\"")
        time.withUnsafeBytes { w.write($0) }
        w.write("\",\"http_host\":")
        quoteJSON(r.host, &w)
        w.write(",\"request\":\"")
        requestLine(r, &w, escape: escapeJSON)
        w.write("\",\"status\":")
        w.decimal(r.status)
        w.write(",\"body_bytes_sent\":")
        w.decimal(r.bodyBytesSent)
        w.write(",\"request_time\":")
        w.seconds(r.requestTimeNanos)
        w.write(",\"http_referer\":")
        quoteJSON(r.referer, &w)
        w.write(",\"http_user_agent\":")
        quoteJSON(r.userAgent, &w)
        if r.upstreams.isEmpty {
            w.write(",\"upstream_addr\":null,\"upstream_status\":null,\"upstream_response_time\":null")
        } else {
            w.write(",\"upstream_addr\":\"")
            addresses(r.upstreams, &w, escape: escapeJSON)
            w.write("\",\"upstream_status\":\"")
            statuses(r.upstreams, &w)
            w.write("\",\"upstream_response_time\":\"")
            responseTimes(r.upstreams, &w)
            w.byte(UInt8(ascii: "\""))
        }
        w.write(",\"upstream_scheme\":")
        quoteJSON(r.upstreamScheme, &w)
        w.write(",\"upstream_host\":")
        quoteJSON(r.upstreamHost, &w)
        w.write(",\"upstream_uri\":")
        quoteJSON(r.upstreamURI, &w)
        w.write(",\"route_id\":")
        quoteJSON(r.routeID, &w)
        w.write(",\"request_id\":")
        quoteJSON(r.requestID, &w)
        if let error = r.error {
            w.write(",\"error\":")
            quoteJSON(error, &w)
        }
        w.write("}\n")
    }

    // MARK: - Shared fields

    /// The log time: the request's start plus its duration, saturating.
    private static func endNanos(_ r: AccessLogRecord) -> Int64 {
        let (sum, overflow) = r.startWallNanos.addingReportingOverflow(max(0, r.requestTimeNanos))
        return overflow ? .max : sum
    }

    /// `METHOD URI VERSION`, each part escaped by `escape` (no quotes).
    private static func requestLine(
        _ r: AccessLogRecord, _ w: inout LineWriter, escape: (String, inout LineWriter) -> Void
    ) {
        escape(r.method, &w)
        w.byte(UInt8(ascii: " "))
        escape(r.requestURI, &w)
        w.byte(UInt8(ascii: " "))
        escape(r.httpVersion, &w)
    }

    /// `a, b, c`, or `-` for no attempt.
    private static func addresses(
        _ attempts: [UpstreamAttemptLog], _ w: inout LineWriter, escape: (String, inout LineWriter) -> Void
    ) {
        if attempts.isEmpty { return w.byte(UInt8(ascii: "-")) }
        for i in attempts.indices {
            if i > 0 { w.write(", ") }
            escape(attempts[i].address, &w)
        }
    }

    /// `502, 200`, `-` for an attempt with no status, or `-` for no attempt.
    private static func statuses(_ attempts: [UpstreamAttemptLog], _ w: inout LineWriter) {
        if attempts.isEmpty { return w.byte(UInt8(ascii: "-")) }
        for i in attempts.indices {
            if i > 0 { w.write(", ") }
            if let s = attempts[i].status { w.decimal(s) } else { w.byte(UInt8(ascii: "-")) }
        }
    }

    /// `0.001, 0.010`, `-` for an attempt with no time, or `-` for no attempt.
    private static func responseTimes(_ attempts: [UpstreamAttemptLog], _ w: inout LineWriter) {
        if attempts.isEmpty { return w.byte(UInt8(ascii: "-")) }
        for i in attempts.indices {
            if i > 0 { w.write(", ") }
            if let t = attempts[i].responseTimeNanos { w.seconds(t) } else { w.byte(UInt8(ascii: "-")) }
        }
    }

    // MARK: - Strings

    /// A text-format value: `-` when nil, else NGINX `escape=default`.
    private static func escapeText(_ value: String?, _ w: inout LineWriter) {
        guard let value else { return w.byte(UInt8(ascii: "-")) }
        escapeText(value, &w)
    }

    /// `"`, `\`, bytes < 0x20 and bytes >= 0x7F as `\xHH`; everything else as is.
    private static func escapeText(_ value: String, _ w: inout LineWriter) {
        var value = value
        value.withUTF8 { bytes in
            var runStart = 0
            for i in 0..<bytes.count {
                let c = bytes[i]
                guard c < 0x20 || c >= 0x7F || c == 0x22 || c == 0x5C else { continue }
                if i > runStart { w.write(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: bytes[runStart..<i]))) }
                w.byte(UInt8(ascii: "\\"))
                w.byte(UInt8(ascii: "x"))
                w.byte(LineWriter.upperHex(c >> 4))
                w.byte(LineWriter.upperHex(c))
                runStart = i &+ 1
            }
            if runStart < bytes.count { w.write(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: bytes[runStart...]))) }
        }
    }

    /// A JSON value: `null` when nil, else a quoted, escaped string.
    private static func quoteJSON(_ value: String?, _ w: inout LineWriter) {
        guard let value else { return w.write("null") }
        w.byte(UInt8(ascii: "\""))
        escapeJSON(value, &w)
        w.byte(UInt8(ascii: "\""))
    }

    /// The inside of a JSON string: `"` and `\` backslashed, control characters and DEL as
    /// `\n`, `\r`, `\t`, `\b`, `\f` or `\u00hh`. The input is a Swift `String`, so the
    /// output is valid UTF-8.
    private static func escapeJSON(_ value: String, _ w: inout LineWriter) {
        var value = value
        value.withUTF8 { bytes in
            var runStart = 0
            for i in 0..<bytes.count {
                let c = bytes[i]
                guard c < 0x20 || c == 0x7F || c == 0x22 || c == 0x5C else { continue }
                if i > runStart { w.write(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: bytes[runStart..<i]))) }
                w.byte(UInt8(ascii: "\\"))
                switch c {
                case 0x22: w.byte(UInt8(ascii: "\""))
                case 0x5C: w.byte(UInt8(ascii: "\\"))
                case 0x0A: w.byte(UInt8(ascii: "n"))
                case 0x0D: w.byte(UInt8(ascii: "r"))
                case 0x09: w.byte(UInt8(ascii: "t"))
                case 0x08: w.byte(UInt8(ascii: "b"))
                case 0x0C: w.byte(UInt8(ascii: "f"))
                default:
                    w.write("u00")
                    w.byte(LineWriter.lowerHex(c >> 4))
                    w.byte(LineWriter.lowerHex(c))
                }
                runStart = i &+ 1
            }
            if runStart < bytes.count { w.write(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: bytes[runStart...]))) }
        }
    }

    // MARK: - Time

    private static let months: [StaticString] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]

    /// Recomputes `cachedTime` when `wallNanos` falls in another second than the last line's.
    private mutating func refreshTime(_ wallNanos: Int64) {
        // Floor division, so times before the epoch still land in the right second.
        let q = wallNanos / 1_000_000_000
        let second = (wallNanos % 1_000_000_000 < 0) ? q - 1 : q
        if second == cachedSecond { return }
        cachedSecond = second
        var t = time_t(truncatingIfNeeded: second)
        var parts = tm()
        let converted: UnsafeMutablePointer<tm>?
        switch timeZone {
        case .local: converted = localtime_r(&t, &parts)
        case .utc: converted = gmtime_r(&t, &parts)
        }
        if converted == nil { parts = tm() }  // out of the C library's range: 00/Jan/1900
        cachedTime.removeAll(keepingCapacity: true)
        func two(_ v: Int32) {
            let n = max(0, min(99, v))
            cachedTime.append(UInt8(truncatingIfNeeded: 48 &+ n / 10))
            cachedTime.append(UInt8(truncatingIfNeeded: 48 &+ n % 10))
        }
        two(parts.tm_mday)
        cachedTime.append(UInt8(ascii: "/"))
        let month = Self.months[Int(max(0, min(11, parts.tm_mon)))]
        cachedTime.append(contentsOf: UnsafeBufferPointer(start: month.utf8Start, count: month.utf8CodeUnitCount))
        cachedTime.append(UInt8(ascii: "/"))
        let year = Int(parts.tm_year) + 1900
        let y = max(0, min(9999, year))
        two(Int32(y / 100))
        two(Int32(y % 100))
        cachedTime.append(UInt8(ascii: ":"))
        two(parts.tm_hour)
        cachedTime.append(UInt8(ascii: ":"))
        two(parts.tm_min)
        cachedTime.append(UInt8(ascii: ":"))
        two(parts.tm_sec)
        cachedTime.append(UInt8(ascii: " "))
        let offset = timeZone == .utc ? 0 : Int(parts.tm_gmtoff)
        let clamped = max(-86_399, min(86_399, offset))
        cachedTime.append(clamped < 0 ? UInt8(ascii: "-") : UInt8(ascii: "+"))
        let minutes = clamped.magnitude / 60
        two(Int32(minutes / 60))
        two(Int32(minutes % 60))
    }
}

/// Writes one line into memory reserved for it. Every write checks that it fits and traps
/// when it does not (a wrong `maximumLength`), so a bug cannot write past the reservation.
struct LineWriter {
    private let memory: UnsafeMutableRawBufferPointer
    /// Bytes written so far.
    private(set) var index = 0

    init(memory: UnsafeMutableRawBufferPointer) {
        self.memory = memory
    }

    @inline(__always)
    mutating func byte(_ value: UInt8) {
        precondition(index < memory.count, "access log line longer than its reservation")
        memory[index] = value
        index &+= 1
    }

    mutating func write(_ bytes: UnsafeRawBufferPointer) {
        precondition(bytes.count <= memory.count &- index, "access log line longer than its reservation")
        guard let source = bytes.baseAddress, let target = memory.baseAddress else { return }
        (target + index).copyMemory(from: source, byteCount: bytes.count)
        index &+= bytes.count
    }

    mutating func write(_ text: StaticString) {
        write(UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    /// A signed decimal integer.
    mutating func decimal(_ value: Int) {
        if value < 0 { byte(UInt8(ascii: "-")) }
        unsigned(UInt64(value.magnitude))
    }

    /// An unsigned decimal integer.
    mutating func unsigned(_ value: UInt64) {
        var digits = 1
        var limit: UInt64 = 10
        while digits < 20, value >= limit {
            digits &+= 1
            limit = limit &* 10
        }
        precondition(digits <= memory.count &- index, "access log line longer than its reservation")
        var v = value
        var position = index &+ digits
        while position > index {
            position &-= 1
            memory[position] = UInt8(truncatingIfNeeded: 48 &+ v % 10)
            v /= 10
        }
        index &+= digits
    }

    /// Seconds with millisecond resolution (`0.003`, `12.345`), truncated as NGINX does;
    /// negative durations are written as `0.000`.
    mutating func seconds(_ nanos: Int64) {
        let ms = UInt64(max(0, nanos)) / 1_000_000
        unsigned(ms / 1000)
        let fraction = ms % 1000
        byte(UInt8(ascii: "."))
        byte(UInt8(truncatingIfNeeded: 48 &+ fraction / 100))
        byte(UInt8(truncatingIfNeeded: 48 &+ (fraction / 10) % 10))
        byte(UInt8(truncatingIfNeeded: 48 &+ fraction % 10))
    }

    @inline(__always)
    static func upperHex(_ nibble: UInt8) -> UInt8 {
        let n = nibble & 0x0F
        return n < 10 ? 48 &+ n : 55 &+ n
    }

    @inline(__always)
    static func lowerHex(_ nibble: UInt8) -> UInt8 {
        let n = nibble & 0x0F
        return n < 10 ? 48 &+ n : 87 &+ n
    }
}
