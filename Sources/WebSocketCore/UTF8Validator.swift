import NIOCore

/// Incremental, fail-fast UTF-8 validation (RFC 3629, Unicode Table 3-7), for text
/// messages that arrive in fragments (RFC 6455 §8.1).
///
/// `validate(_:)` returns `false` at the first byte after which the bytes seen so far can
/// never be completed into valid UTF-8: a lone continuation byte, C0, C1, F5–FF, an
/// overlong form (E0 80–9F, F0 80–8F), a surrogate (ED A0–BF) or a code point above
/// U+10FFFF (F4 90–BF), or a lead byte that is not followed by enough continuations.
/// A sequence cut at the end of a piece that can still become valid (`F0 9F` …) is kept
/// and completed by the next call; a message may only end when `isAtCharacterBoundary`.
///
/// ASCII is checked 32 and 8 bytes at a time; other bytes go through a table-driven DFA
/// and the fast path resumes at the next character boundary.
public struct UTF8Validator: Sendable, Hashable {
    @usableFromInline
    internal var state: UInt8

    /// A validator at the start of a text.
    public init() { state = UTF8Validator.accept }

    /// No partial sequence is pending (and nothing invalid was seen): a text message may
    /// end here.
    @inlinable
    public var isAtCharacterBoundary: Bool { state == 0 }

    /// Whether an invalid byte was seen since the last `reset()`. Once set, `validate`
    /// keeps returning `false`.
    @inlinable
    public var hasFailed: Bool { state == UTF8Validator.reject }

    /// Forgets any partial sequence and any failure, for the next message.
    @inlinable
    public mutating func reset() { state = 0 }

    /// Validates the next piece of the message. Returns `false` as soon as the bytes seen
    /// so far (in this and the previous calls) can no longer be valid UTF-8; a partial
    /// sequence at the end of `bytes` that can still be completed is carried over.
    public mutating func validate(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard state != UTF8Validator.reject else { return false }
        guard let base = bytes.baseAddress else { return true }
        state = UTF8Validator.run(base, count: bytes.count, state: state)
        return state != UTF8Validator.reject
    }

    /// Validates the readable bytes of `buffer` as the next piece of the message.
    @inlinable
    public mutating func validate(_ buffer: ByteBuffer) -> Bool {
        buffer.withUnsafeReadableBytes { self.validate($0) }
    }

    /// Whether `bytes` is a complete, valid UTF-8 string.
    public static func isValid(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let base = bytes.baseAddress else { return true }
        return run(base, count: bytes.count, state: accept) == accept
    }

    /// Whether the readable bytes of `buffer` are a complete, valid UTF-8 string.
    @inlinable
    public static func isValid(_ buffer: ByteBuffer) -> Bool {
        buffer.withUnsafeReadableBytes { isValid($0) }
    }

    // MARK: - DFA

    // States. `accept` must be 0 (isAtCharacterBoundary is inlined); `reject` is sticky.
    @usableFromInline internal static let accept: UInt8 = 0
    @usableFromInline internal static let reject: UInt8 = 1
    private static let need1: UInt8 = 2 // one continuation 80–BF
    private static let need2: UInt8 = 3 // two continuations
    private static let need3: UInt8 = 4 // three continuations
    private static let afterE0: UInt8 = 5 // A0–BF, then one (no overlong 3-byte form)
    private static let afterED: UInt8 = 6 // 80–9F, then one (no surrogates)
    private static let afterF0: UInt8 = 7 // 90–BF, then two (no overlong 4-byte form)
    private static let afterF4: UInt8 = 8 // 80–8F, then two (nothing above U+10FFFF)
    private static let stateCount = 9

    // Byte classes.
    private static let classCount = 12
    private static func byteClass(_ b: UInt8) -> UInt8 {
        switch b {
        case 0x00 ... 0x7F: return 0
        case 0x80 ... 0x8F: return 1
        case 0x90 ... 0x9F: return 2
        case 0xA0 ... 0xBF: return 3
        case 0xC2 ... 0xDF: return 5
        case 0xE0: return 6
        case 0xE1 ... 0xEC, 0xEE ... 0xEF: return 7
        case 0xED: return 8
        case 0xF0: return 9
        case 0xF1 ... 0xF3: return 10
        case 0xF4: return 11
        default: return 4 // C0, C1, F5–FF: never valid
        }
    }

    private static func transition(_ state: UInt8, _ byteClass: UInt8) -> UInt8 {
        switch state {
        case accept:
            switch byteClass {
            case 0: return accept
            case 5: return need1
            case 6: return afterE0
            case 7: return need2
            case 8: return afterED
            case 9: return afterF0
            case 10: return need3
            case 11: return afterF4
            default: return reject
            }
        case need1: return (1 ... 3).contains(byteClass) ? accept : reject
        case need2: return (1 ... 3).contains(byteClass) ? need1 : reject
        case need3: return (1 ... 3).contains(byteClass) ? need2 : reject
        case afterE0: return byteClass == 3 ? need1 : reject
        case afterED: return (1 ... 2).contains(byteClass) ? need1 : reject
        case afterF0: return (2 ... 3).contains(byteClass) ? need2 : reject
        case afterF4: return byteClass == 1 ? need2 : reject
        default: return reject
        }
    }

    // The tables, in one array so that one pointer reaches all of them:
    //   [0, 2304)      the DFA: next state = table[state * 256 + byte]
    //   [2304, 2560)   sequence length by lead byte: 2, 3, 4, or 0 if it cannot lead
    //   [2560, 2816)   lowest allowed second byte by lead byte
    //   [2816, 3072)   highest allowed second byte by lead byte
    // All are built once from the range rules above.
    private static let widthBase = stateCount * 256
    private static let lowBase = widthBase + 256
    private static let highBase = lowBase + 256
    // A never-freed pointer rather than an array: no retain/release per call. It is
    // written once, during the lazy initialisation, and only read after that.
    nonisolated(unsafe) private static let table: UnsafePointer<UInt8> = {
        let t = UnsafeMutablePointer<UInt8>.allocate(capacity: highBase + 256)
        t.initialize(repeating: reject, count: highBase + 256)
        for s in 0 ..< stateCount {
            for b in 0 ... 255 {
                t[s * 256 + b] = transition(UInt8(s), byteClass(UInt8(b)))
            }
        }
        for b in 0 ... 255 {
            let (width, low, high): (UInt8, UInt8, UInt8)
            switch transition(accept, byteClass(UInt8(b))) {
            case need1: (width, low, high) = (2, 0x80, 0xBF)
            case need2: (width, low, high) = (3, 0x80, 0xBF)
            case need3: (width, low, high) = (4, 0x80, 0xBF)
            case afterE0: (width, low, high) = (3, 0xA0, 0xBF)
            case afterED: (width, low, high) = (3, 0x80, 0x9F)
            case afterF0: (width, low, high) = (4, 0x90, 0xBF)
            case afterF4: (width, low, high) = (4, 0x80, 0x8F)
            default: (width, low, high) = (0, 0xFF, 0) // ASCII never gets here; the rest cannot lead
            }
            t[widthBase + b] = width
            t[lowBase + b] = low
            t[highBase + b] = high
        }
        return UnsafePointer(t)
    }()

    private static let highBits: UInt64 = 0x8080_8080_8080_8080

    /// Validates `count` bytes from `state`; returns the final state, or `reject` as soon
    /// as it is reached.
    ///
    /// ASCII runs are skipped a word or 32 bytes at a time. Multi-byte sequences are
    /// checked whole (length, second byte range, continuation bytes) while they follow
    /// each other; the DFA is only used for a sequence cut at either end of the piece.
    private static func run(_ p: UnsafeRawPointer, count n: Int, state initial: UInt8) -> UInt8 {
        do {
            let t = table
            var i = 0

            // Finish a sequence left over from the previous piece.
            var s = initial
            while s != accept {
                guard i < n else { return s }
                s = t[Int(s) &* 256 &+ Int(p.load(fromByteOffset: i, as: UInt8.self))]
                i &+= 1
                if s == reject { return reject }
            }

            while true {
                // ASCII fast path: a word at a time, then 32 bytes at a time.
                while n &- i >= 8 {
                    let m = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: i, as: UInt64.self)) & highBits
                    if m != 0 {
                        // Skip the ASCII bytes before the first non-ASCII one.
                        i &+= m.trailingZeroBitCount &>> 3
                        break
                    }
                    i &+= 8
                    while n &- i >= 32 {
                        let w = p.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                            | p.loadUnaligned(fromByteOffset: i &+ 8, as: UInt64.self)
                            | p.loadUnaligned(fromByteOffset: i &+ 16, as: UInt64.self)
                            | p.loadUnaligned(fromByteOffset: i &+ 24, as: UInt64.self)
                        if w & highBits != 0 { break }
                        i &+= 32
                    }
                }

                // Whole sequences, while they follow each other (and ASCII bytes in the
                // last few bytes of the piece).
                while i < n {
                    let b0 = Int(p.load(fromByteOffset: i, as: UInt8.self))
                    if b0 < 0x80 {
                        if n &- i >= 8 { break } // back to the fast path
                        i &+= 1
                        continue
                    }
                    let width = Int(t[widthBase &+ b0])
                    if width == 0 { return reject }
                    if n &- i < width {
                        // Cut by the end of the piece: carry the DFA state (which also
                        // rejects a prefix that can never be completed).
                        var s = accept
                        while i < n {
                            s = t[Int(s) &* 256 &+ Int(p.load(fromByteOffset: i, as: UInt8.self))]
                            i &+= 1
                            if s == reject { return reject }
                        }
                        return s
                    }
                    let b1 = p.load(fromByteOffset: i &+ 1, as: UInt8.self)
                    if b1 < t[lowBase &+ b0] || b1 > t[highBase &+ b0] { return reject }
                    if width >= 3 {
                        if p.load(fromByteOffset: i &+ 2, as: UInt8.self) & 0xC0 != 0x80 { return reject }
                        if width == 4, p.load(fromByteOffset: i &+ 3, as: UInt8.self) & 0xC0 != 0x80 { return reject }
                    }
                    i &+= width
                }
                if i >= n { return accept }
            }
        }
    }
}
