// ws README, "Server broadcast": a message to every connected client, the sender included,
// or to every other client.
//   wss.clients.forEach(client => { if (client.readyState === WebSocket.OPEN) client.send(data); });
//   wss.clients.forEach(client => { if (client !== ws && client.readyState === WebSocket.OPEN) client.send(data); });
import WebSockets

enum Broadcast {
    static func run() async throws {
        // The server's connection callback runs once the connection is in `server.clients`:
        // it tells the clients' side here who has joined, so that no broadcast misses anyone.
        let (joined, join) = AsyncStream.makeStream(of: String.self)
        // A client that connected to /others broadcasts to the others; to /all, to everyone.
        let server = WebSocketServer { ws in
            let name = ws.handshake.query["name"] ?? "?"
            let toOthers = ws.handshake.path == "/others"
            ws.onMessage { message in
                for client in ws.server?.clients ?? [] where client.readyState == .open {
                    if toOthers && client === ws { continue }
                    client.sendWithoutWaiting(.text("\(name): \(message.text)"))
                }
            }
            join.yield(name)
        }

        try await withServer(server) { port in
            let alice = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/all?name=alice")
            let bob = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/others?name=bob")
            let carol = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/all?name=carol")
            var inboxes = [alice.messages.makeAsyncIterator(), bob.messages.makeAsyncIterator(), carol.messages.makeAsyncIterator()]
            let names = ["alice", "bob", "carol"]
            var waiting = Set(names)
            for await name in joined {
                waiting.remove(name)
                if waiting.isEmpty { break }
            }

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
