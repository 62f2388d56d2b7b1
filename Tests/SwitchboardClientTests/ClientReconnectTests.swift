import AsyncTestSupport
import BrokerProcess
import Foundation
@testable import SwitchboardClient
import Testing
import WebSockets

/// How the client finds out that its connection is gone and how long it waits before the next
/// attempt, against a real `switchboard serve` behind a TCP relay the test controls.
@Suite struct ClientReconnectTests {
    /// A path that drops every byte without closing (no FIN, no RST) is noticed by the
    /// client's heartbeat within interval + timeout; the client then reconnects when the path
    /// returns, and when it leads to a restarted broker on another port, and resumes its
    /// subscription without losing what was published meanwhile.
    @Test func theHeartbeatNoticesADeadPathAndTheClientResumesWhenItReturnsOrMoves() async throws {
        try await withBroker(retain: "t.>") { broker in
            let relay = try await CuttingRelay(target: broker.port)
            let heartbeat = ConnectionOptions.Heartbeat(interval: .milliseconds(300), timeout: .milliseconds(300))
            var options = testOptions()
            options.heartbeat = heartbeat
            // An attempt made while the path was dead waits this long for its lost handshake.
            options.webSocket.handshakeTimeout = .seconds(1)
            // The heartbeat's bound, plus room for a loaded machine's scheduling; without a
            // heartbeat nothing ever ends the silent connection.
            let bound = heartbeat.interval + heartbeat.timeout + .seconds(2)
            let subscriber = try SwitchboardClient(url: "ws://127.0.0.1:\(relay.port)/", options: options)
            try await withTimeout("the dead paths and the resumes", .seconds(60)) {
                var states = subscriber.states.makeAsyncIterator()
                func next(_ what: String, _ matches: (ConnectionState) -> Bool) async throws {
                    while let state = await states.next() { if matches(state) { return } }
                    throw TestFailure("states ended before \(what)")
                }
                func isDisconnected(_ state: ConnectionState) -> Bool {
                    if case .disconnected = state { true } else { false }
                }
                try await next("connected") { $0 == .connected }
                var events = try await subscriber.subscribe("t.hb").makeAsyncIterator()
                let publisher = try SwitchboardClient(url: broker.url, options: testOptions())
                try await publisher.publish("t.hb", text: "1")
                #expect(try await events.nextMessage().seq == 1)

                relay.setBlackholed(true)
                var silenced = ContinuousClock.now
                try await publisher.publish("t.hb", text: "2")
                try await next("disconnected by the heartbeat", isDisconnected)
                var noticed = ContinuousClock.now - silenced
                #expect(noticed < bound, "noticed after \(noticed)")
                relay.setBlackholed(false)
                #expect(try await events.nextMessage().seq == 2)
                try await next("connected again") { $0 == .connected }

                relay.setBlackholed(true)
                silenced = ContinuousClock.now
                try await publisher.publish("t.hb", text: "3")
                await publisher.close()
                try await next("disconnected by the heartbeat again", isDisconnected)
                noticed = ContinuousClock.now - silenced
                #expect(noticed < bound, "noticed after \(noticed)")
                try await broker.restart(kill: true)
                relay.retarget(broker.port)
                relay.setBlackholed(false)
                #expect(try await events.nextMessage().seq == 3)
                let second = try SwitchboardClient(url: broker.url, options: testOptions())
                try await second.publish("t.hb", text: "4")
                #expect(try await events.nextMessage().seq == 4)
                await second.close()
            }
            await subscriber.close()
            await relay.close()
        }
    }

    /// Full jitter: a delay is uniform between 0 and min(maxDelay, initialDelay × 2^attempt).
    @Test func theBackoffDoublesFromHalfASecondToTwentySeconds() {
        let backoff = SwitchboardClient.Options().reconnect
        #expect(backoff == .init(initialDelay: .milliseconds(500), maxDelay: .seconds(20)))
        let ceilings = (0..<10).map { backoff.delay(attempt: $0, random: 1) }
        #expect(ceilings == [0.5, 1, 2, 4, 8, 16, 20, 20, 20, 20].map { Duration.milliseconds(Int($0 * 1000)) })
        #expect(backoff.delay(attempt: 3, random: 0) == .zero)
        #expect(backoff.delay(attempt: 3, random: 0.25) == .seconds(1))
        // Far past the cap the shift must not overflow.
        #expect(backoff.delay(attempt: Int.max, random: 1) == .seconds(20))
        for attempt in 0..<8 {
            let delay = backoff.delay(attempt: attempt)
            #expect(delay >= .zero && delay <= ceilings[attempt])
        }
    }

    /// Through the client's states: each refused attempt waits at most its attempt's ceiling,
    /// and a successful connection starts the doubling again from `initialDelay`.
    @Test func aSuccessfulConnectionResetsTheBackoff() async throws {
        try await withBroker { broker in
            let relay = try await CuttingRelay(target: broker.port)
            var options = testOptions()
            let initial = Duration.milliseconds(10)
            options.reconnect = .init(initialDelay: initial, maxDelay: .seconds(30))
            let client = try SwitchboardClient(url: "ws://127.0.0.1:\(relay.port)/", options: options)
            try await withTimeout("the refusals and the reset") {
                var states = client.states.makeAsyncIterator()
                func nextDelay() async throws -> Duration {
                    while let state = await states.next() {
                        if case .disconnected(_, _, let retryIn) = state { return retryIn }
                    }
                    throw TestFailure("the states ended")
                }
                while let state = await states.next(), state != .connected {}
                // Twice, so that a backoff that kept counting would have to draw a delay under
                // 1/64 and then under 1/128 of its ceiling to pass.
                for _ in 0..<2 {
                    relay.setRefusing(true)
                    relay.cutAll()
                    for attempt in 0..<7 {
                        let delay = try await nextDelay()
                        #expect(delay <= initial * (1 << attempt), "attempt \(attempt): \(delay)")
                    }
                    relay.setRefusing(false)
                    while let state = await states.next(), state != .connected {}
                    relay.cutAll()
                    let afterSuccess = try await nextDelay()
                    #expect(afterSuccess <= initial, "the first delay after a connection: \(afterSuccess)")
                    while let state = await states.next(), state != .connected {}
                }
            }
            await client.close()
            await relay.close()
        }
    }
}
