import NIOCore

/// Moves bytes between a client and an upstream after a protocol upgrade (WebSocket).
/// Each side reads only while the other can write, so a slow reader slows the sender
/// instead of filling memory. Closing either side closes both, and so does a tunnel with no
/// traffic either way for its idle timeout (the route's read timeout, as APISIX applies
/// `proxy_read_timeout` to WebSockets).
final class TunnelHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    var partner: TunnelHandler?
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    private let idleTimeout: TimeAmount
    /// Shared by both sides: traffic either way keeps the tunnel open.
    private let activity: TunnelActivity
    private var timer: Scheduled<Void>?
    /// Bytes to write once the handler is in its pipeline.
    private var early: [ByteBuffer] = []

    private init(idleTimeout: TimeAmount, activity: TunnelActivity) {
        self.idleTimeout = idleTimeout
        self.activity = activity
    }

    static func pair(idleTimeout: TimeAmount = .seconds(60)) -> (TunnelHandler, TunnelHandler) {
        let activity = TunnelActivity()
        let a = TunnelHandler(idleTimeout: idleTimeout, activity: activity)
        let b = TunnelHandler(idleTimeout: idleTimeout, activity: activity)
        a.partner = b
        b.partner = a
        return (a, b)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        for b in early { context.write(wrapOutboundOut(b), promise: nil) }
        if !early.isEmpty { context.flush() }
        early = []
        armTimer(context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        self.context = nil
        partner = nil
    }

    /// Writes bytes that arrived before the tunnel existed to this side's peer.
    func forward(_ bytes: ByteBuffer) {
        if let context {
            context.writeAndFlush(wrapOutboundOut(bytes), promise: nil)
        } else {
            early.append(bytes)
        }
    }

    private func armTimer(_ context: ChannelHandlerContext) {
        guard idleTimeout > .zero else { return }
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: activity.last + idleTimeout) { [self] in
            self.timer = nil
            guard let context = self.context else { return }
            if NIODeadline.now() - self.activity.last >= self.idleTimeout {
                context.close(promise: nil)
            } else {
                self.armTimer(context)
            }
        }
    }

    private var isWritable: Bool { context?.channel.isWritable ?? false }

    private func partnerWrite(_ data: NIOAny) { context?.write(data, promise: nil) }
    private func partnerFlush() { context?.flush() }

    private func partnerClose() {
        partner = nil
        context?.close(promise: nil)
    }

    private func partnerBecameWritable() {
        if pendingRead {
            pendingRead = false
            context?.read()
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        activity.last = .now()
        partner?.partnerWrite(data)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        partner?.partnerFlush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        let p = partner
        partner = nil
        p?.partnerClose()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // Tunnels outlive a graceful shutdown's quiesce request; they are closed at its deadline.
        if event is ChannelShouldQuiesceEvent { return }
        context.fireUserInboundEventTriggered(event)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { partner?.partnerBecameWritable() }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if let partner, partner.isWritable {
            context.read()
        } else {
            pendingRead = true
        }
    }
}

/// When a tunnel last carried a byte, either way. Both sides are on the same event loop.
final class TunnelActivity {
    var last = NIODeadline.now()
}
