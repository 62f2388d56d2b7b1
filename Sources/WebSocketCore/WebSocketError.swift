/// A violation of the protocol by the peer, or a limit it exceeded.
///
/// Every error the decoder, the message assembler or the deflate engine throws is one of
/// these: it names the close code the connection must be failed with (RFC 6455 §7.1.7)
/// and a short reason, which is also what goes into the close frame (≤ 123 bytes).
public struct WebSocketError: Error, Sendable, Hashable, CustomStringConvertible {
    public var closeCode: CloseCode
    public var reason: String

    public init(_ closeCode: CloseCode, _ reason: String) {
        self.closeCode = closeCode
        self.reason = reason
    }

    @inlinable
    public static func protocolError(_ reason: String) -> WebSocketError {
        WebSocketError(.protocolError, reason)
    }

    @inlinable
    public static func invalidPayload(_ reason: String) -> WebSocketError {
        WebSocketError(.invalidFramePayloadData, reason)
    }

    @inlinable
    public static func tooBig(_ reason: String) -> WebSocketError {
        WebSocketError(.messageTooBig, reason)
    }

    public var description: String { "\(closeCode.rawValue): \(reason)" }
}

/// A call that asked for something the protocol forbids (an unsendable close code, an
/// over-long control payload). Raised before anything reaches the wire.
public struct UsageError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
