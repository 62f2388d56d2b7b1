import NIOCore

/// Sizes each connection's reads as NIO's `AdaptiveRecvByteBufferAllocator` does (the size
/// doubles after a read that fills the buffer, halves after two reads in a row that fill at
/// most half of it), in a value small enough for the channel to keep inline. NIO holds a
/// channel's allocator as an existential: Adaptive's eight words do not fit in one, so
/// every connection carried a ~60-byte box for it from its first read on.
///
/// NIO also keeps a connection's last read buffer for reuse for as long as the connection
/// lives, so the first size is what an idle connection costs: NIO's default starts at 2 KiB.
/// 256 B holds a minimal upgrade request; a browser's takes one or two more reads. Busy
/// connections reach full-size reads (64 KiB) within a few reads.
struct ReceiveSizes: RecvByteBufferAllocator {
    static let minimum: UInt32 = 64
    static let initial: UInt32 = 256
    static let maximum: UInt32 = 65536

    private var next = Self.initial
    private var decreaseNow = false

    func buffer(allocator: ByteBufferAllocator) -> ByteBuffer {
        allocator.buffer(capacity: Int(next))
    }

    func nextBufferSize() -> Int? { Int(next) }

    mutating func record(actualReadBytes: Int) -> Bool {
        let lowerBound = next >> 1
        if actualReadBytes <= Int(lowerBound), lowerBound >= Self.minimum {
            if decreaseNow { next = lowerBound }
            decreaseNow.toggle()
            return false
        }
        decreaseNow = false
        guard actualReadBytes >= Int(next), next < Self.maximum else { return false }
        next <<= 1
        return true
    }
}
