import AsyncTestSupport
import NIOCore
import TestPeers
import Testing
import WebSocketCore
import WebSockets

/// maxPayload, UTF-8 validation and permessage-deflate between our own peers.
@Suite(.timeLimit(.minutes(1))) struct LimitsAndDeflateTests {
    @Test func maxPayloadExceededClosesWith1009() async throws {
        let serverClosed = Waiter<CloseInfo>("server onClose")
        try await withServer({ $0.connection.maxPayload = 1024 }, onConnection: { ws in
            ws.onMessage { ws.send($0, promise: nil) }
            ws.onClose { serverClosed.fulfill($0) }
        }) { _, port in
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
            let closed = Waiter<CloseInfo>("client onClose")
            ws.onClose { closed.fulfill($0) }
            ws.onMessage { _ in }
            try await ws.send(binary: pseudoRandomBytes(1024))  // exactly the limit: fine
            try await ws.send(binary: pseudoRandomBytes(1025))
            let info = try await closed.value()
            #expect(info.code == .messageTooBig)
            #expect(!(try await serverClosed.value()).wasClean)
        }
    }

    @Test func maxPayloadAppliesToFragmentedMessages() async throws {
        try await withServer({ $0.connection.maxPayload = 1000 }) { _, port in
            let peer = try await RawPeer.upgraded(port: port)
            try await peer.send(clientFrame(opcode: 0x2, fin: false, Array(repeating: 1, count: 600)))
            try await peer.send(clientFrame(opcode: 0x0, fin: true, Array(repeating: 1, count: 600)))
            try await peer.expectCloseFrame(1009)
        }
    }

    @Test func invalidUTF8ClosesWith1007() async throws {
        try await withServer { _, port in
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
            let closed = Waiter<CloseInfo>("client onClose")
            ws.onClose { closed.fulfill($0) }
            ws.onMessage { _ in }
            try await ws.send(.text, ByteBuffer(bytes: [0x61, 0xC3, 0x28]), isFinal: true)
            #expect(try await closed.value().code == .invalidFramePayloadData)
        }
    }

    @Test func invalidUTF8MidFragmentFailsFast() async throws {
        try await withServer { _, port in
            let peer = try await RawPeer.upgraded(port: port)
            // The first fragment already holds an impossible sequence; no final fragment is sent.
            try await peer.send(clientFrame(opcode: 0x1, fin: false, Array("κόσμε".utf8) + [0xED, 0xA0, 0x80]))
            try await peer.expectCloseFrame(1007)
        }
    }

    @Test func invalidUTF8SplitAcrossFragments() async throws {
        try await withServer { _, port in
            let peer = try await RawPeer.upgraded(port: port)
            // A valid 4-byte sequence split across fragments is fine...
            try await peer.send(clientFrame(opcode: 0x1, fin: false, [0xF0, 0x9F]))
            try await peer.send(clientFrame(opcode: 0x0, fin: true, [0x98, 0x80]))
            let echo = try await peer.readFrame()
            #expect(echo.opcode == 0x1 && echo.payload == [0xF0, 0x9F, 0x98, 0x80])
            // ...a truncated one at the end of the message is not.
            try await peer.send(clientFrame(opcode: 0x1, fin: false, [0xF0, 0x9F]))
            try await peer.send(clientFrame(opcode: 0x0, fin: true, [0x98]))
            try await peer.expectCloseFrame(1007)
        }
    }

    struct DeflateCase: Sendable, CustomTestStringConvertible {
        var serverNoContextTakeover: Bool
        var clientNoContextTakeover: Bool
        var testDescription: String {
            "server_no_context_takeover \(serverNoContextTakeover), client_no_context_takeover \(clientNoContextTakeover)"
        }
    }

    @Test(arguments: [
        DeflateCase(serverNoContextTakeover: false, clientNoContextTakeover: false),
        DeflateCase(serverNoContextTakeover: true, clientNoContextTakeover: false),
        DeflateCase(serverNoContextTakeover: false, clientNoContextTakeover: true),
        DeflateCase(serverNoContextTakeover: true, clientNoContextTakeover: true),
    ])
    func deflateNegotiatedAndRoundTrips(_ deflate: DeflateCase) async throws {
        let serverHandshake = Waiter<HandshakeInfo>("server handshake")
        try await withServer({
            $0.perMessageDeflate = PerMessageDeflateOptions(
                serverNoContextTakeover: deflate.serverNoContextTakeover,
                clientNoContextTakeover: deflate.clientNoContextTakeover)
        }, onConnection: { ws in
            serverHandshake.fulfill(ws.handshake)
            ws.onMessage { ws.send($0, promise: nil) }
        }) { _, port in
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
            var expected = ExtensionOffer(name: "permessage-deflate")
            if deflate.serverNoContextTakeover { expected.parameters.append(.init("server_no_context_takeover")) }
            if deflate.clientNoContextTakeover { expected.parameters.append(.init("client_no_context_takeover")) }
            #expect(ws.handshake.extensions == [expected])
            #expect(try await serverHandshake.value().extensions == [expected])

            let inbox = Inbox<WebSocketMessage>()
            ws.onMessage { inbox.put($0) }
            // Repeated compressible messages exercise the context (or its reset), plus one
            // below the threshold (sent uncompressed), a fragmented one and a large one.
            let text = String(repeating: "the quick brown fox jumps over the lazy dog. ", count: 100)
            var sent: [WebSocketMessage] = []
            for i in 0..<4 { sent.append(.text("\(i) \(text)")) }
            sent.append(.text("short"))
            sent.append(.binary(pseudoRandomBytes(200_000)))
            for message in sent { try await ws.send(message) }
            try await ws.send(.text, ByteBuffer(string: text), isFinal: false)
            try await ws.send(.text, ByteBuffer(string: text), isFinal: true)
            sent.append(.text(text + text))
            for message in sent {
                #expect(try await inbox.next() == message)
            }
            try await withTimeout("close") { try await ws.close() }
        }
    }

    @Test func deflateOffWhenEitherSideDeclines() async throws {
        // Server without deflate (the default): the client's offer is ignored.
        try await withServer { _, port in
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
            #expect(ws.handshake.extensions.isEmpty)
            let inbox = Inbox<WebSocketMessage>()
            ws.onMessage { inbox.put($0) }
            try await ws.send(text: String(repeating: "a", count: 5000))
            #expect(try await inbox.next().data.readableBytes == 5000)
            try await withTimeout("close") { try await ws.close() }
        }
        // Client without deflate, server with it.
        try await withServer({ $0.perMessageDeflate = PerMessageDeflateOptions() }) { _, port in
            var options = ClientOptions()
            options.perMessageDeflate = nil
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/", options: options)
            #expect(ws.handshake.extensions.isEmpty)
            let inbox = Inbox<WebSocketMessage>()
            ws.onMessage { inbox.put($0) }
            try await ws.send(text: String(repeating: "b", count: 5000))
            #expect(try await inbox.next().data.readableBytes == 5000)
            try await withTimeout("close") { try await ws.close() }
        }
    }

    @Test func deflateBombLimitedByMaxPayload() async throws {
        let serverClosed = Waiter<CloseInfo>("server onClose")
        try await withServer({
            $0.perMessageDeflate = PerMessageDeflateOptions()
            $0.connection.maxPayload = 64 * 1024
        }, onConnection: { ws in
            ws.onMessage { ws.send($0, promise: nil) }
            ws.onClose { serverClosed.fulfill($0) }
        }) { _, port in
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
            #expect(ws.handshake.extensions.first?.name == "permessage-deflate")
            let closed = Waiter<CloseInfo>("client onClose")
            ws.onClose { closed.fulfill($0) }
            ws.onMessage { _ in }
            // 8 MiB of zeros compresses to a few KiB on the wire, well under maxPayload.
            try await ws.send(binary: ByteBuffer(repeating: 0, count: 8 * 1024 * 1024))
            #expect(try await closed.value().code == .messageTooBig)
            #expect(!(try await serverClosed.value()).wasClean)
        }
    }
}
