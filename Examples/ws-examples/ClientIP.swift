// ws README, "How to get the IP address of the client?":
//   wss.on('connection', (ws, req) => { const ip = req.socket.remoteAddress; });
//   // behind a proxy such as NGINX:
//   wss.on('connection', (ws, req) => { const ip = req.headers['x-forwarded-for'].split(',')[0].trim(); });
import WebSockets

enum ClientIP {
    static func run() async throws {
        let server = WebSocketServer { (ws: WebSocket) async throws in
            let direct = ws.remoteAddress?.ipAddress ?? "unknown"
            // Trust X-Forwarded-For only behind a proxy you run: a client can send it itself.
            let forwarded = ws.request?.forwardedFor ?? "unknown"
            try await ws.send(text: "socket peer \(direct), X-Forwarded-For client \(forwarded)")
        }
        try await withServer(server) { port in
            let direct = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
            for try await message in direct.messages { print("directly: \(message.text)") }

            // As a reverse proxy would forward it: the original client first, then the hops.
            var options = ClientOptions()
            options.headers.add(name: "X-Forwarded-For", value: "203.0.113.7, 10.0.0.2")
            let proxied = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/", options: options)
            for try await message in proxied.messages { print("behind a proxy: \(message.text)") }
        }
    }
}
