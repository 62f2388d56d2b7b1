// ws README, "How to get the IP address of the client?":
//   wss.on('connection', (ws, req) => { const ip = req.socket.remoteAddress; });
//   // behind a proxy such as NGINX:
//   wss.on('connection', (ws, req) => { const ip = req.headers['x-forwarded-for'].split(',')[0].trim(); });
import WebSockets

enum ClientIP {
    static func run() async throws {
        // As behind a reverse proxy on this host: X-Forwarded-For is believed from 127.0.0.1
        // only (by default from nobody, since a client can send the header itself).
        var options = WebSocketServer.Options()
        options.trustedProxies = ["127.0.0.1"]
        let server = WebSocketServer(options: options) { (ws: WebSocket) async throws in
            let direct = ws.remoteAddress?.ipAddress ?? "unknown"
            let client = ws.request?.clientAddress ?? "unknown"
            try await ws.send(text: "socket peer \(direct), client \(client)")
        }
        try await withServer(server) { port in
            let direct = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
            for try await message in direct.messages { print("directly: \(message.text)") }

            // As the proxy forwards it: what the client sent in the header (anything it likes),
            // then the address the proxy saw, which is the one to believe, not the first.
            var options = ClientOptions()
            options.headers.add(name: "X-Forwarded-For", value: "198.51.100.1, 203.0.113.7")
            let proxied = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/", options: options)
            for try await message in proxied.messages { print("behind a proxy: \(message.text)") }
        }
    }
}
