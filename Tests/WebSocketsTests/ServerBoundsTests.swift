import AsyncTestSupport
import NIOConcurrencyHelpers
import NIOCore
import TestPeers
import Testing
import WebSockets

/// Abuse a server must survive with bounded cost: handshakes and frames trickled, floods of
/// handshakes, many connections from one address. Where a timeout is the subject it is set
/// short and the time it took is bounded on both sides; the peers' pacing is the only sleep.
@Suite(.timeLimit(.minutes(1))) struct ServerBoundsTests {
    // MARK: Slow handshakes and frames

    @Test func handshakeTrickledByteByByteTimesOut() async throws {
        try await withServer({ $0.handshakeTimeout = .milliseconds(300) }) { _, port in
            let start = ContinuousClock.now  // before connecting: the server's timer starts later
            let peer = try await RawPeer.connect(port: port)
            // The whole head would take about 5 s at this pace.
            let trickle = Task { try await peer.trickle(RawPeer.upgradeRequest(), every: .milliseconds(25)) }
            defer { trickle.cancel() }
            let response = try await peer.readResponse()
            let elapsed = ContinuousClock.now - start
            #expect(response.status == 408, "\(response.head)")
            #expect(elapsed >= .milliseconds(290))
            #expect(elapsed < .seconds(3))
        }
    }

    @Test func halfAFrameThenSilenceClosesWith1008() async throws {
        let serverClosed = Waiter<CloseInfo>("server onClose")
        try await withServer({ $0.connection.partialFrameTimeout = .milliseconds(300) }, onConnection: { ws in
            ws.onMessage { ws.send($0, promise: nil) }
            ws.onClose { serverClosed.fulfill($0) }
        }) { _, port in
            let peer = try await RawPeer.upgraded(port: port)
            let frame = clientFrame(opcode: 0x1, Array(repeating: UInt8(ascii: "a"), count: 100))
            // A whole frame first: the clock is for the frame under way, not the connection.
            try await peer.send(frame)
            #expect(try await peer.readFrame().text.count == 100)
            let start = ContinuousClock.now
            try await peer.send(Array(frame.prefix(40)))
            let close = try await peer.readFrame()
            let elapsed = ContinuousClock.now - start
            #expect(close.opcode == 0x8 && close.closeCode == 1008, "\(close)")
            #expect(close.text.contains("not received whole"), "\(close)")
            #expect(elapsed >= .milliseconds(290))
            #expect(elapsed < .seconds(3))
            try await peer.expectClosed()
            _ = try await serverClosed.value()
        }
    }

    @Test func partOfAFrameHeaderThenSilenceClosesWith1008() async throws {
        try await withServer({ $0.connection.partialFrameTimeout = .milliseconds(300) }) { _, port in
            let peer = try await RawPeer.upgraded(port: port)
            let start = ContinuousClock.now
            // The first byte of a frame whose length needs the 8-byte form.
            try await peer.send([0x82])
            let close = try await peer.readFrame()
            #expect(close.opcode == 0x8 && close.closeCode == 1008, "\(close)")
            #expect(ContinuousClock.now - start >= .milliseconds(290))
            #expect(ContinuousClock.now - start < .seconds(3))
        }
    }

    /// Every read ends inside a frame, and that goes on for longer than the timeout, but
    /// each frame is whole well within it: nothing is timed out.
    @Test func framesThatEachCompleteInTimeAreNeverTimedOut() async throws {
        try await withServer({ $0.connection.partialFrameTimeout = .seconds(1) }) { _, port in
            let peer = try await RawPeer.upgraded(port: port)
            let frames = (0..<8).map { clientFrame(opcode: 0x1, Array("message \($0)".utf8)) }
            let start = ContinuousClock.now
            try await peer.send(Array(frames[0].prefix(5)))
            for index in frames.indices {
                try await Task.sleep(for: .milliseconds(200))
                let next = index + 1 < frames.count ? Array(frames[index + 1].prefix(5)) : []
                try await peer.send(Array(frames[index].dropFirst(5)) + next)
            }
            var texts: [String] = []
            while texts.count < frames.count {
                let frame = try await peer.readFrame()
                #expect(frame.opcode == 0x1, "\(frame)")
                if frame.opcode != 0x1 { break }
                texts.append(frame.text)
            }
            #expect(texts == (0..<8).map { "message \($0)" })
            #expect(ContinuousClock.now - start > .seconds(1))
            peer.close()
        }
    }

    // MARK: Many connections from one address

    @Test func connectionsPastThePerAddressLimitGet429() async throws {
        let closed = Inbox<Void>()
        try await withServer({ $0.maxConnectionsPerAddress = 3 }, onConnection: { ws in
            ws.onMessage { _ in }
            // After the server's own close callback, which gives the place back.
            ws.channel.closeFuture.whenComplete { _ in closed.put(()) }
        }) { server, port in
            var peers: [RawPeer] = []
            for _ in 0..<3 { peers.append(try await RawPeer.upgraded(port: port)) }
            for _ in 0..<2 {
                let refused = try await RawPeer.connect(port: port)
                try await refused.send(string: RawPeer.upgradeRequest())
                let response = try await refused.readResponse()
                #expect(response.status == 429, "\(response.head)")
                #expect(response.body == "too many connections from 127.0.0.1 (limit 3)\n")
            }
            // One leaves: its place is free again.
            peers.removeFirst().close()
            try await closed.next()
            peers.append(try await RawPeer.upgraded(port: port))
            #expect(server.connectionCount == 3)
            for peer in peers { peer.close() }
        }
    }

    // MARK: Floods of handshakes

    @Test func handshakesPastTheRateAreClosedUnread() async throws {
        try await withServer({ $0.handshakeRate = HandshakeRateLimit(perSecond: 1, burst: 5) }) { _, port in
            let start = ContinuousClock.now
            var upgraded = 0
            var dropped = 0
            for _ in 0..<12 {
                let peer = try await RawPeer.connect(port: port)
                try? await peer.send(string: RawPeer.upgradeRequest())
                let bytes = try await peer.take("a 101 or the connection closing") { bytes, eof -> [UInt8]? in
                    if bytes.firstRange(of: [13, 10, 13, 10]) != nil || eof { return bytes }
                    return nil
                }
                if bytes.isEmpty {
                    dropped += 1
                } else {
                    #expect(String(decoding: bytes, as: UTF8.self).hasPrefix("HTTP/1.1 101"))
                    upgraded += 1
                }
                peer.close()
            }
            // The burst, plus one a second for the time the test took.
            let seconds = Int((ContinuousClock.now - start).components.seconds)
            #expect(upgraded >= 5 && upgraded <= 5 + seconds + 1, "\(upgraded) upgraded in \(seconds) s")
            #expect(dropped == 12 - upgraded)
        }
    }

    @Test func connectionsPastTheConcurrentHandshakesAreClosedUnread() async throws {
        let deciding = Inbox<Void>()
        let decisions = [Waiter<Void>("the first decision"), Waiter<Void>("the second decision")]
        let held = NIOLockedValueBox(0)
        let opened = Inbox<Void>()
        try await withServer({
            $0.maxConcurrentHandshakes = 2
            $0.verifyClient = { _ in
                // The first two handshakes wait for the test; later ones go straight through.
                let index = held.withLockedValue { held in
                    defer { held += 1 }
                    return held
                }
                guard index < decisions.count else { return .accept() }
                deciding.put(())
                _ = try? await decisions[index].value()
                return .accept()
            }
        }, onConnection: { ws in
            ws.onMessage { _ in }
            opened.put(())
        }) { _, port in
            var waiting: [RawPeer] = []
            for _ in 0..<2 {
                let peer = try await RawPeer.connect(port: port)
                try await peer.send(string: RawPeer.upgradeRequest())
                try await deciding.next()
                waiting.append(peer)
            }
            let refused = try await RawPeer.connect(port: port)
            try? await refused.send(string: RawPeer.upgradeRequest())
            try await refused.expectClosed()

            for decision in decisions { decision.fulfill(()) }
            for peer in waiting {
                #expect(try await peer.readHead().hasPrefix("HTTP/1.1 101"))
                try await opened.next()
            }
            // Both handshakes are over: a new one is let in.
            let last = try await RawPeer.upgraded(port: port)
            for peer in waiting + [last] { peer.close() }
        }
    }
}

extension RawPeer {
    /// Sends `text` one byte at a time, `interval` apart, until done or the connection fails.
    func trickle(_ text: String, every interval: Duration) async throws {
        for byte in text.utf8 {
            try await Task.sleep(for: interval)
            guard (try? await send([byte])) != nil else { return }
        }
    }
}
