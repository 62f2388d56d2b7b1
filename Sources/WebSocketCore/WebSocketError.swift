/// A violation of the protocol by the peer, or a limit it exceeded.
///
/// Every error the decoder, the message assembler or the deflate engine throws is one of
/// these: it names the close code the connection must be failed with (RFC 6455 §7.1.7)
/// and a short reason, which is also what goes into the close frame (≤ 123 bytes).
public struct WebSocketError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The code to fail the connection with.
    public var closeCode: CloseCode
    /// A short reason (at most 123 bytes), sent in the close frame.
    public var reason: String

    /// An error failing the connection with `closeCode` for `reason`.
    public init(_ closeCode: CloseCode, _ reason: String) {
        self.closeCode = closeCode
        self.reason = reason
    }

    /// 1002, the peer broke the protocol.
    @inlinable
    public static func protocolError(_ reason: String) -> WebSocketError {
        WebSocketError(.protocolError, reason)
    }

    /// 1007, a payload not valid for its type.
    @inlinable
    public static func invalidPayload(_ reason: String) -> WebSocketError {
        WebSocketError(.invalidFramePayloadData, reason)
    }

    /// 1009, a message or frame over the limit.
    @inlinable
    public static func tooBig(_ reason: String) -> WebSocketError {
        WebSocketError(.messageTooBig, reason)
    }

    /// `code: reason`.
    public var description: String { "\(closeCode.rawValue): \(reason)" }
}

/// A call that asked for something the protocol forbids (an unsendable close code, an
/// over-long control payload). Raised before anything reaches the wire.
public struct UsageError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What was asked that the protocol forbids.
    public var message: String
    /// An error saying `message`.
    public init(_ message: String) { self.message = message }
    /// The message.
    public var description: String { message }
}
