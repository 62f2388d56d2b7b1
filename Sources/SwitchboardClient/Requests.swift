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

    /// A publish of `payload` (raw JSON for `.json`, bytes for `.binary`); `id` asks for an ack.
    static func publish(_ topic: String, _ payload: Payload, id: String?) -> WebSocketMessage {
        switch payload {
        case .json(let json):
            var buffer = ByteBuffer()
            buffer.reserveCapacity(topic.utf8.count + json.readableBytes + 48)
            buffer.writeString(#"{"op":"pub","topic":"#)
            var topicBytes: [UInt8] = []
            appendJSONString(topic, to: &topicBytes)
            buffer.writeBytes(topicBytes)
            if let id { buffer.writeString(#","id":"\#(id)""#) }
            buffer.writeString(#","data":"#)
            buffer.writeImmutableBuffer(json)
            buffer.writeInteger(UInt8(ascii: "}"))
            return .init(kind: .text, data: buffer)
        case .binary(let bytes):
            var buffer = ByteBuffer()
            buffer.reserveCapacity(topic.utf8.count + bytes.readableBytes + 16)
            buffer.writeInteger(UInt8(0x11))
            buffer.writeInteger(UInt8(truncatingIfNeeded: topic.utf8.count))
            buffer.writeString(topic)
            let idBytes = Array((id ?? "").utf8)
            buffer.writeInteger(UInt8(idBytes.count))
            buffer.writeBytes(idBytes)
            buffer.writeImmutableBuffer(bytes)
            return .init(kind: .binary, data: buffer)
        }
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
    /// Sent as a binary publish frame.
    case binary(ByteBuffer)
}
