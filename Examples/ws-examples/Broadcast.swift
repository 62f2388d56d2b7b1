// ws README, "Server broadcast": a message to every connected client, the sender included,
// or to every other client.
//   wss.clients.forEach(client => { if (client.readyState === WebSocket.OPEN) client.send(data); });
//   wss.clients.forEach(client => { if (client !== ws && client.readyState === WebSocket.OPEN) client.send(data); });
import WebSockets

/// The server, for its own connection callback to reach its other clients; set before
/// `listen()`, so before any connection arrives.
final class ServerReference: @unchecked Sendable {
    var server: WebSocketServer?
}

enum Broadcast {
    static func run() async throws {
        // A client that connected to /others broadcasts to the others; to /all, to everyone.
        let reference = ServerReference()
        let server = WebSocketServer { ws in
            let name = ws.handshake.query["name"] ?? "?"
            let toOthers = ws.handshake.path == "/others"
            // Sent once the server lists the connection in `clients`: a client that has its
            // welcome is reached by every broadcast after it.
            ws.sendWithoutWaiting(.text("welcome, \(name)"))
            ws.onMessage { message in
                for client in reference.server?.clients ?? [] where client.readyState == .open {
                    if toOthers && client === ws { continue }
                    client.sendWithoutWaiting(.text("\(name): \(message.text)"))
                }
            }
        }
        reference.server = server

        try await withServer(server) { port in
            let alice = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/all?name=alice")
            let bob = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/others?name=bob")
            let carol = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/all?name=carol")
            var inboxes = [alice.messages.makeAsyncIterator(), bob.messages.makeAsyncIterator(), carol.messages.makeAsyncIterator()]
            let names = ["alice", "bob", "carol"]
            for i in [0, 1, 2] { _ = try await inboxes[i].next() }

            try await alice.send(text: "hi all")
            for i in [0, 1, 2] { print("\(names[i]) received \(try await inboxes[i].next()?.text ?? "nothing")") }
            try await bob.send(text: "hi others")
            for i in [0, 2] { print("\(names[i]) received \(try await inboxes[i].next()?.text ?? "nothing")") }
            try await carol.send(text: "bye")
            for i in [0, 1, 2] { print("\(names[i]) received \(try await inboxes[i].next()?.text ?? "nothing")") }

            for ws in [alice, bob, carol] { try await ws.close() }
        }
    }
}
