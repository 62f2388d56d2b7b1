// ws README, "Client authentication": the server decides at the upgrade, before any
// WebSocket traffic, and refuses with a status and a reason.
//   server.on('upgrade', (request, socket, head) => {
//     authenticate(request, (err, client) => {
//       if (err || !client) { socket.write('HTTP/1.1 401 Unauthorized\r\n\r\n'); socket.destroy(); return; }
//       wss.handleUpgrade(request, socket, head, ws => wss.emit('connection', ws, request, client));
//     });
//   });
import WebSockets

/// What `verifyClient` learned about a client, kept with its connection.
enum UserName: ConnectionUserInfoKey {
    typealias Value = String
}

enum ClientAuthentication {
    /// The tokens this server knows. A real one keeps only hashes, compared in constant time.
    static let users = ["secret-token-alice": "alice"]

    static func run() async throws {
        var options = WebSocketServer.Options()
        options.verifyClient = { request in
            // `async`: a real check may look the token up elsewhere.
            let bearer = request.headers.values(for: "Authorization").first?.split(separator: " ").last
            guard let token = bearer.map(String.init), let user = users[token] else {
                return .reject(status: 401, body: "missing or unknown bearer token")
            }
            return .accept(userInfo: ConnectionUserInfo(UserName.self, user))
        }
        let server = WebSocketServer(options: options) { (ws: WebSocket) async throws in
            try await ws.send(text: "hello, \(ws.userInfo[UserName.self] ?? "?")")
        }
        try await withServer(server) { port in
            do {
                _ = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
            } catch ConnectError.unexpectedResponse(let status, _, let body) {
                print("without a token: refused, \(status) \(body.split(separator: "\n").first ?? "")")
            }

            var client = ClientOptions()
            client.headers.add(name: "Authorization", value: "Bearer secret-token-alice")
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/", options: client)
            for try await message in ws.messages {
                print("with a token: \(message.text)")
            }
        }
    }
}
