// ws README, "Multiple servers sharing a single HTTP/S server": one application HTTP server,
// a WebSocket server per path; upgrades for any other path are the application's (404).
//   const wss1 = new WebSocketServer({ noServer: true });
//   const wss2 = new WebSocketServer({ noServer: true });
//   server.on('upgrade', (request, socket, head) => {
//     if (pathname === '/foo') wss1.handleUpgrade(...); else if (pathname === '/bar') wss2.handleUpgrade(...);
//     else socket.destroy();
//   });
import WebSockets

enum MultipleServers {
    static func run() async throws {
        var options = WebSocketServer.Options()
        options.listens = false
        let foo = WebSocketServer(options: options) { ws in
            ws.onMessage { message in ws.sendWithoutWaiting(.text("foo got \(message.text)")) }
        }
        let bar = WebSocketServer(options: options) { ws in
            ws.onMessage { message in ws.sendWithoutWaiting(.text("bar got \(message.text)")) }
        }
        let app = try await startApplicationServer(routes: ["/foo": foo, "/bar": bar])
        let port = app.localAddress!.port!

        for path in ["/foo", "/bar"] {
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)\(path)")
            try await ws.send(text: "hello")
            for try await reply in ws.messages {
                print("\(path): \(reply.text)")
                break
            }
            try await ws.close()
        }
        do {
            _ = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/baz")
        } catch let error as ConnectError {
            print("/baz: \(error)")
        }

        await foo.shutdown()
        await bar.shutdown()
        try await app.close()
    }
}
