import AsyncTestSupport
import TestPeers
import Testing
import WebSocketCore
import WebSockets

/// Inputs that once trapped, fed over real sockets: each must end in the right close code
/// or HTTP status, and the process must go on serving.
@Suite(.timeLimit(.minutes(1))) struct HostileInputTests {
    /// The first fragment of a text message, then a continuation announcing a 2^63 - 1 byte
    /// payload: the size check must not overflow adding it to what the message already has.
    static let hugeContinuation: [UInt8] =
        clientFrame(opcode: 0x1, fin: false, Array("a".utf8))
        + [0x80, 0x80 | 127, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x37, 0xFA, 0x21, 0x3D]

    @Test func continuationLengthNearIntMaxIs1009OnTheServer() async throws {
        try await withServer { _, port in
            let peer = try await RawPeer.upgraded(port: port)
            try await peer.send(Self.hugeContinuation)
            try await peer.expectCloseFrame(1009)
            // Still serving.
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
            try await withTimeout("close") { try await ws.close() }
        }
    }

    @Test func continuationLengthNearIntMaxFailsTheClient() async throws {
        let unmasked: [UInt8] =
            clientFrame(opcode: 0x1, fin: false, Array("a".utf8), masked: false)
            + [0x80, 127, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]
        try await withFakeServer(
            respond: { head in
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    + "Sec-WebSocket-Accept: \(Handshake.acceptValue(forKey: requestKey(head)))\r\n\r\n"
            }, then: unmasked
        ) { port in
            var options = ClientOptions()
            options.perMessageDeflate = nil
            options.connection.closeTimeout = .milliseconds(200)
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/", options: options)
            let closed = Waiter<CloseInfo>("client onClose")
            ws.onClose { closed.fulfill($0) }
            // We sent 1009 and the fake server never answers: an unclean close after the timeout.
            #expect(try await closed.value().wasClean == false)
        }
    }
}
