import NIOCore
import WebSocketCore

/// The broker → client half of wire protocol v1: the fan-out `msg` frame, built once per
/// published message, and the control answers (`subscribed`, `unsubscribed`, `ack`, `error`).
///
/// Invariants:
/// - Every function returns (or appends) a complete, unmasked, unfragmented server
///   WebSocket frame: header and payload in one contiguous buffer, so the same buffer can
///   be written to any number of connections (`ByteBuffer` is copy-on-write; writing it to
///   a channel does not copy the bytes).
/// - The `msg` envelope is assembled by concatenation: the payload's bytes are copied once,
///   verbatim, into the frame and never parsed. Its exact size is computed first, so the
///   frame is built in one allocation with no growth.
/// - Topic names need no JSON escaping (see `Topic`), so they are copied as they are.
/// - Frames carry RSV1 = 0: they are valid on a connection that negotiated
///   permessage-deflate too (compression is per message and optional, RFC 7692 §6).
package enum MessageEncoder {
    private static let msgPrefix: StaticString = #"{"op":"msg","topic":""#
    private static let seqPart: StaticString = #"","seq":"#
    private static let timePart: StaticString = #","time":"#
    private static let dataPart: StaticString = #","data":"#

    /// The frame every subscriber of `publish.topic` receives: a text frame with the JSON
    /// envelope for `.json` payloads, a binary frame with the v1 binary header otherwise.
    package static func encodeFrame(
        _ publish: Publish, sequence: UInt64, time unixMilliseconds: Int64,
        allocator: ByteBufferAllocator = ByteBufferAllocator()
    ) -> ByteBuffer {
        encodeFrame(
            topic: publish.topic, sequence: sequence, time: unixMilliseconds,
            payload: publish.payload, format: publish.format, allocator: allocator
        )
    }

    package static func encodeFrame(
        topic: Topic, sequence: UInt64, time unixMilliseconds: Int64,
        payload: ByteBuffer, format: PayloadFormat,
        allocator: ByteBufferAllocator = ByteBufferAllocator()
    ) -> ByteBuffer {
        let length = bodyLength(
            topic: topic, sequence: sequence, time: unixMilliseconds, payloadLength: payload.readableBytes, format: format)
        let header = FrameHeader(
            fin: true, reservedBits: [], opcode: format == .json ? .text : .binary,
            maskingKey: nil, payloadLength: length
        )
        var frame = allocator.buffer(capacity: header.encodedLength + length)
        header.write(to: &frame)
        writeBody(topic: topic, sequence: sequence, time: unixMilliseconds, format: format, into: &frame) {
            $0.writeImmutableBuffer(payload)
        }
        assert(frame.readableBytes == header.encodedLength + length)
        return frame
    }

    /// Appends the frame of a stored message to `frames`, its payload copied from `payload`
    /// (SQLite's bytes): a replay page gathers the frames of its messages in one buffer, with
    /// no buffer per message. Returns the index in `frames` where the payload's copy starts.
    static func writeFrame(
        topic: Topic, sequence: UInt64, time unixMilliseconds: Int64,
        payload: UnsafeRawBufferPointer, format: PayloadFormat, into frames: inout ByteBuffer
    ) -> Int {
        let length = bodyLength(
            topic: topic, sequence: sequence, time: unixMilliseconds, payloadLength: payload.count, format: format)
        let header = FrameHeader(
            fin: true, reservedBits: [], opcode: format == .json ? .text : .binary,
            maskingKey: nil, payloadLength: length
        )
        frames.reserveCapacity(minimumWritableBytes: header.encodedLength + length)
        header.write(to: &frames)
        var payloadIndex = 0
        writeBody(topic: topic, sequence: sequence, time: unixMilliseconds, format: format, into: &frames) {
            payloadIndex = $0.writerIndex
            $0.writeBytes(payload)
        }
        return payloadIndex
    }

    /// The frame's payload alone, without the WebSocket header: the JSON envelope for
    /// `.json`, the binary message for `.binary` (for tests and the client SDK).
    package static func body(
        topic: Topic, sequence: UInt64, time unixMilliseconds: Int64,
        payload: ByteBuffer, format: PayloadFormat
    ) -> ByteBuffer {
        var out = ByteBuffer()
        writeBody(topic: topic, sequence: sequence, time: unixMilliseconds, format: format, into: &out) {
            $0.writeImmutableBuffer(payload)
        }
        return out
    }

    static func bodyLength(
        topic: Topic, sequence: UInt64, time unixMilliseconds: Int64, payloadLength: Int, format: PayloadFormat
    ) -> Int {
        let topicLength = topic.name.utf8.count
        switch format {
        case .json:
            return msgPrefix.utf8CodeUnitCount + topicLength + seqPart.utf8CodeUnitCount
                + JSONWriter.decimalLength(sequence) + timePart.utf8CodeUnitCount
                + JSONWriter.decimalLength(unixMilliseconds) + dataPart.utf8CodeUnitCount
                + payloadLength + 1
        case .binary:
            return 2 + topicLength + 16 + payloadLength
        }
    }

    /// Writes the body around the payload, which `writePayload` writes in its place.
    @inline(__always)
    static func writeBody(
        topic: Topic, sequence: UInt64, time unixMilliseconds: Int64, format: PayloadFormat,
        into frame: inout ByteBuffer, payload writePayload: (inout ByteBuffer) -> Void
    ) {
        switch format {
        case .json:
            frame.writeStaticString(msgPrefix)
            frame.writeString(topic.name)
            frame.writeStaticString(seqPart)
            JSONWriter.writeDecimal(sequence, to: &frame)
            frame.writeStaticString(timePart)
            JSONWriter.writeDecimal(unixMilliseconds, to: &frame)
            frame.writeStaticString(dataPart)
            writePayload(&frame)
            frame.writeInteger(UInt8(ascii: "}"))
        case .binary:
            frame.writeMultipleIntegers(WireProtocol.binaryMessage, UInt8(topic.name.utf8.count))
            frame.writeString(topic.name)
            frame.writeMultipleIntegers(sequence, unixMilliseconds)  // big-endian
            writePayload(&frame)
        }
    }
}

/// A control message from the broker; `frame()` encodes it as one text frame.
package enum ServerMessage: Sendable, Hashable {
    /// `{"op":"subscribed","id":…,"topic":"chat.*","epoch":"…"}` (epoch: with a replay log)
    case subscribed(id: RequestID?, pattern: TopicPattern, epoch: String? = nil)
    /// `{"op":"unsubscribed","id":…,"topic":"chat.*"}`
    case unsubscribed(id: RequestID?, pattern: TopicPattern)
    /// `{"op":"ack","id":…,"seq":17}`
    case ack(id: RequestID, sequence: UInt64)
    /// `{"op":"error","id":…,"code":"forbidden","message":"…"}` (id omitted when unknown)
    case error(ProtocolError)

    package init(_ error: ProtocolError) { self = .error(error) }

    /// The JSON text of the message.
    package func json(allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var out = allocator.buffer(capacity: 96)
        func writeID(_ id: RequestID?) {
            guard let id else { return }
            out.writeStaticString(#","id":"#)
            var json = id.json
            out.writeBuffer(&json)
        }
        switch self {
        case .subscribed(let id, let pattern, _), .unsubscribed(let id, let pattern):
            if case .subscribed = self {
                out.writeStaticString(#"{"op":"subscribed""#)
            } else {
                out.writeStaticString(#"{"op":"unsubscribed""#)
            }
            writeID(id)
            out.writeStaticString(#","topic":""#)
            out.writeString(pattern.name)
            if case .subscribed(_, _, let epoch?) = self {
                // Made of hex digits by the replay log: nothing to escape.
                out.writeStaticString(#"","epoch":""#)
                out.writeString(epoch)
            }
            out.writeStaticString(#""}"#)
        case .ack(let id, let sequence):
            out.writeStaticString(#"{"op":"ack""#)
            writeID(id)
            out.writeStaticString(#","seq":"#)
            JSONWriter.writeDecimal(sequence, to: &out)
            out.writeStaticString("}")
        case .error(let error):
            out.writeStaticString(#"{"op":"error""#)
            writeID(error.id)
            out.writeStaticString(#","code":""#)
            out.writeString(error.code.rawValue)
            out.writeStaticString(#"","message":"#)
            JSONWriter.writeString(error.message, to: &out)
            out.writeStaticString("}")
        }
        return out
    }

    /// Appends the message as one unmasked text frame to `output`.
    package func writeFrame(into output: inout ByteBuffer) {
        if case .ack(let id, let sequence) = self {
            // One per acked publish: its length is known up front, so it is written in place
            // rather than built in a buffer of its own and copied.
            let length = #"{"op":"ack","id":"#.utf8.count + id.json.readableBytes + #","seq":"#.utf8.count
                + JSONWriter.decimalLength(sequence) + 1
            let header = FrameHeader(fin: true, reservedBits: [], opcode: .text, maskingKey: nil, payloadLength: length)
            output.reserveCapacity(minimumWritableBytes: header.encodedLength + length)
            header.write(to: &output)
            output.writeStaticString(#"{"op":"ack","id":"#)
            output.writeImmutableBuffer(id.json)
            output.writeStaticString(#","seq":"#)
            JSONWriter.writeDecimal(sequence, to: &output)
            output.writeStaticString("}")
            return
        }
        var body = json()
        let header = FrameHeader(fin: true, reservedBits: [], opcode: .text, maskingKey: nil, payloadLength: body.readableBytes)
        output.reserveCapacity(minimumWritableBytes: header.encodedLength + body.readableBytes)
        header.write(to: &output)
        output.writeBuffer(&body)
    }

    /// The message as one unmasked text frame.
    package func frame(allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var output = allocator.buffer(capacity: 128)
        writeFrame(into: &output)
        return output
    }
}
