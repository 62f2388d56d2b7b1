/// Why a Redis command did not give a reply.
public enum RedisError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Redis answered with an error reply (`-ERR …`, `-NOSCRIPT …`).
    case server(String)
    /// No connection to Redis right now, or it was lost before the reply came: the command
    /// may or may not have run.
    case unavailable(String)
    /// Redis sent bytes that are not RESP3, or a value past one of `RESPLimits`.
    case protocolViolation(String)
    /// A reply of a shape the command never gives.
    case unexpectedReply(String)

    public var description: String {
        switch self {
        case .server(let message): "redis: \(message)"
        case .unavailable(let why): "redis unavailable: \(why)"
        case .protocolViolation(let why): "redis protocol violation: \(why)"
        case .unexpectedReply(let what): "unexpected redis reply: \(what)"
        }
    }
}
