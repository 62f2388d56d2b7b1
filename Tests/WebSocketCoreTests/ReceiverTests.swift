import AsyncTestSupport
import NIOCore
import Testing
import WebSocketCore

@Suite struct RFC6455ExampleTests {
    // RFC 6455 §5.7, byte for byte.
    static let unmaskedHello: [UInt8] = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
    static let maskedHello: [UInt8] = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
    static let fragmentedHello: [UInt8] = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f]
    static let unmaskedPing: [UInt8] = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
    static let maskedPong: [UInt8] = [0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]

    @Test func decodesTheExamples() {
        #expect(receive(Self.unmaskedHello, role: .client).events == [.text("Hello")])
        #expect(receive(Self.maskedHello, role: .server).events == [.text("Hello")])
        #expect(receive(Self.fragmentedHello, role: .client).events == [.text("Hello")])
        #expect(receive(Self.unmaskedPing, role: .client).events == [.ping("Hello".bytes)])
        #expect(receive(Self.maskedPong, role: .server).events == [.pong("Hello".bytes)])
    }

    @Test func decodesExtendedLengths() {
        let payload256 = (0..<256).map { UInt8($0 & 0xFF) }
        let frame256: [UInt8] = [0x82, 0x7E, 0x01, 0x00] + payload256
        #expect(receive(frame256, role: .client).events == [.binary(payload256)])
        let payload64k = [UInt8](repeating: 0x5A, count: 65536)
        let frame64k: [UInt8] = [0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0] + payload64k
        #expect(receive(frame64k, role: .client).events == [.binary(payload64k)])
    }

    @Test func encodesTheExamples() throws {
        var sender = Sender(role: .server)
        var out = ByteBuffer()
        sender.writeMessage(opcode: .text, payload: ByteBuffer(string: "Hello"), into: &out)
        #expect(Array(out.readableBytesView) == Self.unmaskedHello)

        out.clear()
        try sender.writeControl(.ping, payload: ByteBuffer(string: "Hello"), into: &out)
        #expect(Array(out.readableBytesView) == Self.unmaskedPing)

        out.clear()
        var fragmenting = Sender(role: .server, fragmentSize: 3)
        fragmenting.writeMessage(opcode: .text, payload: ByteBuffer(string: "Hello"), into: &out)
        #expect(Array(out.readableBytesView) == Self.fragmentedHello)

        out.clear()
        sender.writeMessage(opcode: .binary, payload: ByteBuffer(bytes: [UInt8](repeating: 7, count: 256)), into: &out)
        #expect(Array(out.readableBytesView.prefix(4)) == [0x82, 0x7E, 0x01, 0x00])
        out.clear()
        sender.writeMessage(opcode: .binary, payload: ByteBuffer(bytes: [UInt8](repeating: 7, count: 65536)), into: &out)
        #expect(Array(out.readableBytesView.prefix(10)) == [0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0])
        #expect(out.readableBytes == 65546)
    }

    @Test func clientFramesAreMaskedWithFreshKeys() throws {
        var sender = Sender(role: .client)
        var first = ByteBuffer()
        var second = ByteBuffer()
        sender.writeMessage(opcode: .text, payload: ByteBuffer(string: "Hello"), into: &first)
        sender.writeMessage(opcode: .text, payload: ByteBuffer(string: "Hello"), into: &second)
        #expect(first.getInteger(at: 1, as: UInt8.self) == 0x85)
        #expect(first.getBytes(at: 2, length: 4) != second.getBytes(at: 2, length: 4))
        // Our own server-side receiver reads them back.
        #expect(receive(Array(first.readableBytesView) + Array(second.readableBytesView), role: .server).events
            == [.text("Hello"), .text("Hello")])
    }
}

@Suite struct ReceiverErrorTests {
    func expectFailure(_ bytes: [UInt8], role: Role = .server, _ code: CloseCode, maxPayload: Int = 1 << 20,
                       sourceLocation: SourceLocation = #_sourceLocation) {
        let result = receive(bytes, role: role, maxPayload: maxPayload)
        #expect(result.error?.closeCode == code, "\(result)", sourceLocation: sourceLocation)
    }

    @Test func reservedBitsWithoutExtension() {
        for rsv: UInt8 in [0x40, 0x20, 0x10, 0x70] {
            expectFailure(clientFrame(0x1, "a".bytes, rsv: rsv), .protocolError)
        }
    }

    @Test(arguments: [UInt8(3), 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
    func reservedOpcodes(opcode: UInt8) {
        expectFailure(clientFrame(opcode, []), .protocolError)
    }

    @Test func maskingByRole() {
        expectFailure(frameBytes(0x1, "a".bytes), role: .server, .protocolError)
        expectFailure(clientFrame(0x1, "a".bytes), role: .client, .protocolError)
    }

    @Test func controlFrameRules() {
        expectFailure(clientFrame(0x9, [UInt8](repeating: 1, count: 126)), .protocolError)
        expectFailure(clientFrame(0x9, [], fin: false), .protocolError)
        expectFailure(clientFrame(0x8, [0x03], fin: true), .protocolError)
        #expect(receive(clientFrame(0x9, [UInt8](repeating: 1, count: 125)), role: .server).events.count == 1)
    }

    @Test func fragmentationRules() {
        expectFailure(clientFrame(0x0, "a".bytes), .protocolError)
        expectFailure(clientFrame(0x1, "a".bytes, fin: false) + clientFrame(0x1, "b".bytes), .protocolError)
        expectFailure(clientFrame(0x1, "a".bytes, fin: false) + clientFrame(0x2, "b".bytes), .protocolError)
    }

    @Test func sixtyFourBitLengthWithTopBit() {
        expectFailure([0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4], .protocolError)
    }

    @Test func payloadLimits() {
        expectFailure(clientFrame(0x2, [UInt8](repeating: 0, count: 101)), .messageTooBig, maxPayload: 100)
        expectFailure(
            clientFrame(0x2, [UInt8](repeating: 0, count: 60), fin: false)
                + clientFrame(0x0, [UInt8](repeating: 0, count: 41)),
            .messageTooBig, maxPayload: 100)
        #expect(receive(clientFrame(0x2, [UInt8](repeating: 0, count: 100)), role: .server, maxPayload: 100).error == nil)
        // A frame announcing more than the limit fails on its header, before any payload arrives.
        let header = Array(clientFrame(0x2, [UInt8](repeating: 0, count: 200)).prefix(8))
        expectFailure(header, .messageTooBig, maxPayload: 100)
    }

    @Test func closeBodies() {
        #expect(receive(clientFrame(0x8, []), role: .server).events == [.close(1005, "")])
        #expect(receive(clientFrame(0x8, [0x03, 0xE8] + "bye".bytes), role: .server).events == [.close(1000, "bye")])
        #expect(receive(clientFrame(0x8, [0x0F, 0xA0]), role: .server).events == [.close(4000, "")])
        for code: UInt16 in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            expectFailure(clientFrame(0x8, [UInt8(code >> 8), UInt8(code & 0xFF)]), .protocolError)
        }
        expectFailure(clientFrame(0x8, [0x03, 0xE8, 0xCE, 0xBA, 0xE1, 0xBD]), .invalidFramePayloadData)
    }

    @Test func nothingIsDecodedAfterClose() {
        let bytes = clientFrame(0x8, [0x03, 0xE8]) + clientFrame(0x1, "late".bytes)
        #expect(receive(bytes, role: .server).events == [.close(1000, "")])
    }

    @Test func invalidUTF8() {
        expectFailure(clientFrame(0x1, [0xC0, 0xAF]), .invalidFramePayloadData)
        expectFailure(clientFrame(0x1, [0xCE]), .invalidFramePayloadData)
        expectFailure(clientFrame(0x1, [0xCE], fin: false) + clientFrame(0x0, [0xBA, 0xFF]), .invalidFramePayloadData)
        // A sequence completed by the next fragment is valid.
        #expect(receive(clientFrame(0x1, [0xCE], fin: false) + clientFrame(0x0, [0xBA]), role: .server).events
            == [.text("κ")])
    }

    @Test func invalidUTF8FailsBeforeTheFrameIsComplete() {
        // "κόσμε" then an invalid byte, in a frame announcing 1000 bytes; only 30 arrive.
        let text = "κόσμε".bytes + [0xF5] + [UInt8](repeating: 0x61, count: 1000 - 11)
        let frame = clientFrame(0x1, text)
        let result = receive(Array(frame.prefix(30)), role: .server)
        #expect(result.error?.closeCode == .invalidFramePayloadData)
    }
}

@Suite struct ReceiverSplitTests {
    /// A stream mixing every kind of frame: fragmented text with a multi-byte character
    /// across a boundary, an interleaved ping, binary with a 16-bit length, a pong, a close.
    static let stream: [UInt8] = {
        let longBinary = (0..<300).map { UInt8($0 % 251) }
        return clientFrame(0x1, "Hé".bytes.dropLast(), fin: false)
            + clientFrame(0x9, "p".bytes)
            + clientFrame(0x0, ["Hé".bytes.last!] + "llo".bytes, fin: false)
            + clientFrame(0x0, " wörld".bytes)
            + clientFrame(0x2, longBinary)
            + clientFrame(0xA, [])
            + clientFrame(0x1, [])
            + clientFrame(0x8, [0x03, 0xE9] + "bye".bytes)
    }()

    static let expected: [Event] = [
        .ping("p".bytes), .text("Héllo wörld"), .binary((0..<300).map { UInt8($0 % 251) }), .pong([]), .text(""),
        .close(1001, "bye"),
    ]

    @Test func everySingleSplitPointGivesTheSameEvents() {
        for split in 0...Self.stream.count {
            let result = receive(Self.stream, role: .server, splits: [split])
            #expect(result.error == nil && result.events == Self.expected, "split at \(split)")
        }
    }

    @Test func byteAtATimeAndRandomPieces() {
        let all = Array(1..<Self.stream.count)
        #expect(receive(Self.stream, role: .server, splits: all).events == Self.expected)
        var generator = SplitMix(seed: 42)
        for _ in 0..<200 {
            let splits = (0..<5).map { _ in Int.random(in: 1..<Self.stream.count, using: &generator) }.sorted()
            let result = receive(Self.stream, role: .server, splits: splits)
            #expect(result.events == Self.expected, "splits \(splits)")
        }
    }

    @Test func unmaskedServerStreamAtEverySplit() {
        let stream = frameBytes(0x1, "Hé".bytes, fin: false) + frameBytes(0x9, "p".bytes)
            + frameBytes(0x0, "llo".bytes) + frameBytes(0x2, [1, 2, 3])
        for split in 0...stream.count {
            let result = receive(stream, role: .client, splits: [split])
            #expect(result.events == [.ping("p".bytes), .text("Héllo"), .binary([1, 2, 3])], "split at \(split)")
        }
    }
}


/// Frames at and past the 16-bit length, received the way the Autobahn|Testsuite's server
/// sends them: each header in a read of its own, the payload in reads of odd sizes.
@Suite struct ReceiverLargeFrameSplitTests {
    /// 65,535 bytes of text (the largest 16-bit length), multi-byte characters straddling
    /// most piece boundaries.
    static let text65535 = "a" + String(repeating: "é", count: 32_767)
    static let binary65536 = (0..<65_536).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
    static let text1MiB = String(repeating: "ab€😀", count: 1 << 20 / 9)

    static func frames(key: [UInt8]?) -> [[UInt8]] {
        [
            frameBytes(0x1, text65535.bytes, key: key),
            frameBytes(0x9, "p".bytes, key: key),
            frameBytes(0x2, binary65536, key: key),
            frameBytes(0x1, text1MiB.bytes, fin: false, key: key),
            frameBytes(0x0, binary65536.map { $0 & 0x7F }, key: key),
        ]
    }

    static let expected: [Event] = [
        .text(text65535), .ping("p".bytes), .binary(binary65536),
        .text(text1MiB + String(decoding: binary65536.map { $0 & 0x7F }, as: UTF8.self)),
    ]

    /// Split points: every header alone, each payload in odd-sized pieces of 1 to 8,191 bytes.
    static func headerAloneSplits(_ frames: [[UInt8]], using generator: inout SplitMix) -> [Int] {
        var splits: [Int] = []
        var offset = 0
        for frame in frames {
            let length7 = frame[1] & 0x7F
            let headerLength = 2 + (length7 == 126 ? 2 : length7 == 127 ? 8 : 0) + (frame[1] & 0x80 != 0 ? 4 : 0)
            var position = offset + headerLength
            splits.append(position)
            while position < offset + frame.count {
                position += Int.random(in: 0..<4096, using: &generator) * 2 + 1
                splits.append(min(position, offset + frame.count))
            }
            offset += frame.count
        }
        return splits
    }

    @Test(arguments: [Role.client, .server])
    func headersAloneAndPayloadsInOddPieces(role: Role) {
        let frames = Self.frames(key: role == .server ? [0x37, 0xFA, 0x21, 0x3D] : nil)
        let stream = frames.flatMap { $0 }
        var generator = SplitMix(seed: 0x5EED)
        for round in 0..<8 {
            let splits = Self.headerAloneSplits(frames, using: &generator)
            let result = receive(stream, role: role, splits: splits)
            #expect(result.error == nil, "round \(round): \(String(describing: result.error))")
            #expect(result.events == Self.expected, "round \(round): \(result.events)")
        }
    }

    /// The length bytes of a header cut from its first two, and from each other.
    @Test(arguments: [Role.client, .server])
    func extendedLengthsSplitInsideTheHeader(role: Role) {
        let key: [UInt8]? = role == .server ? [0x37, 0xFA, 0x21, 0x3D] : nil
        for frame in [frameBytes(0x1, Self.text65535.bytes, key: key), frameBytes(0x2, Self.binary65536, key: key)] {
            let headerLength = frame[1] & 0x7F == 126 ? 4 : 10
            for split in 1..<headerLength + (key == nil ? 0 : 4) {
                let result = receive(frame, role: role, splits: [split, split + 1, headerLength + 4, headerLength + 4093])
                #expect(result.error == nil && result.events.count == 1, "split at \(split): \(result)")
            }
        }
    }
}

/// Reads larger than `Receiver.ownStorageThreshold` that end one large frame and begin the
/// next, as a client pipelining large messages sends them: the rest of the read waits,
/// masked, until the frames before it are out.
@Suite struct ReceiverPipelinedLargeFramesTests {
    static let binary = (0..<20_000).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 5) }
    static let text = String(repeating: "aé€😀", count: 2_000)

    static let stream: [UInt8] =
        clientFrame(0x2, binary) + clientFrame(0x2, binary.reversed()) + clientFrame(0x9, "p".bytes)
        + clientFrame(0x1, text.bytes) + clientFrame(0x2, []) + clientFrame(0x1, text.bytes, fin: false)
        + clientFrame(0x0, binary.map { $0 & 0x7F }) + clientFrame(0x2, binary)
        + clientFrame(0x8, [0x03, 0xE8])

    static let expected: [Event] = [
        .binary(binary), .binary(binary.reversed()), .ping("p".bytes), .text(text), .binary([]),
        .text(text + String(decoding: binary.map { $0 & 0x7F }, as: UTF8.self)), .binary(binary), .close(1000, ""),
    ]

    @Test(arguments: [8_193, 12_000, 16_384, 30_001, 65_536])
    func evenPiecesGiveTheSameEvents(piece: Int) {
        let splits = Array(stride(from: piece, to: Self.stream.count, by: piece))
        let result = receive(Self.stream, role: .server, splits: splits)
        #expect(result.error == nil && result.events == Self.expected, "pieces of \(piece)")
    }

    @Test func randomLargePiecesGiveTheSameEvents() {
        var generator = SplitMix(seed: 0xB16)
        for round in 0..<100 {
            var splits: [Int] = []
            var position = 0
            while position < Self.stream.count {
                position += Int.random(in: 1..<40_000, using: &generator)
                splits.append(position)
            }
            let result = receive(Self.stream, role: .server, splits: splits)
            #expect(result.error == nil && result.events == Self.expected, "round \(round): splits \(splits)")
        }
    }

    /// Bytes appended while earlier ones still wait are kept in order behind them.
    @Test func appendsBeforeDrainingKeepTheirOrder() throws {
        var receiver = Receiver(configuration: .init(role: .server))
        let first = clientFrame(0x2, Self.binary)
        let second = clientFrame(0x2, Self.binary.reversed())
        let cut = first.count + 4 + 10_000
        receiver.append(ByteBuffer(bytes: first[...] + second[..<(cut - first.count)]))
        #expect(receiver.bufferedBytes == cut)
        receiver.append(ByteBuffer(bytes: second[(cut - first.count)...]))
        #expect(receiver.bufferedBytes == first.count + second.count)
        var events: [Event] = []
        while let event = try receiver.next() { events.append(Event(event)) }
        #expect(events == [.binary(Self.binary), .binary(Self.binary.reversed())])
        #expect(!receiver.isMidFrame && receiver.bufferedBytes == 0)
    }

    /// 64 KiB messages pipelined and read 64 KiB at a time, as a socket hands them over: each
    /// message keeps storage of its own size. Storage comes in powers of two, so a frame's
    /// storage that also took in the next header, or a header in front of the payload, is
    /// twice as large (and was reached by moving the whole frame).
    @Test(arguments: [Role.server, .client])
    func pipelined64KiBMessagesEachHoldStorageOfTheirSize(role: Role) throws {
        let payload = (0..<65_536).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        let frame = role == .server ? clientFrame(0x2, payload) : frameBytes(0x2, payload)
        let stream = Array(repeatElement(frame, count: 6).joined())
        var receiver = Receiver(configuration: .init(role: role))
        var capacities: [Int] = []
        for start in stride(from: 0, to: stream.count, by: 65_536) {
            receiver.append(ByteBuffer(bytes: stream[start..<min(start + 65_536, stream.count)]))
            while let event = try receiver.next() {
                guard case .binary(let message) = event else { Issue.record("unexpected \(event)"); continue }
                #expect(Array(message.readableBytesView) == payload)
                capacities.append(message.storageCapacity)
            }
        }
        #expect(capacities == Array(repeating: 65_536, count: 6))
    }

    /// A bad header behind a large frame fails the connection once its turn comes.
    @Test func badFrameAfterALargeOneStillFails() {
        let stream = clientFrame(0x2, Self.binary) + clientFrame(0x3, Array(repeating: 1, count: 10_000))
        let result = receive(stream, role: .server, splits: [stream.count - 100])
        #expect(result.events == [.binary(Self.binary)])
        #expect(result.error?.closeCode == .protocolError)
    }
}
