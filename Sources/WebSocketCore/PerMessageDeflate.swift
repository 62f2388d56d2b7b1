import CZlib
import NIOCore

/// The permessage-deflate engine of one connection (RFC 7692 §7.2): a raw-deflate
/// compressor for the messages we send and a raw-inflate decompressor for the messages the
/// peer sends, each created on first use and freed with the engine.
///
/// Not `Sendable`: it owns two zlib streams and mutable per-message state; it lives on the
/// connection's event loop and is used from there only.
///
/// ## Window bits 8
/// zlib ≥ 1.2.9 rejects `windowBits` -8 in `deflateInit2` for raw streams. This engine
/// compresses with a 512-byte window (-9) when 8 was negotiated: zlib's deflate never emits
/// a match distance above `w_size - MIN_LOOKAHEAD` = 512 - 262 = 250 bytes, so a window-9
/// stream only ever refers back ≤ 250 bytes and is decodable with a 256-byte window, which is
/// what RFC 7692 §7.1.2.1 requires (Node's zlib binding makes the same substitution; the
/// tests inflate such streams with a strict -8 inflater). The decompressor also uses at
/// least 9 bits: a larger inflate window accepts every stream a smaller one does, and
/// zlib ≤ 1.2.8 peers asked for 8 really compressed with a 512-byte window.
///
/// ## Errors
/// - corrupt compressed data (zlib `Z_DATA_ERROR`, or a message that does not end on a
///   DEFLATE block boundary while the context is kept) → 1007 *invalid frame payload data*,
///   as `ws` does: the frame was well formed, its payload is not valid for the message's
///   (compressed) type — the same class of error as invalid UTF-8 in a text message;
/// - a message that inflates to more than `limit` bytes → 1009 *message too big*;
/// - zlib out of memory or internal failure → 1011 *internal error*.
///
/// After any error the engine's streams are in an undefined state: fail the connection.
public final class PerMessageDeflate {
    /// Which end this engine compresses for.
    public let role: Role
    /// What the handshake settled.
    public let parameters: PerMessageDeflateParameters
    /// Level, memory level and threshold of the compressor.
    public let options: PerMessageDeflateOptions

    /// Window bits negotiated for what we send (our compressor).
    public var compressorWindowBits: Int {
        role == .server ? parameters.serverMaxWindowBits : parameters.clientMaxWindowBits
    }
    /// Window bits negotiated for what the peer sends (our decompressor).
    public var decompressorWindowBits: Int {
        role == .server ? parameters.clientMaxWindowBits : parameters.serverMaxWindowBits
    }
    /// Whether we reset our compressor after every message.
    public var compressorNoContextTakeover: Bool {
        role == .server ? parameters.serverNoContextTakeover : parameters.clientNoContextTakeover
    }
    /// Whether the peer resets its compressor after every message (so we reset our decompressor).
    public var decompressorNoContextTakeover: Bool {
        role == .server ? parameters.clientNoContextTakeover : parameters.serverNoContextTakeover
    }

    private var deflater: UnsafeMutablePointer<z_stream>?
    private var inflater: UnsafeMutablePointer<z_stream>?
    /// Bytes inflated so far for the message being received.
    private var inflatedInMessage = 0
    /// The peer's data hit a block with BFINAL set: zlib stopped; further input (if any)
    /// continues the stream with the same window (RFC 7692 §7.2.3.4).
    private var inflateStreamEnded = false
    /// Where inflate writes once the message reached its limit: any byte landing here means
    /// the message is too big, so `output` never grows past `limit`. Followed by a copy of
    /// `tail`, fed to zlib from there.
    private let probe: UnsafeMutablePointer<UInt8>
    private static let probeSize = 64

    /// Bytes appended to a received message before inflating, and stripped from a sent one.
    private static let tail: [UInt8] = [0x00, 0x00, 0xff, 0xff]
    /// Largest slice handed to zlib in one call (its counters are 32-bit).
    private static let maxZlibSlice = 1 << 30
    /// Smallest growth step of the output buffer while inflating.
    private static let minimumInflateGrowth = 4096

    /// An engine for `role` with the negotiated `parameters`; its zlib streams are made on
    /// first use. Traps on invalid `options`: validate them first (`PerMessageDeflateOptions.validate()`).
    public init(role: Role, parameters: PerMessageDeflateParameters, options: PerMessageDeflateOptions = .init()) {
        // Validated options only (see `precheck`); the parameters come from `negotiate` or
        // `accept`, which only produce window bits 8...15.
        options.precheck()
        precondition((8...15).contains(parameters.serverMaxWindowBits) && (8...15).contains(parameters.clientMaxWindowBits),
                     "window bits must be 8...15")
        self.role = role
        self.parameters = parameters
        self.options = options
        self.probe = .allocate(capacity: Self.probeSize + Self.tail.count)
        self.probe.initialize(repeating: 0, count: Self.probeSize)
        (self.probe + Self.probeSize).initialize(from: Self.tail, count: Self.tail.count)
    }

    deinit {
        if let deflater {
            deflateEnd(deflater)
            deflater.deinitialize(count: 1)
            deflater.deallocate()
        }
        if let inflater {
            inflateEnd(inflater)
            inflater.deinitialize(count: 1)
            inflater.deallocate()
        }
        probe.deallocate()
    }

    /// Whether a message of `byteCount` payload bytes should be compressed (`threshold`).
    @inlinable
    public func shouldCompress(byteCount: Int) -> Bool {
        byteCount >= options.threshold
    }

    // MARK: Compression

    /// Compresses one whole message into a new buffer: the payload of a frame with RSV1 set.
    public func compress(_ message: ByteBuffer, allocator: ByteBufferAllocator) throws(WebSocketError) -> ByteBuffer {
        var output = allocator.buffer(capacity: 0)
        try compress(message, isFinal: true, into: &output)
        return output
    }

    /// Compresses the next fragment of a message and appends the result to `output`.
    ///
    /// Every fragment is flushed (`Z_SYNC_FLUSH`) so it can be sent at once; for the final
    /// fragment the trailing `00 00 ff ff` is removed (RFC 7692 §7.2.1) and, with
    /// no_context_takeover on our side, the compressor is reset. An empty final fragment
    /// becomes the single byte `00` (an empty stored block's header, §7.2.3.6), never an
    /// empty payload, which the peer could not inflate.
    public func compress(_ fragment: ByteBuffer, isFinal: Bool, into output: inout ByteBuffer) throws(WebSocketError) {
        let stream = try makeDeflater()
        let count = fragment.readableBytes
        if count == 0 {
            if isFinal {
                output.writeInteger(UInt8(0))
                try finishCompressedMessage(stream)
            }
            return
        }

        let startIndex = output.writerIndex
        output.reserveCapacity(minimumWritableBytes: Int(deflateBound(stream, UInt(count))) + 16)
        var status = Z_OK
        fragment.withUnsafeReadableBytes { input in
            var offset = 0
            while offset < input.count, status == Z_OK {
                let slice = min(input.count - offset, Self.maxZlibSlice)
                // `offset < input.count`: a non-empty buffer has a base address.
                stream.pointee.next_in = UnsafeMutablePointer(
                    mutating: input.baseAddress!.advanced(by: offset).assumingMemoryBound(to: Bytef.self))
                stream.pointee.avail_in = UInt32(slice)
                offset += slice
                // With Z_SYNC_FLUSH, deflate is done with this input once it returns with
                // output space left (zlib.h); otherwise it needs more room.
                repeat {
                    if output.writableBytes < 64 {
                        output.reserveCapacity(minimumWritableBytes: max(output.capacity / 2, 4096))
                    }
                    let room = min(output.writableBytes, Self.maxZlibSlice)
                    // Room was reserved just above: the writable bytes have a base address.
                    output.writeWithUnsafeMutableBytes(minimumWritableBytes: 0) { buffer in
                        stream.pointee.next_out = buffer.baseAddress!.assumingMemoryBound(to: Bytef.self)
                        stream.pointee.avail_out = UInt32(room)
                        status = deflate(stream, Z_SYNC_FLUSH)
                        return room - Int(stream.pointee.avail_out)
                    }
                    // Z_BUF_ERROR only means "no progress possible": not fatal.
                    if status == Z_BUF_ERROR { status = Z_OK }
                } while status == Z_OK && (stream.pointee.avail_out == 0 || stream.pointee.avail_in != 0)
            }
        }
        stream.pointee.next_in = nil
        stream.pointee.next_out = nil
        guard status == Z_OK else {
            throw WebSocketError(.internalError, "deflate failed: \(Self.describe(status, stream))")
        }
        if isFinal {
            // A sync flush always ends the output with an empty stored block: 00 00 ff ff.
            let written = output.writerIndex - startIndex
            guard written >= 4,
                  output.getBytes(at: output.writerIndex - 4, length: 4) == Self.tail
            else {
                throw WebSocketError(.internalError, "deflate output lacks the sync-flush marker")
            }
            output.moveWriterIndex(to: output.writerIndex - 4)
            try finishCompressedMessage(stream)
        }
    }

    private func finishCompressedMessage(_ stream: UnsafeMutablePointer<z_stream>) throws(WebSocketError) {
        if compressorNoContextTakeover {
            let status = deflateReset(stream)
            guard status == Z_OK else {
                throw WebSocketError(.internalError, "deflateReset failed: \(Self.describe(status, stream))")
            }
        }
    }

    private func makeDeflater() throws(WebSocketError) -> UnsafeMutablePointer<z_stream> {
        if let deflater { return deflater }
        let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        // -9 for 8: see "Window bits 8" in the type's documentation.
        let windowBits = Int32(max(compressorWindowBits, 9))
        let status = deflateInit2_(stream, options.level, Z_DEFLATED, -windowBits, options.memLevel,
                                   Z_DEFAULT_STRATEGY, zlibVersion(), Int32(MemoryLayout<z_stream>.size))
        guard status == Z_OK else {
            stream.deinitialize(count: 1)
            stream.deallocate()
            throw WebSocketError(.internalError, "deflateInit2 failed (\(status))")
        }
        deflater = stream
        return stream
    }

    // MARK: Decompression

    /// Inflates the next fragment of a compressed message (the RSV1 message's frames'
    /// payloads, in order) and appends the bytes to `output`.
    ///
    /// - Parameters:
    ///   - fragment: the compressed bytes of this frame's payload.
    ///   - isFinal: this is the message's last fragment: the `00 00 ff ff` tail is fed
    ///     after it (RFC 7692 §7.2.2) and, with no_context_takeover on the peer's side, the
    ///     decompressor is reset afterwards.
    ///   - limit: the most bytes the whole message (all its fragments) may inflate to.
    ///     Exceeding it throws 1009 at once: zlib writes straight into `output`, never past
    ///     `limit` bytes for this message (the buffer's capacity is that rounded up to a power
    ///     of two), and one more byte of output is detected in a small side buffer.
    ///   - output: the message's bytes so far; the inflated bytes are appended.
    /// - Throws: `WebSocketError` with 1009, 1007 or 1011 (see the type's documentation).
    public func decompress(
        _ fragment: ByteBuffer,
        isFinal: Bool,
        into output: inout ByteBuffer,
        limit: Int
    ) throws(WebSocketError) {
        // The limit is `maxPayload`, which `ConnectionOptions.validate()` keeps >= 0.
        precondition(limit >= 0, "limit must not be negative")
        let stream = try makeInflater()
        if fragment.readableBytes > 0 {
            try fragment.withUnsafeReadableBytes { (input) throws(WebSocketError) in
                try inflate(stream, input, into: &output, limit: limit, isTail: false)
            }
        }
        guard isFinal else { return }

        try inflate(stream, UnsafeRawBufferPointer(start: probe + Self.probeSize, count: 4),
                    into: &output, limit: limit, isTail: true)
        // A valid message ends with blocks complete; with the tail that leaves inflate waiting
        // for the next block header (data_type bit 128). Otherwise the tail was taken as the
        // start of a stored block, and the next message would be decoded from inside it.
        let atBlockBoundary = inflateStreamEnded || stream.pointee.data_type & 128 != 0
        inflatedInMessage = 0
        if decompressorNoContextTakeover {
            try resetInflater(stream, keepingWindow: false)
        } else {
            guard atBlockBoundary else {
                throw .invalidPayload("invalid compressed data: message does not end on a block boundary")
            }
            if inflateStreamEnded {
                try resetInflater(stream, keepingWindow: true)
            }
        }
    }

    private func inflate(
        _ stream: UnsafeMutablePointer<z_stream>,
        _ input: UnsafeRawBufferPointer,
        into output: inout ByteBuffer,
        limit: Int,
        isTail: Bool
    ) throws(WebSocketError) {
        defer {
            stream.pointee.next_in = nil
            stream.pointee.next_out = nil
        }
        var offset = 0
        while offset < input.count {
            if inflateStreamEnded {
                // The sender's data ended with a BFINAL block: the tail is not needed.
                if isTail { return }
                try resetInflater(stream, keepingWindow: true)
            }
            let slice = min(input.count - offset, Self.maxZlibSlice)
            // `offset < input.count`: a non-empty buffer has a base address.
            stream.pointee.next_in = UnsafeMutablePointer(
                mutating: input.baseAddress!.advanced(by: offset).assumingMemoryBound(to: Bytef.self))
            stream.pointee.avail_in = UInt32(slice)
            offset += slice

            while true {
                let allowance = limit - inflatedInMessage
                var status = Z_OK
                var produced = 0
                if allowance > 0 {
                    if output.writableBytes == 0 {
                        output.reserveCapacity(
                            minimumWritableBytes: min(allowance, max(output.capacity, Self.minimumInflateGrowth)))
                    }
                    let room = min(output.writableBytes, allowance, Self.maxZlibSlice)
                    // Room was reserved just above: the writable bytes have a base address.
                    output.writeWithUnsafeMutableBytes(minimumWritableBytes: 0) { buffer in
                        stream.pointee.next_out = buffer.baseAddress!.assumingMemoryBound(to: Bytef.self)
                        stream.pointee.avail_out = UInt32(room)
                        status = CZlib.inflate(stream, Z_SYNC_FLUSH)
                        produced = room - Int(stream.pointee.avail_out)
                        return produced
                    }
                } else {
                    stream.pointee.next_out = probe
                    stream.pointee.avail_out = UInt32(Self.probeSize)
                    status = CZlib.inflate(stream, Z_SYNC_FLUSH)
                    produced = Self.probeSize - Int(stream.pointee.avail_out)
                }
                inflatedInMessage += produced
                if inflatedInMessage > limit {
                    throw .tooBig("decompressed message exceeds \(limit) bytes")
                }

                switch status {
                case Z_OK, Z_BUF_ERROR:
                    if stream.pointee.avail_out != 0 {
                        // Output space left over: inflate consumed all the input it could.
                        guard stream.pointee.avail_in == 0 else {
                            throw WebSocketError(.internalError, "inflate made no progress")
                        }
                        break
                    }
                    continue
                case Z_STREAM_END:
                    // A block with BFINAL set (RFC 7692 §7.2.3.4). Anything after it continues
                    // the message with the same window.
                    inflateStreamEnded = true
                    if stream.pointee.avail_in == 0 || isTail { break }
                    try resetInflater(stream, keepingWindow: true)
                    continue
                case Z_DATA_ERROR, Z_NEED_DICT:
                    throw .invalidPayload("invalid compressed data: \(Self.describe(status, stream))")
                case Z_MEM_ERROR:
                    throw WebSocketError(.internalError, "out of memory while inflating")
                default:
                    throw WebSocketError(.internalError, "inflate failed: \(Self.describe(status, stream))")
                }
                break
            }
        }
    }

    /// Restarts the raw inflate stream, optionally keeping its window (the LZ77 history).
    /// `next_in`/`avail_in` are untouched by `inflateReset`.
    private func resetInflater(_ stream: UnsafeMutablePointer<z_stream>, keepingWindow: Bool) throws(WebSocketError) {
        inflateStreamEnded = false
        if !keepingWindow {
            guard inflateReset(stream) == Z_OK else {
                throw WebSocketError(.internalError, "inflateReset failed")
            }
            return
        }
        var window = [UInt8](repeating: 0, count: 1 << 15)
        var length: UInt32 = 0
        let status = window.withUnsafeMutableBufferPointer { buffer -> Int32 in
            var status = inflateGetDictionary(stream, buffer.baseAddress, &length)
            if status == Z_OK { status = inflateReset(stream) }
            if status == Z_OK, length > 0 { status = inflateSetDictionary(stream, buffer.baseAddress, length) }
            return status
        }
        guard status == Z_OK else {
            throw WebSocketError(.internalError, "inflate restart failed (\(status))")
        }
    }

    private func makeInflater() throws(WebSocketError) -> UnsafeMutablePointer<z_stream> {
        if let inflater { return inflater }
        let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        // At least 9: see "Window bits 8" in the type's documentation.
        let windowBits = Int32(max(decompressorWindowBits, 9))
        let status = inflateInit2_(stream, -windowBits, zlibVersion(), Int32(MemoryLayout<z_stream>.size))
        guard status == Z_OK else {
            stream.deinitialize(count: 1)
            stream.deallocate()
            throw WebSocketError(.internalError, "inflateInit2 failed (\(status))")
        }
        inflater = stream
        return stream
    }

    private static func describe(_ status: Int32, _ stream: UnsafeMutablePointer<z_stream>) -> String {
        if let message = stream.pointee.msg {
            return String(String(cString: message).prefix(60))
        }
        return "zlib status \(status)"
    }
}
