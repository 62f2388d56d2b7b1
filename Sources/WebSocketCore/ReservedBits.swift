/// The three reserved header bits (RFC 6455 §5.2). A frame may set one only when a
/// negotiated extension owns it: permessage-deflate owns RSV1 on the first frame of a message.
public struct ReservedBits: OptionSet, Sendable, Hashable {
    /// The bits in their position in a frame's first byte (`0x70` at most).
    public var rawValue: UInt8
    /// The reserved bits of `rawValue`; other bits are dropped.
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue & 0x70 }

    /// RSV1 (`0x40`): a compressed message under permessage-deflate.
    public static let rsv1 = ReservedBits(rawValue: 0x40)
    /// RSV2 (`0x20`): no extension here defines it.
    public static let rsv2 = ReservedBits(rawValue: 0x20)
    /// RSV3 (`0x10`): no extension here defines it.
    public static let rsv3 = ReservedBits(rawValue: 0x10)
}
