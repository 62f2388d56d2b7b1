/// The 4-byte key a client XORs over every payload byte it sends (RFC 6455 §5.3).
///
/// `value` holds the four bytes in wire order as they sit in memory, so a key read from a
/// frame header with `loadUnaligned(as: UInt32.self)` can be used as it is.
public struct MaskingKey: Hashable, Sendable {
    /// The key's four bytes in wire order, as they sit in memory.
    public var value: UInt32

    /// A key of these four bytes (see `value`).
    @inlinable
    public init(value: UInt32) { self.value = value }

    /// The key whose wire bytes are `b0 b1 b2 b3`.
    @inlinable
    public init(_ b0: UInt8, _ b1: UInt8, _ b2: UInt8, _ b3: UInt8) {
        self.value = withUnsafeBytes(of: (b0, b1, b2, b3)) { $0.loadUnaligned(as: UInt32.self) }
    }

    /// The key byte that masks payload byte `index`.
    @inlinable
    public subscript(index: Int) -> UInt8 {
        withUnsafeBytes(of: value) { $0[index & 3] }
    }
}
