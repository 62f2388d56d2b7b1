import NIOCore

/// One RESP3 value as Redis sends it. Attributes (`|`) are read and dropped by the decoder:
/// nothing we ask for uses them.
public enum RESPValue: Sendable, Equatable {
    case simpleString(String)
    /// A simple (`-`) or blob (`!`) error reply; `RedisConnection.send` turns a top-level one
    /// into `RedisError.server`.
    case error(String)
    case integer(Int64)
    /// Bulk (`$`) and verbatim (`=`, with its 4-byte format prefix removed) strings.
    case bulkString(ByteBuffer)
    case null
    case double(Double)
    case boolean(Bool)
    case bigNumber(String)
    case array([RESPValue])
    case set([RESPValue])
    case map([RESPPair])
    /// Out-of-band data (`>`): pub/sub messages and subscription confirmations.
    case push([RESPValue])
}

public struct RESPPair: Sendable, Equatable {
    public var key: RESPValue
    public var value: RESPValue

    public init(key: RESPValue, value: RESPValue) {
        self.key = key
        self.value = value
    }
}

extension RESPValue {
    /// The text of a simple, bulk or verbatim string, or nil for anything else.
    public var string: String? {
        switch self {
        case .simpleString(let text): text
        case .bulkString(let bytes): String(buffer: bytes)
        default: nil
        }
    }

    /// An integer reply, or a string reply holding a decimal integer (as Lua's tostring gives).
    public var int: Int64? {
        switch self {
        case .integer(let value): value
        case .simpleString, .bulkString: string.flatMap { Int64($0) }
        default: nil
        }
    }

    /// The elements of an array, set or push; nil for anything else.
    public var elements: [RESPValue]? {
        switch self {
        case .array(let values), .set(let values), .push(let values): values
        default: nil
        }
    }
}
