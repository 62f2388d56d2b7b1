import AsyncTestSupport
import NIOCore
import Testing
import WebSocketCore
import WebSockets

/// Starts an echo server on an ephemeral port for one test.
func withEchoServer<T>(
    _ configure: (inout WebSocketServer.Options) -> Void = { _ in },
    _ body: (String) async throws -> T
) async throws -> T {
    var options = WebSocketServer.Options()
    configure(&options)
    let server = WebSocketServer(options: options) { ws in
        ws.onMessage { message in ws.send(message, promise: nil) }
    }
    let address = try await server.listen()
    do {
        let result = try await body("ws://127.0.0.1:\(address.port!)")
        await server.shutdown()
        return result
    } catch {
        await server.shutdown()
        throw error
    }
}

@Suite struct EchoTests {
    @Test func textAndBinaryRoundTrip() async throws {
        try await withEchoServer { url in
            let ws = try await WebSocket.connect(to: url + "/echo")
            try await ws.send(text: "héllo")
            try await ws.send(binary: ByteBuffer(bytes: [0, 1, 2, 255]))
            var iterator = ws.messages.makeAsyncIterator()
            let first = try await iterator.next()
            #expect(first == .text("héllo"))
            let second = try await iterator.next()
            #expect(second == .binary([0, 1, 2, 255]))
            try await ws.close()
            #expect(ws.readyState == .closed)
        }
    }
}
