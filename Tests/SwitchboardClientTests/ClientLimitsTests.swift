import AsyncTestSupport
import BrokerProcess
import Foundation
import NIOConcurrencyHelpers
import Switchboard
import SwitchboardClient
import Testing

/// What the broker's limits do to an SDK client: a consumer that does not read, a replay log
/// that takes no more, a token that expires; against a real `switchboard serve`.
@Suite struct ClientLimitsTests {
    /// The subscriber's consumer reads nothing while 2500 messages of 4 KB (10 MB, past what
    /// the kernel buffers of both sockets hold) are published: the client must stop reading
    /// the socket once its buffer of 16 events is full, so the broker's backlog for it passes
    /// `max_queued_bytes` and its policy applies — seen by the client as a `.dropped` gap
    /// (`drop`), or as a 1013 close and a resume (`close`). Had the client kept reading into
    /// memory, the broker would have had no backlog and nothing would be missing. Either way
    /// every seq arrives once, as a message or inside a gap.
    @Test(arguments: ["drop", "close"])
    func aConsumerThatDoesNotReadMeetsTheBrokersSlowConsumerPolicy(_ policy: String) async throws {
        let count: UInt64 = 2500
        try await withBroker(arguments: ["--max-queued-bytes", "65536", "--slow-consumer", policy, "--request-rate", "0"]) { broker in
            var options = testOptions(deflate: false)
            options.subscriptionBuffer = 16
            let subscriber = try SwitchboardClient(url: broker.url, options: options)
            let publisher = try SwitchboardClient(url: broker.url, options: testOptions(deflate: false))
            let closes = NIOLockedValueBox<[UInt16]>([])
            let watcher = Task {
                for await state in subscriber.states {
                    if case .disconnected(let code?, _, _) = state { closes.withLockedValue { $0.append(code) } }
                }
            }
            try await withTimeout("the flood and its reading") {
                let subscription = try await subscriber.subscribe("t.flood")
                let data = String(repeating: "x", count: 4000)
                for _ in 1...count { try await publisher.publish("t.flood", text: data) }

                var next: UInt64 = 1
                var gaps: [Gap] = []
                for try await event in subscription {
                    switch event {
                    case .message(let message):
                        #expect(message.seq == next)
                        next = message.seq + 1
                    case .gap(let gap):
                        #expect(gap.from == next)
                        gaps.append(gap)
                        next = gap.to + 1
                    }
                    if next > count { break }
                }
                #expect(!gaps.isEmpty, "the broker's policy never applied: the client read everything into memory")
                if policy == "drop" {
                    #expect(gaps.allSatisfy { $0.reason == .dropped }, "\(gaps)")
                    #expect(closes.withLockedValue { $0 }.isEmpty)
                } else {
                    #expect(closes.withLockedValue { $0 }.contains(1013), "\(closes.withLockedValue { $0 })")
                }
            }
            watcher.cancel()
            await subscriber.close()
            await publisher.close()
        }
    }

    /// A consumer that stops reading for several heartbeat timeouts: the client's buffer
    /// fills, it stops reading the socket, and the broker's pongs wait unread. That silence is
    /// the client's own doing, so neither side's heartbeat may drop the connection (the
    /// broker's, at 1 s, still hears the client's pings); afterwards every message arrives,
    /// in order, on the same connection.
    @Test func aPausedSubscriptionOutlivesTheHeartbeat() async throws {
        try await withBroker(environment: ["SWITCHBOARD_HEARTBEAT_SECONDS": "1"]) { broker in
            var options = testOptions(deflate: false)
            options.subscriptionBuffer = 4
            options.heartbeat = .init(interval: .milliseconds(200), timeout: .milliseconds(300))
            let subscriber = try SwitchboardClient(url: broker.url, options: options)
            let publisher = try SwitchboardClient(url: broker.url, options: testOptions(deflate: false))
            // Made here, so that it holds every state from now on, whenever the task reads it.
            let stateStream = subscriber.states
            let states = NIOLockedValueBox<[ConnectionState]>([])
            let watcher = Task {
                for await state in stateStream { states.withLockedValue { $0.append(state) } }
            }
            try await withTimeout("the pause and the reading") {
                let subscription = try await subscriber.subscribe("t.pause")
                for n in 1...50 { _ = try await publisher.publish("t.pause", rawJSON: "\(n)") }
                // Not reading is the point: 3 s is ten heartbeat timeouts of the client and
                // more than one of the broker's.
                try await Task.sleep(for: .seconds(3))
                var events = subscription.makeAsyncIterator()
                for n in 1...50 { #expect(try await events.nextMessage().seq == UInt64(n)) }
            }
            // The stream ends with `.closed`, after every state before it.
            await subscriber.close()
            await watcher.value
            let seen = states.withLockedValue { $0 }
            #expect(!seen.contains { if case .disconnected = $0 { true } else { false } }, "\(seen)")
            await publisher.close()
        }
    }

    /// A full replay log queue (`replay_queue_limit` 1) refuses publishes to a retained topic
    /// with `unavailable`, typed, and the client goes on: the refusals are answers, not a
    /// lost connection.
    @Test func aFullReplayQueueIsATypedUnavailable() async throws {
        try await withBroker(
            retain: "t.>", arguments: ["--request-rate", "0"], environment: ["SWITCHBOARD_REPLAY_QUEUE_LIMIT": "1"]
        ) { broker in
            let client = try SwitchboardClient(url: broker.url, options: testOptions())
            try await withTimeout("the burst") {
                _ = try await waitForState(client, "connected") { $0 == .connected }
                // One burst: the client writes it in one go, the broker reads it in one go, far
                // faster than its writer commits.
                let outcomes = try await withThrowingTaskGroup(of: SwitchboardClientError?.self) { group in
                    for _ in 0..<500 {
                        group.addTask {
                            do {
                                try await client.publish("t.burst", text: "x")
                                return nil
                            } catch let error as SwitchboardClientError {
                                return error
                            }
                        }
                    }
                    return try await group.reduce(into: [SwitchboardClientError?]()) { $0.append($1) }
                }
                let refusals = outcomes.compactMap { $0 }
                #expect(!refusals.isEmpty, "500 publishes in one burst, none refused with a queue of 1")
                for refusal in refusals {
                    guard case .broker(let code, _) = refusal else {
                        Issue.record("not a broker refusal: \(refusal)")
                        continue
                    }
                    #expect(code == .unavailable)
                }
                #expect(refusals.count < 500, "some publishes were stored")
                // Every accepted one is committed (acked): the queue is empty again.
                #expect(try await client.publish("t.burst", text: "after") > UInt64(500 - refusals.count))
                #expect(await client.states.first { _ in true } == .connected)
            }
            await client.close()
        }
    }

    /// The provider's first JWT expires while connected: the broker closes with 4002, the
    /// client asks the provider once more and goes on with the new token — subscription
    /// resumed, publishing allowed.
    @Test func anExpiredTokenIsRenewedOnceFromTheProvider() async throws {
        let secretDirectory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: secretDirectory) }
        let secret = "an-HS256-secret-of-at-least-32-bytes!"
        let secretFile = secretDirectory.appendingPathComponent("jwt-secret")
        try secret.write(to: secretFile, atomically: true, encoding: .utf8)
        try await withBroker(arguments: ["--jwt-secret-file", secretFile.path]) { broker in
            let calls = NIOLockedValueBox(0)
            let client = try SwitchboardClient(
                url: broker.url,
                token: .provider {
                    let call = calls.withLockedValue { calls in
                        calls += 1
                        return calls
                    }
                    // The first token lives 2 s, the next ones 5 minutes.
                    let lifetime: Double = call == 1 ? 2 : 300
                    return JWTVerifier.mint(
                        .init(
                            sub: "renewed", exp: Date().timeIntervalSince1970 + lifetime, sub_patterns: ["p.>"],
                            pub_patterns: ["p.>"]), secret: Array(secret.utf8))
                }, options: testOptions())
            try await withTimeout("the expiry and the renewal") {
                let subscription = try await client.subscribe("p.renewed")
                var events = subscription.makeAsyncIterator()
                #expect(try await client.publish("p.renewed", text: "first") == 1)
                #expect(try await events.nextMessage().text == "first")
                #expect(calls.withLockedValue { $0 } == 1)

                _ = try await waitForState(client, "the reconnect after the expiry") { $0 == .connecting }
                _ = try await waitForState(client, "connected with the new token") { $0 == .connected }
                #expect(calls.withLockedValue { $0 } == 2, "asked once more")
                #expect(try await client.publish("p.renewed", text: "second") == 2)
                #expect(try await events.nextMessage().seq == 2)
            }
            #expect(calls.withLockedValue { $0 } == 2)
            await client.close()
        }
    }
}
