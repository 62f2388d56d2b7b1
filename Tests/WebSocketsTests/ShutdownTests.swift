import AsyncTestSupport
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import TestPeers
import Testing
import WebSocketCore
import WebSockets

/// Client tracking and graceful shutdown.
@Suite(.timeLimit(.minutes(1))) struct ShutdownTests {
    @Test func clientsTracksOpenConnections() async throws {
        let serverSides = Inbox<WebSocket>()
        try await withServer(onConnection: { ws in
            ws.onMessage { _ in }
            serverSides.put(ws)
        }) { server, port in
            #expect(server.clients.isEmpty)
            var sockets: [WebSocket] = []
            var serverSockets: [WebSocket] = []
            for _ in 0..<3 {
                sockets.append(try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/"))
                serverSockets.append(try await serverSides.next())
            }
            #expect(server.clients.count == 3)
            #expect(Set(server.clients.map(ObjectIdentifier.init)) == Set(serverSockets.map(ObjectIdentifier.init)))

            let firstClient = sockets[0]
            try await withTimeout("close") { try await firstClient.close() }
            let first = serverSockets[0]
            try await withTimeout("server side closed") { try await first.channel.closeFuture.get() }
            #expect(server.clients.count == 2)
            #expect(!server.clients.contains { $0 === first })

            sockets[1].terminate()
            let second = serverSockets[1]
            try await withTimeout("server side closed") { try await second.channel.closeFuture.get() }
            #expect(server.clients.count == 1)
            let lastClient = sockets[2]
            try await withTimeout("close") { try await lastClient.close() }
        }
    }

    @Test func shutdownDropsPeersThatDoNotAnswerAfterCloseTimeout() async throws {
        let server = WebSocketServer(options: {
            var options = WebSocketServer.Options()
            options.connection.closeTimeout = .milliseconds(200)
            return options
        }()) { ws in ws.onMessage { _ in } }
        let port = try await server.listen().port!
        let peer = try await RawPeer.upgraded(port: port)
        let start = ContinuousClock.now
        let shutdown = Task { await server.shutdown() }
        let frame = try await peer.readFrame()
        #expect(frame.opcode == 0x8 && frame.closeCode == 1001)
        // No answer from us: dropped after the close timeout (not before: the timer starts
        // once the close frame is out, after `start`), and shutdown() returns.
        try await peer.expectClosed()
        let dropped = ContinuousClock.now - start
        #expect(dropped >= .milliseconds(200), "dropped after \(dropped)")
        try await withTimeout("shutdown") { await shutdown.value }
        #expect(server.clients.isEmpty)
    }

    @Test func maxConnectionsAnswers503() async throws {
        try await withServer({ $0.maxConnections = 1 }) { _, port in
            let first = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
            do {
                _ = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
                Issue.record("second connection should be refused")
            } catch ConnectError.unexpectedResponse(let status, _, _) {
                #expect(status == 503)
            }
            try await withTimeout("close") { try await first.close() }
        }
    }

    @Test func shutdownClosesClientsWith1001() async throws {
        let serverSides = Inbox<WebSocket>()
        var options = WebSocketServer.Options()
        options.connection.closeTimeout = .seconds(20)
        let server = WebSocketServer(options: options) { ws in
            ws.onMessage { _ in }
            serverSides.put(ws)
        }
        let port = try await server.listen().port!
        var closes: [Waiter<CloseInfo>] = []
        var serverSockets: [WebSocket] = []
        for _ in 0..<3 {
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
            let closed = Waiter<CloseInfo>("client onClose")
            ws.onClose { closed.fulfill($0) }
            ws.onMessage { _ in }
            closes.append(closed)
            serverSockets.append(try await serverSides.next())
        }
        let start = ContinuousClock.now
        try await withTimeout("shutdown") { await server.shutdown() }
        // Well under the close timeout: the clients answered.
        #expect(ContinuousClock.now - start < .seconds(5))
        // shutdown() returned after every close handshake: the server's sockets are closed.
        for socket in serverSockets {
            #expect(socket.readyState == .closed)
            #expect(!socket.channel.isActive)
        }
        #expect(server.clients.isEmpty)
        for closed in closes {
            #expect(try await closed.value() == CloseInfo(code: .goingAway, reason: "server shutting down", wasClean: true))
        }
        try await withTimeout("listener stopped") { try await server.waitUntilStopped() }
        // New connections are refused.
        await #expect(throws: (any Error).self) {
            _ = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
        }
    }

    /// A second `listen()` throws instead of opening a second listener that `shutdown()`
    /// would not close: after shutdown nothing listens on either port.
    /// The listener's close runs on its event loop; `shutdown()` returns only once it has
    /// run. With the loop held busy, a `shutdown()` that merely asked for the close would
    /// return at once and leave the port accepting connections (which a loaded machine
    /// showed: a connect right after `shutdown()` was upgraded, then closed with 1001).
    @Test func shutdownReturnsOnlyOnceTheListenerIsClosed() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let server = WebSocketServer(options: .init(), group: group) { _ in }
        let port = try await server.listen().port!
        let released = ConditionLock(value: false)
        let loopHeld = Waiter<Void>("the loop to be held")
        group.next().execute {
            loopHeld.fulfill(())
            // Holds the loop: nothing scheduled on it runs until the test lets go.
            released.lock(whenValue: true)
            released.unlock()
        }
        try await loopHeld.value()
        let returned = NIOLockedValueBox(false)
        let shutdown = Task {
            await server.shutdown()
            returned.withLockedValue { $0 = true }
        }
        // Time enough for a shutdown that does not wait for the close to return.
        try await Task.sleep(for: .milliseconds(300))
        #expect(!returned.withLockedValue { $0 }, "shutdown() returned while the listener's close could not have run")
        released.lock()
        released.unlock(withValue: true)
        await shutdown.value
        await #expect(throws: (any Error).self, "port \(port) still listens after shutdown") {
            _ = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
        }
        try await group.shutdownGracefully()
    }

    @Test func listenTwiceThrowsAndShutdownClosesTheOneListener() async throws {
        var options = WebSocketServer.Options()
        options.port = 0
        let server = WebSocketServer(options: options) { ws in ws.onMessage { ws.sendWithoutWaiting($0) } }
        let first = try await server.listen().port!
        var second: Int?
        await #expect(throws: WebSocketServer.AlreadyListening.self) { second = try await server.listen().port }
        // The first listener still serves.
        let client = try await WebSocket.connect(to: "ws://127.0.0.1:\(first)/")
        try await client.close()
        try await withTimeout("shutdown") { await server.shutdown() }
        for port in [first] + (second.map { [$0] } ?? []) {
            await #expect(throws: (any Error).self, "port \(port) still listens after shutdown") {
                _ = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
            }
        }
    }
}
