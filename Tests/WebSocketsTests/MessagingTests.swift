import AsyncTestSupport
import NIOCore
import TestPeers
import Testing
import WebSocketCore
import WebSockets

/// Our client against our server: messages, fragments, big messages, ping/pong, both APIs.
@Suite(.timeLimit(.minutes(1))) struct MessagingTests {
    @Test func fragmentedSendsArriveAsOneMessage() async throws {
        try await withServer { _, port in
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
            try await ws.send(.text, ByteBuffer(string: "frag"), isFinal: false)
            try await ws.send(.text, ByteBuffer(string: "men"), isFinal: false)
            try await ws.send(.text, ByteBuffer(string: "ted"), isFinal: true)
            try await ws.send(.binary, ByteBuffer(bytes: [1, 2]), isFinal: false)
            try await ws.send(.binary, ByteBuffer(bytes: [3]), isFinal: true)
            let first = try await withTimeout("echo") {
                var iterator = ws.messages.makeAsyncIterator()
                return (try await iterator.next(), try await iterator.next())
            }
            #expect(first.0 == .text("fragmented"))
            #expect(first.1 == .binary([1, 2, 3]))
            try await withTimeout("close") { try await ws.close() }
        }
    }

    @Test func serverFragmentsReachClientWhole() async throws {
        try await withServer(onConnection: { ws in
            ws.onMessage { _ in
                Task {
                    try await ws.send(.binary, ByteBuffer(bytes: [1]), isFinal: false)
                    try await ws.send(.binary, ByteBuffer(bytes: [2]), isFinal: false)
                    try await ws.send(.binary, ByteBuffer(bytes: [3]), isFinal: true)
                }
            }
        }) { _, port in
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
            let inbox = Inbox<WebSocketMessage>()
            ws.onMessage { inbox.put($0) }
            try await ws.send(text: "go")
            #expect(try await inbox.next() == .binary([1, 2, 3]))
            try await withTimeout("close") { try await ws.close() }
        }
    }

    @Test func sixteenMebibyteMessageBothWays() async throws {
        let big = pseudoRandomBytes(16 * 1024 * 1024)
        try await withServer { _, port in
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
            let inbox = Inbox<WebSocketMessage>()
            ws.onMessage { inbox.put($0) }
            try await withTimeout("16 MiB send") { try await ws.send(binary: big) }
            let echoed = try await inbox.next(timeout: .seconds(30))
            #expect(echoed.kind == .binary)
            #expect(echoed.data.readableBytes == big.readableBytes)
            #expect(echoed.data == big)
            try await withTimeout("close") { try await ws.close() }
        }
    }

    @Test func pingPongWithPayloads() async throws {
        let serverPongs = Inbox<ByteBuffer>()
        let serverSide = Waiter<WebSocket>("server connection")
        try await withServer(onConnection: { ws in
            ws.onPong { serverPongs.put($0) }
            ws.onMessage { ws.send($0, promise: nil) }
            serverSide.fulfill(ws)
        }) { _, port in
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
            let clientPongs = Inbox<ByteBuffer>()
            let clientPings = Inbox<ByteBuffer>()
            ws.onPong { clientPongs.put($0) }
            ws.onPing { clientPings.put($0) }
            ws.onMessage { _ in }

            // The server answers our ping automatically, with our payload.
            try await ws.ping(ByteBuffer(string: "client-ping"))
            #expect(try await clientPongs.next() == ByteBuffer(string: "client-ping"))

            // Our client answers the server's ping automatically.
            let server = try await serverSide.value()
            try await server.ping(ByteBuffer(bytes: Array(0..<125)))
            #expect(try await clientPings.next() == ByteBuffer(bytes: Array(0..<125)))
            #expect(try await serverPongs.next() == ByteBuffer(bytes: Array(0..<125)))

            // An unsolicited pong reaches the other side's onPong.
            try await ws.pong(ByteBuffer(string: "unsolicited"))
            #expect(try await serverPongs.next() == ByteBuffer(string: "unsolicited"))

            // Control payloads over 125 bytes are refused locally.
            await #expect(throws: SendError.self) { try await ws.ping(ByteBuffer(bytes: Array(repeating: 0, count: 126))) }
            #expect(ws.readyState == .open)
            try await withTimeout("close") { try await ws.close() }
        }
    }

    /// `onPong` alone makes a client read: a client that only pings hears its pongs. A
    /// message that comes before any sink still waits for one, and is not lost.
    @Test func onPongStartsReadingAndAMessageWaitsForItsSink() async throws {
        let serverSide = Waiter<WebSocket>("server connection")
        try await withServer(onConnection: { ws in
            ws.onMessage { _ in }
            serverSide.fulfill(ws)
        }) { _, port in
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
            let events = Inbox<String>()
            ws.onPong { events.put("pong \(String(buffer: $0))") }
            try await ws.ping(ByteBuffer(string: "first"))
            #expect(try await events.next() == "pong first")

            let server = try await serverSide.value()
            try await server.send(text: "waiting")
            try await server.pong(ByteBuffer(string: "after"))
            ws.onMessage { events.put("message \($0.text)") }
            // Both come; the pong may overtake the waiting message when they share a read.
            let both = [try await events.next(), try await events.next()]
            #expect(Set(both) == ["message waiting", "pong after"])
            try await withTimeout("close") { try await ws.close() }
        }
    }

    /// `onClose` alone makes a client read, so it answers the server's close handshake
    /// (without reading, the server would give up after its close timeout, unclean).
    @Test func onCloseAloneAnswersTheServersClose() async throws {
        let serverClosed = Waiter<CloseInfo>("server onClose")
        let serverSide = Waiter<WebSocket>("server connection")
        try await withServer({ $0.connection.closeTimeout = .seconds(2) }, onConnection: { ws in
            ws.onClose { serverClosed.fulfill($0) }
            serverSide.fulfill(ws)
        }) { _, port in
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
            let closed = Waiter<CloseInfo>("client onClose")
            ws.onClose { closed.fulfill($0) }
            // Closed after the handshake, so that the close frame does not come with the 101.
            try await serverSide.value().closeWithoutWaiting(code: CloseCode(4000), reason: "bye")
            #expect(try await closed.value() == CloseInfo(code: CloseCode(4000), reason: "bye", wasClean: true))
            let server = try await serverClosed.value()
            #expect(server.wasClean && server.code == CloseCode(4000), "\(server)")
        }
    }

    @Test func messagesSequenceEndsOnCleanClose() async throws {
        try await withServer(onConnection: { ws in
            ws.onMessage { _ in
                Task {
                    for i in 0..<3 { try await ws.send(text: "m\(i)") }
                    try await ws.close(code: .normalClosure, reason: "done")
                }
            }
        }) { _, port in
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
            let closed = Waiter<CloseInfo>("onClose")
            ws.onClose { closed.fulfill($0) }
            try await ws.send(text: "start")
            let received = try await withTimeout("messages to end") {
                var texts: [String] = []
                for try await message in ws.messages { texts.append(message.text) }
                return texts
            }
            #expect(received == ["m0", "m1", "m2"])
            let info = try await closed.value()
            #expect(info == CloseInfo(code: .normalClosure, reason: "done", wasClean: true))
            #expect(ws.readyState == .closed)
        }
    }

    @Test func callbackAPI() async throws {
        try await withServer { _, port in
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
            let inbox = Inbox<WebSocketMessage>()
            let closed = Waiter<CloseInfo>("onClose")
            ws.onMessage { inbox.put($0) }
            ws.onClose { closed.fulfill($0) }
            #expect(ws.readyState == .open)
            for i in 0..<20 {
                ws.send(.text("n\(i)"), promise: nil)
            }
            for i in 0..<20 {
                #expect(try await inbox.next() == .text("n\(i)"))
            }
            try await withTimeout("close") { try await ws.close(code: CloseCode(4000), reason: "bye") }
            let info = try await closed.value()
            #expect(info.wasClean)
            #expect(info.code == CloseCode(4000))
            await #expect(throws: SendError.notOpen) { try await ws.send(text: "late") }
        }
    }

    @Test func manyMessagesThroughTheSequenceWithBackpressure() async throws {
        let count = 2000
        try await withServer(onConnection: { ws in
            ws.onMessage { _ in
                for i in 0..<count { ws.send(.text("#\(i)"), promise: nil) }
            }
        }) { _, port in
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
            try await ws.send(text: "go")
            // A consumer that yields often falls behind the high watermark many times.
            let received = try await withTimeout("all messages") {
                var received: [String] = []
                for try await message in ws.messages {
                    received.append(message.text)
                    if received.count % 50 == 0 { await Task.yield() }
                    if received.count == count { break }
                }
                return received
            }
            #expect(received == (0..<count).map { "#\($0)" })
            try await withTimeout("close") { try await ws.close() }
        }
    }

    @Test func fragmentSizeSplitsOutgoingMessages() async throws {
        try await withServer({ $0.connection.fragmentSize = 10 }, onConnection: { ws in
            ws.onMessage { _ in }
            ws.send(.text(String(repeating: "x", count: 25)), promise: nil)
        }) { _, port in
            let peer = try await RawPeer.upgraded(port: port)
            defer { peer.close() }
            let frames = [try await peer.readFrame(), try await peer.readFrame(), try await peer.readFrame()]
            #expect(frames.map(\.opcode) == [0x1, 0x0, 0x0])
            #expect(frames.map(\.fin) == [false, false, true])
            #expect(frames.map(\.payload.count) == [10, 10, 5])
            try await peer.send(clientFrame(opcode: 0x8, closePayload(1000)))
            try await peer.expectCloseFrame(1000)
        }
    }

    @Test func preEncodedFrameGoesOutAsIs() async throws {
        try await withServer(onConnection: { ws in
            ws.onMessage { _ in
                var sender = Sender(role: .server)
                var frame = ByteBuffer()
                sender.writeFrame(opcode: .text, payload: ByteBuffer(string: "shared"), into: &frame)
                ws.sendEncoded(frame)
            }
        }) { _, port in
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
            let inbox = Inbox<WebSocketMessage>()
            ws.onMessage { inbox.put($0) }
            try await ws.send(text: "go")
            #expect(try await inbox.next() == .text("shared"))
            try await withTimeout("close") { try await ws.close() }
        }
    }

    @Test func messagesQueuedBeforeSinkAreNotLost() async throws {
        // The server sends as soon as the connection opens, before the client installs a sink.
        try await withServer(onConnection: { ws in
            ws.onMessage { _ in }
            for i in 0..<5 { ws.send(.text("early\(i)"), promise: nil) }
        }) { _, port in
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
            let texts = try await withTimeout("early messages") {
                var texts: [String] = []
                for try await message in ws.messages {
                    texts.append(message.text)
                    if texts.count == 5 { break }
                }
                return texts
            }
            #expect(texts == (0..<5).map { "early\($0)" })
            try await withTimeout("close") { try await ws.close() }
        }
    }
}
