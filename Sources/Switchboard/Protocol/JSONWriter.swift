import NIOCore

/// Appends small JSON pieces to a `ByteBuffer` without going through `String`
/// interpolation or an encoder: the building blocks of the broker's outgoing envelopes.
enum JSONWriter {
    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// Writes `string` as a JSON string token (with quotes), escaping `"`, `\` and control
    /// characters (RFC 8259 §7); everything else, non-ASCII included, is written as UTF-8.
    static func writeString(_ string: String, to buffer: inout ByteBuffer) {
        var string = string
        string.withUTF8 { writeString(bytes: UnsafeRawBufferPointer($0), to: &buffer) }
    }

    /// `writeString` over UTF-8 bytes.
    static func writeString(bytes: UnsafeRawBufferPointer, to buffer: inout ByteBuffer) {
        buffer.reserveCapacity(minimumWritableBytes: bytes.count + 2)
        buffer.writeInteger(UInt8(ascii: "\""))
        var runStart = 0
        for i in 0..<bytes.count {
            let b = bytes[i]
            guard b < 0x20 || b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") else { continue }
            buffer.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[runStart..<i]))
            switch b {
            case UInt8(ascii: "\""): buffer.writeStaticString("\\\"")
            case UInt8(ascii: "\\"): buffer.writeStaticString("\\\\")
            case 0x0A: buffer.writeStaticString("\\n")
            case 0x0D: buffer.writeStaticString("\\r")
            case 0x09: buffer.writeStaticString("\\t")
            default:
                buffer.writeStaticString("\\u00")
                buffer.writeMultipleIntegers(hexDigits[Int(b >> 4)], hexDigits[Int(b & 0xF)])
            }
            runStart = i + 1
        }
        buffer.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[runStart..<bytes.count]))
        buffer.writeInteger(UInt8(ascii: "\""))
    }

    /// Decimal digits of `value`.
    static func writeDecimal(_ value: UInt64, to buffer: inout ByteBuffer) {
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes ≥ 20 digits
        var v = value
        var n = 0
        withUnsafeMutableBytes(of: &digits) { raw in
            repeat {
                raw[23 - n] = UInt8(ascii: "0") + UInt8(v % 10)
                v /= 10
                n += 1
            } while v > 0
            buffer.writeBytes(UnsafeRawBufferPointer(rebasing: raw[(24 - n)...]))
        }
    }

    static func writeDecimal(_ value: Int64, to buffer: inout ByteBuffer) {
        if value < 0 { buffer.writeInteger(UInt8(ascii: "-")) }
        writeDecimal(value.magnitude, to: &buffer)
    }

    /// Number of bytes `writeDecimal` writes for `value`.
    static func decimalLength(_ value: UInt64) -> Int {
        var n = 1
        var v = value
        while v >= 10 { v /= 10; n += 1 }
        return n
    }

    static func decimalLength(_ value: Int64) -> Int {
        (value < 0 ? 1 : 0) + decimalLength(value.magnitude)
    }
}
