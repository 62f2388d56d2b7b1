import AsyncTestSupport
import NIOCore
import Testing
import WebSocketCore
import WebSockets

/// A server connection whose messages and close go to a `LoopConsumer` (as a broker session's do).
@Suite(.timeLimit(.minutes(1))) struct LoopConsumerTests {
    /// Records what it is handed, as lines, checking that each call comes on the connection's loop.
    final class Recorder: LoopConsumer {
        let eventLoop: any EventLoop
        let events: Inbox<String>

        init(eventLoop: any EventLoop, events: Inbox<String>) {
            self.eventLoop = eventLoop
            self.events = events
        }

        func received(_ message: WebSocketMessage) {
            events.put("\(eventLoop.inEventLoop) message \(String(buffer: message.data))")
        }

        func closed(_ info: CloseInfo) {
            events.put("\(eventLoop.inEventLoop) closed \(info.code.rawValue) \(info.reason)")
        }
    }

    @Test func messagesInOrderThenTheCloseOnce() async throws {
        let events = Inbox<String>()
        try await withServer(onConnection: { ws in
            ws.setConsumer(Recorder(eventLoop: ws.eventLoop, events: events))
        }) { _, port in
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
            try await ws.send(text: "one")
            try await ws.send(text: "two")
            try await withTimeout("close") { try await ws.close(code: .normalClosure, reason: "bye") }
            #expect(try await events.next() == "true message one")
            #expect(try await events.next() == "true message two")
            #expect(try await events.next() == "true closed 1000 bye")
        }
        // The server has shut down: nothing more came.
        #expect(events.count == 0)
    }
}
