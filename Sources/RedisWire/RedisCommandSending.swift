/// Anything that runs one command and returns its reply: a connection, or a client that
/// keeps one connected.
public protocol RedisCommandSending: Sendable {
    func send(_ command: [RESPArgument]) async throws -> RESPValue
}

extension RedisConnection: RedisCommandSending {}
