import NIOCore
import WebSockets

/// A broker → client frame of docs/protocol.md, decoded.
enum BrokerMessage {
    case message(Message)
    case subscribed(id: String?, topic: String, epoch: String?)
    case unsubscribed(id: String?)
    /// An acked publish: this client's publish ids are numbers.
    case ack(id: UInt64, seq: UInt64)
    case gap(topic: String, from: UInt64, to: UInt64)
    case error(id: String?, code: BrokerErrorCode, message: String)
    /// An op this client does not know: ignored, so a newer broker stays usable.
    case unknown(String)

    struct Malformed: Error, CustomStringConvertible {
        var description: String
    }

    static func decode(_ frame: WebSocketMessage) throws(Malformed) -> BrokerMessage {
        switch frame.kind {
        case .binary: return try decodeBinary(frame.data)
        case .text: return try decodeJSON(frame.data)
        }
    }

    private static func decodeBinary(_ data: ByteBuffer) throws(Malformed) -> BrokerMessage {
        var buffer = data
        guard buffer.readInteger(as: UInt8.self) == 0x12, let length = buffer.readInteger(as: UInt8.self),
            let topic = buffer.readString(length: Int(length)), let seq = buffer.readInteger(as: UInt64.self),
            let time = buffer.readInteger(as: Int64.self)
        else { throw Malformed(description: "malformed binary message from the broker") }
        return .message(Message(topic: topic, seq: seq, timeMilliseconds: time, kind: .binary, payload: buffer))
    }

    private static func decodeJSON(_ frame: ByteBuffer) throws(Malformed) -> BrokerMessage {
        let decoded: BrokerMessage? = frame.withUnsafeReadableBytes { bytes in
            if let message = JSONScanner.brokerMessage(bytes) {
                return .message(
                    Message(
                        topic: String(decoding: UnsafeRawBufferPointer(rebasing: bytes[message.topic]), as: UTF8.self),
                        seq: message.seq, timeMilliseconds: Int64(clamping: message.time), kind: .json,
                        payload: frame.getSlice(at: frame.readerIndex + message.data.lowerBound, length: message.data.count)!))
            }
            if let ack = JSONScanner.brokerAck(bytes) { return .ack(id: ack.id, seq: ack.seq) }
            guard let members = try? JSONScanner.members(of: bytes) else { return nil }
            func string(_ key: String) -> String? {
                members.first { $0.key == key }.flatMap { JSONScanner.string(bytes, $0.range) }
            }
            func number(_ key: String) -> UInt64? {
                members.first { $0.key == key }.flatMap { JSONScanner.unsigned(bytes, $0.range) }
            }
            guard let op = string("op") else { return nil }
            switch op {
            case "msg":
                guard let topic = string("topic"), let seq = number("seq"), let time = number("time"),
                    let data = members.first(where: { $0.key == "data" })
                else { return nil }
                // A slice of the frame: the payload is not copied.
                let payload = frame.getSlice(at: frame.readerIndex + data.range.lowerBound, length: data.range.count)!
                return .message(
                    Message(topic: topic, seq: seq, timeMilliseconds: Int64(clamping: time), kind: .json, payload: payload))
            case "subscribed":
                guard let topic = string("topic") else { return nil }
                return .subscribed(id: string("id"), topic: topic, epoch: string("epoch"))
            case "unsubscribed": return .unsubscribed(id: string("id"))
            case "ack":
                guard let id = string("id").flatMap({ UInt64($0) }), let seq = number("seq") else { return nil }
                return .ack(id: id, seq: seq)
            case "gap":
                guard let topic = string("topic"), let from = number("from"), let to = number("to") else { return nil }
                return .gap(topic: topic, from: from, to: to)
            case "error":
                guard let code = string("code") else { return nil }
                return .error(id: string("id"), code: BrokerErrorCode(rawValue: code), message: string("message") ?? "")
            default: return .unknown(op)
            }
        }
        guard let decoded else {
            throw Malformed(description: "malformed message from the broker: \(String(buffer: frame).prefix(200))")
        }
        return decoded
    }
}
