/// A frame opcode (RFC 6455 §5.2). Only the six defined values exist as cases;
/// the decoder rejects the reserved ones (3–7, 0xB–0xF) with 1002.
public enum Opcode: UInt8, Sendable, Hashable {
    /// A later frame of a fragmented message.
    case continuation = 0x0
    /// The first frame of a text message.
    case text = 0x1
    /// The first frame of a binary message.
    case binary = 0x2
    /// A close frame.
    case close = 0x8
    /// A ping.
    case ping = 0x9
    /// A pong.
    case pong = 0xA

    /// Control frames (close, ping, pong) may not be fragmented and carry at most 125 bytes.
    @inlinable
    public var isControl: Bool { rawValue & 0x8 != 0 }
}

/// Which end of the connection this code plays. Clients mask what they send;
/// servers must not, and each side rejects frames that break its peer's rule.
public enum Role: Sendable, Hashable {
    /// The end that opened the connection; it masks what it sends.
    case client
    /// The end that accepted it; it sends unmasked frames.
    case server

    /// The other end.
    public var peer: Role { self == .client ? .server : .client }
}
