import AsyncTestSupport
import NIOCore
import TestPeers
import Testing
import WebSocketCore
import WebSockets

/// Our client and our server against a raw peer that writes frames the way the Autobahn
/// fuzzing server does and the interop peers do not: a header in a write of its own, the
/// payload in odd-sized writes (`RawPeer.sendInPieces`, sizes from a seeded SplitMix),
/// frames right behind the 101, valid messages right before a bad frame.
@Suite(.timeLimit(.minutes(2))) struct SplitPeerTests {
    // MARK: Our client, the peer a server

    @Test(arguments: [false, true])
    func ourClientGetsLargeMessagesWrittenInPieces(deflate: Bool) async throws {
        try await withClientOfPeer(deflate: deflate) { peer, agreed, answer in
            #expect(agreed == deflate)
            // The first header goes out with the 101, as the Autobahn server's does.
            try await exchange(peer, as: .server, deflate: agreed, seed: deflate ? 0xC11 : 0xC10, after: answer)
            try await peer.send(clientFrame(opcode: 0x8, closePayload(1000), masked: false))
            let close = try await peer.readFrame()
            #expect(close.opcode == 0x8 && close.closeCode == 1000, "\(close)")
        }
    }

    /// Frames that came in the read of the 101 are decoded before the reads that follow it
    /// (NIO reads the socket again before the handler's first task runs).
    @Test func ourClientGetsLargeFramesThatCameWithThe101() async throws {
        let text = Array(String(repeating: "€ab", count: 65_535 / 5).utf8) + [UInt8](repeating: 0x2A, count: 65_535 % 5)
        var generator = SplitMix(seed: 0x101)
        let binary = Self.bytes(1 << 20, using: &generator)
        let frames = clientFrame(opcode: 0x1, text, masked: false) + clientFrame(opcode: 0x2, binary, masked: false)
        try await withClientOfPeer { peer, _, answer in
            try await peer.send(answer + frames)
            let echoes = [try await peer.readFrame(), try await peer.readFrame()]
            #expect(echoes.map(\.opcode) == [0x1, 0x2])
            #expect(echoes[0].payload.count == text.count && echoes[0].payload == text)
            #expect(echoes[1].payload.count == binary.count && echoes[1].payload == binary)
        }
    }

    /// A bad frame behind valid messages in one read, before the application took any:
    /// the messages are delivered (and answered) first, then the connection fails with
    /// 1002 (Autobahn 3.2, 4.1.3, 4.2.3, 5.15).
    enum BadFrame: String, CaseIterable, Sendable, CustomStringConvertible {
        case reservedBit2
        case reservedDataOpcode
        case reservedControlOpcode
        case continuationOfNothing

        var description: String { rawValue }

        var bytes: [UInt8] {
            switch self {
            case .reservedBit2: clientFrame(opcode: 0x1, rsv: 2, Array("rsv2".utf8), masked: false)
            case .reservedDataOpcode: clientFrame(opcode: 0x3, masked: false)
            case .reservedControlOpcode: clientFrame(opcode: 0xB, masked: false)
            case .continuationOfNothing: clientFrame(opcode: 0x0, fin: false, Array("x".utf8), masked: false)
            }
        }
    }

    @Test(arguments: BadFrame.allCases)
    func ourClientAnswersTheMessagesBeforeABadFrame(bad: BadFrame) async throws {
        let valid = clientFrame(opcode: 0x1, fin: false, Array("Hello, ".utf8), masked: false)
            + clientFrame(opcode: 0x0, Array("world".utf8), masked: false)
            + clientFrame(opcode: 0x2, [1, 2, 3], masked: false)
        let ping = clientFrame(opcode: 0x9, masked: false)
        try await withClientOfPeer { peer, _, answer in
            try await peer.send(answer + valid + bad.bytes + ping)
            let echoes = [try await peer.readFrame(), try await peer.readFrame()]
            #expect(echoes[0].opcode == 0x1 && echoes[0].text == "Hello, world", "\(echoes[0])")
            #expect(echoes[1].opcode == 0x2 && echoes[1].payload == [1, 2, 3], "\(echoes[1])")
            try await peer.expectCloseFrame(1002)
        }
    }

    /// A peer server on an ephemeral port with our client connecting to it (permessage-deflate
    /// offered when `deflate`), which echoes every message once connected. `body` gets the
    /// peer once it read the upgrade request, whether deflate is agreed, and the 101 to send.
    func withClientOfPeer(
        deflate: Bool = false, _ body: (RawPeer, Bool, [UInt8]) async throws -> Void
    ) async throws {
        let listener = try await RawListener.bind()
        defer { listener.close() }
        var options = ClientOptions()
        options.perMessageDeflate = deflate ? PerMessageDeflateOptions() : nil
        async let echoing: Void = {
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(listener.port)/", options: options)
            ws.onMessage { ws.send($0, promise: nil) }
        }()
        let peer = try await listener.accept()
        defer { peer.close() }
        let (_, agreed, answer) = try await peer.readUpgradeRequest(deflate: deflate)
        try await body(peer, agreed, answer)
        try await echoing
    }

    // MARK: Our server, the peer a client

    @Test(arguments: [false, true])
    func ourServerGetsLargeMessagesWrittenInPieces(deflate: Bool) async throws {
        try await withServer({ $0.perMessageDeflate = deflate ? PerMessageDeflateOptions() : nil }) { _, port in
            let peer = try await RawPeer.connect(port: port)
            defer { peer.close() }
            let offer = deflate ? "Sec-WebSocket-Extensions: permessage-deflate\r\n" : ""
            try await peer.send(string: RawPeer.upgradeRequest(extraHeaders: offer))
            let head = try await peer.readHead()
            #expect(head.hasPrefix("HTTP/1.1 101"))
            #expect(head.lowercased().contains("permessage-deflate") == deflate)
            try await exchange(peer, as: .client, deflate: deflate, seed: deflate ? 0x5E1 : 0x5E0)
            try await peer.send(clientFrame(opcode: 0x8, closePayload(1000)))
            try await peer.expectCloseFrame(1000)
        }
    }

    // MARK: The exchange

    struct Message {
        var opcode: UInt8
        var payload: [UInt8]
        /// Frames it is sent in (a ping goes between the first two when more than one).
        var fragments = 1
    }

    /// 64 KiB to 1 MiB, text and binary: the 16-bit length's largest, the 64-bit length's
    /// smallest, two random sizes, exactly 1 MiB, and a fragmented text.
    static func messages(using generator: inout SplitMix) -> [Message] {
        [
            Message(opcode: 0x1, payload: text(65_535, using: &generator)),
            Message(opcode: 0x2, payload: bytes(65_536, using: &generator)),
            Message(opcode: 0x1, payload: text(Int.random(in: 65_536...(1 << 20), using: &generator), using: &generator)),
            Message(opcode: 0x2, payload: bytes(Int.random(in: 65_536...(1 << 20), using: &generator), using: &generator)),
            Message(opcode: 0x2, payload: bytes(1 << 20, using: &generator)),
            Message(opcode: 0x1, payload: text(200_000, using: &generator), fragments: 3),
        ]
    }

    /// `count` bytes of UTF-8 mixing characters of one to four bytes.
    static func text(_ count: Int, using generator: inout SplitMix) -> [UInt8] {
        let characters = ["a", "é", "€", "😀"].map { Array($0.utf8) }
        var text: [UInt8] = []
        text.reserveCapacity(count)
        while text.count < count {
            text += characters[Int.random(in: 0..<min(4, count - text.count), using: &generator)]
        }
        return text
    }

    /// `count` bytes from `generator`, eight at a time.
    static func bytes(_ count: Int, using generator: inout SplitMix) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            let raw = UnsafeMutableRawBufferPointer(buffer)
            for offset in stride(from: 0, to: count, by: 8) {
                let word = generator.next()
                let end = min(offset + 8, count)
                withUnsafeBytes(of: word) { raw[offset..<end].copyBytes(from: $0[..<(end - offset)]) }
            }
            initialized = count
        }
    }

    /// The frames of `message` as the peer in `role` sends it, compressed with `engine`.
    static func frames(
        of message: Message, as role: Role, _ engine: PerMessageDeflate?, using generator: inout SplitMix
    ) throws -> [[UInt8]] {
        var payload = message.payload
        if let engine {
            payload = Array(try engine.compress(ByteBuffer(bytes: payload), allocator: ByteBufferAllocator()).readableBytesView)
        }
        var cuts = (1..<message.fragments).map { _ in Int.random(in: 0...payload.count, using: &generator) }.sorted()
        cuts = [0] + cuts + [payload.count]
        var frames: [[UInt8]] = []
        for index in 0..<message.fragments {
            let first = index == 0
            frames.append(clientFrame(
                opcode: first ? message.opcode : 0x0, fin: index == message.fragments - 1,
                rsv: first && engine != nil ? 4 : 0, Array(payload[cuts[index]..<cuts[index + 1]]),
                masked: role == .client))
            if first, message.fragments > 1 { frames.append(clientFrame(opcode: 0x9, Array("between".utf8), masked: role == .client)) }
        }
        return frames
    }

    /// Sends every message from `peer`, in pieces and back to back, then checks each came
    /// back whole and in order, and that the ping between fragments was answered.
    func exchange(_ peer: RawPeer, as role: Role, deflate: Bool, seed: UInt64, after prefix: [UInt8] = []) async throws {
        var generator = SplitMix(seed: seed)
        let messages = Self.messages(using: &generator)
        let engine = deflate ? PerMessageDeflate(role: role, parameters: PerMessageDeflateParameters()) : nil
        var frames: [[UInt8]] = []
        for message in messages { frames += try Self.frames(of: message, as: role, engine, using: &generator) }
        try await peer.sendInPieces(frames, after: prefix, using: &generator)

        var pongs = 0
        for message in messages {
            var first: RawFrame?
            var payload: [UInt8] = []
            var compressed = false
            while true {
                let frame = try await peer.readFrame()
                if frame.opcode == 0xA {
                    #expect(frame.text == "between")
                    pongs += 1
                    continue
                }
                if first == nil {
                    first = frame
                    compressed = frame.rsv & 4 != 0
                }
                payload += frame.payload
                if frame.fin { break }
            }
            if compressed, let engine {
                var inflated = ByteBuffer()
                try engine.decompress(ByteBuffer(bytes: payload), isFinal: true, into: &inflated, limit: .max)
                payload = Array(inflated.readableBytesView)
            }
            let same = payload == message.payload
            #expect(first?.opcode == message.opcode && (compressed == false || deflate))
            #expect(same, "a message of \(message.payload.count) bytes came back as \(payload.count) different bytes")
        }
        #expect(pongs == messages.filter { $0.fragments > 1 }.count)
    }
}
