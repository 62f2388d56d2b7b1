// The `ws` README's broadcast example: every message a client sends goes to every
// connected client, the sender included, with its kind (text stays text).
//   chat-server [--port N] [--host H]
//
// Equivalent of:
//   wss.on('connection', ws => ws.on('message', (data, isBinary) =>
//     wss.clients.forEach(client => { if (client.readyState === OPEN) client.send(data, { binary: isBinary }) })))
import ArgumentParser
import NIOCore
import WebSocketCore
import WebSockets

@main
struct ChatServer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat-server",
        abstract: "Send every message a client sends to every connected client, the sender included.")

    @Option(help: "Port to listen on (0 picks a free one).") var port = 8080
    @Option(help: "Address to listen on.") var host = "127.0.0.1"

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0 to 65535, not \(port)") }
    }

    func run() async throws {
        let server = WebSocketServer(options: WebSocketServer.Options(host: host, port: port)) { ws in
            ws.onMessage { message in
                for client in ws.server?.clients ?? [] where client.readyState == .open {
                    client.sendWithoutWaiting(message)
                }
            }
        }
        let address = try await server.listen()
        print("chat-server listening on ws://\(host):\(address.port ?? port)/")
        try await server.waitUntilStopped()
    }
}
