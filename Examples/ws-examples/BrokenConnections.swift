// ws README, "How to detect and close broken connections?": the server pings every client
// at an interval and terminates one whose pong does not come back in time. Here that is
// `ConnectionOptions.heartbeat`, on either side.
//   const interval = setInterval(() => wss.clients.forEach(ws => {
//     if (ws.isAlive === false) return ws.terminate();
//     ws.isAlive = false; ws.ping();
//   }), 30000);
import WebSockets

enum BrokenConnections {
    static func run() async throws {
        var options = WebSocketServer.Options()
        // Short times for the demonstration; 30 s and 10 s are a usual choice.
        options.connection.heartbeat = .init(interval: .milliseconds(100), timeout: .milliseconds(200))
        let server = WebSocketServer(options: options) { (ws: WebSocket) async throws in
            let name = ws.handshake.query["name"] ?? "?"
            ws.onClose { info in print("server: \(name) closed (\(info.code.rawValue), clean: \(info.wasClean))") }
            for try await _ in ws.messages {}
        }
        try await withServer(server) { port in
            // A healthy client answers pings (automatically, `autoPong`).
            let healthy = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/?name=healthy")
            let (pings, pinged) = AsyncStream.makeStream(of: Void.self)
            healthy.onPing { _ in pinged.yield() }
            healthy.onMessage { _ in }  // reading starts once messages have somewhere to go

            // A broken one stops answering, as a peer whose network vanished would.
            var silentOptions = ClientOptions()
            silentOptions.connection.autoPong = false
            let silent = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/?name=silent", options: silentOptions)
            silent.onMessage { _ in }
            let dropped = try await silent.waitUntilClosed()
            print("silent client: connection dropped (\(dropped.code.rawValue), clean: \(dropped.wasClean))")

            var count = 0
            for await _ in pings {
                count += 1
                if count == 5 { break }
            }
            print("healthy client: answered \(count) pings, still \(healthy.readyState)")
            try await healthy.close()
        }
    }
}
