import AsyncTestSupport
import TestPeers
import Testing

@testable import Switchboard

/// The WebSocket server's limits as the broker's configuration sets them.
@Suite(.timeLimit(.minutes(1))) struct BrokerServerLimitsTests {
    @Test func connectionsPerIPPastTheLimitGet429() async throws {
        try await TestBroker.with({ $0.maxConnectionsPerIP = 2 }) { broker in
            let token = try broker.token().token
            let first = try await RawPeer.upgraded(port: broker.port, token: token)
            let second = try await RawPeer.upgraded(port: broker.port, token: token)
            let third = try await RawPeer.connect(port: broker.port)
            try await third.send(string: RawPeer.upgradeRequest(extraHeaders: "Authorization: Bearer \(token)\r\n"))
            let response = try await third.readResponse()
            #expect(response.status == 429)
            #expect(response.body == "too many connections from 127.0.0.1 (limit 2)\n")
            first.close()
            second.close()
        }
    }

    @Test func aFrameLeftHalfSentClosesWith1008() async throws {
        try await TestBroker.with({ $0.frameTimeoutSeconds = 1 }) { broker in
            let peer = try await RawPeer.upgraded(port: broker.port, token: try broker.token().token)
            let request = clientFrame(opcode: 0x1, Array(#"{"op":"sub","topic":"a","id":"1"}"#.utf8))
            let start = ContinuousClock.now
            try await peer.send(Array(request.prefix(10)))
            let close = try await peer.readUntilClose()
            let elapsed = ContinuousClock.now - start
            #expect(close.closeCode == 1008, "\(close)")
            #expect(elapsed >= .milliseconds(990))
            #expect(elapsed < .seconds(5))
        }
    }
}
