#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore

/// Reads the top-level members of one JSON object, as the broker writes its messages: each
/// value is kept as the byte range it spans, so a message's `data` is handed on verbatim
/// and only the members a message needs are turned into Swift values.
///
/// Strict where it matters to us (structure, strings, nesting) and lenient elsewhere: the
/// broker is the only writer, and it writes RFC 8259 JSON.
struct JSONScanner {
    struct Member {
        var key: String
        /// Byte offsets of the value in the scanned bytes (a string includes its quotes).
        var range: Range<Int>
    }

    struct Malformed: Error, CustomStringConvertible {
        var offset: Int
        var description: String { "malformed JSON from the broker at byte \(offset)" }
    }

    /// The top-level members of the object `bytes` holds, in order.
    static func members(of bytes: UnsafeRawBufferPointer) throws(Malformed) -> [Member] {
        var scanner = Cursor(bytes: bytes)
        var members: [Member] = []
        members.reserveCapacity(6)
        scanner.skipSpace()
        try scanner.expect(UInt8(ascii: "{"))
        scanner.skipSpace()
        if scanner.peek == UInt8(ascii: "}") { return members }
        while true {
            scanner.skipSpace()
            let keyStart = scanner.offset
            try scanner.skipValue()
            guard let key = string(bytes, keyStart..<scanner.offset) else { throw Malformed(offset: keyStart) }
            scanner.skipSpace()
            try scanner.expect(UInt8(ascii: ":"))
            scanner.skipSpace()
            let valueStart = scanner.offset
            try scanner.skipValue()
            members.append(Member(key: key, range: valueStart..<scanner.offset))
            scanner.skipSpace()
            if scanner.peek == UInt8(ascii: ",") {
                scanner.offset += 1
                continue
            }
            try scanner.expect(UInt8(ascii: "}"))
            return members
        }
    }

    /// The fields of a `msg` laid out exactly as the broker writes it,
    /// `{"op":"msg","topic":"T","seq":N,"time":T,"data":V}`, read without building the member
    /// list (the per-message path of a subscriber); nil for any other layout, which `members`
    /// then reads. `data` must still be exactly one JSON value.
    static func brokerMessage(
        _ bytes: UnsafeRawBufferPointer
    ) -> (topic: Range<Int>, seq: UInt64, time: UInt64, data: Range<Int>)? {
        var cursor = Cursor(bytes: bytes)
        guard cursor.skip(#"{"op":"msg","topic":""#) else { return nil }
        let topicStart = cursor.offset
        while let byte = cursor.peek, byte != UInt8(ascii: "\\"), byte != UInt8(ascii: "\"") { cursor.offset += 1 }
        let topic = topicStart..<cursor.offset
        guard cursor.skip(#"","seq":"#), let seq = cursor.unsigned(), cursor.skip(#","time":"#),
            let time = cursor.unsigned(), cursor.skip(#","data":"#)
        else { return nil }
        let dataStart = cursor.offset
        guard (try? cursor.skipValue()) != nil, cursor.offset == bytes.count - 1, bytes[cursor.offset] == UInt8(ascii: "}")
        else { return nil }
        return (topic, seq, time, dataStart..<cursor.offset)
    }

    /// The id and seq of an `ack` laid out exactly as the broker writes one for this client,
    /// `{"op":"ack","id":"N","seq":N}` (the per-publish path); nil for anything else.
    static func brokerAck(_ bytes: UnsafeRawBufferPointer) -> (id: UInt64, seq: UInt64)? {
        var cursor = Cursor(bytes: bytes)
        guard cursor.skip(#"{"op":"ack","id":""#), let id = cursor.unsigned(), cursor.skip(#"","seq":"#),
            let seq = cursor.unsigned(), cursor.skip("}"), cursor.offset == bytes.count
        else { return nil }
        return (id, seq)
    }

    /// The JSON string at `range` (quotes included), unescaped; nil when it is not a string.
    static func string(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> String? {
        guard range.count >= 2, bytes[range.lowerBound] == UInt8(ascii: "\""),
            bytes[range.upperBound - 1] == UInt8(ascii: "\"")
        else { return nil }
        let inner = UnsafeRawBufferPointer(rebasing: bytes[(range.lowerBound + 1)..<(range.upperBound - 1)])
        if !inner.contains(UInt8(ascii: "\\")) { return String(decoding: inner, as: UTF8.self) }
        return unescape(inner)
    }

    /// The non-negative integer at `range`; nil when it is anything else.
    static func unsigned(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> UInt64? {
        guard !range.isEmpty, range.count <= 20 else { return nil }
        var value: UInt64 = 0
        for index in range {
            let digit = bytes[index] &- UInt8(ascii: "0")
            guard digit < 10 else { return nil }
            let (times, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times.addingReportingOverflow(UInt64(digit))
            guard !overflow1, !overflow2 else { return nil }
            value = sum
        }
        return value
    }

    private static func unescape(_ inner: UnsafeRawBufferPointer) -> String? {
        var scalars = String.UnicodeScalarView()
        var utf8: [UInt8] = []
        var index = 0
        func flush() {
            scalars.append(contentsOf: String(decoding: utf8, as: UTF8.self).unicodeScalars)
            utf8.removeAll(keepingCapacity: true)
        }
        func hex4(_ at: Int) -> UInt32? {
            guard at + 4 <= inner.count else { return nil }
            var value: UInt32 = 0
            for byte in inner[at..<(at + 4)] {
                guard let digit = Int(String(UnicodeScalar(byte)), radix: 16) else { return nil }
                value = value << 4 | UInt32(digit)
            }
            return value
        }
        while index < inner.count {
            let byte = inner[index]
            guard byte == UInt8(ascii: "\\") else {
                utf8.append(byte)
                index += 1
                continue
            }
            guard index + 1 < inner.count else { return nil }
            let escaped = inner[index + 1]
            index += 2
            switch escaped {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): utf8.append(escaped)
            case UInt8(ascii: "b"): utf8.append(0x08)
            case UInt8(ascii: "f"): utf8.append(0x0C)
            case UInt8(ascii: "n"): utf8.append(0x0A)
            case UInt8(ascii: "r"): utf8.append(0x0D)
            case UInt8(ascii: "t"): utf8.append(0x09)
            case UInt8(ascii: "u"):
                guard var code = hex4(index) else { return nil }
                index += 4
                if (0xD800..<0xDC00).contains(code), index + 6 <= inner.count, inner[index] == UInt8(ascii: "\\"),
                    inner[index + 1] == UInt8(ascii: "u"), let low = hex4(index + 2), (0xDC00..<0xE000).contains(low)
                {
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    index += 6
                }
                flush()
                scalars.append(UnicodeScalar(code) ?? "\u{FFFD}")
            default: return nil
            }
        }
        flush()
        return String(scalars)
    }

    private struct Cursor {
        let bytes: UnsafeRawBufferPointer
        var offset = 0

        var peek: UInt8? { offset < bytes.count ? bytes[offset] : nil }

        mutating func skipSpace() {
            while let byte = peek, byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 { offset += 1 }
        }

        /// Moves past `literal` when the bytes here are exactly it.
        mutating func skip(_ literal: StaticString) -> Bool {
            let count = literal.utf8CodeUnitCount
            // Non-nil base: at least `count` (> 0) bytes remain.
            guard count > 0, bytes.count - offset >= count,
                memcmp(bytes.baseAddress! + offset, literal.utf8Start, count) == 0
            else { return false }
            offset += count
            return true
        }

        /// Reads the digits here as a non-negative integer; nil when there are none or it
        /// does not fit 64 bits.
        mutating func unsigned() -> UInt64? {
            let start = offset
            var value: UInt64 = 0
            while offset < bytes.count {
                let digit = bytes[offset] &- UInt8(ascii: "0")
                guard digit < 10 else { break }
                let (times, overflow1) = value.multipliedReportingOverflow(by: 10)
                let (sum, overflow2) = times.addingReportingOverflow(UInt64(digit))
                guard !overflow1, !overflow2 else { return nil }
                value = sum
                offset += 1
            }
            return offset > start ? value : nil
        }

        mutating func expect(_ byte: UInt8) throws(Malformed) {
            guard peek == byte else { throw Malformed(offset: offset) }
            offset += 1
        }

        /// Skips one value: a string, a nested object or array, or a scalar.
        mutating func skipValue() throws(Malformed) {
            guard let first = peek else { throw Malformed(offset: offset) }
            switch first {
            case UInt8(ascii: "\""): try skipString()
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                var depth = 0
                repeat {
                    guard let byte = peek else { throw Malformed(offset: offset) }
                    switch byte {
                    case UInt8(ascii: "\""): try skipString()
                    case UInt8(ascii: "{"), UInt8(ascii: "["):
                        depth += 1
                        offset += 1
                    case UInt8(ascii: "}"), UInt8(ascii: "]"):
                        depth -= 1
                        offset += 1
                    default: offset += 1
                    }
                } while depth > 0
            default:
                let start = offset
                while let byte = peek, byte != UInt8(ascii: ","), byte != UInt8(ascii: "}"), byte != UInt8(ascii: "]"),
                    byte > 0x20
                {
                    offset += 1
                }
                guard offset > start else { throw Malformed(offset: offset) }
            }
        }

        /// Skips a string: `memchr` finds each quote, and a quote after an odd run of
        /// backslashes is escaped (the per-message path: a text payload is one string).
        private mutating func skipString() throws(Malformed) {
            offset += 1
            while offset < bytes.count {
                // Non-nil base: `offset` is inside the bytes.
                let base = bytes.baseAddress!
                guard let found = memchr(base + offset, Int32(UInt8(ascii: "\"")), bytes.count - offset) else { break }
                let quote = base.distance(to: UnsafeRawPointer(found))
                var backslashes = 0
                while quote - backslashes - 1 >= offset, bytes[quote - backslashes - 1] == UInt8(ascii: "\\") {
                    backslashes += 1
                }
                offset = quote + 1
                if backslashes % 2 == 0 { return }
            }
            throw Malformed(offset: offset)
        }
    }
}

/// Writes `string` as a JSON string literal (quotes included) into `buffer`: at once when
/// nothing in it needs escaping (a publish's text, usually), else through `appendJSONString`.
func writeJSONString(_ string: String, to buffer: inout ByteBuffer) {
    var string = string
    let plain = string.withUTF8 { bytes in
        !bytes.contains { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }
    }
    guard plain else {
        var bytes: [UInt8] = []
        appendJSONString(string, to: &bytes)
        buffer.writeBytes(bytes)
        return
    }
    buffer.writeInteger(UInt8(ascii: "\""))
    buffer.writeString(string)
    buffer.writeInteger(UInt8(ascii: "\""))
}

/// Writes `string` as a JSON string literal (quotes included) into `bytes`.
func appendJSONString(_ string: String, to bytes: inout [UInt8]) {
    bytes.append(UInt8(ascii: "\""))
    for byte in string.utf8 {
        switch byte {
        case UInt8(ascii: "\""): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
        case UInt8(ascii: "\\"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
        case 0x0A: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
        case 0x0D: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
        case 0x09: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
        case 0..<0x20:
            let hex = Array("0123456789abcdef".utf8)
            bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0")])
            bytes.append(hex[Int(byte >> 4)])
            bytes.append(hex[Int(byte & 0xF)])
        default: bytes.append(byte)
        }
    }
    bytes.append(UInt8(ascii: "\""))
}
