import NIOCore
import WebSockets

/// The handler after the TLS handler: checks the plaintext it passes up against
/// `Pattern.toHandler` and records the events around it.
final class Recorder: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    /// Plaintext bytes received so far.
    private(set) var received = 0
    private(set) var isHandshakeDone = false
    private(set) var isInactive = false
    private(set) var errors: [any Error] = []

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        require(isHandshakeDone, "plaintext before the handshake completed")
        require(!isInactive, "plaintext after channelInactive")
        require(buffer.readableBytes > 0, "an empty plaintext read")
        let matches = buffer.withUnsafeReadableBytes { Pattern.toHandler.matches($0, at: received) }
        require(matches, "plaintext the peer never wrote at \(received)")
        received += buffer.readableBytes
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is TLSHandshakeCompleted {
            require(!isHandshakeDone, "TLSHandshakeCompleted twice")
            isHandshakeDone = true
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        errors.append(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        isInactive = true
    }
}
