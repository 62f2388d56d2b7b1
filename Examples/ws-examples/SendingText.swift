// ws README, "Sending and receiving text data":
//   const ws = new WebSocket('ws://www.host.com/path');
//   ws.on('open', () => ws.send('something'));
//   ws.on('message', data => console.log('received: %s', data));
import WebSockets

enum SendingText {
    static func run() async throws {
        // A server that echoes every message back with its kind (text stays text).
        let server = WebSocketServer { (ws: WebSocket) async throws in
            for try await message in ws.messages { try await ws.send(message) }
        }
        try await withServer(server) { port in
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/path")
            try await ws.send(text: "something")
            for try await message in ws.messages {
                print("received: \(message.text)")
                break
            }
            try await ws.close()
        }
    }
}
