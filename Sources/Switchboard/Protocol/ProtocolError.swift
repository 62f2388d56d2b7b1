/// The stable error codes of `{"op":"error"}` (docs/protocol.md has the table).
@_spi(Fuzzing) public enum ErrorCode: String, Sendable, Hashable, CaseIterable {
    /// The frame is not valid JSON.
    case badJSON = "bad_json"
    /// Valid JSON, but not a valid request (missing or mistyped member, bad binary header…).
    case badRequest = "bad_request"
    /// The topic or pattern is not a valid name (or is a pattern where a topic is needed).
    case badTopic = "bad_topic"
    /// `op` is not one this version knows.
    case unknownOp = "unknown_op"
    /// The principal may not subscribe to / publish on this topic.
    case forbidden = "forbidden"
    /// The payload is larger than the broker accepts.
    case tooLarge = "too_large"
    /// Unsubscribe from a pattern that is not subscribed.
    case notFound = "not_found"
    /// Too many subscriptions for this connection, or too many topics for the broker.
    case limitExceeded = "limit_exceeded"
    /// The connection sends requests faster than the broker's `request_rate`.
    case rateLimited = "rate_limited"
    /// The replay log could not take or write the message (no ack), or a replay failed.
    case unavailable = "unavailable"
    /// A bug or an unexpected failure in the broker.
    case `internal` = "internal"
}

/// A request the broker answers with an `error` message; the connection stays open.
@_spi(Fuzzing) public struct ProtocolError: Error, Sendable, Hashable, CustomStringConvertible {
    @_spi(Fuzzing) public let code: ErrorCode
    @_spi(Fuzzing) public let message: String
    /// The request's id, when it had one and it could be read.
    @_spi(Fuzzing) public let id: RequestID?

    @_spi(Fuzzing) public init(_ code: ErrorCode, _ message: String, id: RequestID? = nil) {
        self.code = code
        self.message = message
        self.id = id
    }

    @_spi(Fuzzing) public var description: String { "\(code.rawValue): \(message)" }
}
