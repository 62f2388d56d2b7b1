import NIOConcurrencyHelpers
import NIOCore
import WebSocketCore

/// One published message's frame compressed with permessage-deflate, made once by the first
/// hub with a deflate subscriber of its topic and shared by every hub and subscriber after
/// it: compression costs once per message, not once per subscriber or per event loop.
///
/// The frame is compressed on its own (a fresh window, `server_no_context_takeover`), so any
/// peer that agreed to that parameter and to a window of at least `DeflateConfiguration.windowBits`
/// inflates it correctly, whatever else it was sent before.
final class SharedCompression: Sendable {
    private enum State {
        case pending
        case made(ByteBuffer)
        /// zlib failed (out of memory): the subscribers get the uncompressed frame.
        case failed
    }
    private let state = NIOLockedValueBox(State.pending)

    /// The shared compression of a message's frame, or nil when deflate is off or its
    /// payload is under the threshold (then every subscriber gets the frame as it is).
    static func make(for frame: ByteBuffer, _ configuration: DeflateConfiguration) -> SharedCompression? {
        guard configuration.enabled,
            case .header(let header, _)? = try? frame.withUnsafeReadableBytes({ bytes in try FrameHeader.parse(bytes) }),
            header.payloadLength >= configuration.threshold
        else { return nil }
        return SharedCompression()
    }

    /// The compressed frame of `frame` (made now with `compressor`, when no hub made it
    /// before), or nil when it could not be made.
    func frame(of frame: ByteBuffer, using compressor: FrameCompressor) -> ByteBuffer? {
        state.withLockedValue { state in
            switch state {
            case .made(let compressed):
                return compressed
            case .failed:
                return nil
            case .pending:
                guard let compressed = compressor.compress(frame) else {
                    state = .failed
                    return nil
                }
                state = .made(compressed)
                return compressed
            }
        }
    }
}

/// A hub's compressor: turns an unmasked, unfragmented frame into the same message with
/// its payload deflated and RSV1 set. One per event loop, used only there.
final class FrameCompressor {
    private let engine: PerMessageDeflate

    init(_ configuration: DeflateConfiguration) {
        // `serverOptions` is non-nil whenever compression is on; these are its validated ranges.
        engine = PerMessageDeflate(
            role: .server,
            parameters: PerMessageDeflateParameters(serverNoContextTakeover: true, serverMaxWindowBits: configuration.windowBits),
            options: configuration.serverOptions ?? PerMessageDeflateOptions())
    }

    /// Whether a connection with these agreed parameters can take this compressor's frames.
    static func accepts(_ parameters: PerMessageDeflateParameters?, windowBits: Int) -> Bool {
        guard let parameters else { return false }
        return parameters.serverNoContextTakeover && parameters.serverMaxWindowBits >= windowBits
    }

    /// `frames` (whole unmasked frames, one after another: a replayed page) with each frame
    /// whose payload has at least `threshold` bytes compressed; the others as they are.
    func compressEach(_ frames: ByteBuffer, threshold: Int) -> ByteBuffer {
        var rest = frames
        var output = ByteBufferAllocator().buffer(capacity: frames.readableBytes)
        while rest.readableBytes > 0 {
            let parsed = try? rest.withUnsafeReadableBytes { bytes in try FrameHeader.parse(bytes) }
            guard case .header(let header, let headerLength) = parsed,
                let frame = rest.readSlice(length: headerLength + header.payloadLength)
            else {
                // Not whole frames: sent as they are (the reader encodes whole frames only).
                output.writeImmutableBuffer(rest)
                break
            }
            let compressed = header.payloadLength >= threshold ? compress(frame) : nil
            output.writeImmutableBuffer(compressed ?? frame)
        }
        return output
    }

    func compress(_ frame: ByteBuffer) -> ByteBuffer? {
        let parsed = try? frame.withUnsafeReadableBytes { bytes in try FrameHeader.parse(bytes) }
        guard case .header(var header, let headerLength) = parsed,
            let payload = frame.getSlice(at: frame.readerIndex + headerLength, length: header.payloadLength)
        else { return nil }
        guard let body = try? engine.compress(payload, allocator: ByteBufferAllocator()) else { return nil }
        header.reservedBits = .rsv1
        header.payloadLength = body.readableBytes
        var compressed = ByteBufferAllocator().buffer(capacity: header.encodedLength + body.readableBytes)
        header.write(to: &compressed)
        compressed.writeImmutableBuffer(body)
        return compressed
    }
}
