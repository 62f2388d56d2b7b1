import AsyncTestSupport
import BrokerProcess
import Foundation
import NIOConcurrencyHelpers
import SwitchboardClient
import Testing

/// Tokens across reconnects, unsubscribing by cancellation, publishes while disconnected,
/// and closing, against a real `switchboard serve` behind a TCP relay the test controls.
@Suite struct ClientLifecycleTests {
    @Test func theProviderIsAskedAtEveryConnectionAndARevokedTokenEndsTheClient() async throws {
        try await withBroker { broker in
            let (token, id) = try await broker.createToken(subscribe: ["p.>"], publish: ["p.>"])
            let relay = try await CuttingRelay(target: broker.port)
            let calls = NIOLockedValueBox(0)
            let client = try SwitchboardClient(
                url: "ws://127.0.0.1:\(relay.port)/",
                token: .provider {
                    calls.withLockedValue { $0 += 1 }
                    return token
                }, options: testOptions())
            try await withTimeout("the reconnect and the revocation") {
                var states = client.states.makeAsyncIterator()
                func waitFor(_ what: String, _ matches: (ConnectionState) -> Bool) async throws -> ConnectionState {
                    while let state = await states.next() { if matches(state) { return state } }
                    throw TestFailure("states ended before \(what)")
                }
                _ = try await waitFor("connected") { $0 == .connected }
                #expect(calls.withLockedValue { $0 } == 1)
                relay.cutAll()
                _ = try await waitFor("disconnected") { if case .disconnected = $0 { true } else { false } }
                _ = try await waitFor("connected again") { $0 == .connected }
                #expect(calls.withLockedValue { $0 } == 2)
                let seq = try await client.publish("p.a", text: "still allowed")
                #expect(seq == 1)

                try await broker.revoke(id)
                let end = try await waitFor("closed") { if case .closed = $0 { true } else { false } }
                #expect(end == .closed(.tokenRevoked))
                #expect(calls.withLockedValue { $0 } == 2, "a revoked token is not retried")
            }
            await client.close()
            await relay.close()
        }
    }

    /// Once the task iterating a subscription is cancelled, the client unsubscribes: the
    /// broker's admin API (another connection) counts no subscriber of that topic any more
    /// while the client's other subscription stays, and the wire (a relay between client and
    /// broker) carries nothing more of that topic.
    @Test func cancellingTheIteratingTaskUnsubscribes() async throws {
        try await withBroker { broker in
            let relay = try await CuttingRelay(target: broker.port, recording: true)
            let client = try SwitchboardClient(url: "ws://127.0.0.1:\(relay.port)/", options: testOptions(deflate: false))
            let publisher = try SwitchboardClient(url: broker.url, options: testOptions())
            try await withTimeout("the unsubscribe") {
                let cancelled = try await client.subscribe("t.cancelled")
                let kept = try await client.subscribe("t.kept")
                let first = Waiter<Void>("the first message")
                let consumer = Task {
                    for try await _ in cancelled { first.fulfill(()) }
                }
                try await publisher.publish("t.cancelled", text: "before")
                try await first.value()
                func subscribers(_ topic: String) async throws -> Int? {
                    try await broker.adminGET("/admin/v1/topics/\(topic)")["subscribers"] as? Int
                }
                try await publisher.publish("t.kept", text: "opened")
                #expect(try await subscribers("t.cancelled") == 1)
                consumer.cancel()
                try await eventually("no subscriber of t.cancelled on the broker") { try await subscribers("t.cancelled") == 0 }
                #expect(try await subscribers("t.kept") == 1)
                let unsubscribed = Array(#"{"op":"unsubscribed""#.utf8)
                try await eventually("the broker's unsubscribed") { relay.fromBroker.firstRange(of: unsubscribed) != nil }
                let after = relay.fromBroker.count

                try await publisher.publish("t.cancelled", text: "after")
                try await publisher.publish("t.kept", text: "marker")
                var keptEvents = kept.makeAsyncIterator()
                #expect(try await keptEvents.nextMessage().text == "opened")
                #expect(try await keptEvents.nextMessage().text == "marker")
                let wire = Array(relay.fromBroker[after...])
                #expect(wire.firstRange(of: Array(#""topic":"t.kept""#.utf8)) != nil)
                #expect(wire.firstRange(of: Array(#""topic":"t.cancelled""#.utf8)) == nil, "nothing more of the cancelled topic")
            }
            await client.close()
            await publisher.close()
            await relay.close()
        }
    }

    @Test func publishesWhileDisconnectedWaitOrFailFast() async throws {
        try await withBroker { broker in
            let relay = try await CuttingRelay(target: broker.port)
            var failFast = testOptions()
            failFast.publishQueue = .failFast
            let waiting = try SwitchboardClient(url: "ws://127.0.0.1:\(relay.port)/", options: testOptions())
            let impatient = try SwitchboardClient(url: "ws://127.0.0.1:\(relay.port)/", options: failFast)
            try await withTimeout("the publishes") {
                for client in [waiting, impatient] {
                    _ = try await waitForState(client, "connected") { $0 == .connected }
                }
                relay.setRefusing(true)
                relay.cutAll()
                for client in [waiting, impatient] {
                    _ = try await waitForState(client, "disconnected") { if case .disconnected = $0 { true } else { false } }
                }
                await #expect(throws: SwitchboardClientError.notConnected) {
                    try await impatient.publish("t.q", text: "now or never")
                }
                async let queued = waiting.publish("t.q", text: "when back")
                relay.setRefusing(false)
                waiting.reconnectNow()
                #expect(try await queued == 1)
            }
            // Closing ends subscriptions normally and fails what is still queued.
            let subscription = try await waiting.subscribe("t.q")
            relay.setRefusing(true)
            relay.cutAll()
            _ = try await waitForState(waiting, "disconnected") { if case .disconnected = $0 { true } else { false } }
            let stranded = Task { try await waiting.publish("t.q", text: "never sent") }
            await waiting.close()
            await #expect(throws: SwitchboardClientError.closed(.closedByApplication)) { try await stranded.value }
            var events = subscription.makeAsyncIterator()
            #expect(try await events.next() == nil)
            await impatient.close()
            await relay.close()
        }
    }

    /// A publish made while the connection is closing (here the client's own `reconnectNow()`;
    /// a broker shutting down sends its close frame the same way) is not written to it: it
    /// waits for the next connection and is acked there (with fail fast: `.notConnected`), not
    /// failed with the socket's own error.
    @Test func aPublishWhileTheConnectionClosesWaitsForTheNextOne() async throws {
        try await withBroker { broker in
            var failFast = testOptions()
            failFast.publishQueue = .failFast
            let waiting = try SwitchboardClient(url: broker.url, options: testOptions())
            let impatient = try SwitchboardClient(url: broker.url, options: failFast)
            try await withTimeout("the publishes") {
                for client in [waiting, impatient] {
                    _ = try await waitForState(client, "connected") { $0 == .connected }
                }
                // Each pair runs on the client's loop in this order: the publish meets a
                // connection whose close handshake has just begun.
                waiting.reconnectNow()
                #expect(try await waiting.publish("t.q", text: "across the reconnect") == 1)
                impatient.reconnectNow()
                await #expect(throws: SwitchboardClientError.notConnected) {
                    try await impatient.publish("t.q", text: "now or never")
                }
            }
            await waiting.close()
            await impatient.close()
        }
    }
}
