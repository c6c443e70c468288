import NIOCore

/// Bounds the bytes a client may send before its request head is complete, so neither a huge
/// request line nor endless headers are buffered. It sits in front of the HTTP decoder and
/// only counts while a head is awaited.
final class HeadSizeGuard: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    enum Violation: Error {
        case uriTooLong
        case headersTooLarge
    }

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

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if counting {
            let buffer = unwrapInboundIn(data)
            if !requestLineDone {
                if let nl = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) {
                    requestLineDone = true
                    if seen + (nl - buffer.readerIndex) > maxRequestLine {
                        context.fireErrorCaught(Violation.uriTooLong)
                        return
                    }
                } else if seen + buffer.readableBytes > maxRequestLine {
                    context.fireErrorCaught(Violation.uriTooLong)
                    return
                }
            }
            seen += buffer.readableBytes
            if seen > maxHead {
                context.fireErrorCaught(Violation.headersTooLarge)
                return
            }
        }
        context.fireChannelRead(data)
    }
}
