import NIOCore

// XOR masking (RFC 6455 §5.3): payload byte i is XORed with key byte i mod 4.
//
// The work is done 64 bytes per iteration as four unaligned 16-byte SIMD vectors, then
// 16-byte vectors, then one 8-byte word, one 4-byte word and at most three single bytes.
// Every load and store is unaligned, so any alignment and any length is correct.
// Masking and unmasking are the same operation.

extension MaskingKey {
    /// Masks (or unmasks) `bytes` in place.
    ///
    /// - Parameters:
    ///   - bytes: the piece of the payload to mask.
    ///   - offset: how many bytes of the same payload were already masked before
    ///     this piece, so that a payload can be processed in pieces of any size: the piece
    ///     starts with key byte `offset & 3`. Any non-negative value.
    @inlinable
    public func apply(to bytes: UnsafeMutableRawBufferPointer, startingAt offset: Int = 0) {
        guard let base = bytes.baseAddress else { return }
        Self._xor(from: UnsafeRawPointer(base), to: base, count: bytes.count, key: self._rotated(by: offset))
    }

    /// Copies `src` into the start of `dst`, masking (or unmasking) on the way, in one pass.
    ///
    /// `dst` must hold at least `src.count` bytes; bytes of `dst` past `src.count` are not
    /// touched. `src` and `dst` may be the same memory (that is masking in place) but must
    /// not otherwise overlap.
    ///
    /// - Parameters:
    ///   - src: the bytes to read.
    ///   - dst: where the masked bytes go, from its start.
    ///   - offset: how many bytes of the same payload were already masked before
    ///     this piece (see `apply(to:startingAt:)`).
    @inlinable
    public func apply(from src: UnsafeRawBufferPointer, to dst: UnsafeMutableRawBufferPointer, startingAt offset: Int = 0) {
        // API misuse only: every caller in the library passes equal lengths.
        precondition(dst.count >= src.count, "MaskingKey.apply(from:to:): destination is shorter than source")
        guard let s = src.baseAddress, let d = dst.baseAddress else { return }
        Self._xor(from: s, to: d, count: src.count, key: self._rotated(by: offset))
    }

    /// Masks (or unmasks) all readable bytes of `buffer` in place.
    @inlinable
    public func apply(to buffer: inout ByteBuffer, startingAt offset: Int = 0) {
        buffer.withUnsafeMutableReadableBytes { self.apply(to: $0, startingAt: offset) }
    }

    /// Masks (or unmasks) in place the `length` bytes of `buffer` at `index`.
    ///
    /// `index` is an absolute buffer index (like `ByteBuffer.getBytes(at:length:)`) and
    /// the range must lie within the readable bytes.
    @inlinable
    public func apply(to buffer: inout ByteBuffer, at index: Int, length: Int, startingAt offset: Int = 0) {
        let start = index - buffer.readerIndex
        // API misuse only: the range comes from the caller's own buffer arithmetic, never a peer.
        precondition(start >= 0 && length >= 0 && start + length <= buffer.readableBytes,
                     "MaskingKey.apply(to:at:length:): range outside the readable bytes")
        buffer.withUnsafeMutableReadableBytes { bytes in
            self.apply(to: UnsafeMutableRawBufferPointer(rebasing: bytes[start ..< start + length]), startingAt: offset)
        }
    }

    /// The key as a word whose first byte in memory is key byte `offset & 3`.
    @inlinable
    internal func _rotated(by offset: Int) -> UInt32 {
        let shift = UInt32(truncatingIfNeeded: offset & 3) &* 8
        #if _endian(little)
        return (value &>> shift) | (value &<< (32 &- shift))
        #else
        return (value &<< shift) | (value &>> (32 &- shift))
        #endif
    }

    /// `dst[i] = src[i] ^ key byte (i & 3)` for `i < count`, where `key` is in memory order.
    @inlinable
    @inline(__always)
    internal static func _xor(from src: UnsafeRawPointer, to dst: UnsafeMutableRawPointer, count: Int, key: UInt32) {
        let key64 = UInt64(truncatingIfNeeded: key) | (UInt64(truncatingIfNeeded: key) &<< 32)
        var i = 0
        if count >= 16 {
            let k = unsafeBitCast(SIMD2<UInt64>(repeating: key64), to: SIMD16<UInt8>.self)
            while count &- i >= 64 {
                let a = src.loadUnaligned(fromByteOffset: i, as: SIMD16<UInt8>.self)
                let b = src.loadUnaligned(fromByteOffset: i &+ 16, as: SIMD16<UInt8>.self)
                let c = src.loadUnaligned(fromByteOffset: i &+ 32, as: SIMD16<UInt8>.self)
                let d = src.loadUnaligned(fromByteOffset: i &+ 48, as: SIMD16<UInt8>.self)
                dst.storeBytes(of: a ^ k, toByteOffset: i, as: SIMD16<UInt8>.self)
                dst.storeBytes(of: b ^ k, toByteOffset: i &+ 16, as: SIMD16<UInt8>.self)
                dst.storeBytes(of: c ^ k, toByteOffset: i &+ 32, as: SIMD16<UInt8>.self)
                dst.storeBytes(of: d ^ k, toByteOffset: i &+ 48, as: SIMD16<UInt8>.self)
                i &+= 64
            }
            while count &- i >= 16 {
                let a = src.loadUnaligned(fromByteOffset: i, as: SIMD16<UInt8>.self)
                dst.storeBytes(of: a ^ k, toByteOffset: i, as: SIMD16<UInt8>.self)
                i &+= 16
            }
        }
        if count &- i >= 8 {
            let w = src.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            dst.storeBytes(of: w ^ key64, toByteOffset: i, as: UInt64.self)
            i &+= 8
        }
        if count &- i >= 4 {
            let w = src.loadUnaligned(fromByteOffset: i, as: UInt32.self)
            dst.storeBytes(of: w ^ key, toByteOffset: i, as: UInt32.self)
            i &+= 4
        }
        // i is a multiple of 4 here, so the last (at most three) bytes use key bytes 0, 1, 2.
        var k = key
        while i < count {
            #if _endian(little)
            let kb = UInt8(truncatingIfNeeded: k)
            k &>>= 8
            #else
            let kb = UInt8(truncatingIfNeeded: k &>> 24)
            k &<<= 8
            #endif
            dst.storeBytes(of: src.load(fromByteOffset: i, as: UInt8.self) ^ kb, toByteOffset: i, as: UInt8.self)
            i &+= 1
        }
    }
}
