// ws README, "Simple server":
//   const wss = new WebSocketServer({ port: 8080 });
//   wss.on('connection', ws => {
//     ws.on('message', data => console.log('received: %s', data));
//     ws.send('something');
//   });
import WebSockets

enum SimpleServer {
    static func run() async throws {
        // The async form: one task per connection, run by the server; the connection is
        // closed (1000) when the handler returns.
        let server = WebSocketServer(options: .init(host: "127.0.0.1", port: 0)) { (ws: WebSocket) async throws in
            try await ws.send(text: "something")
            for try await message in ws.messages {
                print("server received: \(message.text)")
                try await ws.send(text: "bye")
            }
        }
        try await withServer(server) { port in
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
            var messages = ws.messages.makeAsyncIterator()
            print("client received: \(try await messages.next()?.text ?? "nothing")")
            try await ws.send(text: "hello")
            print("client received: \(try await messages.next()?.text ?? "nothing")")
            try await ws.close()
        }
    }
}
