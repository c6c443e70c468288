import NIOCore
import NIOHTTP1

/// Bounds the bytes a client may send before its request head is complete, so neither a huge
/// request line nor endless headers are buffered. It sits in front of the HTTP decoder and
/// only counts while a head is awaited.
final class HeadSizeGuard: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    enum Violation {
        case uriTooLong
        case headersTooLarge
    }

    /// What was exceeded. The error fired is an `HTTPParserError`, which NIO's pipelining
    /// handler treats as a complete request that may be answered; this says which answer.
    private(set) var violation: Violation?

    private let maxRequestLine: Int
    private let maxHead: Int
    private var counting = true
    private var seen = 0
    private var requestLineDone = false

    init(maxURIBytes: Int, maxHeaderBytes: Int) {
        // Method, spaces and version around the URI, and CRLFs around the headers.
        maxRequestLine = maxURIBytes + 32
        maxHead = maxURIBytes + maxHeaderBytes + 1024
    }

    /// The head arrived: stop counting until the exchange is over.
    func headReceived() { counting = false }

    /// The exchange is over: the next bytes belong to a new head.
    func expectHead() {
        counting = true
        seen = 0
        requestLineDone = false
    }

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
        // Forward first: when these bytes complete a head, the proxy stops the count, and the
        // body bytes after the head in the same read must not be counted as head bytes.
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
