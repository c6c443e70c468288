import NIOCore

/// What a TLS client says about itself in its first flight, read before any TLS state exists
/// so that the listener can choose a certificate (by SNI, and RSA or ECDSA by what the client
/// can verify) and refuse early, the way Envoy's tls_inspector does.
public struct ClientHello: Sendable, Equatable {
    /// The `server_name` extension's first host_name, lower-cased, one trailing dot removed.
    /// nil when absent, empty, longer than 255 bytes, or not made of letters, digits, `-`,
    /// `_` and `.`: such a name can match no configured SNI, and must not reach logs raw.
    public var serverName: String?
    /// `application_layer_protocol_negotiation`, in the client's order of preference.
    public var alpn: [String]
    public var signatureAlgorithms: [UInt16]
    public var cipherSuites: [UInt16]
    /// The `supported_versions` extension (TLS 1.3 clients); empty if absent.
    public var supportedVersions: [UInt16]
    public var legacyVersion: UInt16
    /// Whether the client can verify an ECDSA certificate: with `signature_algorithms`, it
    /// lists an ECDSA scheme and can negotiate a version that uses it (TLS 1.3, or an
    /// ECDHE-ECDSA suite for TLS 1.2); without it (only TLS 1.2 and older may omit it), it
    /// offers an ECDHE-ECDSA suite.
    public var acceptsECDSA: Bool

    public init(
        serverName: String? = nil, alpn: [String] = [], signatureAlgorithms: [UInt16] = [],
        cipherSuites: [UInt16] = [], supportedVersions: [UInt16] = [], legacyVersion: UInt16 = 0x0303,
        acceptsECDSA: Bool = false
    ) {
        self.serverName = serverName
        self.alpn = alpn
        self.signatureAlgorithms = signatureAlgorithms
        self.cipherSuites = cipherSuites
        self.supportedVersions = supportedVersions
        self.legacyVersion = legacyVersion
        self.acceptsECDSA = acceptsECDSA
    }
}

public enum ClientHelloResult: Sendable, Equatable {
    case needMoreBytes
    /// The first byte is not a handshake record (0x16) or the record's major version is not 3:
    /// plain HTTP sent to the TLS port, say. Known from the first one or two bytes.
    case notTLS
    /// Lengths that do not add up, not a ClientHello, too large.
    case malformed(String)
    case complete(ClientHello)
}

/// Reads the ClientHello from the bytes received so far, which may hold any prefix of it,
/// split over several records (RFC 8446 §5.1 lets a handshake message span records).
/// The caller keeps the bytes: they are replayed into the TLS handler afterwards.
public enum ClientHelloReader {
    /// The largest ClientHello accepted (the handshake message, summed over its records).
    /// Real ones are under 2 KiB even with post-quantum key shares. Records are never empty,
    /// so the bytes on the wire for an accepted hello are under 6 × this.
    public static let maxBytes = 64 * 1024

    /// TLSPlaintext.length may not exceed 2^14 (RFC 8446 §5.1).
    static let maxRecordPayload = 1 << 14
    static let handshakeRecord: UInt8 = 0x16
    static let clientHelloType: UInt8 = 1

    public static func read(_ buffer: ByteBuffer) -> ClientHelloResult {
        switch assemble(buffer) {
        case .done(let message):
            do throws(Malformed) {
                return .complete(try parse(message))
            } catch {
                return .malformed(error.reason)
            }
        case .result(let result):
            return result
        }
    }

    enum Assembly {
        case done(ByteBuffer)
        case result(ClientHelloResult)
    }

    /// Joins handshake-record payloads until they hold the whole ClientHello message
    /// (4-byte header and body), checking each record header as soon as its bytes arrive.
    static func assemble(_ buffer: ByteBuffer) -> Assembly {
        var index = buffer.readerIndex
        var message = ByteBuffer()
        var messageLength: Int?  // header + body, once the header has arrived
        var isFirstRecord = true
        while true {
            guard let type: UInt8 = buffer.getInteger(at: index) else { return .result(.needMoreBytes) }
            guard type == handshakeRecord else {
                return .result(isFirstRecord ? .notTLS : .malformed("a non-handshake record inside the ClientHello"))
            }
            guard let major: UInt8 = buffer.getInteger(at: index + 1) else { return .result(.needMoreBytes) }
            guard major == 3 else {
                return .result(isFirstRecord ? .notTLS : .malformed("a record version other than 3.x"))
            }
            guard let length16: UInt16 = buffer.getInteger(at: index + 3) else { return .result(.needMoreBytes) }
            let length = Int(length16)
            guard length > 0 else { return .result(.malformed("an empty handshake record")) }
            guard length <= maxRecordPayload else { return .result(.malformed("a record longer than 2^14 bytes")) }
            guard let fragment = buffer.getSlice(at: index + 5, length: length) else { return .result(.needMoreBytes) }
            index += 5 + length
            isFirstRecord = false

            // Take no more than the message needs; what follows it is not ours to read.
            let wanted = messageLength.map { $0 - message.readableBytes } ?? length
            message.writeImmutableBuffer(fragment.getSlice(at: fragment.readerIndex, length: min(wanted, length)) ?? fragment)

            if messageLength == nil, let msgType: UInt8 = message.getInteger(at: message.readerIndex) {
                guard msgType == clientHelloType else { return .result(.malformed("the first handshake message is not a ClientHello")) }
                if let bodyLength = message.getUInt24(at: message.readerIndex + 1) {
                    guard bodyLength <= maxBytes - 4 else { return .result(.malformed("a ClientHello larger than \(maxBytes) bytes")) }
                    messageLength = 4 + bodyLength
                }
            }
            if let total = messageLength, message.readableBytes >= total,
               let whole = message.getSlice(at: message.readerIndex, length: total) {
                return .done(whole)
            }
        }
    }

    struct Malformed: Error {
        var reason: String
    }

    /// Parses a complete ClientHello message (RFC 8446 §4.1.2; RFC 5246 §7.4.1.2 for the
    /// optional extensions block). Every vector must fit its parent exactly.
    static func parse(_ message: ByteBuffer) throws(Malformed) -> ClientHello {
        var r = message
        r.moveReaderIndex(forwardBy: 4)  // type and length, checked by `assemble`
        var hello = ClientHello()
        hello.legacyVersion = try r.u16("legacy_version")
        try r.skip(32, "random")
        guard try r.vector8("legacy_session_id").readableBytes <= 32 else { throw Malformed(reason: "a session id longer than 32 bytes") }
        hello.cipherSuites = try r.vector16("cipher_suites").u16List("cipher_suites")
        guard try r.vector8("legacy_compression_methods").readableBytes > 0 else { throw Malformed(reason: "no compression methods") }
        guard r.readableBytes > 0 else { return finish(hello) }  // pre-extension clients

        var extensions = try r.vector16("extensions")
        guard r.readableBytes == 0 else { throw Malformed(reason: "bytes after the extensions") }
        var seen = Set<UInt16>()
        while extensions.readableBytes > 0 {
            let type = try extensions.u16("extension type")
            var data = try extensions.vector16("extension data")
            guard seen.insert(type).inserted else { throw Malformed(reason: "extension \(type) appears twice") }
            switch type {
            case 0: hello.serverName = try serverName(&data)
            case 13: hello.signatureAlgorithms = try data.vector16("signature_algorithms").u16List("signature_algorithms")
            case 16: hello.alpn = try alpn(&data)
            case 43: hello.supportedVersions = try data.vector8("supported_versions").u16List("supported_versions")
            default: data.moveReaderIndex(forwardBy: data.readableBytes)
            }
            guard data.readableBytes == 0 else { throw Malformed(reason: "bytes after the contents of extension \(type)") }
        }
        return finish(hello)
    }

    /// RFC 6066 §3: a non-empty list of (name_type, name); the first host_name (type 0) counts.
    static func serverName(_ data: inout ByteBuffer) throws(Malformed) -> String? {
        var list = try data.vector16("server_name list")
        guard list.readableBytes > 0 else { throw Malformed(reason: "an empty server_name list") }
        var host: String?
        while list.readableBytes > 0 {
            let nameType = try list.u8("server_name type")
            let name = try list.vector16("server_name")
            guard name.readableBytes > 0 else { throw Malformed(reason: "an empty server_name") }
            if nameType == 0, host == nil { host = hostName(name) }
        }
        return host
    }

    /// Normalized like APISIX's `ssl.server_name`: one trailing dot dropped, lower-cased.
    static func hostName(_ name: ByteBuffer) -> String? {
        var bytes = name.readableBytesView[...]
        if bytes.last == UInt8(ascii: ".") { bytes = bytes.dropLast() }
        guard !bytes.isEmpty, bytes.count <= 255 else { return nil }
        var lowered: [UInt8] = []
        lowered.reserveCapacity(bytes.count)
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): lowered.append(byte | 0x20)
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"):
                lowered.append(byte)
            default: return nil
            }
        }
        return String(decoding: lowered, as: UTF8.self)
    }

    /// RFC 7301 §3.1: a non-empty list of non-empty protocol names.
    static func alpn(_ data: inout ByteBuffer) throws(Malformed) -> [String] {
        var list = try data.vector16("ALPN list")
        guard list.readableBytes > 0 else { throw Malformed(reason: "an empty ALPN list") }
        var names: [String] = []
        while list.readableBytes > 0 {
            let name = try list.vector8("ALPN protocol")
            guard name.readableBytes > 0 else { throw Malformed(reason: "an empty ALPN protocol name") }
            names.append(String(decoding: name.readableBytesView, as: UTF8.self))
        }
        return names
    }

    static func finish(_ hello: ClientHello) -> ClientHello {
        var hello = hello
        let ecdsaSuite = hello.cipherSuites.contains(where: ecdheECDSASuites.contains)
        if hello.signatureAlgorithms.isEmpty {
            hello.acceptsECDSA = ecdsaSuite
        } else {
            let ecdsaScheme = hello.signatureAlgorithms.contains(where: isECDSAScheme)
            hello.acceptsECDSA = ecdsaScheme && (ecdsaSuite || hello.supportedVersions.contains(0x0304))
        }
        return hello
    }

    /// ECDSA signature schemes usable with a P-256/P-384/P-521 certificate: TLS 1.3's
    /// ecdsa_secp256r1_sha256 (0x0403), _secp384r1_sha384 (0x0503), _secp521r1_sha512
    /// (0x0603), and TLS 1.2's (hash, ecdsa) pairs, which share that encoding with
    /// ecdsa_sha1 (0x0203) and sha224 (0x0303).
    static func isECDSAScheme(_ scheme: UInt16) -> Bool {
        scheme & 0xFF == 0x03 && (0x01...0x06).contains(scheme >> 8)
    }

    /// TLS 1.2 suites authenticated by an ECDSA certificate (IANA TLS Cipher Suites registry).
    static let ecdheECDSASuites: Set<UInt16> = [
        0xC006, 0xC007, 0xC008, 0xC009, 0xC00A,  // NULL, RC4, 3DES, AES-128-CBC, AES-256-CBC
        0xC023, 0xC024, 0xC02B, 0xC02C,  // AES-CBC-SHA256/384, AES-GCM
        0xCCA9,  // CHACHA20-POLY1305
        0xC0AC, 0xC0AD, 0xC0AE, 0xC0AF,  // AES-CCM
        0xC072, 0xC073, 0xC086, 0xC087,  // Camellia
        0xC048, 0xC049, 0xC05C, 0xC05D,  // ARIA
    ]
}

extension ByteBuffer {
    fileprivate func getUInt24(at index: Int) -> Int? {
        guard let high: UInt8 = getInteger(at: index), let low: UInt16 = getInteger(at: index + 1) else { return nil }
        return Int(high) << 16 | Int(low)
    }

    fileprivate mutating func u8(_ what: StaticString) throws(ClientHelloReader.Malformed) -> UInt8 {
        guard let value: UInt8 = readInteger() else { throw ClientHelloReader.Malformed(reason: "\(what) is cut short") }
        return value
    }

    fileprivate mutating func u16(_ what: StaticString) throws(ClientHelloReader.Malformed) -> UInt16 {
        guard let value: UInt16 = readInteger() else { throw ClientHelloReader.Malformed(reason: "\(what) is cut short") }
        return value
    }

    fileprivate mutating func skip(_ count: Int, _ what: StaticString) throws(ClientHelloReader.Malformed) {
        guard readableBytes >= count else { throw ClientHelloReader.Malformed(reason: "\(what) is cut short") }
        moveReaderIndex(forwardBy: count)
    }

    /// A vector with a 1-byte length prefix, as a slice of this buffer.
    fileprivate mutating func vector8(_ what: StaticString) throws(ClientHelloReader.Malformed) -> ByteBuffer {
        let length = try u8(what)
        guard let slice = readSlice(length: Int(length)) else { throw ClientHelloReader.Malformed(reason: "\(what) is longer than what contains it") }
        return slice
    }

    /// A vector with a 2-byte length prefix, as a slice of this buffer.
    fileprivate mutating func vector16(_ what: StaticString) throws(ClientHelloReader.Malformed) -> ByteBuffer {
        let length = try u16(what)
        guard let slice = readSlice(length: Int(length)) else { throw ClientHelloReader.Malformed(reason: "\(what) is longer than what contains it") }
        return slice
    }

    /// A non-empty list of 16-bit values filling this buffer exactly.
    fileprivate func u16List(_ what: StaticString) throws(ClientHelloReader.Malformed) -> [UInt16] {
        guard readableBytes > 0, readableBytes % 2 == 0 else { throw ClientHelloReader.Malformed(reason: "\(what) is empty or of odd length") }
        var copy = self
        var values: [UInt16] = []
        values.reserveCapacity(readableBytes / 2)
        while let value: UInt16 = copy.readInteger() { values.append(value) }
        return values
    }
}

/// Alert records to send before closing a connection refused at ClientHello time
/// (RFC 8446 §6). Sent in the clear, as no keys exist yet.
public enum TLSAlert {
    public static let unrecognizedName: UInt8 = 112
    public static let handshakeFailure: UInt8 = 40
    public static let protocolVersion: UInt8 = 70

    /// One alert record: type 21, version 3.3, length 2, level fatal (2), `description`.
    public static func fatal(_ description: UInt8) -> [UInt8] {
        [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, description]
    }
}
