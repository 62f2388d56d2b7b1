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

    /// One line naming the error (the broker's code and message for `.broker`).
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
    /// The code as the broker sends it (`forbidden`).
    public var rawValue: String
    /// The code named by `rawValue`, known or not.
    public init(rawValue: String) { self.rawValue = rawValue }

    /// The text frame was not valid JSON.
    public static let badJSON = Self(rawValue: "bad_json")
    /// Valid JSON, but not a valid request.
    public static let badRequest = Self(rawValue: "bad_request")
    /// Not a valid topic name, or a pattern where a concrete topic is needed.
    public static let badTopic = Self(rawValue: "bad_topic")
    /// An operation this protocol version does not have.
    public static let unknownOp = Self(rawValue: "unknown_op")
    /// The token does not allow this subscribe or publish.
    public static let forbidden = Self(rawValue: "forbidden")
    /// The payload exceeds the broker's `max_payload`.
    public static let tooLarge = Self(rawValue: "too_large")
    /// Unsubscribing from a pattern that is not subscribed.
    public static let notFound = Self(rawValue: "not_found")
    /// Too many subscriptions on the connection, or no room for another topic in the broker's memory.
    public static let limitExceeded = Self(rawValue: "limit_exceeded")
    /// Requests faster than the broker's `request_rate`; the request was not carried out.
    public static let rateLimited = Self(rawValue: "rate_limited")
    /// The replay log could not take or write the message (not published), or a replay failed.
    public static let unavailable = Self(rawValue: "unavailable")
    /// An unexpected failure in the broker.
    public static let `internal` = Self(rawValue: "internal")

    /// The code as the broker sends it.
    public var description: String { rawValue }
}
