import NIOCore

/// One argument of a command, sent as a bulk string.
public struct RESPArgument: Sendable, ExpressibleByStringInterpolation, ExpressibleByIntegerLiteral {
    enum Storage: Sendable {
        case text(String)
        case bytes(ByteBuffer)
    }
    let storage: Storage

    public init(_ text: String) { storage = .text(text) }
    public init(_ value: some BinaryInteger) { storage = .text(String(value)) }
    public init(_ bytes: ByteBuffer) { storage = .bytes(bytes) }
    public init(stringLiteral value: String) { storage = .text(value) }
    public init(stringInterpolation: DefaultStringInterpolation) { storage = .text(String(stringInterpolation: stringInterpolation)) }
    public init(integerLiteral value: Int) { storage = .text(String(value)) }
}

/// Writes commands as RESP arrays of bulk strings, the only form Redis takes from clients.
enum RESPEncoder {
    static func write(_ command: [RESPArgument], into buffer: inout ByteBuffer) {
        buffer.writeStaticString("*")
        buffer.writeString(String(command.count))
        buffer.writeStaticString("\r\n")
        for argument in command {
            switch argument.storage {
            case .text(let text):
                buffer.writeStaticString("$")
                buffer.writeString(String(text.utf8.count))
                buffer.writeStaticString("\r\n")
                buffer.writeString(text)
            case .bytes(let bytes):
                buffer.writeStaticString("$")
                buffer.writeString(String(bytes.readableBytes))
                buffer.writeStaticString("\r\n")
                buffer.writeImmutableBuffer(bytes)
            }
            buffer.writeStaticString("\r\n")
        }
    }
}
