import NIOCore
import NIOHTTP1

/// The header names the data plane acts on, recognised once when a head is read so that no
/// later step compares names again. Everything else is `.other` and is forwarded as it came.
public enum KnownField: UInt8, Sendable {
    case other
    case host, contentLength, transferEncoding, connection, keepAlive, proxyConnection
    case te, trailer, upgrade, expect
    case xForwardedFor, xForwardedHost, xForwardedPort, xForwardedProto, xRealIP
    case proxyAuthenticate, proxyAuthorization
    case cookie, userAgent, referer, contentType, server, date

    /// Classifies a header name (any case) given as bytes.
    @inlinable
    public static func classify(_ name: UnsafeRawBufferPointer) -> KnownField {
        @inline(__always) func eq(_ lower: StaticString) -> Bool {
            guard lower.utf8CodeUnitCount == name.count else { return false }
            let l = UnsafeRawBufferPointer(start: lower.utf8Start, count: lower.utf8CodeUnitCount)
            for i in 0..<name.count {
                let c = name[i]
                let folded = (c >= 0x41 && c <= 0x5A) ? c | 0x20 : c
                if folded != l[i] { return false }
            }
            return true
        }
        switch name.count {
        case 2: return eq("te") ? .te : .other
        case 4: return eq("host") ? .host : eq("date") ? .date : .other
        case 6: return eq("expect") ? .expect : eq("cookie") ? .cookie : eq("server") ? .server : .other
        case 7: return eq("upgrade") ? .upgrade : eq("trailer") ? .trailer : eq("referer") ? .referer : .other
        case 9: return eq("x-real-ip") ? .xRealIP : .other
        case 10:
            return eq("connection") ? .connection : eq("keep-alive") ? .keepAlive : eq("user-agent") ? .userAgent : .other
        case 12: return eq("content-type") ? .contentType : .other
        case 14: return eq("content-length") ? .contentLength : .other
        case 15: return eq("x-forwarded-for") ? .xForwardedFor : .other
        case 16:
            return eq("proxy-connection") ? .proxyConnection : eq("x-forwarded-host") ? .xForwardedHost
                : eq("x-forwarded-port") ? .xForwardedPort : .other
        case 17: return eq("transfer-encoding") ? .transferEncoding : eq("x-forwarded-proto") ? .xForwardedProto : .other
        case 18: return eq("proxy-authenticate") ? .proxyAuthenticate : .other
        case 19: return eq("proxy-authorization") ? .proxyAuthorization : .other
        default: return .other
        }
    }

    public static func classify(_ name: String) -> KnownField {
        var name = name
        return name.withUTF8 { classify(UnsafeRawBufferPointer($0)) }
    }
}

/// A head's header fields, protocol-neutral: name/value pairs in order, kept as byte ranges
/// of one buffer. A head read from HTTP/1 keeps the bytes it arrived in, so forwarding a field
/// unchanged copies its bytes, and no `String` is made unless something asks for one.
///
/// Names keep the case they arrived in; lookups ignore case. Values have no leading or
/// trailing whitespace. No name or value contains CR, LF or NUL: the readers refuse them, and
/// `append` refuses them (`HeaderBlock.InvalidField`).
public struct HeaderBlock: Sendable {
    public struct Field: Sendable {
        public var nameStart: UInt32
        public var nameLength: UInt32
        public var valueStart: UInt32
        public var valueLength: UInt32
        public var kind: KnownField
        public init(nameStart: UInt32, nameLength: UInt32, valueStart: UInt32, valueLength: UInt32, kind: KnownField) {
            self.nameStart = nameStart
            self.nameLength = nameLength
            self.valueStart = valueStart
            self.valueLength = valueLength
            self.kind = kind
        }
    }

    public struct InvalidField: Error, Equatable {
        public var name: String
    }

    /// Names and values; `Field` offsets index it from its reader index 0.
    public private(set) var bytes: ByteBuffer
    public private(set) var fields: [Field]

    public init() {
        bytes = ByteBuffer()
        fields = []
    }

    /// A block over `bytes` (offsets are relative to its reader index): what a head reader
    /// builds. The caller vouches that the fields are valid.
    public init(bytes: ByteBuffer, fields: [Field]) {
        self.bytes = bytes
        self.fields = fields
    }

    public init(_ headers: HTTPHeaders) {
        self.init()
        fields.reserveCapacity(headers.count)
        for (name, value) in headers { appendUnchecked(name: name, value: value) }
    }

    /// The fields of `headers`; a name that is not a token or a value with CR, LF or NUL is
    /// refused, naming the field.
    public init(validating headers: HTTPHeaders) throws(InvalidField) {
        self.init()
        fields.reserveCapacity(headers.count)
        for (name, value) in headers { try append(name: name, value: value) }
    }

    /// The fields of `headers` that are valid; the others are left out (a response header
    /// that would split the head is not sent).
    public init(droppingInvalid headers: HTTPHeaders) {
        self.init()
        fields.reserveCapacity(headers.count)
        for (name, value) in headers { try? append(name: name, value: value) }
    }

    public init(_ pairs: [(String, String)]) throws(InvalidField) {
        self.init()
        for (name, value) in pairs { try append(name: name, value: value) }
    }

    public mutating func reserve(fields n: Int, bytes b: Int) {
        fields.reserveCapacity(n)
        bytes.reserveCapacity(b)
    }

    public var count: Int { fields.count }
    public var isEmpty: Bool { fields.isEmpty }

    @inlinable
    public func withName<T>(_ field: Field, _ body: (UnsafeRawBufferPointer) -> T) -> T {
        bytes.withUnsafeReadableBytes { raw in
            body(UnsafeRawBufferPointer(rebasing: raw[Int(field.nameStart)..<Int(field.nameStart + field.nameLength)]))
        }
    }

    @inlinable
    public func withValue<T>(_ field: Field, _ body: (UnsafeRawBufferPointer) -> T) -> T {
        bytes.withUnsafeReadableBytes { raw in
            body(UnsafeRawBufferPointer(rebasing: raw[Int(field.valueStart)..<Int(field.valueStart + field.valueLength)]))
        }
    }

    public func name(_ field: Field) -> String { withName(field) { String(decoding: $0, as: UTF8.self) } }
    public func value(_ field: Field) -> String { withValue(field) { String(decoding: $0, as: UTF8.self) } }

    /// The first value of a known field.
    public func first(_ kind: KnownField) -> String? {
        for f in fields where f.kind == kind { return value(f) }
        return nil
    }

    public func contains(_ kind: KnownField) -> Bool { fields.contains { $0.kind == kind } }

    /// The first value of a field by name, in any case.
    public func first(name: String) -> String? {
        let kind = KnownField.classify(name)
        if kind != .other { return first(kind) }
        for f in fields where f.kind == .other && matches(f, name) { return value(f) }
        return nil
    }

    /// Every value of a field by name, in order.
    public func values(name: String) -> [String] {
        let kind = KnownField.classify(name)
        var out: [String] = []
        for f in fields where f.kind == kind && (kind != .other || matches(f, name)) { out.append(value(f)) }
        return out
    }

    /// Whether the field's name equals `name`, ignoring ASCII case.
    public func matches(_ field: Field, _ name: String) -> Bool {
        guard Int(field.nameLength) == name.utf8.count else { return false }
        return withName(field) { raw in
            var i = 0
            for b in name.utf8 {
                let c = raw[i]
                if (c >= 0x41 && c <= 0x5A ? c | 0x20 : c) != (b >= 0x41 && b <= 0x5A ? b | 0x20 : b) { return false }
                i += 1
            }
            return true
        }
    }

    /// Whether the field's value equals `lower` (lower-case ASCII), ignoring ASCII case.
    public func valueEquals(_ field: Field, caseInsensitive lower: StaticString) -> Bool {
        guard Int(field.valueLength) == lower.utf8CodeUnitCount else { return false }
        return withValue(field) { raw in
            for i in 0..<raw.count {
                let c = raw[i]
                if (c >= 0x41 && c <= 0x5A ? c | 0x20 : c) != lower.utf8Start[i] { return false }
            }
            return true
        }
    }

    /// Whether the field's value, a comma-separated list, has `lower` (lower-case ASCII) as one
    /// of its elements, ignoring case and whitespace around elements.
    public func valueListContains(_ field: Field, caseInsensitive lower: StaticString) -> Bool {
        withValue(field) { raw in
            let n = lower.utf8CodeUnitCount
            var i = 0
            while i < raw.count {
                while i < raw.count && (raw[i] == 0x20 || raw[i] == 0x09 || raw[i] == 0x2C) { i += 1 }
                let start = i
                while i < raw.count && raw[i] != 0x2C { i += 1 }
                var end = i
                while end > start && (raw[end - 1] == 0x20 || raw[end - 1] == 0x09) { end -= 1 }
                if end - start == n {
                    var same = true
                    for k in 0..<n {
                        let c = raw[start + k]
                        if (c >= 0x41 && c <= 0x5A ? c | 0x20 : c) != lower.utf8Start[k] {
                            same = false
                            break
                        }
                    }
                    if same { return true }
                }
            }
            return false
        }
    }

    /// Adds a field. A name that is not a token, or a name or value with CR, LF or NUL, is
    /// refused: nothing the gateway writes may split a head.
    public mutating func append(name: String, value: String) throws(InvalidField) {
        guard Self.isToken(name.utf8), !value.utf8.contains(where: { $0 == 0x0D || $0 == 0x0A || $0 == 0 }) else {
            throw InvalidField(name: name)
        }
        appendUnchecked(name: name, value: value)
    }

    /// Adds a field the caller knows to be valid (a constant name, a number, an address).
    public mutating func appendUnchecked(name: String, value: String) {
        let ns = UInt32(bytes.writerIndex - bytes.readerIndex)
        let nl = UInt32(bytes.writeString(name))
        let vs = UInt32(bytes.writerIndex - bytes.readerIndex)
        let vl = UInt32(bytes.writeString(value))
        fields.append(Field(nameStart: ns, nameLength: nl, valueStart: vs, valueLength: vl, kind: KnownField.classify(name)))
    }

    /// Adds a field from another block, copying its bytes.
    public mutating func append(_ field: Field, of other: HeaderBlock) {
        let ns = UInt32(bytes.writerIndex - bytes.readerIndex)
        let nl = other.withName(field) { UInt32(bytes.writeBytes($0)) }
        let vs = UInt32(bytes.writerIndex - bytes.readerIndex)
        let vl = other.withValue(field) { UInt32(bytes.writeBytes($0)) }
        fields.append(Field(nameStart: ns, nameLength: nl, valueStart: vs, valueLength: vl, kind: field.kind))
    }

    /// Removes every field of `kind` (by name when `.other`).
    public mutating func remove(_ kind: KnownField) { fields.removeAll { $0.kind == kind } }

    public mutating func remove(name: String) {
        let kind = KnownField.classify(name)
        if kind != .other { return remove(kind) }
        let copy = self
        fields.removeAll { $0.kind == .other && copy.matches($0, name) }
    }

    /// The fields as NIO's `HTTPHeaders`, for plugins.
    public func httpHeaders() -> HTTPHeaders {
        var h = HTTPHeaders()
        h.reserveCapacity(fields.count)
        for f in fields { h.add(name: name(f), value: value(f)) }
        return h
    }

    /// Bytes a field takes on an HTTP/1 wire (`name: value\r\n`).
    public var wireSize: Int {
        var n = 0
        for f in fields { n &+= Int(f.nameLength) &+ Int(f.valueLength) &+ 4 }
        return n
    }

    @inlinable
    static func isToken<S: Sequence>(_ s: S) -> Bool where S.Element == UInt8 {
        var any = false
        for c in s {
            any = true
            guard HTTPToken.isTokenByte(c) else { return false }
        }
        return any
    }
}

/// RFC 9110 `tchar`.
public enum HTTPToken {
    @inlinable
    public static func isTokenByte(_ c: UInt8) -> Bool {
        switch c {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): return true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"), UInt8(ascii: "'"),
            UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "^"), UInt8(ascii: "_"),
            UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            return true
        default: return false
        }
    }
}
