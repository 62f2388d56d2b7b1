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
        case requestHead
        case method
        case httpVersion
        case host
        case upgrade
        case connection
        case version
        case key
        case origin
        case subprotocols
        case extensions
        // Client side: the server's response.
        case responseStatus
        case responseUpgrade
        case responseConnection
        case responseAccept
        case responseSubprotocol
        case responseExtensions

        /// Whether the rule is one the client checks on the server's response.
        public var isClientSide: Bool { rawValue.hasPrefix("response") }
    }

    public var rule: Rule
    public var status: Int
    public var reason: String
    public var responseHeaders: HTTPFields

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
