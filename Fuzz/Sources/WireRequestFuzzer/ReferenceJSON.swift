/// A second RFC 8259 validator, written straight from the grammar (recursive descent, one
/// byte at a time), to hold `JSONScanner` to. Besides the grammar it rejects what the
/// scanner is documented to reject: nesting deeper than `maxDepth` containers and `\u`
/// escapes of unpaired UTF-16 surrogates. Like the scanner it does not check UTF-8.
struct ReferenceJSON {
    private let bytes: [UInt8]
    private let maxDepth: Int
    private var index = 0

    /// Whether `bytes` is one JSON value with optional whitespace around it.
    static func isValid(_ bytes: [UInt8], maxDepth: Int) -> Bool {
        var parser = ReferenceJSON(bytes: bytes, maxDepth: maxDepth)
        parser.whitespace()
        guard parser.value(depth: 0) else { return false }
        parser.whitespace()
        return parser.index == bytes.count
    }

    private init(bytes: [UInt8], maxDepth: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    private var current: UInt8? { index < bytes.count ? bytes[index] : nil }

    private mutating func take(_ byte: UInt8) -> Bool {
        guard current == byte else { return false }
        index += 1
        return true
    }

    // ws = *( %x20 / %x09 / %x0A / %x0D )
    private mutating func whitespace() {
        while let byte = current, byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D { index += 1 }
    }

    // value = false / null / true / object / array / number / string
    private mutating func value(depth: Int) -> Bool {
        switch current {
        case UInt8(ascii: "{"): return object(depth: depth + 1)
        case UInt8(ascii: "["): return array(depth: depth + 1)
        case UInt8(ascii: "\""): return string()
        case UInt8(ascii: "t"): return literal("true")
        case UInt8(ascii: "f"): return literal("false")
        case UInt8(ascii: "n"): return literal("null")
        default: return number()
        }
    }

    private mutating func literal(_ word: String) -> Bool {
        for byte in word.utf8 where !take(byte) { return false }
        return true
    }

    // object = begin-object [ member *( value-separator member ) ] end-object
    private mutating func object(depth: Int) -> Bool {
        guard depth <= maxDepth, take(UInt8(ascii: "{")) else { return false }
        whitespace()
        if take(UInt8(ascii: "}")) { return true }
        repeat {
            whitespace()
            guard string() else { return false }
            whitespace()
            guard take(UInt8(ascii: ":")) else { return false }
            whitespace()
            guard value(depth: depth) else { return false }
            whitespace()
        } while take(UInt8(ascii: ","))
        return take(UInt8(ascii: "}"))
    }

    // array = begin-array [ value *( value-separator value ) ] end-array
    private mutating func array(depth: Int) -> Bool {
        guard depth <= maxDepth, take(UInt8(ascii: "[")) else { return false }
        whitespace()
        if take(UInt8(ascii: "]")) { return true }
        repeat {
            whitespace()
            guard value(depth: depth) else { return false }
            whitespace()
        } while take(UInt8(ascii: ","))
        return take(UInt8(ascii: "]"))
    }

    // number = [ minus ] int [ frac ] [ exp ]
    private mutating func number() -> Bool {
        _ = take(UInt8(ascii: "-"))
        if take(UInt8(ascii: "0")) {
            // int = zero / ( digit1-9 *DIGIT ): nothing may follow a leading zero but frac or exp.
        } else {
            guard digits() > 0 else { return false }
        }
        if take(UInt8(ascii: ".")) {
            guard digits() > 0 else { return false }
        }
        if take(UInt8(ascii: "e")) || take(UInt8(ascii: "E")) {
            if !take(UInt8(ascii: "+")) { _ = take(UInt8(ascii: "-")) }
            guard digits() > 0 else { return false }
        }
        return true
    }

    private mutating func digits() -> Int {
        var count = 0
        while let byte = current, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) {
            index += 1
            count += 1
        }
        return count
    }

    // string = quotation-mark *char quotation-mark
    private mutating func string() -> Bool {
        guard take(UInt8(ascii: "\"")) else { return false }
        while let byte = current {
            index += 1
            switch byte {
            case UInt8(ascii: "\""):
                return true
            case UInt8(ascii: "\\"):
                guard let escaped = current else { return false }
                index += 1
                switch escaped {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                    UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    continue
                case UInt8(ascii: "u"):
                    guard let unit = hex4() else { return false }
                    if (0xDC00..<0xE000).contains(unit) { return false }
                    if (0xD800..<0xDC00).contains(unit) {
                        guard take(UInt8(ascii: "\\")), take(UInt8(ascii: "u")), let low = hex4(),
                            (0xDC00..<0xE000).contains(low)
                        else { return false }
                    }
                default:
                    return false
                }
            case 0x00..<0x20:
                return false
            default:
                continue
            }
        }
        return false
    }

    private mutating func hex4() -> Int? {
        guard index + 4 <= bytes.count else { return nil }
        var value = 0
        for _ in 0..<4 {
            guard let digit = Int(String(UnicodeScalar(bytes[index])), radix: 16) else { return nil }
            value = value * 16 + digit
            index += 1
        }
        return value
    }
}
