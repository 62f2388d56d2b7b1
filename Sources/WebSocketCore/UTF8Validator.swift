import NIOCore
// Placeholder scalar validator; replaced by the fast one on the fastpath branch.
public struct UTF8Validator: Sendable {
    var needed = 0
    var lower: UInt8 = 0x80
    var upper: UInt8 = 0xBF
    public init() {}
    public var isAtCharacterBoundary: Bool { needed == 0 }
    public mutating func reset() { self = UTF8Validator() }
    public mutating func validate(_ bytes: UnsafeRawBufferPointer) -> Bool {
        for b in bytes {
            if needed == 0 {
                switch b {
                case 0x00...0x7F: continue
                case 0xC2...0xDF: needed = 1
                case 0xE0: needed = 2; lower = 0xA0
                case 0xE1...0xEC, 0xEE...0xEF: needed = 2
                case 0xED: needed = 2; upper = 0x9F
                case 0xF0: needed = 3; lower = 0x90
                case 0xF1...0xF3: needed = 3
                case 0xF4: needed = 3; upper = 0x8F
                default: return false
                }
            } else {
                guard b >= lower && b <= upper else { return false }
                lower = 0x80; upper = 0xBF; needed -= 1
            }
        }
        return true
    }
    public mutating func validate(_ buffer: ByteBuffer) -> Bool {
        buffer.withUnsafeReadableBytes { validate($0) }
    }
}
