import AsyncTestSupport
import NIOCore
import Testing
import WebSockets

/// A weak reference, to see whether anything still holds an object.
final class Weak<T: AnyObject>: @unchecked Sendable {
    weak var value: T?
    init(_ value: T) { self.value = value }
}

/// A closed connection is freed, whatever its callbacks capture: the usual callback captures
/// the connection's own `WebSocket`, which holds the handler that holds the callback.
@Suite(.timeLimit(.minutes(1))) struct LifetimeTests {
    /// Waits until `channel` is closed and its event loop has run what was queued behind the close.
    func settled(_ channel: any Channel) async throws {
        try await channel.closeFuture.get()
        try await channel.eventLoop.submit {}.get()
    }

    @Test func serverConnectionWhoseCallbacksCaptureItIsFreedAfterClose() async throws {
        let opened = Waiter<Weak<WebSocket>>("the server side")
        try await withServer(onConnection: { ws in
            ws.onMessage { ws.send($0, promise: nil) }
            ws.onClose { _ in _ = ws.readyState }
            ws.onPing { _ in _ = ws.readyState }
            opened.fulfill(Weak(ws))
        }) { _, port in
            let client = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
            let serverSide = try await opened.value()
            let channel = try #require(serverSide.value).channel
            try await client.send(text: "hello")
            for try await message in client.messages {
                #expect(message.text == "hello")
                break
            }
            try await withTimeout("close") { try await client.close() }
            try await settled(channel)
            #expect(serverSide.value == nil, "the closed server-side WebSocket is still alive")
        }
    }

    @Test func callbacksSetAfterTheCloseAreNotKept() async throws {
        try await withServer { _, port in
            func connectCloseAndCapture() async throws -> (Weak<WebSocket>, any Channel) {
                let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
                // Bounded by the close timeout.
                try await ws.close()
                try await settled(ws.channel)
                ws.onMessage { _ in _ = ws.readyState }
                ws.onClose { _ in _ = ws.readyState }
                ws.onPing { _ in _ = ws.readyState }
                ws.onError { _ in _ = ws.readyState }
                return (Weak(ws), ws.channel)
            }
            let (client, channel) = try await connectCloseAndCapture()
            try await settled(channel)
            #expect(client.value == nil, "the closed client WebSocket is still alive")
        }
    }
}
