// ws README, "Use the Node.js streams API": `createWebSocketStream` makes a connection a
// duplex stream. In Swift the incoming side is an `AsyncSequence` (`ws.messages`) and the
// outgoing side an async writer (`send`, which returns once the socket took the bytes and
// so paces a fast producer to the network).
//   const duplex = createWebSocketStream(ws, { encoding: 'utf8' });
//   duplex.pipe(process.stdout);
//   process.stdin.pipe(duplex);
import WebSockets

enum Streams {
    static func run() async throws {
        // The server turns its input stream into an output stream, line by line.
        let server = WebSocketServer { (ws: WebSocket) async throws in
            for try await line in ws.messages.map({ $0.text.uppercased() }) {
                try await ws.send(text: line)
            }
        }
        try await withServer(server) { port in
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
            let lines = AsyncStream<String> { source in
                for line in ["one", "two", "three"] { source.yield(line) }
                source.finish()
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await pipe(lines, to: ws) }
                for try await reply in ws.messages.prefix(3) { print(reply.text) }
                try await group.waitForAll()
            }
            try await ws.close()
        }
    }

    /// Writes every element of `source` as a text message, one at a time.
    static func pipe(_ source: some AsyncSequence<String, Never> & Sendable, to ws: WebSocket) async throws {
        for await line in source { try await ws.send(text: line) }
    }
}
