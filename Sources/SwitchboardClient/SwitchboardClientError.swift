/// The errors a `SwitchboardClient`'s calls throw.
public enum SwitchboardClientError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The broker refused the request (`error` with its code; docs/protocol.md).
    case broker(code: BrokerErrorCode, message: String)
    /// The client is closed (`close()`, or a fatal refusal such as a revoked token).
    case closed(CloseReason)
    /// Publish with `PublishQueue.failFast` while not connected.
    case notConnected
    /// The queue of publishes waiting for a connection is full (`Options.publishQueue`).
    case queueFull(limit: Int)
    /// The connection ended while this publish was unanswered: the broker may or may not
    /// have taken it.
    case connectionLost
    /// A topic longer than 255 bytes cannot be published as binary.
    case topicTooLong(String)

    public var description: String {
        switch self {
        case .broker(let code, let message): return "\(code.rawValue): \(message)"
        case .closed(let reason): return "client closed: \(reason)"
        case .notConnected: return "not connected to the broker"
        case .queueFull(let limit): return "\(limit) publishes already wait for a connection"
        case .connectionLost: return "the connection ended before the broker answered"
        case .topicTooLong(let topic): return "topic too long for a binary publish: \(topic.utf8.count) bytes"
        }
    }
}

/// The stable codes of the broker's `error` answers (docs/protocol.md).
public struct BrokerErrorCode: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    public static let badJSON = Self(rawValue: "bad_json")
    public static let badRequest = Self(rawValue: "bad_request")
    public static let badTopic = Self(rawValue: "bad_topic")
    public static let unknownOp = Self(rawValue: "unknown_op")
    public static let forbidden = Self(rawValue: "forbidden")
    public static let tooLarge = Self(rawValue: "too_large")
    public static let notFound = Self(rawValue: "not_found")
    public static let limitExceeded = Self(rawValue: "limit_exceeded")
    public static let rateLimited = Self(rawValue: "rate_limited")
    public static let unavailable = Self(rawValue: "unavailable")
    public static let `internal` = Self(rawValue: "internal")

    public var description: String { rawValue }
}
