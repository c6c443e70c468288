import NIOCore
import NIOHTTP1

/// Sets up a client connection's pipeline:
/// size guard → HTTP/1.1 decoder/encoder → `HTTPProxyHandler`.
///
/// NIO's `HTTPServerPipelineHandler` is not used: it stops reading from the socket while
/// each response is in flight, which costs two `epoll_ctl` calls per request. The proxy
/// handler queues pipelined requests itself and stops reading only when that queue is long.
public enum ProxyPipeline {
    public static func configure(_ channel: Channel, loop: LoopContext) throws {
        let settings = loop.settings
        let sync = channel.pipeline.syncOperations
        let headGuard = HeadSizeGuard(maxURIBytes: settings.maxURIBytes, maxHeaderBytes: settings.maxHeaderBytes)
        try sync.addHandler(headGuard)
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderListSize = settings.maxHeaderBytes
        limits.maxHeaderFieldSize = settings.maxHeaderBytes
        try sync.configureHTTPServerPipeline(
            withPipeliningAssistance: false, withServerUpgrade: nil, withErrorHandling: false,
            withOutboundHeaderValidation: true, withEncoderConfiguration: .init(),
            withDecoderLimitConfiguration: limits)
        // Outbound header validation stays on: no response head this gateway writes may carry
        // CR, LF or NUL in a name or value, whatever a plugin or an upstream put there.
        try sync.addHandler(HTTPProxyHandler(loop: loop, headGuard: headGuard))
        loop.track(channel)
    }
}
