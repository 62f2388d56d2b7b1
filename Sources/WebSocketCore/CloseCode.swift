/// A close status code (RFC 6455 §7.4, IANA "WebSocket Close Code Number Registry").
///
/// Any `UInt16` can be represented so that a received code can be inspected; whether it
/// may appear on the wire is `isValidOnWire`.
public struct CloseCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The code's number.
    public var rawValue: UInt16

    /// The code numbered `rawValue`, registered or not.
    @inlinable
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// The code numbered `rawValue`, registered or not.
    @inlinable
    public init(_ rawValue: UInt16) { self.rawValue = rawValue }

    /// 1000: the purpose of the connection was fulfilled.
    public static let normalClosure = CloseCode(1000)
    /// 1001: the endpoint is going away (server shutdown, page navigated away).
    public static let goingAway = CloseCode(1001)
    /// 1002: the peer broke the protocol.
    public static let protocolError = CloseCode(1002)
    /// 1003: a kind of data the endpoint cannot accept (text to a binary-only endpoint).
    public static let unsupportedData = CloseCode(1003)
    /// Reserved: never sent, never valid on the wire.
    public static let reserved = CloseCode(1004)
    /// "No status received": reported locally when a close frame had no payload; never sent.
    public static let noStatusReceived = CloseCode(1005)
    /// "Abnormal closure": reported locally when the connection dropped without a close frame; never sent.
    public static let abnormalClosure = CloseCode(1006)
    /// 1007: a message's payload is not valid for its type (invalid UTF-8, corrupt compressed data).
    public static let invalidFramePayloadData = CloseCode(1007)
    /// 1008: a policy was violated (a generic code when no other fits).
    public static let policyViolation = CloseCode(1008)
    /// 1009: a message or frame is too big to process.
    public static let messageTooBig = CloseCode(1009)
    /// 1010: the client needed an extension the server did not agree to.
    public static let mandatoryExtension = CloseCode(1010)
    /// 1011: the server met an unexpected condition.
    public static let internalError = CloseCode(1011)
    /// 1012: the service is restarting.
    public static let serviceRestart = CloseCode(1012)
    /// 1013: try again later (overload).
    public static let tryAgainLater = CloseCode(1013)
    /// 1014: a gateway or proxy got an invalid response upstream.
    public static let badGateway = CloseCode(1014)
    /// "TLS handshake failure": reported locally; never sent.
    public static let tlsHandshake = CloseCode(1015)

    /// Whether a peer may put this code in a close frame: 1000–1003, 1007–1014 and 3000–4999.
    /// 0–999, 1004–1006, 1015, 1016–2999 and 5000+ are a protocol error (1002) when received.
    @inlinable
    public var isValidOnWire: Bool {
        switch rawValue {
        case 1000...1003, 1007...1014, 3000...4999: return true
        default: return false
        }
    }

    /// The number and its registered name, e.g. `1000 normal closure`.
    public var description: String {
        switch self {
        case .normalClosure: return "1000 normal closure"
        case .goingAway: return "1001 going away"
        case .protocolError: return "1002 protocol error"
        case .unsupportedData: return "1003 unsupported data"
        case .noStatusReceived: return "1005 no status received"
        case .abnormalClosure: return "1006 abnormal closure"
        case .invalidFramePayloadData: return "1007 invalid frame payload data"
        case .policyViolation: return "1008 policy violation"
        case .messageTooBig: return "1009 message too big"
        case .mandatoryExtension: return "1010 mandatory extension"
        case .internalError: return "1011 internal error"
        case .serviceRestart: return "1012 service restart"
        case .tryAgainLater: return "1013 try again later"
        case .badGateway: return "1014 bad gateway"
        case .tlsHandshake: return "1015 TLS handshake failure"
        default: return String(rawValue)
        }
    }
}
