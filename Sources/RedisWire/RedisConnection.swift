import NIOCore
import NIOPosix

/// One RESP3 connection. Commands may be sent from any thread and are pipelined: each call
/// writes at once and its reply is matched by order.
public final class RedisConnection: Sendable {
    private let channel: any Channel

    private init(channel: any Channel) {
        self.channel = channel
    }

    /// Connects, switches to RESP3 (`HELLO 3`) and selects the endpoint's database.
    /// `onPush` runs on the connection's event loop for every push value (pub/sub messages).
    public static func connect(
        to endpoint: RedisEndpoint,
        on group: any EventLoopGroup,
        limits: RESPLimits = RESPLimits(),
        connectTimeout: TimeAmount = .seconds(2),
        onPush: @escaping @Sendable ([RESPValue]) -> Void = { _ in }
    ) async throws -> RedisConnection {
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(connectTimeout)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandlers(
                            ByteToMessageHandler(RESPDecoder(limits: limits)),
                            RedisCommandHandler(onPush: onPush))
                    }
                }
                .connect(host: endpoint.host, port: endpoint.port).get()
        } catch {
            throw RedisError.unavailable("cannot connect to \(endpoint): \(error)")
        }
        let connection = RedisConnection(channel: channel)
        do {
            _ = try await connection.send(["HELLO", "3"])
            if endpoint.database != 0 {
                _ = try await connection.send(["SELECT", RESPArgument(endpoint.database)])
            }
        } catch {
            connection.close()
            throw error
        }
        return connection
    }

    /// Sends a command and returns its reply's future without waiting, for pipelining from
    /// one thread in a known order. An error reply comes as `.error`, not as a failure.
    public func sendRaw(_ command: [RESPArgument]) -> EventLoopFuture<RESPValue> {
        let reply = channel.eventLoop.makePromise(of: RESPValue.self)
        // A write that never reaches our handler (the channel closed first) must still fail
        // the reply; failing an already failed promise again does nothing.
        let written = channel.eventLoop.makePromise(of: Void.self)
        written.futureResult.whenFailure { error in reply.fail(RedisError.unavailable("\(error)")) }
        channel.writeAndFlush(RedisRequest(command: command, reply: reply), promise: written)
        return reply.futureResult
    }

    /// Sends a command and waits for its reply; a top-level error reply throws `RedisError.server`.
    public func send(_ command: [RESPArgument]) async throws -> RESPValue {
        let value = try await sendRaw(command).get()
        if case .error(let message) = value { throw RedisError.server(message) }
        return value
    }

    /// Sends a command whose answer comes as a push value (SUBSCRIBE, PSUBSCRIBE, and their
    /// opposites under RESP3). The future completes once it is written.
    public func sendExpectingPush(_ command: [RESPArgument]) -> EventLoopFuture<Void> {
        channel.writeAndFlush(RedisRequest(command: command, reply: nil))
    }

    public var isActive: Bool { channel.isActive }

    /// Completes when the connection is closed, by either side.
    public var closeFuture: EventLoopFuture<Void> { channel.closeFuture }

    public func close() {
        channel.close(promise: nil)
    }
}
