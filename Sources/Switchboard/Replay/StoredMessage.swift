import NIOCore

/// One message of the log: what is appended, and what a read returns.
public struct StoredMessage: Sendable {
    public var topic: Topic
    public var sequence: UInt64
    /// Publish time, unix milliseconds (broker clock).
    public var time: Int64
    public var format: PayloadFormat
    public var payload: ByteBuffer
    /// Who published it (for example `Principal.logLabel`); nil = unknown.
    public var publisher: String?
    /// The `msg` frame, filled in by `ReplayCursor` when asked (encoded on the reader thread,
    /// off the event loop); nil on appends and plain reads.
    package var frame: ByteBuffer?

    package init(
        topic: Topic, sequence: UInt64, time: Int64, format: PayloadFormat, payload: ByteBuffer,
        publisher: String? = nil
    ) {
        self.topic = topic
        self.sequence = sequence
        self.time = time
        self.format = format
        self.payload = payload
        self.publisher = publisher
        self.frame = nil
    }

    /// The server→client frame for this message, exactly as live subscribers received it.
    package func encodeFrame(allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        MessageEncoder.encodeFrame(
            topic: topic, sequence: sequence, time: time, payload: payload, format: format, allocator: allocator)
    }
}
