import AsyncTestSupport
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import TestPeers
import Testing
import WebSocketCore
import WebSockets

/// Dead and slow peers: the heartbeat drops them, and memory stays bounded meanwhile.
@Suite(.timeLimit(.minutes(1))) struct HeartbeatAndBackpressureTests {
    @Test func heartbeatTerminatesPeerThatNeverAnswers() async throws {
        let serverClosed = Waiter<CloseInfo>("server onClose")
        try await withServer({
            $0.connection.heartbeat = .init(interval: .milliseconds(100), timeout: .milliseconds(200))
        }, onConnection: { ws in
            ws.onMessage { _ in }
            ws.onClose { serverClosed.fulfill($0) }
        }) { _, port in
            let start = ContinuousClock.now
            let peer = try await RawPeer.upgraded(port: port)
            let ping = try await peer.readFrame()
            #expect(ping.opcode == 0x9)
            try? await peer.stopReading()  // the server may already have dropped us
            #expect(try await serverClosed.value() == CloseInfo(code: .abnormalClosure, reason: "", wasClean: false))
            // At least one interval and one timeout.
            #expect(ContinuousClock.now - start >= .milliseconds(290))
        }
    }

    @Test func heartbeatKeepsAnsweringPeerAlive() async throws {
        let pings = Inbox<ByteBuffer>()
        // Its own event loop, so other tests' big messages on the shared loops cannot delay
        // the pongs; and a generous timeout for a loaded machine.
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { group.shutdownGracefully { _ in } }
        try await withServer({
            $0.connection.heartbeat = .init(interval: .milliseconds(50), timeout: .seconds(5))
        }, group: group) { _, port in
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/", group: group)
            ws.onPing { pings.put($0) }
            ws.onMessage { _ in }
            // Several heartbeat periods pass; our client auto-pongs every ping.
            for _ in 0..<8 { _ = try await pings.next() }
            #expect(ws.readyState == .open)
            try await withTimeout("close") { try await ws.close() }
        }
    }

    /// The connections of one loop wait for their pings in one queue: one leaving from the
    /// middle of it leaves the others pinged, each every interval.
    @Test func heartbeatGoesOnForTheOtherConnectionsOfALoopWhenOneCloses() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { group.shutdownGracefully { _ in } }
        try await withServer({
            $0.connection.heartbeat = .init(interval: .milliseconds(50), timeout: .seconds(5))
        }, group: group) { _, port in
            var connected: [(ws: WebSocket, pings: Inbox<ByteBuffer>)] = []
            for _ in 0..<3 {
                let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/", group: group)
                let pings = Inbox<ByteBuffer>()
                ws.onPing { pings.put($0) }
                ws.onMessage { _ in }
                connected.append((ws, pings))
            }
            let clients = connected
            for client in clients { for _ in 0..<2 { _ = try await client.pings.next() } }
            let middle = clients[1].ws
            try await withTimeout("close") { try await middle.close() }
            for (ws, pings) in [clients[0], clients[2]] {
                for _ in 0..<4 { _ = try await pings.next() }
                #expect(ws.readyState == .open)
                try await withTimeout("close") { try await ws.close() }
            }
        }
    }

    @Test(arguments: [16 * 1024, 512 * 1024])
    func bufferedAmountBoundedForPeerThatStopsReading(limit: Int) async throws {
        let serverSide = Waiter<WebSocket>("server connection")
        try await withServer({
            $0.connection.maxBufferedAmount = limit
        }, onConnection: { ws in
            ws.onMessage { _ in }
            serverSide.fulfill(ws)
        }) { _, port in
            let peer = try await RawPeer.upgraded(port: port)
            try await peer.stopReading()
            let ws = try await serverSide.value()
            let messageSize = 4096
            let message = WebSocketMessage.binary(pseudoRandomBytes(messageSize))
            let failures = NIOLockedValueBox<[any Error]>([])
            var maxBuffered = 0
            var sent = 0
            // The kernel's socket buffers absorb a few MiB first; then the server's own queue
            // fills up to the limit and sends start failing.
            while failures.withLockedValue({ $0.isEmpty }) && sent < 100_000 {
                let promise = ws.eventLoop.makePromise(of: Void.self)
                promise.futureResult.whenFailure { error in failures.withLockedValue { $0.append(error) } }
                ws.send(message, promise: promise)
                sent += 1
                maxBuffered = max(maxBuffered, await ws.bufferedAmount)
            }
            let error = try #require(failures.withLockedValue { $0.first })
            guard case SendError.bufferFull(let buffered, let reportedLimit) = error else {
                Issue.record("expected bufferFull, got \(error)")
                return
            }
            #expect(reportedLimit == limit)
            #expect(buffered >= limit)
            // A send that finds less than the limit queued may add one message (and its header).
            #expect(maxBuffered <= limit + messageSize + 16, "buffered \(maxBuffered) with limit \(limit)")
            ws.terminate()
            try await peer.resumeReading()
            _ = try await peer.readToEnd()
        }
    }
}
