import NIOCore

/// The fixed part of a frame (RFC 6455 §5.2): 2 to 14 bytes before the payload.
public struct FrameHeader: Sendable, Hashable {
    /// Whether this is the last frame of its message.
    public var fin: Bool
    /// RSV1–RSV3; RSV1 marks a compressed message when permessage-deflate is in use.
    public var reservedBits: ReservedBits
    /// The raw 4-bit opcode; reserved values are kept so the decoder can name them.
    public var opcodeBits: UInt8
    /// The key the payload is masked with: always on frames a client sends, never on a server's.
    public var maskingKey: MaskingKey?
    /// The payload's length in bytes.
    public var payloadLength: Int

    /// A header with these fields.
    @inlinable
    public init(fin: Bool, reservedBits: ReservedBits, opcode: Opcode, maskingKey: MaskingKey?, payloadLength: Int) {
        self.fin = fin
        self.reservedBits = reservedBits
        self.opcodeBits = opcode.rawValue
        self.maskingKey = maskingKey
        self.payloadLength = payloadLength
    }

    @inlinable
    init(fin: Bool, reservedBits: ReservedBits, opcodeBits: UInt8, maskingKey: MaskingKey?, payloadLength: Int) {
        self.fin = fin
        self.reservedBits = reservedBits
        self.opcodeBits = opcodeBits
        self.maskingKey = maskingKey
        self.payloadLength = payloadLength
    }

    /// The opcode, nil for a reserved value.
    public var opcode: Opcode? { Opcode(rawValue: opcodeBits) }

    /// Bytes this header takes on the wire.
    @inlinable
    public var encodedLength: Int {
        Self.encodedLength(payloadLength: payloadLength, masked: maskingKey != nil)
    }

    /// Bytes a header takes on the wire for a payload of `payloadLength` bytes, masked or not:
    /// 2, plus 2 or 8 for a length of 126 or more, plus 4 for the masking key.
    @inlinable
    public static func encodedLength(payloadLength: Int, masked: Bool) -> Int {
        let lengthBytes = payloadLength < 126 ? 0 : (payloadLength <= 0xFFFF ? 2 : 8)
        return 2 + lengthBytes + (masked ? 4 : 0)
    }

    /// The header's length once its first two bytes are known.
    @inlinable
    static func encodedLength(firstTwo byte0: UInt8, _ byte1: UInt8) -> Int {
        let length7 = byte1 & 0x7F
        let lengthBytes = length7 == 126 ? 2 : (length7 == 127 ? 8 : 0)
        return 2 + lengthBytes + (byte1 & 0x80 != 0 ? 4 : 0)
    }

    /// What `parse` found.
    public enum ParseResult: Sendable, Hashable {
        /// More bytes are needed before the header is complete.
        case incomplete
        /// A whole header, and the bytes it took.
        case header(FrameHeader, length: Int)
    }

    /// Parses a header at the start of `bytes` without judging it against any role or
    /// extension; that is the receiver's job. Only a 64-bit length with its top bit set is
    /// rejected here, since no `Int` can hold it (RFC 6455 §5.2).
    @inlinable
    public static func parse(_ bytes: UnsafeRawBufferPointer) throws(WebSocketError) -> ParseResult {
        guard bytes.count >= 2 else { return .incomplete }
        let byte0 = bytes[0]
        let byte1 = bytes[1]
        let headerLength = encodedLength(firstTwo: byte0, byte1)
        guard bytes.count >= headerLength else { return .incomplete }
        var cursor = 2
        var payloadLength = Int(byte1 & 0x7F)
        if payloadLength == 126 {
            payloadLength = Int(UInt16(bigEndian: bytes.loadUnaligned(fromByteOffset: 2, as: UInt16.self)))
            cursor = 4
        } else if payloadLength == 127 {
            let length64 = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 2, as: UInt64.self))
            guard length64 >> 63 == 0 else {
                throw .protocolError("64-bit payload length has its most significant bit set")
            }
            payloadLength = Int(length64)
            cursor = 10
        }
        let maskingKey: MaskingKey? =
            byte1 & 0x80 != 0
            ? MaskingKey(value: bytes.loadUnaligned(fromByteOffset: cursor, as: UInt32.self)) : nil
        let header = FrameHeader(
            fin: byte0 & 0x80 != 0,
            reservedBits: ReservedBits(rawValue: byte0),
            opcodeBits: byte0 & 0x0F,
            maskingKey: maskingKey,
            payloadLength: payloadLength
        )
        return .header(header, length: headerLength)
    }

    /// Writes the header at `destination`, which must have room for `encodedLength`
    /// bytes, choosing the shortest length form; returns the bytes written.
    @inlinable
    public func write(to destination: UnsafeMutableRawPointer) -> Int {
        let byte0 = (fin ? 0x80 : 0) | reservedBits.rawValue | opcodeBits
        let maskBit: UInt8 = maskingKey == nil ? 0 : 0x80
        destination.storeBytes(of: byte0, as: UInt8.self)
        var length: Int
        if payloadLength < 126 {
            destination.storeBytes(of: maskBit | UInt8(payloadLength), toByteOffset: 1, as: UInt8.self)
            length = 2
        } else if payloadLength <= 0xFFFF {
            destination.storeBytes(of: maskBit | 126, toByteOffset: 1, as: UInt8.self)
            destination.storeBytes(of: UInt16(payloadLength).bigEndian, toByteOffset: 2, as: UInt16.self)
            length = 4
        } else {
            destination.storeBytes(of: maskBit | 127, toByteOffset: 1, as: UInt8.self)
            destination.storeBytes(of: UInt64(payloadLength).bigEndian, toByteOffset: 2, as: UInt64.self)
            length = 10
        }
        if let maskingKey {
            destination.storeBytes(of: maskingKey.value, toByteOffset: length, as: UInt32.self)
            length += 4
        }
        return length
    }

    /// Writes the header, choosing the shortest length form (RFC 6455 §5.2 requires it).
    @inlinable
    public func write(to buffer: inout ByteBuffer) {
        let byte0 = (fin ? 0x80 : 0) | reservedBits.rawValue | opcodeBits
        let maskBit: UInt8 = maskingKey == nil ? 0 : 0x80
        if payloadLength < 126 {
            buffer.writeMultipleIntegers(byte0, maskBit | UInt8(payloadLength))
        } else if payloadLength <= 0xFFFF {
            buffer.writeMultipleIntegers(byte0, maskBit | 126, UInt16(payloadLength))
        } else {
            buffer.writeMultipleIntegers(byte0, maskBit | 127, UInt64(payloadLength))
        }
        if let maskingKey {
            withUnsafeBytes(of: maskingKey.value) { _ = buffer.writeBytes($0) }
        }
    }
}
