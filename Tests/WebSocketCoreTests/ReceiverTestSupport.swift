import NIOCore
import WebSocketCore

/// A received event with its payload as plain bytes, easy to compare in expectations.
enum Event: Equatable, CustomStringConvertible {
    case text(String)
    case binary([UInt8])
    case ping([UInt8])
    case pong([UInt8])
    case close(UInt16, String)

    init(_ event: ReceivedEvent) {
        switch event {
        case .text(let b): self = .text(String(buffer: b))
        case .binary(let b): self = .binary(Array(b.readableBytesView))
        case .ping(let b): self = .ping(Array(b.readableBytesView))
        case .pong(let b): self = .pong(Array(b.readableBytesView))
        case .close(let code, let reason): self = .close(code.rawValue, reason)
        }
    }

    var description: String {
        switch self {
        case .text(let s): return "text(\(s.prefix(40)))"
        case .binary(let b): return "binary(\(b.count) bytes)"
        case .ping(let b): return "ping(\(b))"
        case .pong(let b): return "pong(\(b))"
        case .close(let c, let r): return "close(\(c), \(r))"
        }
    }
}

/// Feeds `bytes` to a receiver in pieces ending at `splits` and collects every event;
/// the error, if one is thrown, comes back with the events decoded before it.
func receive(
    _ bytes: [UInt8],
    role: Role,
    splits: [Int] = [],
    maxPayload: Int = 100 * 1024 * 1024,
    compression: PerMessageDeflate? = nil
) -> (events: [Event], error: WebSocketError?) {
    var receiver = Receiver(configuration: .init(role: role, maxPayload: maxPayload), compression: compression)
    var events: [Event] = []
    var start = 0
    for end in splits.filter({ $0 > 0 && $0 < bytes.count }) + [bytes.count] where end >= start {
        receiver.append(ByteBuffer(bytes: bytes[start..<end]))
        start = end
        do {
            while let event = try receiver.next() { events.append(Event(event)) }
        } catch {
            return (events, error)
        }
    }
    return (events, nil)
}

/// A frame as a client or server would put it on the wire, masked with `key` when given.
func frameBytes(
    _ opcode: UInt8, _ payload: [UInt8], fin: Bool = true, rsv: UInt8 = 0, key: [UInt8]? = nil
) -> [UInt8] {
    var out: [UInt8] = [(fin ? 0x80 : 0) | rsv | opcode]
    let maskBit: UInt8 = key == nil ? 0 : 0x80
    if payload.count < 126 {
        out.append(maskBit | UInt8(payload.count))
    } else if payload.count <= 0xFFFF {
        out.append(maskBit | 126)
        out += [UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
    } else {
        out.append(maskBit | 127)
        out += (0..<8).reversed().map { UInt8((payload.count >> ($0 * 8)) & 0xFF) }
    }
    if let key {
        out += key
        out += payload.enumerated().map { $0.element ^ key[$0.offset % 4] }
    } else {
        out += payload
    }
    return out
}

/// A client frame (masked with a fixed key).
func clientFrame(_ opcode: UInt8, _ payload: [UInt8], fin: Bool = true, rsv: UInt8 = 0) -> [UInt8] {
    frameBytes(opcode, payload, fin: fin, rsv: rsv, key: [0x37, 0xfa, 0x21, 0x3d])
}

extension String {
    var bytes: [UInt8] { Array(utf8) }
}
