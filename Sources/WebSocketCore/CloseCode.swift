/// A close status code (RFC 6455 §7.4, IANA "WebSocket Close Code Number Registry").
///
/// Any `UInt16` can be represented so that a received code can be inspected; whether it
/// may appear on the wire is `isValidOnWire`.
public struct CloseCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16

    @inlinable
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    @inlinable
    public init(_ rawValue: UInt16) { self.rawValue = rawValue }

    public static let normalClosure = CloseCode(1000)
    public static let goingAway = CloseCode(1001)
    public static let protocolError = CloseCode(1002)
    public static let unsupportedData = CloseCode(1003)
    /// Reserved: never sent, never valid on the wire.
    public static let reserved = CloseCode(1004)
    /// "No status received": reported locally when a close frame had no payload; never sent.
    public static let noStatusReceived = CloseCode(1005)
    /// "Abnormal closure": reported locally when the connection dropped without a close frame; never sent.
    public static let abnormalClosure = CloseCode(1006)
    public static let invalidFramePayloadData = CloseCode(1007)
    public static let policyViolation = CloseCode(1008)
    public static let messageTooBig = CloseCode(1009)
    public static let mandatoryExtension = CloseCode(1010)
    public static let internalError = CloseCode(1011)
    public static let serviceRestart = CloseCode(1012)
    public static let tryAgainLater = CloseCode(1013)
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
