import NIOConcurrencyHelpers
import NIOCore

/// A Lua script run by its SHA1 (`EVALSHA`), so the source crosses the wire once per Redis
/// rather than on every call. The SHA comes from `SCRIPT LOAD`; when Redis no longer knows
/// the script (restarted, `SCRIPT FLUSH`), `NOSCRIPT` makes us load it again and retry once.
public final class RedisScript: Sendable {
    public let source: String
    private let sha = NIOLockedValueBox<String?>(nil)

    /// `sha1`: the source's SHA1 in lowercase hex, when the caller can compute it; it lets
    /// `runPipelined` use EVALSHA from the first call.
    public init(_ source: String, sha1: String? = nil) {
        self.source = source
        sha.withLockedValue { $0 = sha1 }
    }

    /// Sends at once (pipelined: calls made one after another run in that order) and returns
    /// the reply's future; an error reply comes as `.error`. NOSCRIPT is answered by sending
    /// the source with EVAL, which also caches it, in the order the NOSCRIPT replies came.
    public func runPipelined(
        on client: RedisClient, keys: [RESPArgument], arguments: [RESPArgument]
    ) -> EventLoopFuture<RESPValue> {
        let tail = [RESPArgument(keys.count)] + keys + arguments
        guard let known = sha.withLockedValue({ $0 }) else { return client.sendRawOrFail(["EVAL", RESPArgument(source)] + tail) }
        return client.sendRawOrFail(["EVALSHA", RESPArgument(known)] + tail).flatMap { [source] reply in
            if case .error(let message) = reply, message.hasPrefix("NOSCRIPT") {
                return client.sendRawOrFail(["EVAL", RESPArgument(source)] + tail)
            }
            return client.eventLoop.makeSucceededFuture(reply)
        }
    }

    public func run(
        on redis: some RedisCommandSending, keys: [RESPArgument], arguments: [RESPArgument]
    ) async throws -> RESPValue {
        if let known = sha.withLockedValue({ $0 }) {
            do {
                return try await evalsha(known, on: redis, keys: keys, arguments: arguments)
            } catch RedisError.server(let message) where message.hasPrefix("NOSCRIPT") {
                // Loaded again below.
            }
        }
        let loaded = try await load(on: redis)
        return try await evalsha(loaded, on: redis, keys: keys, arguments: arguments)
    }

    private func load(on redis: some RedisCommandSending) async throws -> String {
        let reply = try await redis.send(["SCRIPT", "LOAD", RESPArgument(source)])
        guard let loaded = reply.string else { throw RedisError.unexpectedReply("SCRIPT LOAD gave \(reply)") }
        sha.withLockedValue { $0 = loaded }
        return loaded
    }

    private func evalsha(
        _ sha: String, on redis: some RedisCommandSending, keys: [RESPArgument], arguments: [RESPArgument]
    ) async throws -> RESPValue {
        try await redis.send(["EVALSHA", RESPArgument(sha), RESPArgument(keys.count)] + keys + arguments)
    }
}
