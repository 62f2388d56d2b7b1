import NIOCore
import WebSockets

/// The client → broker requests of docs/protocol.md, encoded as frames.
enum Request {
    /// What a `sub` asks to replay.
    enum Replay: Equatable {
        case none
        case since(UInt64)
        case sinceMap([String: UInt64])
        case sinceTime(Int64)
        case last(UInt64)
    }

    static func subscribe(_ topic: String, id: String, replay: Replay, epoch: String?) -> WebSocketMessage {
        var bytes = header("sub", topic: topic, id: id)
        switch replay {
        case .none: break
        case .since(let seq): bytes.append(contentsOf: #","since":\#(seq)"#.utf8)
        case .sinceMap(let map):
            bytes.append(contentsOf: #","since":{"#.utf8)
            for (index, (topic, seq)) in map.sorted(by: { $0.key < $1.key }).enumerated() {
                if index > 0 { bytes.append(UInt8(ascii: ",")) }
                appendJSONString(topic, to: &bytes)
                bytes.append(contentsOf: ":\(seq)".utf8)
            }
            bytes.append(UInt8(ascii: "}"))
        case .sinceTime(let milliseconds): bytes.append(contentsOf: #","since_time":\#(milliseconds)"#.utf8)
        case .last(let count): bytes.append(contentsOf: #","last":\#(count)"#.utf8)
        }
        if let epoch {
            bytes.append(contentsOf: #","epoch":"#.utf8)
            appendJSONString(epoch, to: &bytes)
        }
        bytes.append(UInt8(ascii: "}"))
        return .init(kind: .text, data: ByteBuffer(bytes: bytes))
    }

    static func unsubscribe(_ topic: String, id: String) -> WebSocketMessage {
        var bytes = header("unsub", topic: topic, id: id)
        bytes.append(UInt8(ascii: "}"))
        return .init(kind: .text, data: ByteBuffer(bytes: bytes))
    }

    /// A publish of `payload`; `id` asks for an ack. Written straight into one buffer: a
    /// client's publishes are its hot path.
    static func publish(_ topic: String, _ payload: Payload, id: UInt64?) -> WebSocketMessage {
        var buffer = ByteBuffer()
        switch payload {
        case .json, .text:
            buffer.reserveCapacity(topic.utf8.count + payload.byteCount + 64)
            buffer.writeStaticString(#"{"op":"pub","topic":"#)
            writeJSONString(topic, to: &buffer)
            if let id {
                buffer.writeStaticString(#","id":""#)
                writeDecimal(id, to: &buffer)
                buffer.writeInteger(UInt8(ascii: "\""))
            }
            buffer.writeStaticString(#","data":"#)
            switch payload {
            case .json(let json): buffer.writeImmutableBuffer(json)
            case .text(let text): writeJSONString(text, to: &buffer)
            case .binary: break
            }
            buffer.writeInteger(UInt8(ascii: "}"))
            return .init(kind: .text, data: buffer)
        case .binary(let bytes):
            buffer.reserveCapacity(topic.utf8.count + bytes.readableBytes + 24)
            buffer.writeInteger(UInt8(0x11))
            buffer.writeInteger(UInt8(truncatingIfNeeded: topic.utf8.count))
            buffer.writeString(topic)
            let lengthIndex = buffer.writerIndex
            buffer.writeInteger(UInt8(0))
            if let id { writeDecimal(id, to: &buffer) }
            buffer.setInteger(UInt8(buffer.writerIndex - lengthIndex - 1), at: lengthIndex)
            buffer.writeImmutableBuffer(bytes)
            return .init(kind: .binary, data: buffer)
        }
    }

    private static func writeDecimal(_ value: UInt64, to buffer: inout ByteBuffer) {
        var divisor: UInt64 = 1
        while value / divisor >= 10 { divisor *= 10 }
        repeat {
            buffer.writeInteger(UInt8(ascii: "0") + UInt8(value / divisor % 10))
            divisor /= 10
        } while divisor > 0
    }

    private static func header(_ op: String, topic: String, id: String) -> [UInt8] {
        var bytes = Array(#"{"op":"\#(op)","id":"\#(id)","topic":"#.utf8)
        appendJSONString(topic, to: &bytes)
        return bytes
    }
}

/// What a publish carries.
enum Payload: Sendable {
    /// Raw JSON text, sent as the `data` member verbatim.
    case json(ByteBuffer)
    /// Text, sent as a JSON string (escaped while the frame is written: no buffer of its own).
    case text(String)
    /// Sent as a binary publish frame.
    case binary(ByteBuffer)

    var byteCount: Int {
        switch self {
        case .json(let bytes), .binary(let bytes): return bytes.readableBytes
        case .text(let text): return text.utf8.count + 2
        }
    }
}
