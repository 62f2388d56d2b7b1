import NIOCore

/// What the receiver hands up: a whole message or a control frame.
public enum ReceivedEvent: Sendable, Hashable {
    /// A complete text message; its bytes are valid UTF-8.
    case text(ByteBuffer)
    /// A complete binary message.
    case binary(ByteBuffer)
    /// A ping and its payload (at most 125 bytes).
    case ping(ByteBuffer)
    /// A pong and its payload (at most 125 bytes).
    case pong(ByteBuffer)
    /// The peer's close frame. `.noStatusReceived` when it carried no code. Nothing is
    /// decoded after it.
    case close(CloseCode, reason: String)
}

/// Turns the bytes a peer sends into messages and control frames, enforcing RFC 6455:
/// frame rules, message assembly, limits, UTF-8 of text, permessage-deflate.
///
/// Invariants:
/// - Every violation is thrown as a `WebSocketError` naming the close code to fail the
///   connection with; after a throw, or after a close frame, the receiver yields nothing.
/// - A frame is judged as soon as its header is complete, before its payload is buffered,
///   and text is validated as its bytes arrive, so an invalid byte fails the connection
///   even when the rest of its frame has not come yet.
/// - `pending` holds bytes not yet consumed, with masked payloads already unmasked.
///   Single-frame messages are handed out as slices of it, without a copy.
/// - `deferred` holds received bytes (still masked, in the server role) that follow
///   `pending`: the payload of a large frame that began after another frame ended in the
///   same read, or of one whose header began the read, or whatever follows a large frame
///   in the read that ends it. It gets storage
///   of its own once `pending` is drained, so that handing out the frames before it does
///   not force a copy of its bytes (a read ending inside a 64 KiB frame otherwise carried
///   up to the whole of it over into fresh storage).
public struct Receiver {
    /// What a receiver enforces.
    public struct Configuration: Sendable, Hashable {
        /// The role of this end; frames are judged by the rules for the other end.
        public var role: Role
        /// The largest message (after decompression) and the largest frame accepted; past it, 1009.
        public var maxPayload: Int
        /// Turning it off skips UTF-8 validation of text (like `ws`'s `skipUTF8Validation`).
        public var validateUTF8: Bool

        /// A configuration for `role`; defaults as `ws`: 100 MiB, UTF-8 validated.
        public init(role: Role, maxPayload: Int = 100 * 1024 * 1024, validateUTF8: Bool = true) {
            self.role = role
            self.maxPayload = maxPayload
            self.validateUTF8 = validateUTF8
        }
    }

    /// A message whose first frame did not have FIN set, or that is compressed.
    private struct PartialMessage {
        var opcode: Opcode
        var compressed: Bool
        var buffer: ByteBuffer
        /// Payload bytes received on the wire so far (before decompression).
        var wireBytes: Int
    }

    /// What this receiver enforces.
    public let configuration: Configuration
    /// The permessage-deflate engine when the extension was negotiated; it owns RSV1.
    public let compression: PerMessageDeflate?
    private var pending: ByteBuffer
    /// True while no slice of `pending`'s storage has been handed out, so it can grow in
    /// place. A buffer that came from outside is never private.
    private var pendingIsPrivate = false
    /// Unmasks client payloads while copying them into `pending` (server role only).
    private var unmasker: StreamUnmasker?
    /// Masked bytes received after `pending`'s, appended once `pending` is drained.
    private var deferred: ByteBuffer?
    /// The frame whose payload is being received, once its header has been accepted.
    private var frame: FrameHeader?
    /// How many payload bytes of `frame` the UTF-8 validator has seen.
    private var frameBytesValidated = 0
    private var message: PartialMessage?
    private var utf8 = UTF8Validator()
    private var finished = false

    /// A receiver with `configuration`, decompressing with `compression` when the extension was
    /// negotiated.
    public init(configuration: Configuration, compression: PerMessageDeflate? = nil) {
        self.configuration = configuration
        self.compression = compression
        self.pending = Self.empty
        self.unmasker = configuration.role == .server ? StreamUnmasker() : nil
    }

    /// True once a close frame was received or an error thrown.
    public var isFinished: Bool { finished }

    /// Bytes received but not yet turned into events.
    public var bufferedBytes: Int { pending.readableBytes + (deferred?.readableBytes ?? 0) }

    /// True when, after `next()` returned nil, a frame has begun to arrive (part of its
    /// header, or its header and part of its payload) but is not whole.
    public var isMidFrame: Bool { frame != nil || pending.readableBytes > 0 || deferred != nil }

    /// Frames received whole so far (wrapping): tells one partial frame from the next.
    public private(set) var completedFrames = 0

    /// Adds bytes read from the connection. Call `next()` until it returns nil afterwards.
    public mutating func append(_ incoming: ByteBuffer) {
        guard !finished else { return }
        guard incoming.readableBytes > 0 else { return }
        if deferred != nil {
            deferred!.writeImmutableBuffer(incoming)  // non-nil: checked just above
            return
        }
        var count = incoming.readableBytes
        // Payload of the last frame begun in `incoming` that is still to come, when known.
        var payloadToCome: Int?
        if unmasker != nil, count > Self.ownStorageThreshold {
            // Non-nil: checked just above. A copy of the unmasker only finds where to stop.
            var scout = unmasker!
            count = incoming.withUnsafeReadableBytes { source in
                scout.advance(over: source, into: nil, stoppingBeforeFrameLargerThan: Self.ownStorageThreshold)
            }
            // When it stopped early, that frame's payload goes to `deferred`, not to `pending`.
            payloadToCome = count < incoming.readableBytes ? 0 : scout.payloadRemaining
        }
        if let frame, frame.payloadLength > Self.ownStorageThreshold,
            case let frameRemainder = frame.payloadLength - pending.readableBytes, frameRemainder < count
        {
            // A large frame ends in this read: what follows waits in `deferred`, so that the
            // frame's storage holds it alone. Storage comes in powers of two and a 64 KiB
            // payload fills its own: the next header would double it, or move the whole
            // frame into storage twice its size. The cut is at the frame's end, so `pending`
            // drains and `deferred` follows it whole.
            count = frameRemainder
        }
        if payloadToCome != nil, !pendingIsPrivate, pending.readableBytes == 0, frame == nil,
            let headerLength = Self.leadingHeaderOfFrameGoingPast(incoming)
        {
            // A large frame begins here and goes on past this read: its header goes first,
            // alone, so that once it is parsed the payload gets storage sized for it (a
            // header in front of a 64 KiB payload would double the storage).
            count = headerLength
            payloadToCome = 0
        }
        var incoming = incoming
        if count < incoming.readableBytes {
            deferred = incoming.getSlice(at: incoming.readerIndex + count, length: incoming.readableBytes - count)
            incoming = incoming.getSlice(at: incoming.readerIndex, length: count)!  // count is less
        }
        if unmasker == nil, pending.readableBytes == 0 {
            pending = incoming
            pendingIsPrivate = false
            return
        }
        if !pendingIsPrivate {
            // Copy what is left into storage of our own, once; it stays private (and grows
            // in place) until a slice of it is handed out. Without setting the flag, every
            // read of a frame spread over several reads re-copied all of it (quadratic).
            pending = freshPending(adding: count, payloadToCome: payloadToCome)
            pendingIsPrivate = true
        }
        if unmasker != nil {
            pending.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { destination in
                incoming.withUnsafeReadableBytes { source in
                    // Non-nil: checked just above, and nothing in between clears it.
                    _ = unmasker!.advance(
                        over: UnsafeRawBufferPointer(rebasing: source[..<count]),
                        into: UnsafeMutableRawBufferPointer(rebasing: destination[..<count]))
                }
                return count
            }
        } else {
            pending.writeImmutableBuffer(incoming)
        }
    }

    /// A private buffer holding what is left of `pending`, with room for `count` more bytes
    /// and, when a frame is under way, for the rest of it (up to a cap, so a peer that
    /// announces a huge frame cannot make us reserve its size up front): `payloadToCome`
    /// when the unmasker's scout knows it, else what the parsed header says.
    private func freshPending(adding count: Int, payloadToCome: Int?) -> ByteBuffer {
        let leftover = pending.readableBytes
        var capacity = leftover + count
        let toCome = payloadToCome ?? frame.map { $0.payloadLength - leftover - count } ?? 0
        if toCome > 0 {
            capacity += min(toCome, Self.maxReservation)
        }
        var fresh = ByteBufferAllocator().buffer(capacity: capacity)
        fresh.writeImmutableBuffer(pending)
        return fresh
    }

    private static let maxReservation = 1 << 20

    /// Frames with a larger payload get storage of their own (see `deferred`): one that begins
    /// after another frame ended in the same read, and what follows one in the read that
    /// ends it. Smaller ones cost less to copy over.
    static let ownStorageThreshold = 8 * 1024

    /// Once `pending` is drained, moves `deferred` into it; false if there was none.
    private mutating func takeDeferred() -> Bool {
        guard pending.readableBytes == 0, let bytes = deferred.take() else { return false }
        releaseDrainedPending()
        append(bytes)
        return true
    }

    /// The length of the header `bytes` begin with, when the frame it starts goes on past them.
    private static func leadingHeaderOfFrameGoingPast(_ bytes: ByteBuffer) -> Int? {
        bytes.withUnsafeReadableBytes { raw in
            guard case .header(let header, let length)? = try? FrameHeader.parse(raw),
                length + header.payloadLength > raw.count
            else { return nil }
            return length
        }
    }

    /// The next event, or nil when more bytes are needed.
    public mutating func next() throws(WebSocketError) -> ReceivedEvent? {
        guard !finished else { return nil }
        do {
            return try decode()
        } catch {
            finished = true
            throw error
        }
    }

    private mutating func decode() throws(WebSocketError) -> ReceivedEvent? {
        while true {
            let header: FrameHeader
            if let frame {
                header = frame
            } else {
                let parsed = try pending.withUnsafeReadableBytes { bytes throws(WebSocketError) in
                    try FrameHeader.parse(bytes)
                }
                guard case .header(let parsedHeader, let headerLength) = parsed else {
                    if takeDeferred() { continue }
                    releaseDrainedPending()
                    return nil
                }
                try accept(parsedHeader)
                pending.moveReaderIndex(forwardBy: headerLength)
                header = parsedHeader
                frame = parsedHeader
                frameBytesValidated = 0
            }

            let available = min(pending.readableBytes, header.payloadLength)
            if available > frameBytesValidated, isStreamingText(header) {
                let valid = pending.withUnsafeReadableBytes { bytes in
                    utf8.validate(UnsafeRawBufferPointer(rebasing: bytes[frameBytesValidated..<available]))
                }
                guard valid else { throw .invalidPayload("text is not valid UTF-8") }
                frameBytesValidated = available
            }
            guard available == header.payloadLength else {
                if takeDeferred() { continue }
                releaseDrainedPending()
                return nil
            }

            // `available == payloadLength` was checked just above.
            let payload = pending.readSlice(length: header.payloadLength)!
            pendingIsPrivate = false
            frame = nil
            completedFrames &+= 1
            if let event = try complete(header, payload) {
                return event
            }
        }
    }

    /// Between frames with nothing left to decode, `pending` lets go of its storage: an
    /// idle connection then holds no receive memory (the storage is shared with the last
    /// message handed out, or would only be kept for reuse). Mid-frame it is kept, since it
    /// may hold the room reserved for the rest of the frame.
    private mutating func releaseDrainedPending() {
        guard pending.readableBytes == 0, pending.capacity > 0 else { return }
        pending = Self.empty
        pendingIsPrivate = false
    }

    /// A buffer without storage (NIO shares one for every zero-capacity buffer).
    private static var empty: ByteBuffer { ByteBufferAllocator().buffer(capacity: 0) }

    /// Uncompressed text is validated while it arrives; compressed text after inflating.
    private func isStreamingText(_ header: FrameHeader) -> Bool {
        guard configuration.validateUTF8 else { return false }
        switch header.opcodeBits {
        case Opcode.text.rawValue: return !header.reservedBits.contains(.rsv1)
        case Opcode.continuation.rawValue: return message.map { $0.opcode == .text && !$0.compressed } ?? false
        default: return false
        }
    }

    /// Judges a header against the role, the extensions and the message in progress.
    private func accept(_ header: FrameHeader) throws(WebSocketError) {
        guard let opcode = header.opcode else {
            throw .protocolError("reserved opcode 0x\(String(header.opcodeBits, radix: 16))")
        }
        let allowedBits: ReservedBits = compression == nil ? [] : .rsv1
        let unexpectedBits = header.reservedBits.subtracting(allowedBits)
        if !unexpectedBits.isEmpty {
            throw .protocolError("reserved bits \(unexpectedBits.names) set without an extension that defines them")
        }
        if header.reservedBits.contains(.rsv1), opcode.isControl || opcode == .continuation {
            throw .protocolError("RSV1 set on a \(opcode) frame; permessage-deflate marks only a message's first frame")
        }
        switch configuration.role {
        case .server where header.maskingKey == nil:
            throw .protocolError("client frame is not masked")
        case .client where header.maskingKey != nil:
            throw .protocolError("server frame is masked")
        default:
            break
        }
        if opcode.isControl {
            guard header.fin else { throw .protocolError("fragmented control frame") }
            guard header.payloadLength <= 125 else {
                throw .protocolError("control frame payload of \(header.payloadLength) bytes (max 125)")
            }
            return
        }
        if opcode == .continuation {
            guard let message else { throw .protocolError("continuation frame without a message to continue") }
            // Subtracted, not added: a 64-bit length near Int.max would overflow the sum.
            guard header.payloadLength <= configuration.maxPayload - message.wireBytes else {
                throw .tooBig("message exceeds \(configuration.maxPayload) bytes")
            }
        } else {
            guard message == nil else {
                throw .protocolError("new data frame while a fragmented message is incomplete")
            }
            guard header.payloadLength <= configuration.maxPayload else {
                throw .tooBig("message exceeds \(configuration.maxPayload) bytes")
            }
        }
    }

    /// Acts on a frame whose payload is complete; returns an event when one is ready.
    /// Takes `payload` consumed: it goes into the event without a retain of its own.
    private mutating func complete(_ header: FrameHeader, _ payload: consuming ByteBuffer) throws(WebSocketError)
        -> ReceivedEvent?
    {
        // `accept` refused reserved opcodes (nil) before the payload was read.
        switch header.opcode! {
        case .ping:
            return .ping(payload)
        case .pong:
            return .pong(payload)
        case .close:
            let (code, reason) = try ClosePayload.parse(payload)
            finished = true
            return .close(code, reason: reason)
        case .text, .binary:
            let opcode = header.opcode!
            let compressed = header.reservedBits.contains(.rsv1)
            if header.fin, !compressed {
                return try finishMessage(opcode, payload)
            }
            let capacity = min(payload.readableBytes * (compressed ? 4 : 2) + 64, configuration.maxPayload)
            var partial = PartialMessage(
                opcode: opcode, compressed: compressed, buffer: ByteBufferAllocator().buffer(capacity: capacity), wireBytes: 0)
            try append(payload, isFinal: header.fin, to: &partial)
            if header.fin {
                return try finishMessage(opcode, partial.buffer)
            }
            message = partial
            return nil
        case .continuation:
            // `accept` refused a continuation without a message in progress.
            var partial = message!
            message = nil  // so that `partial` holds the only reference and grows in place
            try append(payload, isFinal: header.fin, to: &partial)
            if header.fin {
                return try finishMessage(partial.opcode, partial.buffer)
            }
            message = partial
            return nil
        }
    }

    /// Adds a fragment to a message: inflated (and then validated) when compressed, else
    /// copied as it is (its UTF-8 was validated while it arrived).
    private mutating func append(_ payload: ByteBuffer, isFinal: Bool, to partial: inout PartialMessage)
        throws(WebSocketError)
    {
        partial.wireBytes += payload.readableBytes
        guard partial.compressed, let compression else {
            partial.buffer.writeImmutableBuffer(payload)
            return
        }
        let start = partial.buffer.writerIndex
        try compression.decompress(payload, isFinal: isFinal, into: &partial.buffer, limit: configuration.maxPayload)
        guard partial.opcode == .text, configuration.validateUTF8 else { return }
        let valid = partial.buffer.withUnsafeReadableBytes { bytes in
            utf8.validate(UnsafeRawBufferPointer(rebasing: bytes[(start - partial.buffer.readerIndex)...]))
        }
        guard valid else { throw .invalidPayload("text is not valid UTF-8") }
    }

    private mutating func finishMessage(_ opcode: Opcode, _ payload: consuming ByteBuffer) throws(WebSocketError)
        -> ReceivedEvent
    {
        guard opcode == .text else { return .binary(payload) }
        if configuration.validateUTF8 {
            guard utf8.isAtCharacterBoundary else {
                throw .invalidPayload("text message ends inside a UTF-8 sequence")
            }
            utf8.reset()
        }
        return .text(payload)
    }
}

extension ReservedBits {
    var names: String {
        [(ReservedBits.rsv1, "RSV1"), (.rsv2, "RSV2"), (.rsv3, "RSV3")]
            .filter { contains($0.0) }.map(\.1).joined(separator: ", ")
    }
}

/// Follows a stream of masked frames byte by byte and copies it with every payload
/// unmasked, so that the decoder downstream sees plain payloads. It only tracks where
/// headers end; judging them is the receiver's job.
struct StreamUnmasker {
    /// Header bytes seen of the frame being scanned (at most 14).
    private var header: (UInt64, UInt64) = (0, 0)
    private var headerCount = 0
    private var key = MaskingKey(value: 0)
    /// Payload bytes of the current frame still to unmask, and how many were unmasked.
    private(set) var payloadRemaining = 0
    private var payloadOffset = 0

    /// Follows `source`, copying it unmasked into `destination` (of the same size) unless
    /// that is nil. With `threshold`, stops right after the header of a frame whose payload
    /// exceeds it and goes on past `source`, when another frame ended before it in `source`.
    /// Returns how many bytes it went over.
    mutating func advance(
        over source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer?,
        stoppingBeforeFrameLargerThan threshold: Int = .max
    ) -> Int {
        var index = 0
        let count = source.count
        var frameEnded = false
        while index < count {
            if payloadRemaining > 0 {
                let run = min(payloadRemaining, count - index)
                if let destination {
                    key.apply(
                        from: UnsafeRawBufferPointer(rebasing: source[index..<index + run]),
                        to: UnsafeMutableRawBufferPointer(rebasing: destination[index..<index + run]),
                        startingAt: payloadOffset
                    )
                }
                index += run
                payloadRemaining -= run
                payloadOffset += run
                frameEnded = payloadRemaining == 0
                continue
            }
            let parsed: FrameHeader.ParseResult?
            if headerCount == 0, count - index >= 2,
                case let length = FrameHeader.encodedLength(firstTwo: source[index], source[index + 1]),
                count - index >= length
            {
                // The whole header is in `source` (the usual case): parsed and copied in place.
                let bytes = UnsafeRawBufferPointer(rebasing: source[index..<index + length])
                if let destination {
                    UnsafeMutableRawBufferPointer(rebasing: destination[index..<index + length]).copyMemory(from: bytes)
                }
                parsed = try? FrameHeader.parse(bytes)
                index += length
            } else {
                // Header bytes split across reads: collected byte by byte, up to the end of the header.
                let needed =
                    headerCount < 2
                    ? 2
                    : withUnsafeBytes(of: header) { FrameHeader.encodedLength(firstTwo: $0[0], $0[1]) }
                let run = min(needed - headerCount, count - index)
                withUnsafeMutableBytes(of: &header) { headerBytes in
                    for offset in 0..<run {
                        let byte = source[index + offset]
                        destination?[index + offset] = byte
                        headerBytes[headerCount + offset] = byte
                    }
                }
                index += run
                headerCount += run
                guard headerCount >= 2,
                    headerCount == withUnsafeBytes(of: header, { FrameHeader.encodedLength(firstTwo: $0[0], $0[1]) })
                else { continue }
                parsed = withUnsafeBytes(of: header) { bytes in
                    try? FrameHeader.parse(UnsafeRawBufferPointer(rebasing: bytes[..<headerCount]))
                }
                headerCount = 0
            }
            payloadOffset = 0
            if case .header(let frameHeader, _) = parsed {
                key = frameHeader.maskingKey ?? MaskingKey(value: 0)
                payloadRemaining = frameHeader.payloadLength
            } else {
                // An unrepresentable length: the receiver rejects this header, so whatever
                // follows is never read; stop interpreting it.
                payloadRemaining = .max
            }
            if frameEnded, payloadRemaining > threshold, payloadRemaining > count - index {
                return index
            }
            frameEnded = payloadRemaining == 0
        }
        return count
    }
}
