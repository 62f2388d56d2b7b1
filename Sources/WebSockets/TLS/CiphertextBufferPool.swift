import NIOCore
import NIOPosix

/// Large ciphertext buffers of one thread, reused by every TLS connection on that thread.
///
/// A large message's ciphertext needs a large buffer for each flush. Allocated and freed
/// each time, buffers of that size sit at the top of the thread's malloc arena, which glibc
/// hands back to the kernel as soon as they are freed and faults in again on the next
/// message: a fifth of the server's CPU time for 64 KiB wss:// echoes. So a handler `take`s
/// a buffer, fills it, and `keep`s it as it hands it to the channel; once the channel has
/// written it and let go, the pool's reference is the only one left and the next `take`
/// reuses it. (The pool holds no reference while a handler fills the buffer: a shared
/// buffer would be copied on its first write.)
///
/// At most `limit` buffers of `bufferSize` (8 × 128 KiB = 1 MiB) are kept per thread, and
/// only threads that wrote large TLS flushes have any; when all of them are still being
/// written (slow peers), `take` allocates one.
final class CiphertextBufferPool: @unchecked Sendable {
    // @unchecked: an instance is reachable only through its own thread's slot in
    // `perThread` (callers look it up each time, never keep it), so only that thread uses it.

    /// The capacity of each pooled buffer: a 64 KiB message's ciphertext and then some.
    static let bufferSize = 128 * 1024
    /// Buffers kept per thread.
    static let limit = 8

    private static let perThread = ThreadSpecificVariable<CiphertextBufferPool>()

    /// The calling thread's pool.
    static var current: CiphertextBufferPool {
        if let pool = perThread.currentValue { return pool }
        let pool = CiphertextBufferPool()
        perThread.currentValue = pool
        return pool
    }

    private var buffers: [ByteBuffer] = []

    /// An empty buffer of `bufferSize` bytes, referenced only by the caller.
    func take(allocator: ByteBufferAllocator) -> ByteBuffer {
        for index in buffers.indices where buffers[index].modifyIfUniquelyOwned({ $0.clear() }) != nil {
            buffers.swapAt(index, buffers.count - 1)
            return buffers.removeLast()
        }
        return allocator.buffer(capacity: Self.bufferSize)
    }

    /// Keeps a reference to a buffer of `bufferSize` that is handed to the channel, for
    /// reuse once the channel is done with it.
    func keep(_ buffer: ByteBuffer) {
        if buffers.count < Self.limit { buffers.append(buffer) }
    }
}
