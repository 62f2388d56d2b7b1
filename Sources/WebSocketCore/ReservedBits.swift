/// The three reserved header bits (RFC 6455 §5.2). A frame may set one only when a
/// negotiated extension owns it: permessage-deflate owns RSV1 on the first frame of a message.
public struct ReservedBits: OptionSet, Sendable, Hashable {
    public var rawValue: UInt8
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue & 0x70 }

    public static let rsv1 = ReservedBits(rawValue: 0x40)
    public static let rsv2 = ReservedBits(rawValue: 0x20)
    public static let rsv3 = ReservedBits(rawValue: 0x10)
}
