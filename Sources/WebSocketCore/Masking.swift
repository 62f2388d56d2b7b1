// Placeholder byte loop; replaced by the vectorised implementation on the fastpath branch.
extension MaskingKey {
    public func apply(to bytes: UnsafeMutableRawBufferPointer, startingAt offset: Int = 0) {
        for i in 0..<bytes.count { bytes[i] ^= self[offset &+ i] }
    }

    public func apply(from source: UnsafeRawBufferPointer, to destination: UnsafeMutableRawBufferPointer, startingAt offset: Int = 0) {
        for i in 0..<source.count { destination[i] = source[i] ^ self[offset &+ i] }
    }
}
