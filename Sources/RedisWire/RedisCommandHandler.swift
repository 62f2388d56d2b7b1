import NIOCore

/// A command on its way out. `reply` is nil for commands whose answer comes as a push
/// (SUBSCRIBE and friends under RESP3), which take no place in the reply queue.
struct RedisRequest: Sendable {
    var command: [RESPArgument]
    var reply: EventLoopPromise<RESPValue>?
}

/// Pipelining: requests are written as they come and their promises queued; replies arrive in
/// the order the commands were sent, so each one completes the oldest promise. Push values go
/// to `onPush` instead. When the connection ends, every waiting promise fails `unavailable`.
final class RedisCommandHandler: ChannelDuplexHandler {
    typealias InboundIn = RESPValue
    typealias OutboundIn = RedisRequest
    typealias OutboundOut = ByteBuffer

    private var waiting = CircularBuffer<EventLoopPromise<RESPValue>>(initialCapacity: 16)
    private var closedBecause: String?
    private let onPush: @Sendable ([RESPValue]) -> Void

    init(onPush: @escaping @Sendable ([RESPValue]) -> Void) {
        self.onPush = onPush
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        if let closedBecause {
            request.reply?.fail(RedisError.unavailable(closedBecause))
            promise?.fail(RedisError.unavailable(closedBecause))
            return
        }
        var buffer = context.channel.allocator.buffer(capacity: 64)
        RESPEncoder.write(request.command, into: &buffer)
        if let reply = request.reply { waiting.append(reply) }
        context.write(wrapOutboundOut(buffer), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let value = unwrapInboundIn(data)
        if case .push(let elements) = value {
            onPush(elements)
            return
        }
        guard let reply = waiting.popFirst() else {
            failAll(context: context, because: "reply without a command")
            context.close(promise: nil)
            return
        }
        reply.succeed(value)
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(context: context, because: "connection closed")
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failAll(context: context, because: "\(error)")
        context.close(promise: nil)
    }

    private func failAll(context: ChannelHandlerContext, because why: String) {
        if closedBecause == nil { closedBecause = why }
        while let reply = waiting.popFirst() {
            reply.fail(RedisError.unavailable(why))
        }
    }
}
