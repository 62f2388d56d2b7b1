/// A JSON syntax error: where, and what was expected.
@_spi(Fuzzing) public struct JSONSyntaxError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Byte offset into the scanned text.
    package let offset: Int
    package let message: String

    @_spi(Fuzzing) public var description: String { "invalid JSON at byte \(offset): \(message)" }
}

/// A validating JSON scanner over raw bytes that finds where values are without building
/// them: the broker reads a few envelope fields and forwards the `data` bytes verbatim.
///
/// Validation is full RFC 8259 syntax: strings (no raw control characters, only the
/// defined escapes, `\u` surrogates correctly paired), numbers (`-?(0|[1-9][0-9]*)(.[0-9]+)?
/// ([eE][+-]?[0-9]+)?`), the three literals, objects and arrays, whitespace `\t \n \r`
/// and space. UTF-8 validity of the bytes is NOT checked here: text frames are validated
/// by the WebSocket receiver before they reach the scanner.
///
/// Invariants:
/// - Never reads outside `bytes`; every `scan…` leaves `position` just past what it scanned.
/// - Nesting deeper than `maxDepth` is rejected (a bound, not a recursion: the value
///   skipper is iterative, with the array/object kind of each level kept in a bit stack).
@_spi(Fuzzing) public struct JSONScanner {
    @_spi(Fuzzing) public static let maxDepth = 128

    package let bytes: UnsafeRawBufferPointer
    package var position: Int

    @_spi(Fuzzing) public init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
        self.position = 0
    }

    // MARK: Whole documents

    /// Whether `bytes` is exactly one JSON value (any type) with optional whitespace around.
    @_spi(Fuzzing) public static func isValid(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var scanner = JSONScanner(bytes)
        do {
            scanner.skipWhitespace()
            _ = try scanner.skipValue()
            try scanner.expectEnd()
            return true
        } catch {
            return false
        }
    }

    // MARK: Primitives

    @inline(__always)
    func error(_ message: String, at offset: Int? = nil) -> JSONSyntaxError {
        JSONSyntaxError(offset: offset ?? position, message: message)
    }

    @inline(__always)
    package var isAtEnd: Bool { position >= bytes.count }

    @inline(__always)
    @_spi(Fuzzing) public func peek() -> UInt8? { position < bytes.count ? bytes[position] : nil }

    @inline(__always)
    @_spi(Fuzzing) public mutating func skipWhitespace() {
        while position < bytes.count {
            switch bytes[position] {
            case 0x20, 0x09, 0x0A, 0x0D: position += 1
            default: return
            }
        }
    }

    /// Consumes `byte` (after whitespace) or throws naming what was expected.
    package mutating func expect(_ byte: UInt8, _ what: String) throws(JSONSyntaxError) {
        skipWhitespace()
        guard position < bytes.count else { throw error("unexpected end, expected \(what)") }
        guard bytes[position] == byte else { throw error("expected \(what)") }
        position += 1
    }

    /// Only whitespace may remain.
    package mutating func expectEnd() throws(JSONSyntaxError) {
        skipWhitespace()
        if position < bytes.count { throw error("unexpected data after the JSON value") }
    }

    /// Scans a string starting at `position` (which must be `"`). Returns the range of
    /// its contents (between the quotes, escapes left as they are) and whether it has any
    /// escape sequence.
    @_spi(Fuzzing) public mutating func scanString() throws(JSONSyntaxError) -> (contents: Range<Int>, hasEscapes: Bool) {
        guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") else {
            throw error("expected a string")
        }
        let start = position + 1
        var i = start
        var hasEscapes = false
        let count = bytes.count
        while true {
            // Fast path: plain bytes.
            while i < count {
                let b = bytes[i]
                if b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") || b < 0x20 { break }
                i += 1
            }
            guard i < count else { throw error("unterminated string", at: start - 1) }
            let b = bytes[i]
            if b == UInt8(ascii: "\"") {
                position = i + 1
                return (start..<i, hasEscapes)
            }
            if b < 0x20 { throw error("raw control character 0x\(String(b, radix: 16)) in a string", at: i) }
            // Escape.
            hasEscapes = true
            guard i + 1 < count else { throw error("unterminated escape", at: i) }
            switch bytes[i + 1] {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"),
                UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                i += 2
            case UInt8(ascii: "u"):
                let unit = try hex4(at: i + 2)
                i += 6
                if unit >= 0xD800 && unit < 0xDC00 {
                    // A high surrogate must be followed by an escaped low surrogate.
                    guard i + 1 < count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else {
                        throw error("unpaired UTF-16 high surrogate", at: i - 6)
                    }
                    let low = try hex4(at: i + 2)
                    guard low >= 0xDC00 && low < 0xE000 else {
                        throw error("high surrogate not followed by a low surrogate", at: i)
                    }
                    i += 6
                } else if unit >= 0xDC00 && unit < 0xE000 {
                    throw error("unpaired UTF-16 low surrogate", at: i - 6)
                }
            default:
                throw error("invalid escape sequence", at: i)
            }
        }
    }

    private func hex4(at offset: Int) throws(JSONSyntaxError) -> UInt32 {
        guard offset + 4 <= bytes.count else { throw error("truncated \\u escape", at: offset - 2) }
        var value: UInt32 = 0
        for k in 0..<4 {
            let b = bytes[offset + k]
            let digit: UInt8
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = b - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = b - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = b - UInt8(ascii: "A") + 10
            default: throw error("invalid hex digit in \\u escape", at: offset + k)
            }
            value = value << 4 | UInt32(digit)
        }
        return value
    }

    /// Scans a number starting at `position`; returns its range.
    package mutating func scanNumber() throws(JSONSyntaxError) -> Range<Int> {
        let start = position
        var i = position
        let count = bytes.count
        @inline(__always) func isDigit(_ i: Int) -> Bool {
            i < count && bytes[i] >= UInt8(ascii: "0") && bytes[i] <= UInt8(ascii: "9")
        }
        if i < count && bytes[i] == UInt8(ascii: "-") { i += 1 }
        guard isDigit(i) else { throw error("expected a digit", at: i) }
        if bytes[i] == UInt8(ascii: "0") {
            i += 1
            if isDigit(i) { throw error("leading zero in a number", at: i) }
        } else {
            while isDigit(i) { i += 1 }
        }
        if i < count && bytes[i] == UInt8(ascii: ".") {
            i += 1
            guard isDigit(i) else { throw error("expected a digit after the decimal point", at: i) }
            while isDigit(i) { i += 1 }
        }
        if i < count && (bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E")) {
            i += 1
            if i < count && (bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-")) { i += 1 }
            guard isDigit(i) else { throw error("expected a digit in the exponent", at: i) }
            while isDigit(i) { i += 1 }
        }
        position = i
        return start..<i
    }

    private mutating func scanLiteral(_ literal: StaticString) throws(JSONSyntaxError) {
        let n = literal.utf8CodeUnitCount
        guard position + n <= bytes.count else { throw error("invalid literal") }
        let p = literal.utf8Start
        for k in 0..<n where bytes[position + k] != p[k] {
            throw error("invalid literal")
        }
        position += n
    }

    // MARK: Values

    /// Skips one complete value starting at `position` (whitespace before it is skipped);
    /// returns its range, from its first to its last byte.
    package mutating func skipValue() throws(JSONSyntaxError) -> Range<Int> {
        skipWhitespace()
        let start = position
        // Bit k set = level k+1 is an array; clear = object. Two words: up to 128 levels.
        var kinds: (UInt64, UInt64) = (0, 0)
        var depth = 0

        @inline(__always) func isArray(_ level: Int) -> Bool {
            let bit = level - 1
            return bit < 64 ? kinds.0 >> UInt64(bit) & 1 == 1 : kinds.1 >> UInt64(bit - 64) & 1 == 1
        }

        valueLoop: while true {
            // Expecting a value.
            skipWhitespace()
            guard position < bytes.count else { throw error("unexpected end, expected a value") }
            switch bytes[position] {
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                let array = bytes[position] == UInt8(ascii: "[")
                guard depth < Self.maxDepth else { throw error("nesting deeper than \(Self.maxDepth)") }
                depth += 1
                let bit = depth - 1
                if bit < 64 {
                    kinds.0 = array ? kinds.0 | (1 << UInt64(bit)) : kinds.0 & ~(1 << UInt64(bit))
                } else {
                    kinds.1 = array ? kinds.1 | (1 << UInt64(bit - 64)) : kinds.1 & ~(1 << UInt64(bit - 64))
                }
                position += 1
                skipWhitespace()
                if position < bytes.count && bytes[position] == (array ? UInt8(ascii: "]") : UInt8(ascii: "}")) {
                    position += 1
                    depth -= 1
                    // Fall through to "after a value".
                } else if array {
                    continue valueLoop
                } else {
                    try scanMemberName()
                    continue valueLoop
                }
            case UInt8(ascii: "\""):
                _ = try scanString()
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                _ = try scanNumber()
            case UInt8(ascii: "t"): try scanLiteral("true")
            case UInt8(ascii: "f"): try scanLiteral("false")
            case UInt8(ascii: "n"): try scanLiteral("null")
            default:
                throw error("expected a value")
            }
            // After a value: close containers or move to the next element.
            while true {
                if depth == 0 { return start..<position }
                skipWhitespace()
                guard position < bytes.count else { throw error("unexpected end inside \(isArray(depth) ? "an array" : "an object")") }
                let b = bytes[position]
                position += 1
                if isArray(depth) {
                    if b == UInt8(ascii: ",") { continue valueLoop }
                    if b == UInt8(ascii: "]") { depth -= 1; continue }
                    position -= 1
                    throw error("expected ',' or ']'")
                } else {
                    if b == UInt8(ascii: ",") {
                        skipWhitespace()
                        try scanMemberName()
                        continue valueLoop
                    }
                    if b == UInt8(ascii: "}") { depth -= 1; continue }
                    position -= 1
                    throw error("expected ',' or '}'")
                }
            }
        }
    }

    /// `"name" :` inside an object, leaving `position` before the member's value.
    private mutating func scanMemberName() throws(JSONSyntaxError) {
        guard position < bytes.count else { throw error("unexpected end, expected a member name") }
        guard bytes[position] == UInt8(ascii: "\"") else { throw error("expected a member name string") }
        _ = try scanString()
        try expect(UInt8(ascii: ":"), "':' after a member name")
    }

    // MARK: Decoding small pieces

    /// The contents of a string token (range from `scanString`) with escapes decoded, as
    /// UTF-8 bytes. Meant for ranges `scanString` validated; on any other range it reads
    /// nothing outside it and turns what is not a valid escape into U+FFFD.
    @_spi(Fuzzing) public func decodeString(_ contents: Range<Int>) -> [UInt8] {
        let contents = contents.clamped(to: 0..<bytes.count)
        let end = contents.upperBound
        var out: [UInt8] = []
        out.reserveCapacity(contents.count)
        var i = contents.lowerBound
        while i < end {
            let b = bytes[i]
            guard b == UInt8(ascii: "\\"), i + 1 < end else {
                out.append(b)
                i += 1
                continue
            }
            let e = bytes[i + 1]
            i += 2
            switch e {
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = i + 4 <= end ? (try? hex4(at: i)) ?? 0xFFFD : 0xFFFD
                i += 4
                if scalar >= 0xD800 && scalar < 0xDC00 {
                    // A validated high surrogate is followed by `\uDC00`-`\uDFFF`.
                    if i + 6 <= end, bytes[i] == UInt8(ascii: "\\"), let low = try? hex4(at: i + 2),
                        low >= 0xDC00 && low < 0xE000
                    {
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        i += 6
                    } else {
                        scalar = 0xFFFD
                    }
                }
                let s = Unicode.Scalar(scalar) ?? "\u{FFFD}"
                out.append(contentsOf: String(Character(s)).utf8)
            default: out.append(e)  // \" \\ \/
            }
        }
        return out
    }

    /// Parses a number token as a non-negative integer that fits `UInt64`; nil otherwise.
    package func unsignedInteger(_ range: Range<Int>) -> UInt64? {
        guard !range.isEmpty else { return nil }
        var value: UInt64 = 0
        for i in range {
            let b = bytes[i]
            guard b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") else { return nil }
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(UInt64(b - UInt8(ascii: "0")))
            if o1 || o2 { return nil }
            value = a
        }
        return value
    }

    /// Whether the string contents in `range` equal `literal` byte for byte (no escapes).
    @inline(__always)
    package func equals(_ range: Range<Int>, _ literal: StaticString) -> Bool {
        let n = literal.utf8CodeUnitCount
        guard range.count == n else { return false }
        let p = literal.utf8Start
        for k in 0..<n where bytes[range.lowerBound + k] != p[k] { return false }
        return true
    }
}
