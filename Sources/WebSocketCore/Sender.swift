import NIOCore

/// Encodes frames for one end of a connection: header and payload in one buffer, client
/// payloads masked with a fresh key per frame (RFC 6455 §5.3), large messages optionally
/// split into fragments.
public struct Sender {
    /// Which end this sender encodes for: a client masks every frame.
    public let role: Role
    /// Messages longer than this go out as several frames; nil sends every message whole.
    public var fragmentSize: Int?
    private var maskingKeys = MaskingKeySource()

    /// A sender for `role`, fragmenting messages longer than `fragmentSize` (positive; nil:
    /// never). Traps on a `fragmentSize` below 1: `ConnectionOptions.validate()` refuses it first.
    public init(role: Role, fragmentSize: Int? = nil) {
        // API misuse only: `ConnectionOptions.validate()` refuses a fragmentSize below 1 at
        // listen/connect.
        precondition(fragmentSize.map { $0 > 0 } ?? true, "fragmentSize must be positive")
        self.role = role
        self.fragmentSize = fragmentSize
    }

    /// Appends one frame to `output`.
    public mutating func writeFrame(
        opcode: Opcode,
        fin: Bool = true,
        reservedBits: ReservedBits = [],
        payload: ByteBuffer,
        into output: inout ByteBuffer
    ) {
        payload.withUnsafeReadableBytes { bytes in
            writeFrame(opcode: opcode, fin: fin, reservedBits: reservedBits, payload: bytes, into: &output)
        }
    }

    /// Appends one frame with the payload at `payload` to `output`.
    public mutating func writeFrame(
        opcode: Opcode,
        fin: Bool = true,
        reservedBits: ReservedBits = [],
        payload: UnsafeRawBufferPointer,
        into output: inout ByteBuffer
    ) {
        let key = role == .client ? maskingKeys.next() : nil
        let header = FrameHeader(
            fin: fin, reservedBits: reservedBits, opcode: opcode, maskingKey: key, payloadLength: payload.count
        )
        Self.write(header, payload: payload, into: &output)
    }

    /// Appends `header` and the payload at `payload`, masked with the header's key if it has
    /// one; `header.payloadLength` must be `payload.count`. Holds no state: a connection
    /// that never masks encodes its frames without a `Sender`.
    package static func write(_ header: FrameHeader, payload: UnsafeRawBufferPointer, into output: inout ByteBuffer) {
        // Header and payload go in with one write into the buffer's memory: each of
        // ByteBuffer's typed writes checks uniqueness and capacity and begins an access.
        let total = header.encodedLength + payload.count
        output.writeWithUnsafeMutableBytes(minimumWritableBytes: total) { destination in
            let base = destination.baseAddress!  // `total` >= 2 bytes were asked for
            let headerLength = header.write(to: base)
            let body = UnsafeMutableRawBufferPointer(start: base + headerLength, count: payload.count)
            if let key = header.maskingKey {
                key.apply(from: payload, to: body)
            } else if let source = payload.baseAddress {
                // `body` starts inside `destination`, so it has a base address.
                body.baseAddress!.copyMemory(from: source, byteCount: payload.count)
            }
            return total
        }
    }

    /// Appends a whole data message, split by `fragmentSize`. `reservedBits` go on the
    /// first frame only (permessage-deflate's RSV1 marks the message, not each frame).
    public mutating func writeMessage(
        opcode: Opcode,
        reservedBits: ReservedBits = [],
        payload: ByteBuffer,
        into output: inout ByteBuffer
    ) {
        // API misuse only: the opcode is the library's choice, never a peer's.
        precondition(!opcode.isControl && opcode != .continuation, "writeMessage takes text or binary")
        payload.withUnsafeReadableBytes { bytes in
            guard let fragmentSize, bytes.count > fragmentSize else {
                writeFrame(opcode: opcode, reservedBits: reservedBits, payload: bytes, into: &output)
                return
            }
            var start = 0
            while start < bytes.count {
                let end = min(start + fragmentSize, bytes.count)
                writeFrame(
                    opcode: start == 0 ? opcode : .continuation,
                    fin: end == bytes.count,
                    reservedBits: start == 0 ? reservedBits : [],
                    payload: UnsafeRawBufferPointer(rebasing: bytes[start..<end]),
                    into: &output
                )
                start = end
            }
        }
    }

    /// Appends a ping, pong or close frame; refuses payloads over 125 bytes.
    public mutating func writeControl(_ opcode: Opcode, payload: ByteBuffer, into output: inout ByteBuffer)
        throws(UsageError)
    {
        // API misuse only: the opcode is the library's choice, never a peer's.
        precondition(opcode.isControl, "writeControl takes ping, pong or close")
        guard payload.readableBytes <= 125 else {
            throw UsageError("\(opcode) payload is \(payload.readableBytes) bytes; control frames carry at most 125")
        }
        writeFrame(opcode: opcode, payload: payload, into: &output)
    }
}

/// Hands out masking keys from a block of bytes drawn from OpenSSL's CSPRNG, so a frame
/// does not cost a call into it.
///
/// The block is allocated on the first key: a server's sender never masks, and an empty
/// array costs an idle connection nothing (a full one is 1 KiB).
package struct MaskingKeySource {
    /// Empty until the first key: a server's sender never masks and never allocates it.
    private var block: [UInt32] = []
    private var index = 0

    package init() {}

    package mutating func next() -> MaskingKey {
        if index == block.count {
            if block.isEmpty { block = [UInt32](repeating: 0, count: 256) }
            block.withUnsafeMutableBytes { Crypto.fillRandom($0) }
            index = 0
        }
        defer { index += 1 }
        return MaskingKey(value: block[index])
    }
}
