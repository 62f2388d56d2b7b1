// ws README, "Round-trip time": timed with a ping and its pong (every server answers a
// ping with a pong carrying the same payload; this one does so automatically).
//   ws.on('open', () => ws.ping(String(Date.now())));
//   ws.on('pong', data => console.log(`Round-trip time: ${Date.now() - Number(data)} ms`));
import NIOCore
import WebSockets

enum RoundTripTime {
    static func run() async throws {
        let server = WebSocketServer { (ws: WebSocket) async throws in
            for try await _ in ws.messages {}
        }
        try await withServer(server) { port in
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
            // Pongs arrive on the connection's event loop; hand them to this task.
            let (pongs, pongArrived) = AsyncStream.makeStream(of: ByteBuffer.self)
            ws.onPong { payload in pongArrived.yield(payload) }
            // Control frames are read with the messages: the connection reads once they have
            // somewhere to go.
            ws.onMessage { _ in }
            var replies = pongs.makeAsyncIterator()
            let clock = ContinuousClock()
            for n in 1...3 {
                let start = clock.now
                try await ws.ping(ByteBuffer(string: "\(n)"))
                guard let payload = await replies.next() else { break }
                let elapsed = clock.now - start
                let ms = Double(elapsed.components.attoseconds) / 1e15 + Double(elapsed.components.seconds) * 1000
                print("round trip \(String(buffer: payload)): \(ms) ms")
            }
            try await ws.close()
        }
    }
}
