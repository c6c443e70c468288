import NIOCore
import NIOHTTP1

/// Writes HTTP/1.1 heads and body framing into `ByteBuffer`s. Field bytes are copied as they
/// are held: a field read from one side goes out to the other without becoming a `String`.
/// Every field here came through `HeaderBlock`, which holds no CR, LF or NUL.
enum HTTP1Writer {
    /// Bodies up to this size are copied next to their chunk framing, so a chunk is one write.
    static let copyBodyBelow = 4096

    static func writeRequestHead(_ head: UpstreamRequestHead, framing: BodyFraming, into buffer: inout ByteBuffer) {
        let fields = head.fields
        buffer.reserveCapacity(minimumWritableBytes: head.target.utf8.count + fields.bytes.readableBytes + fields.count * 4 + 256)
        buffer.writeString(head.method.rawValue)
        buffer.writeStaticString(" ")
        buffer.writeString(head.target)
        buffer.writeStaticString(" HTTP/1.1\r\nHost: ")
        buffer.writeString(head.gateway.host)
        buffer.writeStaticString("\r\n")
        fields.bytes.withUnsafeReadableBytes { raw in
            for f in fields.fields where head.forwards(f) { writeField(f, raw, into: &buffer) }
        }
        head.gateway.forEach { name, value in
            buffer.writeStaticString(name)
            buffer.writeStaticString(": ")
            buffer.writeString(value)
            buffer.writeStaticString("\r\n")
        }
        switch framing {
        case .chunked: buffer.writeStaticString("Transfer-Encoding: chunked\r\n\r\n")
        case .length, .none, .untilClose: buffer.writeStaticString("\r\n")
        }
    }

    /// `name: value\r\n`, copied in one step into the buffer's memory.
    @inline(__always)
    static func writeField(_ f: HeaderBlock.Field, _ raw: UnsafeRawBufferPointer, into buffer: inout ByteBuffer) {
        let nl = Int(f.nameLength), vl = Int(f.valueLength)
        let n = nl &+ vl &+ 4
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: n) { out in
            guard let base = out.baseAddress, let src = raw.baseAddress else { return 0 }
            (base).copyMemory(from: src + Int(f.nameStart), byteCount: nl)
            base.storeBytes(of: UInt8(ascii: ":"), toByteOffset: nl, as: UInt8.self)
            base.storeBytes(of: UInt8(ascii: " "), toByteOffset: nl &+ 1, as: UInt8.self)
            (base + nl + 2).copyMemory(from: src + Int(f.valueStart), byteCount: vl)
            base.storeBytes(of: UInt8(ascii: "\r"), toByteOffset: n &- 2, as: UInt8.self)
            base.storeBytes(of: UInt8(ascii: "\n"), toByteOffset: n &- 1, as: UInt8.self)
            return n
        }
    }

    /// How a response body is framed towards a client of `version`.
    static func responseFraming(_ head: ResponseHead, requestMethod: HTTPMethod, version: HTTPVersion) -> BodyFraming {
        if requestMethod == .HEAD || head.status < 200 || head.status == 204 || head.status == 304 { return .none }
        if head.fields.contains(.contentLength) { return .length(0) }
        return version.minor == 0 ? .untilClose : .chunked
    }

    /// The status line and fields. `connection` is written as the `Connection` field when set.
    static func writeResponseHead(
        _ head: ResponseHead, framing: BodyFraming, connection: StaticString?, into buffer: inout ByteBuffer, version: HTTPVersion
    ) {
        buffer.reserveCapacity(minimumWritableBytes: head.fields.bytes.readableBytes + head.fields.count * 4 + 96)
        buffer.writeStaticString(version.minor == 0 ? "HTTP/1.0 " : "HTTP/1.1 ")
        let status = min(max(head.status, 100), 599)
        writeStatusCode(status, into: &buffer)
        buffer.writeStaticString(" ")
        buffer.writeString(HTTPResponseStatus(statusCode: status).reasonPhrase)
        buffer.writeStaticString("\r\n")
        // Hop-by-hop fields of the upstream's head never reach the client; a 101 keeps the
        // `Connection: upgrade` and `Upgrade` pair it was given.
        let fields = head.fields
        let tokens = ForwardingHeaders.connectionTokens(fields)
        let upgrade = head.status == 101
        fields.bytes.withUnsafeReadableBytes { raw in
            for f in fields.fields
            where ForwardingHeaders.forwardsResponseField(f, of: fields, tokens: tokens) || (upgrade && (f.kind == .connection || f.kind == .upgrade)) {
                writeField(f, raw, into: &buffer)
            }
        }
        if let connection {
            buffer.writeStaticString("Connection: ")
            buffer.writeStaticString(connection)
            buffer.writeStaticString("\r\n")
        }
        if framing == .chunked { buffer.writeStaticString("Transfer-Encoding: chunked\r\n") }
        buffer.writeStaticString("\r\n")
    }

    @inline(__always)
    static func writeStatusCode(_ status: Int, into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt8(48 + status / 100))
        buffer.writeInteger(UInt8(48 + (status / 10) % 10))
        buffer.writeInteger(UInt8(48 + status % 10))
    }

    static func writeFields(_ fields: HeaderBlock, into buffer: inout ByteBuffer) {
        fields.bytes.withUnsafeReadableBytes { raw in
            for f in fields.fields { writeField(f, raw, into: &buffer) }
        }
    }

    /// The chunk-size line of a chunk of `count` bytes.
    static func writeChunkPrefix(_ count: Int, into buffer: inout ByteBuffer) {
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var n = UInt(count)
        var len = 0
        withUnsafeMutableBytes(of: &digits) { d in
            repeat {
                let v = UInt8(n & 0xF)
                d[15 - len] = v < 10 ? 48 + v : 87 + v
                n >>= 4
                len += 1
            } while n > 0 && len < 16
            buffer.writeBytes(UnsafeRawBufferPointer(rebasing: d[(16 - len)...]))
        }
        buffer.writeStaticString("\r\n")
    }

    /// `body` as one chunk, handed to `emit` as the buffers to write: one buffer (size line,
    /// bytes and CRLF copied together) for small bodies, else the size line, the body as it
    /// is, and the CRLF.
    static func chunk(_ body: ByteBuffer, allocator: ByteBufferAllocator, _ emit: (ByteBuffer) -> Void) {
        let small = body.readableBytes < copyBodyBelow
        var framed = allocator.buffer(capacity: small ? body.readableBytes + 12 : 12)
        writeChunkPrefix(body.readableBytes, into: &framed)
        if small {
            var b = body
            framed.writeBuffer(&b)
            framed.writeStaticString("\r\n")
            emit(framed)
        } else {
            emit(framed)
            emit(body)
            emit(ByteBuffer(staticString: "\r\n"))
        }
    }

    /// The last chunk, the trailers and the blank line.
    static func writeLastChunk(trailers: HeaderBlock?, into buffer: inout ByteBuffer) {
        buffer.writeStaticString("0\r\n")
        if let trailers { writeFields(trailers, into: &buffer) }
        buffer.writeStaticString("\r\n")
    }
}
