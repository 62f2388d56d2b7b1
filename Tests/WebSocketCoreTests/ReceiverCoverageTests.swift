import AsyncTestSupport
import NIOCore
import Testing
import WebSocketCore

/// A stream of compressed (RSV1) messages, some fragmented, with the context kept between
/// messages, cut at every point: the same messages come out.
@Suite struct CompressedSplitTests {
    static let words = "Hello hello, héllo wörld! The quick brown fox jumps over the lazy dog. "

    /// Built the way a client sends: `PerMessageDeflate` (client role) compresses each
    /// fragment, `Sender` (client role) masks and frames it, RSV1 on a message's first frame.
    static let stream: [UInt8] = {
        let deflate = PerMessageDeflate(role: .client, parameters: .init())
        var sender = Sender(role: .client)
        var out = ByteBuffer()
        func compressed(_ pieces: [[UInt8]], opcode: Opcode) {
            for (index, piece) in pieces.enumerated() {
                var payload = ByteBuffer()
                try! deflate.compress(ByteBuffer(bytes: piece), isFinal: index == pieces.count - 1, into: &payload)
                sender.writeFrame(
                    opcode: index == 0 ? opcode : .continuation, fin: index == pieces.count - 1,
                    reservedBits: index == 0 ? .rsv1 : [], payload: payload, into: &out)
                if index == 0 {
                    try! sender.writeControl(.ping, payload: ByteBuffer(string: "p"), into: &out)
                }
            }
        }
        let text = Array((words + words).utf8)
        // Fragmented text, the boundary inside "é" (2 bytes) of the uncompressed text.
        let cut = Array(words.utf8).firstIndex(of: 0xC3)! + 1
        compressed([Array(text[..<cut]), Array(text[cut..<40]), Array(text[40...])], opcode: .text)
        // (A ping follows the first frame of every compressed message.)
        // The same text again, whole: with the context kept it refers back to message one.
        compressed([text], opcode: .text)
        // An uncompressed binary message between compressed ones.
        sender.writeMessage(opcode: .binary, payload: ByteBuffer(bytes: [1, 2, 3]), into: &out)
        // Fragmented binary with an empty middle fragment.
        compressed([Array(repeating: 0xAB, count: 100), [], Array(repeating: 0xCD, count: 50)], opcode: .binary)
        // An empty compressed message.
        compressed([[]], opcode: .text)
        try! sender.writeControl(.close, payload: ByteBuffer(bytes: [0x03, 0xE8]), into: &out)
        return Array(out.readableBytesView)
    }()

    static let expected: [Event] = [
        .ping("p".bytes), .text(words + words), .text(words + words), .ping("p".bytes), .binary([1, 2, 3]),
        .ping("p".bytes), .binary([UInt8](repeating: 0xAB, count: 100) + [UInt8](repeating: 0xCD, count: 50)),
        .text(""), .ping("p".bytes), .close(1000, ""),
    ]

    static func serverDeflate() -> PerMessageDeflate { PerMessageDeflate(role: .server, parameters: .init()) }

    @Test func contextIsReallyTakenOver() {
        #expect(receive(Self.stream, role: .server, compression: Self.serverDeflate()).events == Self.expected)
        // A receiver that resets its window after each message cannot read message two: it
        // refers back into message one.
        let resetting = PerMessageDeflate(role: .server, parameters: .init(clientNoContextTakeover: true))
        let result = receive(Self.stream, role: .server, compression: resetting)
        #expect(result.events == Array(Self.expected.prefix(2)))
        #expect(result.error?.closeCode == .invalidFramePayloadData)
    }

    @Test func everySingleSplitPointGivesTheSameEvents() {
        for split in 0...Self.stream.count {
            let result = receive(Self.stream, role: .server, splits: [split], compression: Self.serverDeflate())
            #expect(result.error == nil && result.events == Self.expected, "split at \(split)")
        }
    }

    @Test func byteAtATimeAndRandomPieces() {
        let all = Array(1..<Self.stream.count)
        #expect(receive(Self.stream, role: .server, splits: all, compression: Self.serverDeflate()).events == Self.expected)
        var generator = SplitMix(seed: 7)
        for _ in 0..<100 {
            let splits = (0..<6).map { _ in Int.random(in: 1..<Self.stream.count, using: &generator) }.sorted()
            let result = receive(Self.stream, role: .server, splits: splits, compression: Self.serverDeflate())
            #expect(result.error == nil && result.events == Self.expected, "splits \(splits)")
        }
    }
}

/// UTF-8 test vectors through the receiver, at every fragment boundary and byte by byte.
@Suite struct ReceiverUTF8Tests {
    /// "κόσμε" as in Autobahn 6.x (ό is U+1F79, three bytes).
    static let kosme: [UInt8] = [0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xCE, 0xBC, 0xCE, 0xB5]

    static let valid: [[UInt8]] = [
        kosme,
        [0xF0, 0x9F, 0x98, 0x80],  // U+1F600
        [0xED, 0x9F, 0xBF],  // U+D7FF, last before the surrogates
        [0xEE, 0x80, 0x80],  // U+E000, first after them
        [0xEF, 0xBF, 0xBF],  // U+FFFF
        [0xF4, 0x8F, 0xBF, 0xBF],  // U+10FFFF
        [0xC2, 0x80, 0x7F, 0xDF, 0xBF],  // U+0080, U+007F, U+07FF
        "a€b𐍈c".bytes,
    ]

    /// Invalid payloads and the index of the first byte after which they cannot be valid.
    static let invalid: [(bytes: [UInt8], firstBad: Int)] = [
        (kosme + [0xED, 0xA0, 0x80] + "edited".bytes, 12),  // surrogate U+D800
        ([0x61, 0xC0, 0xAF], 1),  // overlong 2-byte
        ([0xC1, 0xBF], 0),
        ([0xE0, 0x80, 0xAF], 1),  // overlong 3-byte
        ([0xF0, 0x8F, 0xBF, 0xBF], 1),  // overlong 4-byte
        ([0xF4, 0x90, 0x80, 0x80], 1),  // above U+10FFFF
        ([0x61, 0x62, 0xF5, 0x80], 2),
        ([0xFF], 0),
        ([0x61, 0x80], 1),  // lone continuation
        ([0xCE, 0x41], 1),  // lead byte not continued
        ([0xF0, 0x9F, 0x98, 0x41], 3),
        ([0xE2, 0x82, 0xAC, 0xBF], 3),  // one continuation too many
    ]

    /// Client frames carrying `payload` as one text message cut into fragments at `cuts`,
    /// and the wire offset of each payload byte.
    static func fragments(_ payload: [UInt8], cuts: [Int]) -> (bytes: [UInt8], offsets: [Int]) {
        var bytes: [UInt8] = []
        var offsets: [Int] = []
        let bounds = [0] + cuts + [payload.count]
        for index in 0..<bounds.count - 1 {
            let piece = Array(payload[bounds[index]..<bounds[index + 1]])
            let frame = clientFrame(index == 0 ? 0x1 : 0x0, piece, fin: index == bounds.count - 2)
            let headerLength = frame.count - piece.count
            offsets += piece.indices.map { bytes.count + headerLength + $0 }
            bytes += frame
        }
        return (bytes, offsets)
    }

    /// Feeds `bytes` one at a time; returns the events and the index of the byte whose
    /// arrival made the receiver throw.
    static func byteByByte(_ bytes: [UInt8]) -> (events: [Event], failedAt: Int?, code: CloseCode?) {
        var receiver = Receiver(configuration: .init(role: .server))
        var events: [Event] = []
        for (index, byte) in bytes.enumerated() {
            receiver.append(ByteBuffer(bytes: [byte]))
            do {
                while let event = try receiver.next() { events.append(Event(event)) }
            } catch {
                return (events, index, error.closeCode)
            }
        }
        return (events, nil, nil)
    }

    @Test(arguments: valid.indices)
    func validAtEveryFragmentBoundary(vector: Int) {
        let payload = Self.valid[vector]
        let expected = String(decoding: payload, as: UTF8.self)
        for cut in 0...payload.count {
            let (bytes, _) = Self.fragments(payload, cuts: [cut])
            #expect(receive(bytes, role: .server).events == [.text(expected)], "cut at \(cut)")
            let single = Self.byteByByte(bytes)
            #expect(single.failedAt == nil && single.events == [.text(expected)], "cut at \(cut), byte by byte")
        }
        // One byte per fragment.
        let (bytes, _) = Self.fragments(payload, cuts: Array(1..<max(payload.count, 1)))
        #expect(Self.byteByByte(bytes).events == [.text(expected)])
    }

    @Test(arguments: invalid.indices)
    func invalidFailsOnTheFirstBadByte(vector: Int) {
        let (payload, firstBad) = Self.invalid[vector]
        for cuts in (0...payload.count).map({ [$0] }) + [Array(1..<payload.count)] {
            let (bytes, offsets) = Self.fragments(payload, cuts: cuts)
            let result = Self.byteByByte(bytes)
            #expect(result.code == .invalidFramePayloadData, "cuts \(cuts)")
            #expect(result.failedAt == offsets[firstBad], "cuts \(cuts): failed at \(String(describing: result.failedAt)), first bad byte at \(offsets[firstBad])")
            #expect(result.events.isEmpty)
        }
    }

    @Test func incompleteSequenceFailsWhenTheMessageEnds() {
        // Valid so far at every byte; the message ends inside U+1F600.
        let payload: [UInt8] = [0x61, 0xF0, 0x9F, 0x98]
        for cut in 0...payload.count {
            let (bytes, _) = Self.fragments(payload, cuts: [cut])
            let result = Self.byteByByte(bytes)
            #expect(result.code == .invalidFramePayloadData && result.failedAt == bytes.count - 1, "cut at \(cut)")
        }
        // Completed by the next fragment: valid.
        let (bytes, _) = Self.fragments(payload + [0x80], cuts: [payload.count])
        #expect(Self.byteByByte(bytes).events == [.text("a😀")])
    }

    @Test func textBetweenFragmentsOfControlFrames() {
        // A ping between two fragments does not disturb the validator's pending sequence.
        let bytes = clientFrame(0x1, [0xE2, 0x82], fin: false) + clientFrame(0x9, [0xFF]) + clientFrame(0x0, [0xAC])
        #expect(Self.byteByByte(bytes).events == [.ping([0xFF]), .text("€")])
    }
}

/// RFC 6455 §5.7's masked examples in the encoding direction, with the RFC's key.
@Suite struct MaskedExampleEncodingTests {
    func encode(_ opcode: Opcode, _ text: String) -> [UInt8] {
        let key = MaskingKey(0x37, 0xfa, 0x21, 0x3d)
        let payload = Array(text.utf8)
        var out = ByteBuffer()
        FrameHeader(fin: true, reservedBits: [], opcode: opcode, maskingKey: key, payloadLength: payload.count)
            .write(to: &out)
        var masked = ByteBuffer(bytes: payload)
        key.apply(to: &masked)
        out.writeImmutableBuffer(masked)
        return Array(out.readableBytesView)
    }

    @Test func maskedTextAndPong() {
        #expect(encode(.text, "Hello") == RFC6455ExampleTests.maskedHello)
        #expect(encode(.pong, "Hello") == RFC6455ExampleTests.maskedPong)
    }

    @Test func clientSenderOutputUnmasksToTheExample() {
        var sender = Sender(role: .client)
        var out = ByteBuffer()
        sender.writeMessage(opcode: .text, payload: ByteBuffer(string: "Hello"), into: &out)
        var bytes = Array(out.readableBytesView)
        #expect(bytes.count == 11 && bytes[0] == 0x81 && bytes[1] == 0x85)
        for index in 6..<11 { bytes[index] ^= bytes[2 + (index - 6) % 4] }
        #expect(Array(bytes[6...]) == "Hello".bytes)
    }
}

/// `Sender.fragmentSize`: sizes, opcodes, FIN, and RSV bits on the first frame only.
@Suite struct SenderFragmentationTests {
    struct ParsedFrame: Equatable {
        var fin: Bool
        var rsv: ReservedBits
        var opcode: Opcode
        var payload: [UInt8]
    }

    static func frames(_ buffer: ByteBuffer) -> [ParsedFrame] {
        var bytes = Array(buffer.readableBytesView)[...]
        var frames: [ParsedFrame] = []
        while !bytes.isEmpty {
            let parsed = Array(bytes).withUnsafeBytes { try! FrameHeader.parse($0) }
            guard case .header(let header, let length) = parsed else { Issue.record("truncated"); break }
            var payload = Array(bytes.dropFirst(length).prefix(header.payloadLength))
            if let key = header.maskingKey {
                for index in payload.indices { payload[index] ^= key[index] }
            }
            frames.append(ParsedFrame(fin: header.fin, rsv: header.reservedBits, opcode: header.opcode!, payload: payload))
            bytes = bytes.dropFirst(length + header.payloadLength)
        }
        return frames
    }

    @Test(arguments: [Role.server, .client])
    func rsvOnlyOnTheFirstFrame(role: Role) {
        var sender = Sender(role: role, fragmentSize: 3)
        var out = ByteBuffer()
        let payload = Array("0123456789".utf8)
        sender.writeMessage(opcode: .text, reservedBits: .rsv1, payload: ByteBuffer(bytes: payload), into: &out)
        let frames = Self.frames(out)
        #expect(frames.map(\.payload.count) == [3, 3, 3, 1])
        #expect(frames.map(\.rsv) == [.rsv1, [], [], []])
        #expect(frames.map(\.opcode) == [.text, .continuation, .continuation, .continuation])
        #expect(frames.map(\.fin) == [false, false, false, true])
        #expect(frames.flatMap(\.payload) == payload)
    }

    @Test func messagesUpToTheSizeGoWhole() {
        var sender = Sender(role: .server, fragmentSize: 4)
        for count in [0, 1, 4] {
            var out = ByteBuffer()
            sender.writeMessage(
                opcode: .binary, reservedBits: .rsv1, payload: ByteBuffer(bytes: [UInt8](repeating: 9, count: count)),
                into: &out)
            #expect(Self.frames(out) == [ParsedFrame(fin: true, rsv: .rsv1, opcode: .binary, payload: [UInt8](repeating: 9, count: count))])
        }
        var out = ByteBuffer()
        sender.writeMessage(opcode: .binary, payload: ByteBuffer(bytes: [1, 2, 3, 4, 5, 6, 7, 8]), into: &out)
        #expect(Self.frames(out).map(\.payload) == [[1, 2, 3, 4], [5, 6, 7, 8]])
        #expect(Self.frames(out).map(\.fin) == [false, true])
    }

    @Test func fragmentedCompressedMessageIsReadBack() throws {
        // A compressed message sent in fragments is accepted by a receiver with deflate (which
        // rejects RSV1 on a continuation frame) and inflates to the original.
        let client = PerMessageDeflate(role: .client, parameters: .init())
        let text = String(repeating: "fragmented and compressed ", count: 20)
        var sender = Sender(role: .client, fragmentSize: 7)
        var out = ByteBuffer()
        for _ in 0..<2 {
            let compressed = try client.compress(ByteBuffer(string: text), allocator: ByteBufferAllocator())
            sender.writeMessage(opcode: .text, reservedBits: .rsv1, payload: compressed, into: &out)
        }
        #expect(Self.frames(out).count > 2)
        let server = PerMessageDeflate(role: .server, parameters: .init())
        let result = receive(Array(out.readableBytesView), role: .server, compression: server)
        #expect(result.error == nil && result.events == [.text(text), .text(text)])
    }
}
