import NIOCore
import NIOHTTP1

/// The exchange an upstream connection reports to: the seam between an attempt and what
/// carries it (this HTTP/1.1 connection now; a TLS or HTTP/2 one later).
protocol UpstreamConnectionOwner: AnyObject {
    func upstreamPart(_ part: MessagePart<ResponseHead>)
    func upstreamReadComplete()
    func upstreamWritabilityChanged(_ writable: Bool)
    func upstreamClosed()
    /// Whether the client side can take more (the upstream is read only then).
    var downstreamWritable: Bool { get }
}

/// One HTTP/1.1 connection to an upstream node, the only handler of its channel: it writes
/// request heads and bodies as bytes and reads responses with `HTTP1ResponseReader`. It is
/// owned by at most one exchange at a time and otherwise idle in its loop's pool.
final class HTTP1UpstreamConnection: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let key: UpstreamKey
    private(set) var context: ChannelHandlerContext?
    var owner: UpstreamConnectionOwner?
    weak var pool: ConnectionPool?
    var requestsServed = 0
    var idleSince = NIODeadline.now()
    var idleTimeout = TimeAmount.seconds(60)
    private var reader: HTTP1ResponseReader
    private var inbound: ByteBuffer?
    private var requestMethod = HTTPMethod.GET
    private var requestFraming = BodyFraming.none
    private var readPending = false
    private var headBuffer = ByteBuffer()
    private var delivering = false
    /// After a 101 the bytes that follow belong to the tunnel: reading stops there.
    private var stopped = false
    private var switching = false
    private(set) var isClosed = false

    init(key: UpstreamKey, maxHeaderBytes: Int = 64 * 1024) {
        self.key = key
        reader = HTTP1ResponseReader(maxHeaderBytes: maxHeaderBytes)
    }

    var channel: Channel? { context?.channel }
    var isWritable: Bool { context?.channel.isWritable ?? false }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    // MARK: Writing a request

    func sendHead(_ head: UpstreamRequestHead, framing: BodyFraming) {
        guard let context else { return }
        requestMethod = head.method
        requestFraming = framing
        requestsServed += 1
        // Reused: once the previous head is on the wire this connection holds the only
        // reference, and clearing it keeps its memory.
        headBuffer.clear()
        HTTP1Writer.writeRequestHead(head, framing: framing, into: &headBuffer)
        context.write(wrapOutboundOut(headBuffer), promise: nil)
    }

    func sendBody(_ body: ByteBuffer) {
        guard let context, body.readableBytes > 0 else { return }
        if requestFraming == .chunked {
            HTTP1Writer.chunk(body, allocator: context.channel.allocator) { context.write(wrapOutboundOut($0), promise: nil) }
        } else {
            context.write(wrapOutboundOut(body), promise: nil)
        }
    }

    func sendEnd() {
        guard let context else { return }
        if requestFraming == .chunked {
            var last = context.channel.allocator.buffer(capacity: 5)
            HTTP1Writer.writeLastChunk(trailers: nil, into: &last)
            context.write(wrapOutboundOut(last), promise: nil)
        }
    }

    func flush() { context?.flush() }

    func close() {
        guard !isClosed else { return }
        owner = nil
        context?.close(promise: nil)
    }

    /// Bytes read past the 101 response, which belong to the tunnel.
    func takeTunnelBytes() -> ByteBuffer? {
        defer { inbound = nil }
        guard let b = inbound, b.readableBytes > 0 else { return nil }
        return b
    }

    // MARK: Reading a response

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        guard owner != nil else {
            // An idle connection must not send anything: it is no longer usable.
            context.close(promise: nil)
            return
        }
        if inbound == nil || inbound!.readableBytes == 0 {
            inbound = buffer
        } else {
            var b = buffer
            inbound!.writeBuffer(&b)
        }
        deliver(context)
    }

    private func deliver(_ context: ChannelHandlerContext) {
        guard !delivering, !stopped else { return }
        delivering = true
        defer { delivering = false }
        // The reader is called until it has nothing more, even with no bytes left: a
        // response's end may follow its last byte without further input.
        while let owner, !stopped {
            var buffer = inbound ?? ByteBuffer()
            inbound = nil  // the buffer is uniquely held while the reader moves its index
            let event: HTTP1ResponseReader.Event?
            do {
                event = try reader.read(&buffer, requestMethod: requestMethod)
            } catch {
                self.owner = nil
                owner.upstreamClosed()
                context.close(promise: nil)
                return
            }
            inbound = buffer.readableBytes > 0 ? buffer : nil
            guard let event else { break }
            switch event {
            case .head(let head, _):
                switching = head.status == 101
                owner.upstreamPart(.head(head))
            case .body(let b): owner.upstreamPart(.body(b))
            case .end(let t):
                if switching { stopped = true }  // what follows belongs to the tunnel
                owner.upstreamPart(.end(t))
            }
        }
        if self.owner == nil, !stopped, let b = inbound, b.readableBytes > 0 {
            // Bytes after the response on a connection no exchange owns: not reusable.
            inbound = nil
            close()
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        owner?.upstreamReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        isClosed = true
        pool?.remove(self)
        guard let owner else { return }
        // A body that ends at the close is complete now.
        if let event = try? reader.connectionClosed(), case .end(let t) = event {
            owner.upstreamPart(.end(t))
            if self.owner == nil { return }
        }
        self.owner = nil
        owner.upstreamClosed()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        let owner = self.owner
        self.owner = nil
        owner?.upstreamClosed()
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        owner?.upstreamWritabilityChanged(context.channel.isWritable)
    }

    /// Back-pressure: read from the upstream only while the client can take more.
    func read(context: ChannelHandlerContext) {
        if let owner, !owner.downstreamWritable {
            readPending = true
        } else {
            context.read()
        }
    }

    func resumeReading() {
        if readPending, let context {
            readPending = false
            context.read()
        }
    }
}
