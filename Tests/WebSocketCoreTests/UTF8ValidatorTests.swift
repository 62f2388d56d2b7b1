import AsyncTestSupport
import NIOCore
import Testing
import WebSocketCore

@Suite struct UTF8ValidatorTests {
    // MARK: helpers

    /// Feeds `bytes` one byte per call; the index of the first byte at which validate()
    /// returned false, or nil.
    static func failIndex(_ bytes: [UInt8]) -> Int? {
        var v = UTF8Validator()
        for (i, b) in bytes.enumerated() {
            let ok = withUnsafeBytes(of: b) { v.validate($0) }
            if !ok { return i }
        }
        return nil
    }

    /// Whole-buffer validity through the validator.
    static func isValid(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { UTF8Validator.isValid($0) }
    }

    /// Whole-buffer validity as the standard library sees it.
    static func stdlibIsValid(_ bytes: [UInt8]) -> Bool {
        String(validating: bytes, as: UTF8.self) != nil
    }

    static func hex(_ s: String) -> [UInt8] {
        s.split(separator: " ").map { UInt8($0, radix: 16)! }
    }

    // MARK: valid input

    static let validVectors: [String] = [
        "", "00", "7F", "41 42 43",
        "CE BA E1 BD B9 CF 83 CE BC CE B5", // κόσμε (Autobahn 6.2)
        "C2 80", "DF BF", // U+0080, U+07FF
        "E0 A0 80", "EF BF BF", // U+0800, U+FFFF
        "F0 90 80 80", "F4 8F BF BF", // U+10000, U+10FFFF
        "ED 9F BF", "EE 80 80", "EF BF BD", // U+D7FF, U+E000, U+FFFD
        "EF BF BE", "F3 BF BF BF", // noncharacters are valid UTF-8
        "F0 9F 98 80 41", // 😀A
    ]

    @Test(arguments: validVectors)
    func validWholeAndByteByByte(_ vector: String) {
        let bytes = Self.hex(vector)
        #expect(Self.isValid(bytes))
        #expect(Self.failIndex(bytes) == nil)
        #expect(Self.stdlibIsValid(bytes))
    }

    @Test func validStringsFromSwift() {
        let samples = ["Hello-µ@ßöäüàá-UTF-8!!", "κόσμε", "日本語テキスト", "𝄞 music 🎵", "a\u{0}b", String(repeating: "x", count: 1000) + "é"]
        for s in samples {
            #expect(Self.isValid(Array(s.utf8)), "\(s)")
        }
    }

    // MARK: invalid input, with the first failing byte

    static let invalidVectors: [(String, Int)] = [
        // overlong forms
        ("C0 AF", 0), ("E0 80 AF", 1), ("F0 80 80 AF", 1), ("F8 80 80 80 AF", 0), ("FC 80 80 80 80 AF", 0),
        // maximum overlongs
        ("C1 BF", 0), ("E0 9F BF", 1), ("F0 8F BF BF", 1), ("F8 87 BF BF BF", 0), ("FC 83 BF BF BF BF", 0),
        // overlong NUL
        ("C0 80", 0), ("E0 80 80", 1), ("F0 80 80 80", 1),
        // single surrogates
        ("ED A0 80", 1), ("ED AD BF", 1), ("ED AE 80", 1), ("ED AF BF", 1), ("ED B0 80", 1), ("ED BE 80", 1), ("ED BF BF", 1),
        // paired surrogates
        ("ED A0 80 ED B0 80", 1), ("ED AF BF ED BF BF", 1),
        // above U+10FFFF
        ("F4 90 80 80", 1), ("F4 BF BF BF", 1), ("F7 BF BF BF", 0),
        ("F5", 0), ("F6", 0), ("F7", 0), ("F8", 0), ("F9", 0), ("FA", 0), ("FB", 0), ("FC", 0), ("FD", 0), ("FE", 0), ("FF", 0),
        ("FE FE FF FF", 0),
        // lone continuation bytes
        ("80", 0), ("BF", 0), ("80 BF", 0), ("41 80 BF 80", 1),
        // a lead byte followed by something other than a continuation
        ("C2 41", 1), ("E1 80 41", 2), ("F1 80 80 41", 3), ("C2 C2 80", 1), ("E0 C0 80", 1),
        // Autobahn 6.3.1: κόσμε followed by a surrogate, then "edited"
        ("CE BA E1 BD B9 CF 83 CE BC CE B5 ED A0 80 65 64 69 74 65 64", 12),
        // Autobahn 6.4.x: κόσμε followed by a code point above U+10FFFF
        ("CE BA E1 BD B9 CF 83 CE BC CE B5 F4 90 80 80 65 64 69 74 65 64", 12),
        ("CE BA E1 BD B9 CF 83 CE BC CE B5 F4 90 80 80", 12),
    ]

    @Test(arguments: invalidVectors)
    func invalidFailsAtTheRightByte(_ vector: String, _ expectedIndex: Int) {
        let bytes = Self.hex(vector)
        #expect(!Self.isValid(bytes))
        #expect(!Self.stdlibIsValid(bytes))
        #expect(Self.failIndex(bytes) == expectedIndex)
        // The same in one call, and the prefix before the failing byte is still fine.
        var v = UTF8Validator()
        #expect(bytes.withUnsafeBytes { v.validate($0) } == false)
        #expect(!v.isAtCharacterBoundary)
        var w = UTF8Validator()
        #expect(bytes[..<expectedIndex].withUnsafeBytes { w.validate($0) })
        #expect(bytes[expectedIndex...].withUnsafeBytes { w.validate($0) } == false)
    }

    @Test func failFastOnAFragmentEndingInAnImpossiblePrefix() {
        // F4 90 can never start a valid sequence: rejected at once, even at a fragment end.
        var v = UTF8Validator()
        #expect(Self.hex("CE BA F4 90").withUnsafeBytes { v.validate($0) } == false)
        // F0 9F can: accepted but not at a boundary until completed.
        var w = UTF8Validator()
        #expect(Self.hex("CE BA F0 9F").withUnsafeBytes { w.validate($0) })
        #expect(!w.isAtCharacterBoundary)
        #expect(Self.hex("98 80").withUnsafeBytes { w.validate($0) })
        #expect(w.isAtCharacterBoundary)
    }

    @Test func failureIsStickyUntilReset() {
        var v = UTF8Validator()
        #expect(Self.hex("FF").withUnsafeBytes { v.validate($0) } == false)
        #expect(v.hasFailed)
        #expect(Self.hex("41").withUnsafeBytes { v.validate($0) } == false)
        #expect(v.validate(ByteBuffer()) == false)
        v.reset()
        #expect(!v.hasFailed)
        #expect(v.isAtCharacterBoundary)
        #expect(Self.hex("41").withUnsafeBytes { v.validate($0) })
    }

    // MARK: truncated sequences

    static let truncatedVectors = ["C2", "DF", "E0 A0", "E1 80", "ED 9F", "EF BF", "F0 90", "F0 90 80", "F4 8F BF", "F1", "41 CE"]

    @Test(arguments: truncatedVectors)
    func truncatedAtTheEndIsNotABoundary(_ vector: String) {
        let bytes = Self.hex(vector)
        var v = UTF8Validator()
        #expect(bytes.withUnsafeBytes { v.validate($0) }, "a valid prefix is not rejected")
        #expect(!v.isAtCharacterBoundary)
        #expect(!Self.isValid(bytes))
        #expect(!Self.stdlibIsValid(bytes))
        v.reset()
        #expect(v.isAtCharacterBoundary)
    }

    // MARK: split across calls

    @Test func sequenceSplitAtEveryPositionAcrossTwoCalls() {
        let text = Array("aκόσμε€𐍈😀\u{10FFFF}\u{80}\u{7FF}\u{800}\u{FFFF}\u{10000}z".utf8)
        for cut in 0 ... text.count {
            var v = UTF8Validator()
            #expect(text[..<cut].withUnsafeBytes { v.validate($0) }, "cut \(cut)")
            #expect(text[cut...].withUnsafeBytes { v.validate($0) }, "cut \(cut)")
            #expect(v.isAtCharacterBoundary, "cut \(cut)")
        }
        // And into three pieces at every pair of positions.
        for a in 0 ... text.count {
            for b in a ... text.count {
                var v = UTF8Validator()
                let ok = text[..<a].withUnsafeBytes { v.validate($0) }
                    && text[a ..< b].withUnsafeBytes { v.validate($0) }
                    && text[b...].withUnsafeBytes { v.validate($0) }
                #expect(ok && v.isAtCharacterBoundary, "cuts \(a), \(b)")
            }
        }
    }

    @Test func byteBufferConveniences() {
        var buffer = ByteBuffer(string: "ok κόσμε")
        #expect(UTF8Validator.isValid(buffer))
        var v = UTF8Validator()
        let ok = v.validate(buffer)
        #expect(ok)
        buffer.writeBytes([0xED, 0xA0, 0x80])
        #expect(!UTF8Validator.isValid(buffer))
        buffer.moveReaderIndex(forwardBy: 3)
        #expect(!UTF8Validator.isValid(buffer))
    }

    // MARK: the fast path

    @Test func fastPathHandsOverAtEveryPosition() {
        // Long ASCII runs with one non-ASCII item at every position, so every block and
        // word boundary of the fast path is crossed.
        let ascii = [UInt8](repeating: 0x61, count: 200)
        for position in 0 ... ascii.count {
            for insert in ["C3 A9", "E2 82 AC", "F0 9F 98 80"].map(Self.hex) {
                let bytes = Array(ascii[..<position]) + insert + Array(ascii[position...])
                #expect(Self.isValid(bytes), "valid at \(position)")
            }
            for bad in ["80", "C0 80", "ED A0 80", "F4 90 80 80", "C3 41"].map(Self.hex) {
                let bytes = Array(ascii[..<position]) + bad + Array(ascii[position...])
                #expect(!Self.isValid(bytes), "invalid at \(position)")
                let expected = Self.failIndex(bad)! + position
                var v = UTF8Validator()
                #expect(bytes[..<expected].withUnsafeBytes { v.validate($0) })
                #expect(bytes[expected...].withUnsafeBytes { v.validate($0) } == false)
            }
            // Truncated at the very end after a long ASCII run.
            let truncated = Array(ascii[..<position]) + Self.hex("E2 82")
            var v = UTF8Validator()
            #expect(truncated.withUnsafeBytes { v.validate($0) } && !v.isAtCharacterBoundary)
        }
    }

    // MARK: property test against the standard library

    @Test func agreesWithStandardLibraryOnRandomBytes() {
        var rng = SplitMix(seed: 0x5EED_0100)
        let interesting: [UInt8] = [0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF,
                                    0xE0, 0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF]
        var validCount = 0
        for round in 0 ..< 20_000 {
            var bytes: [UInt8] = []
            let items = Int.random(in: 0 ... 40, using: &rng)
            for _ in 0 ..< items {
                switch Int.random(in: 0 ..< 10, using: &rng) {
                case 0 ..< 4: // ASCII run, sometimes long enough for the word fast path
                    bytes += (0 ..< Int.random(in: 1 ... 40, using: &rng)).map { _ in UInt8.random(in: 0 ... 0x7F, using: &rng) }
                case 4 ..< 8: // a valid scalar
                    let scalar = Self.randomScalar(&rng)
                    bytes += Array(String(Character(scalar)).utf8)
                case 8: // an interesting byte
                    bytes.append(interesting.randomElement(using: &rng)!)
                default: // any byte
                    bytes.append(UInt8.random(in: 0 ... 255, using: &rng))
                }
            }
            // Mostly valid strings for the first rounds, mostly broken ones later.
            if round % 3 == 0, !bytes.isEmpty {
                bytes[Int.random(in: 0 ..< bytes.count, using: &rng)] = UInt8.random(in: 0 ... 255, using: &rng)
            }
            let expected = Self.stdlibIsValid(bytes)
            if expected { validCount += 1 }
            #expect(Self.isValid(bytes) == expected, "\(bytes.map { String($0, radix: 16) })")

            // The same through random pieces.
            var v = UTF8Validator()
            var ok = true
            var start = 0
            while start < bytes.count {
                let end = min(bytes.count, start + Int.random(in: 0 ... 17, using: &rng))
                ok = bytes[start ..< end].withUnsafeBytes { v.validate($0) } && ok
                start = end
            }
            #expect((ok && v.isAtCharacterBoundary) == expected)
            #expect(ok == !v.hasFailed)
        }
        // The generator must exercise both outcomes.
        #expect(validCount > 2_000 && validCount < 18_000, "valid: \(validCount)")
    }

    static func randomScalar(_ rng: inout SplitMix) -> Unicode.Scalar {
        while true {
            let value: UInt32
            switch Int.random(in: 0 ..< 4, using: &rng) {
            case 0: value = UInt32.random(in: 0x80 ... 0x7FF, using: &rng)
            case 1: value = UInt32.random(in: 0x800 ... 0xFFFF, using: &rng)
            case 2: value = UInt32.random(in: 0x10000 ... 0x10FFFF, using: &rng)
            default: value = [0x80, 0x7FF, 0x800, 0xD7FF, 0xE000, 0xFFFF, 0x10000, 0x10FFFF].randomElement(using: &rng)!
            }
            if let s = Unicode.Scalar(value) { return s }
        }
    }
}
