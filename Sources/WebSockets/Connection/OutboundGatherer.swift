import NIOCore

/// The frames a connection sends in one burst (a read cycle's answers, a fan-out run),
/// gathered into one buffer so that they go down the pipeline as one write and one flush,
/// and the accounting that bounds what waits to be written. Pure: it says what to write,
/// `WebSocketHandler` writes it, so no channel call runs inside a mutation of this value
/// (a write can complete promises whose callbacks send again).
///
/// Invariants:
/// - `gathered` holds frames in send order, none of them written to the channel yet; a
///   frame larger than `copyThreshold` is never copied into it, but written as its own
///   buffer right after what was gathered before it.
/// - `needsFlush` is true exactly when something went to the channel since the last flush.
/// - A lone gathered buffer with nothing written before it goes down as one `writeAndFlush`.
/// - While the channel is writable it holds less than its high watermark, so gathering up
///   to `gatherLimit` bytes keeps `bufferedAmount` within `maxBufferedAmount`: a send then
///   needs no question to the channel.
///
/// The fields are read on every send: they stay small and together, with `gathered` right
/// after `gatherLimit` so that the handler's send-path fields share a cache line. The
/// methods the send path calls are inlined: a send makes no call into this type.
struct OutboundGatherer {
    /// Frames no larger than this are copied into the gathered buffer; larger ones are
    /// written as their own buffer, without a copy.
    static let copyThreshold = 4096

    /// NIO's default high write watermark, until the handler reads the channel's.
    static let defaultWriteHighWatermark = 64 * 1024

    /// `maxBufferedAmount` less the channel's high write watermark.
    private var gatherLimit: Int
    private(set) var gathered: ByteBuffer?
    private(set) var needsFlush = false
    /// The channel's writability, kept from `channelWritabilityChanged` so that a send does
    /// not ask the channel (an existential call and an atomic load) while it is writable.
    var channelIsWritable = true

    init(maxBufferedAmount: Int) {
        gatherLimit = maxBufferedAmount - Self.defaultWriteHighWatermark
    }

    mutating func setWriteHighWatermark(_ high: Int, maxBufferedAmount: Int) {
        gatherLimit = maxBufferedAmount - high
    }

    @inline(__always)
    var gatheredBytes: Int { gathered?.readableBytes ?? 0 }

    /// True when a send certainly fits under `maxBufferedAmount` without asking the channel
    /// how much it holds.
    @inline(__always)
    var hasRoom: Bool { channelIsWritable && gatheredBytes <= gatherLimit }

    /// Gathered bytes plus `channelBytes`, what the channel has not written yet.
    func bufferedAmount(channelBytes: Int) -> Int { gatheredBytes + channelBytes }

    /// Whether a frame of `count` bytes encoded elsewhere is copied into the gathered buffer.
    @inline(__always)
    static func gathers(byteCount count: Int) -> Bool { count <= copyThreshold }

    /// Gathers a frame encoded elsewhere. Into an empty gatherer the frame itself is kept (a
    /// retain, no allocation and no copy); copy-on-write copies it should more follow.
    @inline(__always)
    mutating func gather(_ frame: ByteBuffer) {
        if gathered == nil {
            gathered = frame
        } else {
            gathered!.writeImmutableBuffer(frame)  // non-nil: the branch above handles nil
        }
    }

    /// Encodes into the gathered buffer, allocating one of at least `capacity` bytes if
    /// none is gathered (only then is `allocator` evaluated: reaching the channel's costs
    /// an existential call).
    @inline(__always)
    mutating func gather(
        capacity: Int, allocator: @autoclosure () -> ByteBufferAllocator, _ encode: (inout ByteBuffer) -> Void
    ) {
        if gathered == nil {
            gathered = allocator().buffer(capacity: max(capacity, 1024))
        }
        encode(&gathered!)  // non-nil: set just above
    }

    /// Takes the gathered bytes to write now, before a buffer written on its own. The
    /// caller writes what this returns (if anything) and then that buffer.
    @inline(__always)
    mutating func takeBeforeOwnWrite() -> ByteBuffer? {
        needsFlush = true
        return gathered.take()
    }

    /// Takes the gathered bytes to write, unflushed. With `forPromise`, an empty buffer
    /// when nothing is gathered: its write completes after every earlier one, as writes
    /// complete in order.
    @inline(__always)
    mutating func takeForWrite(forPromise: Bool) -> ByteBuffer? {
        if let buffer = gathered.take() {
            needsFlush = true
            return buffer
        }
        guard forPromise else { return nil }
        needsFlush = true
        return ByteBuffer()
    }

    enum Flush: Equatable {
        /// Nothing was written or gathered.
        case nothing
        /// Only this buffer is due: one trip down the pipeline instead of a write and a flush.
        case writeAndFlush(ByteBuffer)
        /// Write this buffer, then flush.
        case writeThenFlush(ByteBuffer)
        /// Flush what was written.
        case flush
    }

    /// Takes everything due for the socket. With `forPromise`, something is always written
    /// to carry the promise.
    @inline(__always)
    mutating func takeForFlush(forPromise: Bool) -> Flush {
        if !needsFlush, let buffer = gathered.take() {
            return .writeAndFlush(buffer)
        }
        let buffer = takeForWrite(forPromise: forPromise)
        guard needsFlush else { return .nothing }
        needsFlush = false
        if let buffer { return .writeThenFlush(buffer) }
        return .flush
    }
}
