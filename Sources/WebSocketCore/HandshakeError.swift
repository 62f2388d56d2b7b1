/// Why an opening handshake failed.
///
/// On the server (a request that `Handshake.validateRequest` or `Handshake.parseRequestHead`
/// rejects), `status` is the HTTP status to answer with (400, 405, 426, 431; the layers
/// above add 401/403), `responseHeaders` the headers that answer must carry (for 426,
/// `Sec-WebSocket-Version: 13, 8`), and `reason` a one-line explanation for the body.
///
/// On the client (a response that `Handshake.validateResponse` rejects), `status` is the
/// status the server answered with, `responseHeaders` is empty and `reason` says which rule
/// the response broke. `rule` tells the two apart (`rule.isClientSide`).
public struct HandshakeError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The requirement of RFC 6455 §4 that was not met.
    public enum Rule: String, Sendable, Hashable, CaseIterable {
        // Server side: the client's request.
        /// The request head is malformed or too large.
        case requestHead
        /// The method is not `GET`.
        case method
        /// The HTTP version is below 1.1.
        case httpVersion
        /// `Host` is missing, repeated or empty.
        case host
        /// `Upgrade` does not name `websocket`.
        case upgrade
        /// `Connection` does not name `Upgrade`.
        case connection
        /// `Sec-WebSocket-Version` is missing or not one the server speaks (426).
        case version
        /// `Sec-WebSocket-Key` is missing or not the base64 of 16 bytes.
        case key
        /// `Origin` (or `Sec-WebSocket-Origin`) appears more than once.
        case origin
        /// `Sec-WebSocket-Protocol` is malformed.
        case subprotocols
        /// `Sec-WebSocket-Extensions` is malformed.
        case extensions
        // Client side: the server's response.
        /// The status is not 101.
        case responseStatus
        /// The response's `Upgrade` does not name `websocket`.
        case responseUpgrade
        /// The response's `Connection` does not name `Upgrade`.
        case responseConnection
        /// `Sec-WebSocket-Accept` does not match the key sent.
        case responseAccept
        /// The subprotocol is not one the client offered.
        case responseSubprotocol
        /// An extension the client did not offer, or with parameters it cannot accept.
        case responseExtensions

        /// Whether the rule is one the client checks on the server's response.
        public var isClientSide: Bool { rawValue.hasPrefix("response") }
    }

    /// The rule that was broken.
    public var rule: Rule
    /// Server: the status to answer with. Client: the status the server answered with.
    public var status: Int
    /// One line saying what is wrong.
    public var reason: String
    /// Server: headers the refusal must carry (for 426, the versions spoken). Client: empty.
    public var responseHeaders: HTTPFields

    /// An error breaking `rule`, answered (or received) with `status`.
    public init(rule: Rule, status: Int, reason: String, responseHeaders: HTTPFields = HTTPFields()) {
        self.rule = rule
        self.status = status
        self.reason = reason
        self.responseHeaders = responseHeaders
    }

    static func badRequest(_ rule: Rule, _ reason: String) -> HandshakeError {
        HandshakeError(rule: rule, status: 400, reason: reason)
    }

    static func badResponse(_ rule: Rule, status: Int, _ reason: String) -> HandshakeError {
        HandshakeError(rule: rule, status: status, reason: reason)
    }

    /// Server side: `426: Sec-WebSocket-Version 7 is not supported (use 13 or 8)`;
    /// client side: `handshake response rejected: Sec-WebSocket-Accept does not match the key`.
    public var description: String {
        rule.isClientSide ? "handshake response rejected: \(reason)" : "\(status): \(reason)"
    }
}
