import AsyncTestSupport
import NIOCore
import TestPeers
import Testing
import WebSocketCore
import WebSockets

/// Every way a connection ends.
@Suite(.timeLimit(.minutes(1))) struct CloseTests {
    @Test func clientClosesNormally() async throws {
        let serverClosed = Waiter<CloseInfo>("server onClose")
        try await withServer(onConnection: { ws in
            ws.onMessage { _ in }
            ws.onClose { serverClosed.fulfill($0) }
        }) { _, port in
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
            let clientClosed = Waiter<CloseInfo>("client onClose")
            ws.onClose { clientClosed.fulfill($0) }
            try await withTimeout("close") { try await ws.close(code: CloseCode(4321), reason: "client says bye") }
            #expect(ws.readyState == .closed)
            #expect(try await serverClosed.value() == CloseInfo(code: CloseCode(4321), reason: "client says bye", wasClean: true))
            // The server echoes the code (RFC 6455 §5.5.1).
            let info = try await clientClosed.value()
            #expect(info.code == CloseCode(4321))
            #expect(info.wasClean)
        }
    }

    @Test func serverClosesNormally() async throws {
        let serverClosed = Waiter<CloseInfo>("server onClose")
        try await withServer(onConnection: { ws in
            ws.onClose { serverClosed.fulfill($0) }
            ws.onMessage { _ in
                Task { try await ws.close(code: .goingAway, reason: "server says bye") }
            }
        }) { _, port in
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
            let clientClosed = Waiter<CloseInfo>("client onClose")
            ws.onClose { clientClosed.fulfill($0) }
            ws.onMessage { _ in }
            try await ws.send(text: "close please")
            #expect(try await clientClosed.value() == CloseInfo(code: .goingAway, reason: "server says bye", wasClean: true))
            let info = try await serverClosed.value()
            #expect(info.code == .goingAway)
            #expect(info.wasClean)
            #expect(ws.readyState == .closed)
        }
    }

    @Test(arguments: [UInt16(0), 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000])
    func invalidCloseCodeRejectedLocally(code: UInt16) async throws {
        try await withServer { _, port in
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
            ws.onMessage { _ in }
            await #expect {
                try await ws.close(code: CloseCode(code))
            } throws: { error in
                guard case SendError.invalid = error else { return false }
                return true
            }
            #expect(ws.readyState == .open)
            try await withTimeout("close") { try await ws.close() }
        }
    }

    @Test func closeReasonTooLongRejectedLocally() async throws {
        try await withServer { _, port in
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
            ws.onMessage { _ in }
            await #expect(throws: SendError.self) {
                try await ws.close(code: .normalClosure, reason: String(repeating: "x", count: 124))
            }
            #expect(ws.readyState == .open)
            try await withTimeout("close") {
                try await ws.close(code: .normalClosure, reason: String(repeating: "x", count: 123))
            }
        }
    }

    @Test func unmaskedClientFrameIsAProtocolError() async throws {
        let serverClosed = Waiter<CloseInfo>("server onClose")
        let serverError = Waiter<any Error>("server messages error")
        try await withServer(onConnection: { ws in
            ws.onClose { serverClosed.fulfill($0) }
            Task {
                do {
                    for try await _ in ws.messages {}
                } catch {
                    serverError.fulfill(error)
                }
            }
        }) { _, port in
            let peer = try await RawPeer.upgraded(port: port)
            try await peer.send(clientFrame(opcode: 0x1, Array("hi".utf8), masked: false))
            try await peer.expectCloseFrame(1002)
            let info = try await serverClosed.value()
            #expect(!info.wasClean)
            let error = try await serverError.value()
            #expect((error as? WebSocketError)?.closeCode == .protocolError)
        }
    }

    @Test func closeTimeoutDropsSilentPeer() async throws {
        let serverClosed = Waiter<CloseInfo>("server onClose")
        let closeReturned = Waiter<Duration>("close() to return")
        try await withServer({ $0.connection.closeTimeout = .milliseconds(200) }, onConnection: { ws in
            ws.onMessage { _ in }
            ws.onClose { serverClosed.fulfill($0) }
            Task {
                let start = ContinuousClock.now
                try await ws.close(code: .normalClosure, reason: "")
                closeReturned.fulfill(ContinuousClock.now - start)
            }
        }) { _, port in
            let peer = try await RawPeer.upgraded(port: port)
            let frame = try await peer.readFrame()
            #expect(frame.opcode == 0x8 && frame.closeCode == 1000)
            // Never answer; the server drops us after its close timeout.
            try await peer.expectClosed()
            let elapsed = try await closeReturned.value()
            #expect(elapsed >= .milliseconds(190))
            #expect(try await serverClosed.value() == CloseInfo(code: .abnormalClosure, reason: "", wasClean: false))
        }
    }

    @Test func cancelledCloseStopsWaitingAndTheCloseGoesOn() async throws {
        let serverSide = Waiter<WebSocket>("server side")
        // No message sink on the server side: it reads nothing, so our close is not answered.
        try await withServer(onConnection: { serverSide.fulfill($0) }) { _, port in
            var options = ClientOptions()
            options.connection.closeTimeout = .seconds(30)
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/", options: options)
            let server = try await serverSide.value()
            let closed = Waiter<CloseInfo>("client onClose")
            ws.onClose { closed.fulfill($0) }
            let closing = Task { try await ws.close(code: .normalClosure, reason: "bye") }
            closing.cancel()
            let result = try await withTimeout("cancelled close() to return", .seconds(10)) { await closing.result }
            #expect(throws: CancellationError.self) { try result.get() }
            // The close goes on: once the server reads, it answers and the connection ends cleanly.
            server.onMessage { _ in }
            #expect(try await closed.value() == CloseInfo(code: .normalClosure, reason: "", wasClean: true))
            #expect(try await ws.waitUntilClosed() == CloseInfo(code: .normalClosure, reason: "", wasClean: true))
        }
    }

    @Test func clientCloseTimeoutWhenServerNeverAnswers() async throws {
        // A fake server that upgrades and then ignores everything.
        try await withFakeServer(respond: { head in
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + "Sec-WebSocket-Accept: \(Handshake.acceptValue(forKey: requestKey(head)))\r\n\r\n"
        }) { port in
            var options = ClientOptions()
            options.connection.closeTimeout = .milliseconds(200)
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/", options: options)
            let closed = Waiter<CloseInfo>("client onClose")
            ws.onClose { closed.fulfill($0) }
            try await withTimeout("close") { try await ws.close() }
            #expect(try await closed.value() == CloseInfo(code: .abnormalClosure, reason: "", wasClean: false))
        }
    }

    @Test func terminateFromClient() async throws {
        let serverClosed = Waiter<CloseInfo>("server onClose")
        try await withServer(onConnection: { ws in
            ws.onMessage { _ in }
            ws.onClose { serverClosed.fulfill($0) }
        }) { _, port in
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
            let clientClosed = Waiter<CloseInfo>("client onClose")
            ws.onClose { clientClosed.fulfill($0) }
            ws.terminate()
            #expect(try await serverClosed.value() == CloseInfo(code: .abnormalClosure, reason: "", wasClean: false))
            #expect(try await clientClosed.value() == CloseInfo(code: .abnormalClosure, reason: "", wasClean: false))
            try await withTimeout("closeFuture") { try await ws.channel.closeFuture.get() }
            #expect(ws.readyState == .closed)
        }
    }

    @Test func terminateFromServerFailsClientMessages() async throws {
        try await withServer(onConnection: { ws in
            ws.onMessage { _ in ws.terminate() }
        }) { _, port in
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
            try await ws.send(text: "terminate me")
            let error = try await withTimeout("messages to fail") { () -> (any Error)? in
                do {
                    for try await _ in ws.messages {}
                    return nil
                } catch {
                    return error
                }
            }
            let info = try #require(error as? CloseInfo)
            #expect(info.code == .abnormalClosure)
            #expect(!info.wasClean)
        }
    }

    @Test func onCloseSetAfterTheCloseStillReports() async throws {
        try await withServer(onConnection: { ws in ws.terminate() }) { _, port in
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
            try await withTimeout("closeFuture") { try await ws.channel.closeFuture.get() }
            let closed = Waiter<CloseInfo>("late onClose")
            ws.onClose { closed.fulfill($0) }
            #expect(try await closed.value() == CloseInfo(code: .abnormalClosure, reason: "", wasClean: false))
            // The message sequence, asked for only now, ends the same way.
            await #expect(throws: CloseInfo.self) {
                try await withTimeout("messages") { for try await _ in ws.messages {} }
            }
        }
    }

    /// Messages that waited for a sink on a connection that closed meanwhile: a sink that the
    /// first sink's callback switches to while they are delivered still hears the close.
    @Test func sinkSwitchedToDuringQueuedDeliveryHearsTheClose() async throws {
        let serverSide = Waiter<WebSocket>("server connection")
        let serverClosed = Waiter<CloseInfo>("server onClose")
        try await withServer(onConnection: { ws in
            ws.onClose { serverClosed.fulfill($0) }
            serverSide.fulfill(ws)
        }) { _, port in
            let peer = try await RawPeer.upgraded(port: port)
            // One write, so one read: both messages are queued (no sink yet) and the close
            // behind them is answered.
            try await peer.send(
                clientFrame(opcode: 0x1, Array("one".utf8)) + clientFrame(opcode: 0x1, Array("two".utf8))
                    + clientFrame(opcode: 0x8, closePayload(1000)))
            try await peer.expectCloseFrame(1000)
            #expect(try await serverClosed.value().wasClean)

            let ws = try await serverSide.value()
            let switched = Waiter<(String, WebSocket.MessageSequence)>("first message")
            ws.onMessage { switched.fulfill(($0.text, ws.messages)) }
            let (first, messages) = try await switched.value()
            #expect(first == "one")
            let rest = try await withTimeout("the message sequence to end") {
                var texts: [String] = []
                for try await message in messages { texts.append(message.text) }
                return texts
            }
            #expect(rest == ["two"])
        }
    }

    @Test func closeWithoutSinkStillCompletes() async throws {
        // The server never installs a message sink; its close handshake must still finish
        // (the client's close frame has to be read).
        let serverClosed = Waiter<CloseInfo>("server onClose")
        try await withServer({ $0.connection.closeTimeout = .seconds(20) }, onConnection: { ws in
            ws.onClose { serverClosed.fulfill($0) }
            Task { try await ws.close(code: .normalClosure, reason: "no sink") }
        }) { _, port in
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
            let closed = Waiter<CloseInfo>("client onClose")
            ws.onClose { closed.fulfill($0) }
            ws.onMessage { _ in }
            #expect(try await closed.value(timeout: .seconds(5)).code == .normalClosure)
            #expect(try await serverClosed.value(timeout: .seconds(5)).wasClean)
        }
    }
}
