import AsyncTestSupport
import Logging
import NIOCore
import ServiceLifecycle
import TestPeers
import Testing
import WebSocketCore
import WebSockets

/// `WebSocketServer` as a swift-service-lifecycle `Service`, and the async handler form that
/// `run()` runs.
@Suite(.timeLimit(.minutes(1))) struct ServiceTests {
    /// A client that keeps its messages and its close.
    struct Peer {
        let ws: WebSocket
        let inbox = Inbox<String>()
        let closed = Waiter<CloseInfo>("client onClose")

        init(port: Int, path: String = "/") async throws {
            ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)\(path)")
            ws.onMessage { [inbox] in inbox.put($0.text) }
            ws.onClose { [closed] in closed.fulfill($0) }
        }
    }

    static let goingAway = CloseInfo(code: .goingAway, reason: "server shutting down", wasClean: true)

    /// A logger that keeps what it is told in `logs`.
    static func logger(_ logs: LogCapture) -> Logger {
        Logger(label: "test") { _ in logs }
    }

    @Test func serviceGroupRunsTheServerAndGracefulShutdownDrainsIt() async throws {
        let logs = LogCapture()
        var options = WebSocketServer.Options()
        options.logger = Self.logger(logs)
        let server = WebSocketServer(options: options) { ws in
            ws.onMessage { ws.sendWithoutWaiting($0) }
        }
        let group = ServiceGroup(services: [server], logger: Self.logger(LogCapture()))
        let running = Task { try await group.run() }
        // run() listens by itself; the address is known once it says so.
        _ = try await logs.waitFor("listening") { $0.message == "listening" }
        let port = try #require(server.localAddress?.port)

        let peers = [try await Peer(port: port), try await Peer(port: port)]
        for peer in peers {
            try await peer.ws.send(text: "hi")
            #expect(try await peer.inbox.next() == "hi")
        }
        await group.triggerGracefulShutdown()
        for peer in peers {
            #expect(try await peer.closed.value() == Self.goingAway)
        }
        try await withTimeout("the service group to return") { try await running.value }
        #expect(server.clients.isEmpty)
        await #expect(throws: (any Error).self) {
            _ = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
        }
    }

    @Test func handlersRunAsChildTasksAndAreCancelledAndAwaitedAtShutdown() async throws {
        let sleeperStarted = Waiter<Void>("the sleeping handler to start")
        let sleeperEnded = Waiter<Bool>("the sleeping handler to end")
        let server = WebSocketServer { (ws: WebSocket) async throws in
            if ws.handshake.path == "/sleep" {
                // Ignores its messages: only cancellation ends it.
                sleeperStarted.fulfill(())
                try? await Task.sleep(for: testTimeout)
                sleeperEnded.fulfill(Task.isCancelled)
                return
            }
            for try await message in ws.messages { try await ws.send(message) }
        }
        let port = try await server.listen().port!
        let group = ServiceGroup(services: [server], logger: Self.logger(LogCapture()))
        let running = Task { try await group.run() }

        let echo = try await Peer(port: port)
        try await echo.ws.send(text: "one")
        #expect(try await echo.inbox.next() == "one")
        let sleeper = try await Peer(port: port, path: "/sleep")
        try await sleeperStarted.value()

        await group.triggerGracefulShutdown()
        #expect(try await echo.closed.value() == Self.goingAway)
        #expect(try await sleeper.closed.value() == Self.goingAway)
        try await withTimeout("the service group to return") { try await running.value }
        // run() returned after the handler it cancelled had returned.
        #expect(sleeperEnded.isFulfilled)
        #expect(try await sleeperEnded.value())
    }

    @Test func connectionClosesWhenItsHandlerReturnsOrThrows() async throws {
        struct Refused: Error {}
        let server = WebSocketServer { (ws: WebSocket) async throws in
            var messages = ws.messages.makeAsyncIterator()
            guard let first = try await messages.next() else { return }
            if first.text == "throw" { throw Refused() }
            try await ws.send(first)
        }
        // Accepted before run() starts: the connection waits for it.
        let port = try await server.listen().port!
        let early = try await Peer(port: port)
        try await early.ws.send(text: "early")
        let running = Task { try await server.run() }
        #expect(try await early.inbox.next() == "early")
        #expect(try await early.closed.value() == CloseInfo(code: .normalClosure, reason: "", wasClean: true))

        let throwing = try await Peer(port: port)
        try await throwing.ws.send(text: "throw")
        #expect(try await throwing.closed.value() == CloseInfo(code: .internalError, reason: "", wasClean: true))

        await #expect(throws: WebSocketServer.AlreadyRunning.self) { try await server.run() }

        // Cancelling run() shuts the server down too.
        let waiting = try await Peer(port: port)
        running.cancel()
        #expect(try await waiting.closed.value() == Self.goingAway)
        try await withTimeout("run() to return") { try await running.value }
    }

    /// A connection reaches the server that accepted it (`ws.server`), which lists it in
    /// `clients` before its connection callback runs; a client-side connection has no server.
    @Test func connectionReachesItsServerWhichListsItFirst() async throws {
        let accepted = Waiter<(WebSocket, Bool)>("server connection")
        let server = WebSocketServer { ws in
            accepted.fulfill((ws, ws.server?.clients.contains { $0 === ws } == true))
            ws.onMessage { _ in }
        }
        let port = try await server.listen().port!
        let client = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
        let (socket, listed) = try await accepted.value()
        #expect(socket.server === server)
        #expect(listed)
        #expect(client.server == nil)
        try await client.close()
        try await withTimeout("shutdown") { await server.shutdown() }
    }
}
