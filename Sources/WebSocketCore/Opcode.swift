/// A frame opcode (RFC 6455 §5.2). Only the six defined values exist as cases;
/// the decoder rejects the reserved ones (3–7, 0xB–0xF) with 1002.
public enum Opcode: UInt8, Sendable, Hashable {
    case continuation = 0x0
    case text = 0x1
    case binary = 0x2
    case close = 0x8
    case ping = 0x9
    case pong = 0xA

    /// Control frames (close, ping, pong) may not be fragmented and carry at most 125 bytes.
    @inlinable
    public var isControl: Bool { rawValue & 0x8 != 0 }
}

/// Which end of the connection this code plays. Clients mask what they send;
/// servers must not, and each side rejects frames that break its peer's rule.
public enum Role: Sendable, Hashable {
    case client
    case server

    public var peer: Role { self == .client ? .server : .client }
}
