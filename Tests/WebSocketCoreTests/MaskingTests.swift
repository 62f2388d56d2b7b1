import AsyncTestSupport
import NIOCore
import Testing
import WebSocketCore

/// A small deterministic generator (SplitMix64), so failures reproduce.
@Suite struct MaskingTests {
    /// The reference: one byte at a time.
    static func referenceMask(_ bytes: [UInt8], key: MaskingKey, offset: Int) -> [UInt8] {
        bytes.enumerated().map { $0.element ^ key[$0.offset + offset] }
    }

    static func randomKey(_ rng: inout SplitMix) -> MaskingKey {
        MaskingKey(value: UInt32.random(in: .min ... .max, using: &rng))
    }

    @Test func rfc6455MaskedHello() {
        let key = MaskingKey(0x37, 0xfa, 0x21, 0x3d)
        var buffer = ByteBuffer(bytes: Array("Hello".utf8))
        key.apply(to: &buffer)
        #expect(Array(buffer.readableBytesView) == [0x7f, 0x9f, 0x4d, 0x51, 0x58])
        key.apply(to: &buffer)
        #expect(String(buffer: buffer) == "Hello")
    }

    @Test func inPlaceMatchesReferenceForAllLengthsOffsetsAndAlignments() {
        var rng = SplitMix(seed: 0x5EED_0001)
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: 300 + 16, alignment: 64)
        defer { storage.deallocate() }
        var failures = 0
        for length in 0 ... 300 {
            let input = (0 ..< length).map { _ in UInt8.random(in: 0 ... 255, using: &rng) }
            for offset in 0 ... 7 {
                let key = Self.randomKey(&rng)
                let expected = Self.referenceMask(input, key: key, offset: offset)
                for alignment in 0 ... 15 {
                    let piece = UnsafeMutableRawBufferPointer(rebasing: storage[alignment ..< alignment + length])
                    // Fill around the piece with a canary to catch writes outside it.
                    storage.initializeMemory(as: UInt8.self, repeating: 0xA5)
                    piece.copyBytes(from: input)
                    key.apply(to: piece, startingAt: offset)
                    if Array(piece) != expected { failures += 1 }
                    if storage[..<alignment].contains(where: { $0 != 0xA5 }) || storage[(alignment + length)...].contains(where: { $0 != 0xA5 }) {
                        failures += 1
                    }
                }
            }
        }
        #expect(failures == 0)
    }

    @Test func copyingMatchesReferenceForAllLengthsOffsetsAndAlignments() {
        var rng = SplitMix(seed: 0x5EED_0002)
        let source = UnsafeMutableRawBufferPointer.allocate(byteCount: 300 + 16, alignment: 64)
        let destination = UnsafeMutableRawBufferPointer.allocate(byteCount: 300 + 16, alignment: 64)
        defer { source.deallocate(); destination.deallocate() }
        var failures = 0
        for length in 0 ... 300 {
            let input = (0 ..< length).map { _ in UInt8.random(in: 0 ... 255, using: &rng) }
            for offset in 0 ... 7 {
                let key = Self.randomKey(&rng)
                let expected = Self.referenceMask(input, key: key, offset: offset)
                for alignment in 0 ... 15 {
                    let dstAlignment = (alignment * 7) & 15 // vary the two alignments independently
                    let src = UnsafeMutableRawBufferPointer(rebasing: source[alignment ..< alignment + length])
                    src.copyBytes(from: input)
                    destination.initializeMemory(as: UInt8.self, repeating: 0xA5)
                    let dst = UnsafeMutableRawBufferPointer(rebasing: destination[dstAlignment...])
                    key.apply(from: UnsafeRawBufferPointer(src), to: dst, startingAt: offset)
                    if Array(dst[..<length]) != expected { failures += 1 }
                    if Array(src) != input { failures += 1 }
                    if destination[..<dstAlignment].contains(where: { $0 != 0xA5 }) || destination[(dstAlignment + length)...].contains(where: { $0 != 0xA5 }) {
                        failures += 1
                    }
                }
            }
        }
        #expect(failures == 0)
    }

    @Test func randomPiecesWithRunningOffsetEqualWhole() {
        var rng = SplitMix(seed: 0x5EED_0003)
        for _ in 0 ..< 200 {
            let length = Int.random(in: 0 ... 5000, using: &rng)
            let input = (0 ..< length).map { _ in UInt8.random(in: 0 ... 255, using: &rng) }
            let key = Self.randomKey(&rng)
            let expected = Self.referenceMask(input, key: key, offset: 0)

            var inPlace = input
            var copied = [UInt8](repeating: 0, count: length)
            inPlace.withUnsafeMutableBytes { whole in
                input.withUnsafeBytes { src in
                    copied.withUnsafeMutableBytes { dst in
                        var done = 0
                        while done < length {
                            let n = min(length - done, Int.random(in: 0 ... 100, using: &rng))
                            key.apply(to: UnsafeMutableRawBufferPointer(rebasing: whole[done ..< done + n]), startingAt: done)
                            key.apply(from: UnsafeRawBufferPointer(rebasing: src[done ..< done + n]),
                                      to: UnsafeMutableRawBufferPointer(rebasing: dst[done ..< done + n]), startingAt: done)
                            done += n
                        }
                    }
                }
            }
            #expect(inPlace == expected)
            #expect(copied == expected)
        }
    }

    @Test func byteBufferRangeAndLargeOffsets() {
        var rng = SplitMix(seed: 0x5EED_0004)
        let key = Self.randomKey(&rng)
        let input = (0 ..< 1000).map { _ in UInt8.random(in: 0 ... 255, using: &rng) }
        var buffer = ByteBuffer(bytes: [0xEE, 0xEE, 0xEE] + input)
        buffer.moveReaderIndex(forwardBy: 3)
        // Mask bytes 10..<510 of the payload, as if 10 bytes had been masked before.
        key.apply(to: &buffer, at: buffer.readerIndex + 10, length: 500, startingAt: 10)
        var expected = input
        for i in 10 ..< 510 { expected[i] ^= key[i] }
        #expect(Array(buffer.readableBytesView) == expected)
        // An offset past Int32 range rotates the same as offset & 3.
        var a = ByteBuffer(bytes: input), b = ByteBuffer(bytes: input)
        key.apply(to: &a, startingAt: (1 << 40) + 3)
        key.apply(to: &b, startingAt: 3)
        #expect(a == b)
    }

    @Test func inPlaceThroughCopyingVariant() {
        // src and dst may be the same memory.
        let key = MaskingKey(0x01, 0x02, 0x03, 0x04)
        var bytes = [UInt8](repeating: 0, count: 77)
        bytes.withUnsafeMutableBytes { key.apply(from: UnsafeRawBufferPointer($0), to: $0, startingAt: 1) }
        #expect(bytes == (0 ..< 77).map { key[$0 + 1] })
    }
}
