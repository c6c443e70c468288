import Foundation
import NIOCore
import NIOEmbedded
import NIOHTTP1
import SluiceCore
import SluiceTesting
import Testing

@testable import SluiceProxy

/// What the gateway answers to a request head, before routing.
private enum HeadVerdict: Equatable, CustomStringConvertible {
    case accept
    case incomplete
    case status(Int)

    var description: String {
        switch self {
        case .accept: return "accept"
        case .incomplete: return "incomplete"
        case .status(let s): return String(s)
        }
    }
}

// MARK: - The oracle: today's request side, NIO's decoder with the gateway's guards and rules

/// A copy of the gateway's former `HeadSizeGuard`: bounds the bytes before a head is complete.
private final class OracleHeadSizeGuard: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    enum Violation { case uriTooLong, headersTooLarge }
    private(set) var violation: Violation?
    private let maxRequestLine: Int
    private let maxHead: Int
    private var counting = true
    private var seen = 0
    private var requestLineDone = false

    init(maxURIBytes: Int, maxHeaderBytes: Int) {
        maxRequestLine = maxURIBytes + 32
        maxHead = maxURIBytes + maxHeaderBytes + 1024
    }

    func headReceived() { counting = false }

    private func fail(_ v: Violation, _ context: ChannelHandlerContext) {
        violation = v
        counting = false
        context.fireErrorCaught(HTTPParserError.headerOverflow)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if violation != nil { return }
        guard counting else {
            context.fireChannelRead(data)
            return
        }
        let buffer = unwrapInboundIn(data)
        let length = buffer.readableBytes
        let newline = requestLineDone ? nil : buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n"))
        context.fireChannelRead(data)
        guard counting else { return }
        if !requestLineDone {
            if let nl = newline {
                requestLineDone = true
                if seen + (nl - buffer.readerIndex) > maxRequestLine {
                    fail(.uriTooLong, context)
                    return
                }
            } else if seen + length > maxRequestLine {
                fail(.uriTooLong, context)
                return
            }
        }
        seen += length
        if seen > maxHead { fail(.headersTooLarge, context) }
    }
}

/// Catches the first head or the first error after NIO's decoder.
private final class OracleCatcher: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    let sizeGuard: OracleHeadSizeGuard
    var head: HTTPRequestHead?
    var error: (any Error)?
    var body = BodyOutcome.open([])
    init(_ sizeGuard: OracleHeadSizeGuard) { self.sizeGuard = sizeGuard }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            if head == nil && error == nil {
                head = h
                sizeGuard.headReceived()
            }
        case .body(let b):
            if case .open(let so) = body { body = .open(so + Array(b.readableBytesView)) }
        case .end:
            if case .open(let so) = body { body = .complete(so) }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if self.error == nil && head == nil { self.error = error }
        if head != nil, case .open(let so) = body { body = .failed(so) }
    }
}

/// A copy of the gateway's former `HeaderRules.check`, as a status code.
private func oracleHeaderRules(_ head: HTTPRequestHead, maxURIBytes: Int) -> Int? {
    func eq(_ a: String, _ lower: String) -> Bool {
        let a = Array(a.utf8), b = Array(lower.utf8)
        guard a.count == b.count else { return false }
        for (x, y) in zip(a, b) where ((x >= 0x41 && x <= 0x5A) ? x | 0x20 : x) != y { return false }
        return true
    }
    if head.uri.utf8.count > maxURIBytes { return 414 }
    var contentLengths = 0
    var transferEncoding: String? = nil
    var hosts = 0
    for (name, value) in head.headers {
        if value.utf8.contains(where: { $0 == 0x0D || $0 == 0x0A || $0 == 0 }) { return 400 }
        switch name.utf8.count {
        case 4 where eq(name, "host"): hosts += 1
        case 14 where eq(name, "content-length"): contentLengths += 1
        case 17 where eq(name, "transfer-encoding"):
            if transferEncoding != nil { return 400 }
            transferEncoding = value
        default: break
        }
    }
    if contentLengths > 1 { return 400 }
    if let te = transferEncoding {
        if contentLengths > 0 { return 400 }
        if head.version.minor == 0 && head.version.major == 1 { return 400 }
        if te.trimmingWhitespace().lowercased() != "chunked" { return 501 }
    }
    if hosts > 1 { return 400 }
    if hosts == 0 && head.version.major == 1 && head.version.minor >= 1 { return 400 }
    return nil
}

/// What became of the first request's body.
private enum BodyOutcome: Equatable {
    case open([UInt8])
    case complete([UInt8])
    case failed([UInt8])
}

private struct OracleOutcome {
    var verdict: HeadVerdict
    var head: HTTPRequestHead?
    var body = BodyOutcome.open([])
}

private struct Oracle {
    var limits = HTTP1Limits()

    /// The verdict and, when accepted, the head NIO decoded. Bytes are fed one at a time for
    /// heads longer than the request-line bound, so the size guard counts as on a slow link.
    func judge(_ bytes: [UInt8]) -> OracleOutcome {
        let channel = EmbeddedChannel()
        let sizeGuard = OracleHeadSizeGuard(maxURIBytes: limits.maxURIBytes, maxHeaderBytes: limits.maxHeaderBytes)
        var decoderLimits = NIOHTTPDecoderLimitConfiguration()
        decoderLimits.maxHeaderListSize = limits.maxHeaderBytes
        decoderLimits.maxHeaderFieldSize = limits.maxHeaderBytes
        let catcher = OracleCatcher(sizeGuard)
        do {
            try channel.pipeline.syncOperations.addHandler(sizeGuard)
            try channel.pipeline.syncOperations.addHandler(
                ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes, informationalResponseStrategy: .drop,
                                                        limitConfiguration: decoderLimits)))
            try channel.pipeline.syncOperations.addHandler(catcher)
        } catch {
            return OracleOutcome(verdict: .status(-1))
        }
        if bytes.count > limits.maxURIBytes + 32 {
            for b in bytes {
                if catcher.head != nil || catcher.error != nil { break }
                _ = try? channel.writeInbound(ByteBuffer(bytes: [b]))
            }
        } else {
            _ = try? channel.writeInbound(ByteBuffer(bytes: bytes))
        }
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        if let head = catcher.head {
            if let s = oracleHeaderRules(head, maxURIBytes: limits.maxURIBytes) { return OracleOutcome(verdict: .status(s), head: head) }
            return OracleOutcome(verdict: .accept, head: head, body: catcher.body)
        }
        if let error = catcher.error {
            if let e = error as? HTTPParserError {
                if e == .headerOverflow { return OracleOutcome(verdict: .status(sizeGuard.violation == .uriTooLong ? 414 : 431)) }
                return OracleOutcome(verdict: .status(400))
            }
            return OracleOutcome(verdict: .status(-2))
        }
        return OracleOutcome(verdict: .incomplete)
    }
}

// MARK: - The reader's side

/// What the new reader made of the first request.
private struct ReaderOutcome {
    var verdict: HeadVerdict
    var head: RequestHead?
    var error: HTTP1ReadError?
    var framing: BodyFraming?
    var body = BodyOutcome.open([])
    var bodyError: HTTP1ReadError?

    /// Everything about it, to compare two runs.
    var summary: String {
        if let head, let framing { return "accept " + describeHTTP1(head, framing) + " \(body)" }
        if let error { return "error \(error)" }
        return verdict.description
    }
}

private func status(_ error: HTTP1ReadError) -> Int {
    switch error {
    case .uriTooLong: return 414
    case .headersTooLarge: return 431
    case .badRequest: return 400
    case .notImplemented: return 501
    case .badResponse: return 502
    }
}

/// The reader's verdict on the first request in `bytes`, delivered in pieces cut at `cuts`.
private func readerJudge(_ bytes: [UInt8], cuts: [Int] = [], limits: HTTP1Limits = HTTP1Limits()) -> ReaderOutcome {
    var reader = HTTP1RequestReader(limits: limits)
    var buffer = ByteBuffer()
    var start = 0
    var outcome = ReaderOutcome(verdict: .incomplete)
    for end in cuts.sorted() + [bytes.count] where end >= start && end <= bytes.count {
        buffer.writeBytes(bytes[start..<end])
        start = end
        do {
            while case .open(let so) = outcome.body, let event = try reader.read(&buffer) {
                switch event {
                case .head(let head, let framing):
                    outcome.verdict = .accept
                    outcome.head = head
                    outcome.framing = framing
                case .body(let part): outcome.body = .open(so + Array(part.readableBytesView))
                case .end: outcome.body = .complete(so)
                }
            }
        } catch {
            if outcome.head == nil { return ReaderOutcome(verdict: .status(status(error)), error: error) }
            if case .open(let so) = outcome.body { outcome.body = .failed(so) }
            outcome.bodyError = error
        }
        if case .failed = outcome.body { break }
    }
    return outcome
}

/// What the gateway does next with an accepted head, the same for both: a target that does
/// not normalize is answered 400 (CONNECT is answered 405 before that, so it stays accepted).
private func gated(_ verdict: HeadVerdict, method: String?, target: String?) -> HeadVerdict {
    guard verdict == .accept, let method, let target, method != "CONNECT" else { return verdict }
    if case .failure = RequestPath.normalize(target) { return .status(400) }
    return verdict
}

private func methodName(_ m: HTTPMethod) -> String { m == .MSEARCH ? "M-SEARCH" : m.rawValue }

private func gated(_ r: ReaderOutcome) -> HeadVerdict { gated(r.verdict, method: r.head.map { methodName($0.method) }, target: r.head?.target) }
private func gated(_ o: OracleOutcome) -> HeadVerdict { gated(o.verdict, method: o.head.map { methodName($0.method) }, target: o.head?.uri) }

/// Whether both decoded the same head (NIO keeps a value's trailing whitespace; the reader
/// does not).
private func sameHead(_ a: HTTPRequestHead, _ b: RequestHead) -> Bool {
    guard methodName(a.method) == methodName(b.method), a.uri == b.target, a.version == b.version,
        a.headers.count == b.fields.count
    else { return false }
    for ((name, value), f) in zip(a.headers, b.fields.fields) {
        var v = Substring(value)
        while let l = v.last, l == " " || l == "\t" { v = v.dropLast() }
        if name != b.fields.name(f) || String(v) != b.fields.value(f) { return false }
    }
    return true
}

// MARK: - Intended differences

/// Where the reader's verdict differs from the former decoder's on purpose. Each refuses
/// what the old side accepted or answered with another refusal; none accepts what it refused
/// except `extensionMethod`.
private enum VerdictException: String, CaseIterable {
    /// llhttp accepts only the methods it knows (and refuses `get`, `FOO`, RTSP's `PLAY`);
    /// the reader accepts any token (RFC 9110 section 9.1). Checked: with the method replaced
    /// by GET the former decoder gives the reader's verdict.
    case extensionMethod
    /// llhttp accepts several spaces between the request line's parts; the reader requires
    /// exactly one SP (RFC 9112 section 3). Checked: with single spaces the reader agrees.
    case multipleSpaces
    /// llhttp reads `RTSP/1.x` as if it were `HTTP/1.x`; the reader refuses it.
    case rtspVersion
    /// llhttp accepts a Content-Length up to 2^64 - 1; the reader refuses anything above
    /// 2^62, which no real body reaches.
    case contentLengthAboveCap
    /// The same for a chunk size (llhttp: up to 2^64 - 1; the reader: 2^62).
    case chunkSizeAboveCap
    /// A target longer than maxURIBytes is answered 414 at once, where the former side read
    /// on and could find another refusal first.
    case uriTooLongFirst
    /// The reader checks a line (of the head, or a chunk-size line) once it is complete, or
    /// once its bound is reached; llhttp refused at the offending byte. Checked: once the line
    /// ends, the reader refuses too.
    case checkedAtLineEnd
    /// The reader refuses at the end of a line where llhttp waited for the end of the head
    /// (an HTTP/0.9-style request line, the HTTP/2 preface). Checked: with the head
    /// complete, the former decoder refuses the same way.
    case refusedEarlier
    /// `Transfer-Encoding: chunked` followed by a tab: llhttp, which allows only spaces there,
    /// does not see chunked, so after accepting the head (HeaderRules trims the value) it
    /// failed the body (or, with Upgrade, ended the request at its head). The reader trims
    /// the value and reads the body as chunked.
    case chunkedWithTrailingTab
}

/// Which intended difference explains different bodies after the same accepted head.
private func explainBody(_ bytes: [UInt8], reader: ReaderOutcome, oracle: OracleOutcome, limits: HTTP1Limits) -> VerdictException? {
    if case .open = oracle.body, reader.bodyError == .badRequest("chunk size too large") { return .chunkSizeAboveCap }
    if case .failed(let so) = oracle.body, case .open(let sr) = reader.body, so == sr,
        case .failed = readerJudge(bytes + Array("\r\n\r\n".utf8), limits: limits).body {
        return .checkedAtLineEnd
    }
    // (With Upgrade, llhttp ends such a request at its head instead of failing it.)
    if oracle.body == .failed([]) || oracle.body == .complete([]), reader.framing == .chunked, let te = oracle.head?.headers["transfer-encoding"].first,
        te.lowercased().hasPrefix("chunked"), te.dropFirst(7).contains("\t"), te.dropFirst(7).allSatisfy({ $0 == " " || $0 == "\t" }) {
        return .chunkedWithTrailingTab
    }
    return nil
}

private let llhttpMethods: Set<String> = [
    "DELETE", "GET", "HEAD", "POST", "PUT", "CONNECT", "OPTIONS", "TRACE", "COPY", "LOCK", "MKCOL", "MOVE", "PROPFIND",
    "PROPPATCH", "SEARCH", "UNLOCK", "BIND", "REBIND", "UNBIND", "ACL", "REPORT", "MKACTIVITY", "CHECKOUT", "MERGE",
    "M-SEARCH", "NOTIFY", "SUBSCRIBE", "UNSUBSCRIBE", "PATCH", "PURGE", "MKCALENDAR", "LINK", "UNLINK", "SOURCE", "QUERY",
]

/// The request line's range in `bytes`, after any empty lines.
private func requestLineRange(_ bytes: [UInt8]) -> Range<Int> {
    var start = 0
    while start < bytes.count && (bytes[start] == 0x0D || bytes[start] == 0x0A) { start += 1 }
    let end = bytes[start...].firstIndex(of: 0x0A) ?? bytes.count
    return start..<end
}

/// Which intended difference explains the two verdicts, if any.
private func explain(_ bytes: [UInt8], reader: ReaderOutcome, oracle: OracleOutcome, oracleRun: (([UInt8]) -> OracleOutcome), limits: HTTP1Limits, depth: Int = 0) -> VerdictException? {
    let r = gated(reader), o = gated(oracle)
    let line = requestLineRange(bytes)
    let lineBytes = Array(bytes[line])
    if depth > 2 { return nil }
    if o == .incomplete, case .status = r {
        // The reader refused at a complete line where the former decoder waited for the
        // rest of the head: it must refuse the same way once the head is complete.
        if gated(oracleRun(bytes + Array("\r\n\r\n".utf8))) == r { return .refusedEarlier }
    }
    if r == .incomplete, case .status = o {
        // Complete the line and the head: the reader must refuse the same way (or for an
        // intended reason).
        let more = bytes + Array("\r\n\r\n".utf8)
        let next = readerJudge(more, limits: limits)
        if gated(next) == o { return .checkedAtLineEnd }
        if explain(more, reader: next, oracle: oracle, oracleRun: oracleRun, limits: limits, depth: depth + 1) != nil { return .checkedAtLineEnd }
        return nil
    }
    if o == .status(400), let sp = lineBytes.firstIndex(of: 0x20), sp > 0,
        lineBytes[..<sp].allSatisfy(HTTP1Bytes.isToken), !llhttpMethods.contains(String(decoding: lineBytes[..<sp], as: UTF8.self)) {
        let swapped = Array(bytes[..<line.lowerBound]) + Array("GET".utf8) + Array(bytes[(line.lowerBound + sp)...])
        if gated(oracleRun(swapped)) == r { return .extensionMethod }
    }
    if case .status(400) = r, lineBytes.count > 1, zip(lineBytes, lineBytes.dropFirst()).contains(where: { $0 == 0x20 && $1 == 0x20 }) {
        var single: [UInt8] = []
        for b in lineBytes where !(b == 0x20 && single.last == 0x20) { single.append(b) }
        let fixed = Array(bytes[..<line.lowerBound]) + single + Array(bytes[line.upperBound...])
        let again = readerJudge(fixed, limits: limits)
        if gated(again) == o { return .multipleSpaces }
        if explain(fixed, reader: again, oracle: oracle, oracleRun: oracleRun, limits: limits, depth: depth + 1) != nil { return .multipleSpaces }
    }
    if case .status(400) = r, String(decoding: lineBytes, as: UTF8.self).contains(" RTSP/1.") { return .rtspVersion }
    if reader.error == .badRequest("invalid Content-Length"), let h = oracle.head,
        h.headers["content-length"].contains(where: { UInt64($0.trimmingWhitespace()).map { $0 > 1 << 62 } ?? false }) {
        return .contentLengthAboveCap
    }
    if reader.error == .uriTooLong, case .status = o { return .uriTooLongFirst }
    return nil
}

// MARK: - Inputs

/// Hand-written heads, valid and hostile.
private let verdictCorpus: [String] = [
    // Valid
    "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /index.html?x=1&y=2 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n",
    "POST /api HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
    "POST /api HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "GET / HTTP/1.0\r\n\r\n",
    "GET http://example.com/x?q HTTP/1.1\r\nHost: example.com\r\n\r\n",
    "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nCookie: a=b; c=d\r\nX-Empty:\r\nX-Spaces:   v   \r\n\r\n",
    "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "DELETE /items/1 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer abc.def\r\n\r\n",
    "PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
    "GET /%2e%2e/etc/passwd HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /a/../b/./c//d HTTP/1.1\r\nHost: a\r\n\r\n",
    "HEAD / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    "PATCH / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4, 5.6.7.8\r\nX-Real-IP: 9.9.9.9\r\n\r\n",
    "GET / HTTP/1.1\r\nhost: A.Example.COM:8080\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\n\r\n0\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\t\r\n\r\n0\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nX: caf\u{E9}\r\n\r\n",
    "M-SEARCH * HTTP/1.1\r\nHost: a\r\n\r\n",
    "PROPFIND /dav HTTP/1.1\r\nHost: a\r\nDepth: 1\r\n\r\n",
    "GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET http://user@a.example:8080/p HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 \r\n\r\nhello",
    "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 5\r\n\r\nhello",
    "POST /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "POST /ws HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nContent-Length: 5\r\n\r\nhello",
    // Hostile and malformed
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity, chunked\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;foo=bar\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nX: a\u{0}b\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello",
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\t5\t\r\n\r\nhello",
    "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
    "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n",
    "GET http://evil.example/ HTTP/1.1\r\nHost: good.example\r\n\r\n",
    "GET http://a#b/ HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET / HTTP/1.2\r\nHost: a\r\n\r\n",
    "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
    "GET / http/1.1\r\nHost: a\r\n\r\n",
    "GET / RTSP/1.0\r\nHost: a\r\n\r\n",
    "GET\t/\tHTTP/1.1\r\nHost: a\r\n\r\n",
    "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /  HTTP/1.1\r\nHost: a\r\n\r\n",
    "get / HTTP/1.1\r\nHost: a\r\n\r\n",
    "FOO / HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nX-\u{7F}: v\r\n\r\n",
    "GET /\u{0} HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /\u{80} HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET / HTTP/1.1\r\n\u{0}Host: a\r\n\r\n",
    "GET / HTTP/1.1\r\n Host: a\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\n: empty\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\n\r",
    "GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\n\n",
    "GET / HTTP/1.1\r\r\nHost: a\r\n\r\n",
    " GET / HTTP/1.1\r\nHost: a\r\n\r\n",
]

/// Heads at and around the size bounds (with the default limits).
private func bigHeads() -> [String] {
    let target8192 = "/" + String(repeating: "a", count: 8191)
    return [
        "GET \(target8192) HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET \(target8192)b HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET \(target8192)\(String(repeating: "b", count: 100)) HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: \(String(repeating: "v", count: 32 * 1024 - 10))\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: \(String(repeating: "v", count: 32 * 1024))\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n" + String(repeating: "a:b\r\n", count: 9000) + "\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n" + String(repeating: "Cookie: 0123456789abcdef\r\n", count: 1400) + "\r\n",
        // Oversized and malformed at once.
        "GET \(target8192)b HTTP/1.1\r\nHost: a\r\nX: a\u{0}b\r\n\r\n",
        "GET \(target8192)b HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET \(target8192)\u{1}\(String(repeating: "b", count: 100)) HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: \(String(repeating: "v", count: 33 * 1024))\u{0}\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: \u{0}\(String(repeating: "v", count: 33 * 1024))\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: \(String(repeating: "v", count: 50 * 1024))",
        "GET / HTTP/1.1\r\nHost: a\r\n\(String(repeating: "N", count: 50 * 1024))",
        "GET /\(String(repeating: "p", count: 9000))",
        String(repeating: "\r\n", count: 25 * 1024) + "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n" + String(repeating: "a:b\r\n", count: 9000) + "\r\n",
    ] + [41983, 41984, 41985, 41986, 41987].map { total in
        // Heads of exactly `total` bytes, within the field budget: the bound on the whole head
        // (maxURIBytes + maxHeaderBytes + 1024) decides.
        let start = "GET / HTTP/1.1\r\nHost: a\r\n" + String(repeating: "a:b\r\n", count: 8000)
        let pad = total - start.utf8.count - 2 - 4
        return start + "x:" + String(repeating: "v", count: pad) + "\r\n\r\n"
    }
}

private let interestingBytes: [UInt8] = [0x00, 0x09, 0x0A, 0x0D, 0x20, 0x2C, 0x3A, 0x3B, 0x22, 0x7F, 0x80, 0xFF, 0x41, 0x61, 0x30, 0x39,
                                 0x2F, 0x3F, 0x23, 0x25, 0x2B, 0x2D, 0x40, 0x0B, 0x0C, 0x5F]
private let interestingValues: [String] = ["chunked", "chunked, chunked", "gzip, chunked", "chunked ,", " 5", "0x5", "-0", "", "\t",
                                   "5,5", "0", "00000000000000000000005", "identity", "Chunked\t", "a b", "\u{C2}\u{A0}chunked"]

/// Lines of a head, CRLF included, up to the empty line.
private func headLines(_ bytes: [UInt8]) -> [Range<Int>] {
    var lines: [Range<Int>] = []
    var start = 0
    while start < bytes.count, let lf = bytes[start...].firstIndex(of: 0x0A) {
        lines.append(start..<(lf + 1))
        if lf == start + 1 { break }
        start = lf + 1
    }
    return lines
}

private func mutate(_ input: [UInt8], corpus: [[UInt8]], rng: inout SeededGenerator) -> [UInt8] {
    var b = input
    for _ in 0..<([1, 1, 2, 3].randomElement(using: &rng) ?? 1) {
        let lines = headLines(b)
        switch Int.random(in: 0..<8, using: &rng) {
        case 0 where !b.isEmpty:
            let byte = Bool.random(using: &rng) ? interestingBytes.randomElement(using: &rng) ?? 0 : UInt8.random(in: 0...255, using: &rng)
            b[Int.random(in: 0..<b.count, using: &rng)] = byte
        case 1:
            b.insert(interestingBytes.randomElement(using: &rng) ?? 0, at: Int.random(in: 0...b.count, using: &rng))
        case 2 where !b.isEmpty:
            b.remove(at: Int.random(in: 0..<b.count, using: &rng))
        case 3 where lines.count > 1:
            let other = corpus.randomElement(using: &rng) ?? []
            let otherLines = headLines(other).dropFirst().dropLast()
            if let l = otherLines.randomElement(using: &rng) {
                let at = lines[Int.random(in: 1..<lines.count, using: &rng)].lowerBound
                b.insert(contentsOf: other[l], at: at)
            }
        case 4 where lines.count > 2:
            b.removeSubrange(lines[Int.random(in: 1..<(lines.count - 1), using: &rng)])
        case 5 where lines.count > 2:
            let l = lines[Int.random(in: 1..<(lines.count - 1), using: &rng)]
            b.insert(contentsOf: Array(b[l]), at: l.lowerBound)
        case 6 where lines.count > 2:
            let l = lines[Int.random(in: 1..<(lines.count - 1), using: &rng)]
            if let colon = b[l].firstIndex(of: 0x3A), colon + 1 <= l.upperBound - 2 {
                let value = Array((" " + (interestingValues.randomElement(using: &rng) ?? "")).utf8)
                b.replaceSubrange((colon + 1)..<(l.upperBound - 2), with: value)
            }
        default:
            if !b.isEmpty {
                let i = Int.random(in: 0..<b.count, using: &rng)
                if (0x41...0x5A).contains(b[i]) || (0x61...0x7A).contains(b[i]) { b[i] ^= 0x20 }
            }
        }
    }
    return b
}

// MARK: - The property

@Suite struct HTTP1ReaderVerdictTests {
    fileprivate final class Tally {
        var exceptions: [VerdictException: Int] = [:]
        var verdicts: [String: Int] = [:]
        var failures: [String] = []
    }

    /// Compares one input's verdicts, recording any difference no exception explains.
    fileprivate func check(_ bytes: [UInt8], _ tally: Tally, oracle: Oracle, cuts: [[Int]]) {
        let o = oracle.judge(bytes)
        let r = readerJudge(bytes, limits: oracle.limits)
        let ov = gated(o), rv = gated(r)
        tally.verdicts["\(ov)", default: 0] += 1
        func fail(_ why: String) {
            if tally.failures.count < 30 {
                let text = String(decoding: bytes.prefix(300), as: UTF8.self)
                tally.failures.append("\(why): \(text.debugDescription) oracle=\(ov) \(o.head.map { "\($0.method) \($0.uri)" } ?? "") \(o.body) reader=\(r.summary.prefix(300))")
            }
        }
        if ov == rv {
            if let a = o.head, let b = r.head, ov == .accept, !sameHead(a, b) { fail("different heads") }
            if ov == .accept && o.body != r.body {
                if let e = explainBody(bytes, reader: r, oracle: o, limits: oracle.limits) {
                    tally.exceptions[e, default: 0] += 1
                } else {
                    fail("different bodies")
                }
            }
        } else if let e = explain(bytes, reader: r, oracle: o, oracleRun: { oracle.judge($0) }, limits: oracle.limits) {
            tally.exceptions[e, default: 0] += 1
        } else {
            fail("different verdicts")
        }
        // However the bytes arrive, the reader says the same.
        for c in cuts {
            let again = readerJudge(bytes, cuts: c, limits: oracle.limits)
            if again.summary != r.summary {
                fail("split at \(c) gives \(again.summary.prefix(200))")
                break
            }
        }
    }

    fileprivate func report(_ name: String, _ tally: Tally, count: Int) {
        let ex = VerdictException.allCases.map { "\($0.rawValue)=\(tally.exceptions[$0] ?? 0)" }.joined(separator: " ")
        let vs = tally.verdicts.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        print("\(name): \(count) inputs; verdicts \(vs); exceptions \(ex)")
        for f in tally.failures { Issue.record(Comment(rawValue: f)) }
    }

    @Test func corpusMatchesTheFormerDecoder() {
        let tally = Tally()
        let oracle = Oracle()
        for text in verdictCorpus {
            let bytes = Array(text.utf8)
            check(bytes, tally, oracle: oracle, cuts: (1..<bytes.count).map { [$0] } + [Array(1..<bytes.count)])
        }
        report("corpus", tally, count: verdictCorpus.count)
    }

    @Test func bigHeadsMatchTheFormerDecoder() {
        let tally = Tally()
        let oracle = Oracle()
        var rng = SeededGenerator(seed: 7)
        let heads = bigHeads()
        for text in heads {
            let bytes = Array(text.utf8)
            let cuts = (0..<8).map { _ in (0..<Int.random(in: 1...40, using: &rng)).map { _ in Int.random(in: 0...bytes.count, using: &rng) } }
            check(bytes, tally, oracle: oracle, cuts: cuts)
        }
        report("big heads", tally, count: heads.count)
    }

    @Test func mutatedHeadsMatchTheFormerDecoder() {
        let tally = Tally()
        let oracle = Oracle()
        // HTTP1_VERDICT_SEED and HTTP1_VERDICT_COUNT explore further than the fixed run.
        let environment = ProcessInfo.processInfo.environment
        let seed = environment["HTTP1_VERDICT_SEED"].flatMap { UInt64($0) } ?? 0x5EED
        let total = environment["HTTP1_VERDICT_COUNT"].flatMap { Int($0) } ?? 20_000
        let budget: Duration = environment["HTTP1_VERDICT_COUNT"] == nil ? .seconds(120) : .seconds(3600)
        var rng = SeededGenerator(seed: seed)
        let corpus = verdictCorpus.map { Array($0.utf8) }
        let started = ContinuousClock.now
        var count = 0
        while count < total && ContinuousClock.now - started < budget {
            let bytes = mutate(corpus.randomElement(using: &rng) ?? [], corpus: corpus, rng: &rng)
            let cuts = (0..<2).map { _ in (0..<Int.random(in: 1...3, using: &rng)).map { _ in Int.random(in: 0...bytes.count, using: &rng) } }
            check(bytes, tally, oracle: oracle, cuts: cuts)
            count += 1
        }
        report("mutations", tally, count: count)
        #expect(count >= 1000)
    }

    /// Chunked bodies, hand-written and mutated, end (or fail) where the former decoder's did.
    @Test func chunkedBodiesMatchTheFormerDecoder() {
        let oracle = Oracle()
        let head = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        var bodies: [String] = []
        for ext in ["5;a", "5;", "5 ;a", "5; a", "5;a=b", "5;a=\"b c\"", "5;a=", "5;a=b c", "5;a;b", "5;a = b", "5\t;a", "5 ",
                    "5;a=\"b\\\"c\"", "5;a=\"b\u{1}\"", "5;a=b;c=\"d\"", "5;a=\"b\"c", "5;a=\"b\" ", "5;a ", "5;a=b ", "5;a\t",
                    "5;a=\"\"", "5;=b", "5;a@b", "5;a=b@c", "5;a=\"\u{E9}\"", "5;a=\u{E9}", "05", "0000000000000000000005", "5;a;",
                    "5;;a", "5 ;", "5  ;a", "5;a==b", "5;a=b=c", "5;a=\"b", "5\r", "x5", "-5", "+5", "0x5", "5\u{0}"] {
            bodies.append(ext + "\r\nhello\r\n0\r\n\r\n")
        }
        for trailer in ["X: 1\r\n", "X : 1\r\n", " X: 1\r\n", "X: 1\r\n 2\r\n", "X:\r\n", "Content-Length: 5\r\n",
                        "Transfer-Encoding: chunked\r\n", "X: a\u{0}\r\n", "X\r\n", "Host: b\r\nHost: c\r\n", "X: 1\n"] {
            bodies.append("0\r\n" + trailer + "\r\n")
        }
        bodies += ["5\r\nhello\n0\r\n\r\n", "5\r\nhelloXY0\r\n\r\n", "5\r\nhello\r\n0\r\n\n", "5\r\nhello\r\n0\n\r\n",
                   "5\r\nhello\r\n0\r\nX: 1\n\r\n", "3\r\nabc\r\n2\r\nde\r\nA\r\n0123456789\r\n0\r\n\r\n", "5\r\nhel"]
        let tally = Tally()
        func compare(_ body: [UInt8]) {
            let bytes = Array(head.utf8) + body
            let o = oracle.judge(bytes)
            let r = readerJudge(bytes)
            tally.verdicts["\(o.body)".hasPrefix("complete") ? "complete" : "\(o.body)".hasPrefix("failed") ? "failed" : "open", default: 0] += 1
            if o.body == r.body { return }
            if let e = explainBody(bytes, reader: r, oracle: o, limits: oracle.limits) {
                tally.exceptions[e, default: 0] += 1
            } else if tally.failures.count < 30 {
                tally.failures.append("\(String(decoding: body, as: UTF8.self).debugDescription): oracle \(o.body) reader \(r.body)")
            }
        }
        for body in bodies { compare(Array(body.utf8)) }
        let environment = ProcessInfo.processInfo.environment
        var rng = SeededGenerator(seed: environment["HTTP1_VERDICT_SEED"].flatMap { UInt64($0) } ?? 0xC4A7)
        let total = environment["HTTP1_VERDICT_COUNT"].flatMap { Int($0) } ?? 20_000
        let seeds = bodies.map { Array($0.utf8) }
        for _ in 0..<total {
            var b = seeds.randomElement(using: &rng) ?? []
            for _ in 0..<([1, 1, 2].randomElement(using: &rng) ?? 1) {
                switch Int.random(in: 0..<3, using: &rng) {
                case 0 where !b.isEmpty: b[Int.random(in: 0..<b.count, using: &rng)] = interestingBytes.randomElement(using: &rng) ?? 0
                case 1: b.insert(interestingBytes.randomElement(using: &rng) ?? 0, at: Int.random(in: 0...b.count, using: &rng))
                default: if !b.isEmpty { b.remove(at: Int.random(in: 0..<b.count, using: &rng)) }
                }
            }
            compare(b)
        }
        report("chunked bodies", tally, count: bodies.count + total)
    }
}
