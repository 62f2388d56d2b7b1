import NIOCore

/// Decodes RESP3 incrementally: a scalar is read only once all of its bytes are here, and an
/// aggregate is built on a stack as its elements arrive, so a long reply split over many reads
/// is scanned once rather than again on every read.
public struct RESPDecoder: ByteToMessageDecoder {
    public typealias InboundOut = RESPValue

    private enum Kind {
        case array, set, map, push, attribute
    }

    private struct Partial {
        var kind: Kind
        /// Elements still to come (a map or attribute counts keys and values).
        var remaining: Int
        var elements: [RESPValue]
    }

    private let limits: RESPLimits
    private var stack: [Partial] = []

    public init(limits: RESPLimits = RESPLimits()) {
        self.limits = limits
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let value = try next(from: &buffer) else { return .needMoreData }
        context.fireChannelRead(Self.wrapInboundOut(value))
        return .continue
    }

    public mutating func decodeLast(
        context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool
    ) throws -> DecodingState {
        try decode(context: context, buffer: &buffer)
    }

    /// The next complete top-level value, or nil when more bytes are needed. Consumes the
    /// bytes of every element it finishes, even when the whole value is not complete yet.
    public mutating func next(from buffer: inout ByteBuffer) throws -> RESPValue? {
        while true {
            guard var value = try element(from: &buffer) else { return nil }
            while true {
                guard var top = stack.popLast() else { return value }
                top.elements.append(value)
                top.remaining -= 1
                if top.remaining > 0 {
                    stack.append(top)
                    break
                }
                guard let finished = Self.finish(top) else { break }  // an attribute: dropped
                value = finished
            }
        }
    }

    private static func finish(_ partial: Partial) -> RESPValue? {
        switch partial.kind {
        case .array: return .array(partial.elements)
        case .set: return .set(partial.elements)
        case .push: return .push(partial.elements)
        case .attribute: return nil
        case .map:
            var pairs: [RESPPair] = []
            pairs.reserveCapacity(partial.elements.count / 2)
            var index = 0
            while index < partial.elements.count {
                pairs.append(RESPPair(key: partial.elements[index], value: partial.elements[index + 1]))
                index += 2
            }
            return .map(pairs)
        }
    }

    /// Reads one scalar, or the header of an aggregate (pushed on the stack; nil is returned
    /// and the loop reads its first element). Nil without consuming anything when incomplete.
    private mutating func element(from buffer: inout ByteBuffer) throws -> RESPValue? {
        while true {
            var view = buffer
            guard let type = view.readInteger(as: UInt8.self), let line = try readLine(&view) else { return nil }
            switch type {
            case UInt8(ascii: "+"):
                buffer = view
                return .simpleString(String(buffer: line))
            case UInt8(ascii: "-"):
                buffer = view
                return .error(String(buffer: line))
            case UInt8(ascii: ":"):
                buffer = view
                return .integer(try integer(line))
            case UInt8(ascii: "_"):
                buffer = view
                return .null
            case UInt8(ascii: "#"):
                buffer = view
                switch String(buffer: line) {
                case "t": return .boolean(true)
                case "f": return .boolean(false)
                default: throw RedisError.protocolViolation("boolean is not t or f")
                }
            case UInt8(ascii: ","):
                buffer = view
                let text = String(buffer: line)
                switch text {
                case "inf": return .double(.infinity)
                case "-inf": return .double(-.infinity)
                case "nan": return .double(.nan)
                default:
                    guard let value = Double(text) else { throw RedisError.protocolViolation("bad double") }
                    return .double(value)
                }
            case UInt8(ascii: "("):
                buffer = view
                let text = String(buffer: line)
                guard !text.isEmpty, text.drop(while: { $0 == "-" || $0 == "+" }).allSatisfy(\.isNumber) else {
                    throw RedisError.protocolViolation("bad big number")
                }
                return .bigNumber(text)
            case UInt8(ascii: "$"), UInt8(ascii: "="), UInt8(ascii: "!"):
                let length = try integer(line)
                if length == -1, type == UInt8(ascii: "$") {
                    buffer = view
                    return .null
                }
                guard length >= 0, length <= limits.maxBulkLength else {
                    throw RedisError.protocolViolation("string length \(length) outside 0...\(limits.maxBulkLength)")
                }
                guard view.readableBytes >= Int(length) + 2 else { return nil }
                var bytes = view.readSlice(length: Int(length))!
                guard view.readInteger(as: UInt16.self) == 0x0D0A else {
                    throw RedisError.protocolViolation("string not followed by CRLF")
                }
                buffer = view
                switch type {
                case UInt8(ascii: "!"): return .error(String(buffer: bytes))
                case UInt8(ascii: "="):
                    guard bytes.readableBytes >= 4 else { throw RedisError.protocolViolation("verbatim without format") }
                    bytes.moveReaderIndex(forwardBy: 4)
                    return .bulkString(bytes)
                default: return .bulkString(bytes)
                }
            case UInt8(ascii: "*"), UInt8(ascii: "~"), UInt8(ascii: "%"), UInt8(ascii: ">"), UInt8(ascii: "|"):
                let count = try integer(line)
                buffer = view
                if count == -1, type == UInt8(ascii: "*") { return .null }
                guard count >= 0, count <= limits.maxAggregateCount else {
                    throw RedisError.protocolViolation("aggregate count \(count) outside 0...\(limits.maxAggregateCount)")
                }
                guard stack.count < limits.maxDepth else {
                    throw RedisError.protocolViolation("nesting deeper than \(limits.maxDepth)")
                }
                let kind: Kind
                let paired: Bool
                switch type {
                case UInt8(ascii: "*"): (kind, paired) = (.array, false)
                case UInt8(ascii: "~"): (kind, paired) = (.set, false)
                case UInt8(ascii: ">"): (kind, paired) = (.push, false)
                case UInt8(ascii: "%"): (kind, paired) = (.map, true)
                default: (kind, paired) = (.attribute, true)
                }
                let elements = paired ? Int(count) * 2 : Int(count)
                if elements == 0 {
                    guard let empty = Self.finish(Partial(kind: kind, remaining: 0, elements: [])) else { continue }
                    return empty
                }
                stack.append(Partial(kind: kind, remaining: elements, elements: []))
                stack[stack.count - 1].elements.reserveCapacity(min(elements, 1024))
            default:
                throw RedisError.protocolViolation("unknown type byte \(type)")
            }
        }
    }

    /// The bytes before the next CRLF (consumed with it), or nil when no CRLF has arrived yet.
    private func readLine(_ view: inout ByteBuffer) throws -> ByteBuffer? {
        guard let newline = view.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else {
            guard view.readableBytes <= limits.maxLineLength else {
                throw RedisError.protocolViolation("line longer than \(limits.maxLineLength) bytes")
            }
            return nil
        }
        let length = newline - view.readerIndex
        guard length >= 1, view.getInteger(at: newline - 1, as: UInt8.self) == UInt8(ascii: "\r") else {
            throw RedisError.protocolViolation("line ends without CR")
        }
        guard length - 1 <= limits.maxLineLength else {
            throw RedisError.protocolViolation("line longer than \(limits.maxLineLength) bytes")
        }
        let line = view.readSlice(length: length - 1)!
        view.moveReaderIndex(forwardBy: 2)
        return line
    }

    private func integer(_ line: ByteBuffer) throws -> Int64 {
        guard let value = Int64(String(buffer: line)) else {
            throw RedisError.protocolViolation("bad integer")
        }
        return value
    }
}
