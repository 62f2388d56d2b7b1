import AsyncTestSupport
import NIOCore
import TestPeers
import Testing
import WebSocketCore
import WebSockets

/// RFC 6455 conformance in the style of Autobahn|Testsuite sections 1–7 and 9: an echo
/// server under test, exact client frames from a raw socket, exact frames expected back.
@Suite(.timeLimit(.minutes(1))) struct ConformanceTests {
    /// Runs `body` against a fresh echo server with a raw client that completed its handshake.
    func withEchoPeer(
        _ configure: (inout WebSocketServer.Options) -> Void = { _ in }, _ body: (RawPeer) async throws -> Void
    ) async throws {
        try await withServer(configure) { _, port in
            let peer = try await RawPeer.upgraded(port: port)
            defer { peer.close() }
            try await body(peer)
        }
    }

    /// Closes cleanly and checks the server echoes 1000 then drops TCP.
    func closeNormally(_ peer: RawPeer) async throws {
        try await peer.send(clientFrame(opcode: 0x8, closePayload(1000)))
        try await peer.expectCloseFrame(1000)
    }

    // MARK: 1 Framing (payload lengths)

    @Test(arguments: [0, 125, 126, 127, 128, 65535, 65536, 300_000])
    func section1EchoPayloadLengths(length: Int) async throws {
        try await withEchoPeer { peer in
            let text = [UInt8](repeating: UInt8(ascii: "*"), count: length)
            try await peer.send(clientFrame(opcode: 0x1, text))
            let echo = try await peer.readFrame()
            #expect(echo.opcode == 0x1 && echo.fin && echo.payload == text)
            let binary = [UInt8](repeating: 0xFE, count: length)
            try await peer.send(clientFrame(opcode: 0x2, binary))
            let echoBinary = try await peer.readFrame()
            #expect(echoBinary.opcode == 0x2 && echoBinary.payload == binary)
            try await closeNormally(peer)
        }
    }

    @Test func section1FrameDribbledByteByByte() async throws {
        try await withEchoPeer { peer in
            for byte in clientFrame(opcode: 0x1, Array("Hello-µ@ßöäüàá-UTF-8!!".utf8)) {
                try await peer.send([byte])
            }
            #expect(try await peer.readFrame().text == "Hello-µ@ßöäüàá-UTF-8!!")
            try await closeNormally(peer)
        }
    }

    // MARK: 2 Pings and pongs

    @Test func section2PingWith125BytesEchoedInPong() async throws {
        try await withEchoPeer { peer in
            let payload = [UInt8](repeating: 0xFE, count: 125)
            try await peer.send(clientFrame(opcode: 0x9, payload))
            let pong = try await peer.readFrame()
            #expect(pong.opcode == 0xA && pong.fin && pong.payload == payload)
            try await closeNormally(peer)
        }
    }

    @Test func section2EmptyAndBinaryPings() async throws {
        try await withEchoPeer { peer in
            try await peer.send(clientFrame(opcode: 0x9))
            #expect(try await peer.readFrame().opcode == 0xA)
            try await peer.send(clientFrame(opcode: 0x9, [0x00, 0xFF, 0xFE, 0xFD]))
            let pong = try await peer.readFrame()
            #expect(pong.opcode == 0xA && pong.payload == [0x00, 0xFF, 0xFE, 0xFD])
            // Ten pings in one packet get ten pongs, in order.
            try await peer.send((0..<10).flatMap { clientFrame(opcode: 0x9, [UInt8($0)]) })
            for i in 0..<10 { #expect(try await peer.readFrame().payload == [UInt8(i)]) }
            try await closeNormally(peer)
        }
    }

    @Test func section2PingWith126BytesIsAProtocolError() async throws {
        try await withEchoPeer { peer in
            try await peer.send(clientFrame(opcode: 0x9, [UInt8](repeating: 0, count: 126)))
            try await peer.expectCloseFrame(1002)
        }
    }

    @Test func section2UnsolicitedPongIsIgnored() async throws {
        try await withEchoPeer { peer in
            try await peer.send(clientFrame(opcode: 0xA, Array("unsolicited".utf8)))
            try await peer.send(clientFrame(opcode: 0x1, Array("after".utf8)))
            let echo = try await peer.readFrame()
            #expect(echo.opcode == 0x1 && echo.text == "after")
            try await closeNormally(peer)
        }
    }

    // MARK: 3 Reserved bits

    @Test(arguments: [UInt8(1), 2, 3, 4, 5, 6, 7])
    func section3ReservedBitsAreAProtocolError(rsv: UInt8) async throws {
        try await withEchoPeer { peer in
            try await peer.send(clientFrame(opcode: 0x1, rsv: rsv, Array("Hello".utf8)))
            try await peer.expectCloseFrame(1002)
        }
    }

    @Test func section3ReservedBitsOnPingAfterValidText() async throws {
        try await withEchoPeer { peer in
            try await peer.send(
                clientFrame(opcode: 0x1, Array("Hello".utf8)) + clientFrame(opcode: 0x9, rsv: 4, Array("x".utf8)))
            #expect(try await peer.readFrame().text == "Hello")
            try await peer.expectCloseFrame(1002)
        }
    }

    // MARK: 4 Opcodes

    @Test(arguments: [UInt8(3), 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
    func section4ReservedOpcodesAreAProtocolError(opcode: UInt8) async throws {
        try await withEchoPeer { peer in
            try await peer.send(clientFrame(opcode: opcode, Array("payload".utf8)))
            try await peer.expectCloseFrame(1002)
        }
    }

    // MARK: 5 Fragmentation

    @Test func section5FragmentedTextWithInterleavedPing() async throws {
        try await withEchoPeer { peer in
            try await peer.send(clientFrame(opcode: 0x1, fin: false, Array("frag".utf8)))
            try await peer.send(clientFrame(opcode: 0x9, Array("ping".utf8)))
            let pong = try await peer.readFrame()
            #expect(pong.opcode == 0xA && pong.text == "ping")
            try await peer.send(clientFrame(opcode: 0x0, fin: false, Array("ment".utf8)))
            try await peer.send(clientFrame(opcode: 0x0, fin: true, Array("ed".utf8)))
            let echo = try await peer.readFrame()
            #expect(echo.opcode == 0x1 && echo.text == "fragmented")
            try await closeNormally(peer)
        }
    }

    @Test func section5InterleavedPingInOnePacketGetsPongFirst() async throws {
        try await withEchoPeer { peer in
            try await peer.send(
                clientFrame(opcode: 0x1, fin: false, Array("a".utf8)) + clientFrame(opcode: 0x9, Array("p".utf8))
                    + clientFrame(opcode: 0x0, fin: true, Array("b".utf8)))
            let first = try await peer.readFrame()
            let second = try await peer.readFrame()
            #expect(first.opcode == 0xA && first.text == "p")
            #expect(second.opcode == 0x1 && second.text == "ab")
            try await closeNormally(peer)
        }
    }

    @Test func section5ContinuationWithoutStartIsAProtocolError() async throws {
        try await withEchoPeer { peer in
            try await peer.send(clientFrame(opcode: 0x0, fin: true, Array("orphan".utf8)))
            try await peer.expectCloseFrame(1002)
        }
    }

    @Test func section5NewMessageDuringFragmentedOneIsAProtocolError() async throws {
        try await withEchoPeer { peer in
            try await peer.send(clientFrame(opcode: 0x1, fin: false, Array("one".utf8)))
            try await peer.send(clientFrame(opcode: 0x1, fin: true, Array("two".utf8)))
            try await peer.expectCloseFrame(1002)
        }
    }

    @Test func section5FragmentedPingIsAProtocolError() async throws {
        try await withEchoPeer { peer in
            try await peer.send(clientFrame(opcode: 0x9, fin: false, Array("pi".utf8)))
            try await peer.expectCloseFrame(1002)
        }
    }

    @Test func section5ManyOneByteFragments() async throws {
        try await withEchoPeer { peer in
            let text = Array("a fragmented message, one byte per frame".utf8)
            var bytes: [UInt8] = []
            for (i, byte) in text.enumerated() {
                bytes += clientFrame(opcode: i == 0 ? 0x1 : 0x0, fin: i == text.count - 1, [byte])
            }
            try await peer.send(bytes)
            #expect(try await peer.readFrame().payload == text)
            try await closeNormally(peer)
        }
    }

    // MARK: 6 UTF-8

    @Test(arguments: [
        [UInt8]([0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xCE, 0xBC, 0xCE, 0xB5, 0xED, 0xA0, 0x80, 0x65, 0x64]),
        [0xC0, 0xAF],  // overlong
        [0xF4, 0x90, 0x80, 0x80],  // above U+10FFFF
        [0x80],  // lone continuation
        [0xE0, 0x80],  // truncated at the end
        [0xFE],
    ])
    func section6InvalidUTF8Is1007(bytes: [UInt8]) async throws {
        try await withEchoPeer { peer in
            try await peer.send(clientFrame(opcode: 0x1, bytes))
            try await peer.expectCloseFrame(1007)
        }
    }

    @Test func section6ValidUTF8EdgeCasesEcho() async throws {
        try await withEchoPeer { peer in
            let samples: [[UInt8]] = [
                [0xF4, 0x8F, 0xBF, 0xBF],  // U+10FFFF
                [0xEF, 0xBF, 0xBF],  // U+FFFF
                [0xED, 0x9F, 0xBF],  // U+D7FF
                Array("κόσμε".utf8),
            ]
            for sample in samples {
                try await peer.send(clientFrame(opcode: 0x1, sample))
                #expect(try await peer.readFrame().payload == sample)
            }
            try await closeNormally(peer)
        }
    }

    // MARK: 7 Close handling

    @Test func section7CloseWithoutPayloadIsEchoedEmpty() async throws {
        try await withEchoPeer { peer in
            try await peer.send(clientFrame(opcode: 0x8))
            let close = try await peer.readFrame()
            #expect(close.opcode == 0x8 && close.payload.isEmpty)
            try await peer.expectClosed()
        }
    }

    @Test func section7CloseWithReasonIsEchoed() async throws {
        try await withEchoPeer { peer in
            try await peer.send(clientFrame(opcode: 0x8, closePayload(3000, Array("reason".utf8))))
            try await peer.expectCloseFrame(3000)
        }
    }

    @Test func section7NothingAfterClose() async throws {
        try await withEchoPeer { peer in
            try await peer.send(clientFrame(opcode: 0x8, closePayload(1000)) + clientFrame(opcode: 0x1, Array("late".utf8)))
            try await peer.expectCloseFrame(1000)
        }
    }

    @Test(arguments: [UInt16(0), 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535])
    func section7InvalidCloseCodeIsAProtocolError(code: UInt16) async throws {
        try await withEchoPeer { peer in
            try await peer.send(clientFrame(opcode: 0x8, closePayload(code)))
            try await peer.expectCloseFrame(1002)
        }
    }

    @Test(arguments: [UInt16(1000), 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999])
    func section7ValidCloseCodesAreEchoed(code: UInt16) async throws {
        try await withEchoPeer { peer in
            try await peer.send(clientFrame(opcode: 0x8, closePayload(code)))
            try await peer.expectCloseFrame(code)
        }
    }

    @Test func section7CloseWithOneBytePayloadIsAProtocolError() async throws {
        try await withEchoPeer { peer in
            try await peer.send(clientFrame(opcode: 0x8, [0x03]))
            try await peer.expectCloseFrame(1002)
        }
    }

    @Test func section7CloseReasonInvalidUTF8Is1007() async throws {
        try await withEchoPeer { peer in
            try await peer.send(clientFrame(opcode: 0x8, closePayload(1000, [0xCE, 0xBA, 0xED, 0xA0, 0x80])))
            try await peer.expectCloseFrame(1007)
        }
    }

    @Test func section7CloseReasonMaxLength() async throws {
        try await withEchoPeer { peer in
            try await peer.send(clientFrame(opcode: 0x8, closePayload(1000, [UInt8](repeating: 0x2A, count: 123))))
            try await peer.expectCloseFrame(1000)
        }
    }

    // MARK: Client side (a fake server sends the bad frames)

    func clientFailure(serverSends frame: [UInt8]) async throws -> (any Error)? {
        try await withFakeServer(respond: { head in
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + "Sec-WebSocket-Accept: \(Handshake.acceptValue(forKey: requestKey(head)))\r\n\r\n"
        }, then: frame) { port in
            var options = ClientOptions()
            options.perMessageDeflate = nil
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/", options: options)
            return try await withTimeout("messages to fail") { () -> (any Error)? in
                do {
                    for try await _ in ws.messages {}
                    return nil
                } catch {
                    return error
                }
            }
        }
    }

    @Test func clientRejectsMaskedServerFrame() async throws {
        let error = try await clientFailure(serverSends: clientFrame(opcode: 0x1, Array("masked".utf8), masked: true))
        #expect((error as? WebSocketError)?.closeCode == .protocolError)
    }

    @Test func clientRejectsInvalidUTF8FromServer() async throws {
        let error = try await clientFailure(serverSends: clientFrame(opcode: 0x1, [0xC0, 0x80], masked: false))
        #expect((error as? WebSocketError)?.closeCode == .invalidFramePayloadData)
    }

    @Test func autoPongOff() async throws {
        let pings = Inbox<ByteBuffer>()
        try await withEchoPeerAutoPongOff(pings) { peer in
            try await peer.send(clientFrame(opcode: 0x9, Array("p".utf8)) + clientFrame(opcode: 0x1, Array("t".utf8)))
            let frame = try await peer.readFrame()
            #expect(frame.opcode == 0x1 && frame.text == "t", "no pong expected, got \(frame)")
            #expect(try await pings.next() == ByteBuffer(string: "p"))
            try await closeNormally(peer)
        }
    }

    func withEchoPeerAutoPongOff(_ pings: Inbox<ByteBuffer>, _ body: (RawPeer) async throws -> Void) async throws {
        try await withServer({ $0.connection.autoPong = false }, onConnection: { ws in
            ws.onPing { pings.put($0) }
            ws.onMessage { ws.send($0, promise: nil) }
        }) { _, port in
            let peer = try await RawPeer.upgraded(port: port)
            defer { peer.close() }
            try await body(peer)
        }
    }

    @Test func tcpDropWithoutCloseIs1006() async throws {
        let closed = Waiter<CloseInfo>("server onClose")
        try await withServer(onConnection: { ws in
            ws.onMessage { _ in }
            ws.onClose { closed.fulfill($0) }
        }) { _, port in
            let peer = try await RawPeer.upgraded(port: port)
            try await peer.send(clientFrame(opcode: 0x1, fin: false, Array("half a mess".utf8)))
            peer.close()
            #expect(try await closed.value() == CloseInfo(code: .abnormalClosure, reason: "", wasClean: false))
        }
    }

    // MARK: 9 Limits and performance (scaled down)

    @Test(arguments: [64 * 1024, 1024 * 1024, 2 * 1024 * 1024])
    func section9LargeMessagesInOneFrame(size: Int) async throws {
        try await withEchoPeer { peer in
            let payload = Array(pseudoRandomBytes(size).readableBytesView)
            try await peer.send(clientFrame(opcode: 0x2, payload))
            let echo = try await peer.readFrame(timeout: .seconds(20))
            #expect(echo.opcode == 0x2 && echo.payload == payload)
            try await closeNormally(peer)
        }
    }

    @Test func section9LargeMessageInFragments() async throws {
        try await withEchoPeer { peer in
            let text = [UInt8](repeating: UInt8(ascii: "*"), count: 1024 * 1024)
            var bytes: [UInt8] = []
            let chunk = 64 * 1024
            for start in stride(from: 0, to: text.count, by: chunk) {
                bytes += clientFrame(
                    opcode: start == 0 ? 0x1 : 0x0, fin: start + chunk >= text.count, Array(text[start..<start + chunk]))
            }
            try await peer.send(bytes)
            let echo = try await peer.readFrame(timeout: .seconds(20))
            #expect(echo.opcode == 0x1 && echo.payload == text)
            try await closeNormally(peer)
        }
    }

    @Test func section9ManySmallMessages() async throws {
        try await withEchoPeer { peer in
            let count = 1000
            var bytes: [UInt8] = []
            for i in 0..<count { bytes += clientFrame(opcode: 0x1, Array("message \(i)".utf8)) }
            try await peer.send(bytes)
            for i in 0..<count {
                let frame = try await peer.readFrame()
                #expect(frame.text == "message \(i)")
                if frame.text != "message \(i)" { break }
            }
            try await closeNormally(peer)
        }
    }
}
