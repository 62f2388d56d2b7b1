// The `ws` README's broadcast example: every message a client sends goes to every
// connected client, the sender included, with its kind (text stays text).
//   chat-server [--port N] [--host H]
//
// Equivalent of:
//   wss.on('connection', ws => ws.on('message', (data, isBinary) =>
//     wss.clients.forEach(client => { if (client.readyState === OPEN) client.send(data, { binary: isBinary }) })))
#if canImport(Glibc)
@preconcurrency import Glibc
#endif
import NIOCore
import WebSocketCore
import WebSockets

var options = WebSocketServer.Options(host: "127.0.0.1", port: 8080)
var arguments = CommandLine.arguments.dropFirst()
while let flag = arguments.popFirst() {
    switch flag {
    case "--port":
        guard let text = arguments.popFirst(), let port = Int(text), (0...65535).contains(port) else {
            fputs("chat-server: --port needs a number 0-65535\n", stderr)
            exit(64)
        }
        options.port = port
    case "--host":
        guard let host = arguments.popFirst() else {
            fputs("chat-server: --host needs a value\n", stderr)
            exit(64)
        }
        options.host = host
    case "--help", "-h":
        print("usage: chat-server [--port N] [--host H]")
        exit(0)
    default:
        fputs("chat-server: unknown argument \(flag)\n", stderr)
        exit(64)
    }
}

/// Set once the server exists; connections only arrive after `listen()`, so it is set by then.
final class ServerRef: @unchecked Sendable {
    var server: WebSocketServer?
}
let ref = ServerRef()
let server = WebSocketServer(options: options) { ws in
    ws.onMessage { message in
        guard let server = ref.server else { return }
        for client in server.clients where client.readyState == .open {
            client.send(message, promise: nil)
        }
    }
}
ref.server = server
let address = try await server.listen()
print("chat-server listening on ws://\(options.host):\(address.port ?? options.port)/")
try await server.waitUntilStopped()
