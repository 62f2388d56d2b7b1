import AsyncTestSupport
import BrokerProcess
import Foundation
import NIOConcurrencyHelpers
import SwitchboardClient
import Testing

/// The resume property with real faults: a publisher at a steady pace to a retained topic
/// while the subscriber's TCP connection is cut at seeded-random moments, or the broker is
/// stopped with SIGTERM or killed with SIGKILL and restarted on the same files. The
/// subscriber must see every acked seq exactly once, in order, and nothing else (no gap:
/// everything is retained). With retention too short, it sees exactly the missing range as
/// one gap.
@Suite struct ClientResumeTests {
    enum Disruption: Sendable {
        case cut
        case sigterm
        case sigkill
    }

    /// What the publisher learned: seq → payload of every acked publish, and the payloads
    /// whose connection ended before the answer (published or not: unknown).
    struct Published: Sendable {
        var acked: [UInt64: Int] = [:]
        var uncertain: Set<Int> = []
    }

    @Test(arguments: [
        (Disruption.cut, UInt64(0x5EED_0001)), (Disruption.sigterm, UInt64(0x5EED_0002)),
        (Disruption.sigkill, UInt64(0x5EED_0003)),
    ])
    func everyAckedSeqExactlyOnceInOrder(_ disruption: Disruption, seed: UInt64) async throws {
        let count = disruption == .cut ? 1500 : 600
        try await withBroker(retain: "t.>") { broker in
            let subscriberRelay = try await CuttingRelay(target: broker.port)
            let publisherRelay = try await CuttingRelay(target: broker.port)
            let subscriber = try SwitchboardClient(url: "ws://127.0.0.1:\(subscriberRelay.port)/", options: testOptions())
            // Cuts are for the subscriber; restarts reach the publisher too, through its relay.
            let publisher = try SwitchboardClient(url: "ws://127.0.0.1:\(publisherRelay.port)/", options: testOptions())
            func cleanUp() async {
                await subscriber.close()
                await publisher.close()
                await subscriberRelay.close()
                await publisherRelay.close()
            }
            do {
                try await run()
            } catch {
                await cleanUp()
                throw error
            }
            await cleanUp()
            #expect(subscriberRelay.accepted > 2)

            func run() async throws {
            try await withTimeout("the run", .seconds(180)) {
                let subscription = try await subscriber.subscribe("t.r", from: .beginning)
                let publishing = Task { () -> Published in
                    var published = Published()
                    for payload in 1...count {
                        do {
                            published.acked[try await publisher.publish("t.r", rawJSON: "\(payload)")] = payload
                        } catch SwitchboardClientError.connectionLost {
                            published.uncertain.insert(payload)
                        }
                    }
                    // The end marker, until one is acked.
                    while true {
                        do {
                            published.acked[try await publisher.publish("t.r", text: "end")] = 0
                            return published
                        } catch SwitchboardClientError.connectionLost {}
                    }
                }
                var random = SplitMix(seed: seed)
                var nextDisruption = Int.random(in: 50...250, using: &random)
                var disruptions = 0
                var seen: [(seq: UInt64, payload: Int)] = []
                var gaps: [Gap] = []
                for try await event in subscription {
                    switch event {
                    case .gap(let gap): gaps.append(gap)
                    case .message(let message):
                        let payload = message.text == "end" ? 0 : Int(message.json ?? "") ?? -1
                        seen.append((message.seq, payload))
                    }
                    if seen.last?.payload == 0 { break }
                    guard seen.count == nextDisruption else { continue }
                    nextDisruption += Int.random(in: 50...250, using: &random)
                    disruptions += 1
                    switch disruption {
                    case .cut: subscriberRelay.cutAll()
                    case .sigterm, .sigkill:
                        try await broker.restart(kill: disruption == .sigkill)
                        subscriberRelay.retarget(broker.port)
                        publisherRelay.retarget(broker.port)
                    }
                }
                let published = try await publishing.value
                #expect(disruptions >= 2, "the run was disrupted \(disruptions) times")
                #expect(gaps.isEmpty, "\(gaps)")
                let misplaced = seen.enumerated().first { $0.element.seq != UInt64($0.offset + 1) }
                #expect(misplaced == nil, "every seq once, in order: event \(misplaced?.offset ?? 0) has seq \(misplaced?.element.seq ?? 0)")
                var payloads = Set<Int>()
                for (seq, payload) in seen {
                    #expect(payloads.insert(payload).inserted || payload == 0, "payload \(payload) twice")
                    if let acked = published.acked[seq] {
                        #expect(acked == payload, "seq \(seq): acked with \(acked), delivered \(payload)")
                    } else {
                        #expect(published.uncertain.contains(payload), "seq \(seq) (\(payload)) was never published")
                    }
                }
                let lastAcked = published.acked.keys.max() ?? 0
                #expect(seen.last?.seq == lastAcked)
            }
            }
        }
    }

    /// Retention of 50 messages; the subscriber is away while 300 are published, and the
    /// broker restarts meanwhile (a start prunes every topic to its rules in full, so what is
    /// retained is exactly known): the subscriber gets one gap for exactly the pruned range,
    /// then every retained message, then live ones.
    @Test func retentionTooShortGivesExactlyTheMissingRangeAsOneGap() async throws {
        try await withBroker(retain: "t.> count=50") { broker in
            let relay = try await CuttingRelay(target: broker.port)
            let subscriber = try SwitchboardClient(url: "ws://127.0.0.1:\(relay.port)/", options: testOptions())
            try await withTimeout("the run") {
                let subscription = try await subscriber.subscribe("t.r", from: .beginning)
                var events = subscription.makeAsyncIterator()
                let publisher = try SwitchboardClient(url: broker.url, options: testOptions())
                for payload in 1...20 { try await publisher.publish("t.r", rawJSON: "\(payload)") }
                for seq in 1...20 { #expect(try await events.nextMessage().seq == UInt64(seq)) }

                relay.setRefusing(true)
                relay.cutAll()
                _ = try await waitForState(subscriber, "disconnected") {
                    if case .disconnected = $0 { true } else { false }
                }
                for payload in 21...320 { try await publisher.publish("t.r", rawJSON: "\(payload)") }
                await publisher.close()
                try await broker.restart(kill: false)
                relay.retarget(broker.port)
                relay.setRefusing(false)
                subscriber.reconnectNow()

                let first = try await events.nextEvent()
                #expect(first == .gap(Gap(topic: "t.r", from: 21, to: 270, reason: .notRetained)))
                for seq in 271...320 { #expect(try await events.nextMessage().seq == UInt64(seq)) }
                // Live after the replay.
                let live = try SwitchboardClient(url: broker.url, options: testOptions())
                #expect(try await live.publish("t.r", rawJSON: "321") == 321)
                #expect(try await events.nextMessage().seq == 321)
                #expect(subscription.positions.seqs == ["t.r": 321])
                await live.close()
            }
            await subscriber.close()
            await relay.close()
        }
    }

    /// The broker's database is replaced while the subscriber is away: its seqs restart at 1
    /// in another epoch. The resuming subscriber gets a `.historyLost` gap over what it had,
    /// then the new history from seq 1, not silence until the new seqs pass its old position.
    @Test func aReplacedDatabaseGivesAResumingSubscriberAGapNotSilence() async throws {
        try await withBroker(retain: "t.>") { broker in
            let relay = try await CuttingRelay(target: broker.port)
            let subscriber = try SwitchboardClient(url: "ws://127.0.0.1:\(relay.port)/", options: testOptions())
            let publisher = try SwitchboardClient(url: broker.url, options: testOptions())
            try await withTimeout("the resume") {
                let subscription = try await subscriber.subscribe("t.r", from: .beginning)
                var events = subscription.makeAsyncIterator()
                for n in 1...5 { #expect(try await publisher.publish("t.r", rawJSON: "\(n)") == UInt64(n)) }
                for n in 1...5 { #expect(try await events.nextMessage().seq == UInt64(n)) }
                await publisher.close()

                relay.setRefusing(true)
                try await broker.restart(kill: false, replacingDatabase: true)
                relay.retarget(broker.port)
                let fresh = try SwitchboardClient(url: broker.url, options: testOptions())
                #expect(try await fresh.publish("t.r", rawJSON: "101") == 1)
                #expect(try await fresh.publish("t.r", rawJSON: "102") == 2)
                relay.setRefusing(false)
                subscriber.reconnectNow()

                #expect(try await events.nextEvent() == .gap(Gap(topic: "t.r", from: 1, to: 5, reason: .historyLost)))
                let first = try await events.nextMessage()
                #expect(first.seq == 1 && first.json == "101", "\(first)")
                let second = try await events.nextMessage()
                #expect(second.seq == 2 && second.json == "102", "\(second)")
                #expect(subscription.positions.seqs == ["t.r": 2])
                await fresh.close()
            }
            await subscriber.close()
            await relay.close()
        }
    }

    /// Positions saved by one client carry the broker's epoch: a second client started from
    /// them after the database was replaced gets a `.historyLost` gap and the new history
    /// from seq 1, as a live resume does, not silence until the new seqs pass the old ones.
    @Test func savedPositionsCarryTheEpochAcrossAReplacedDatabase() async throws {
        try await withBroker(retain: "t.>") { broker in
            try await withTimeout("two processes' worth of clients") {
                let first = try SwitchboardClient(url: broker.url, options: testOptions())
                let subscription = try await first.subscribe("t.*", from: .beginning)
                var events = subscription.makeAsyncIterator()
                for n in 1...3 { #expect(try await first.publish("t.r", rawJSON: "\(n)") == UInt64(n)) }
                for n in 1...3 { #expect(try await events.nextMessage().seq == UInt64(n)) }
                let saved = try JSONEncoder().encode(subscription.positions)
                await first.close()
                let oldEpoch = try #require(try JSONDecoder().decode(Positions.self, from: saved).epoch)

                try await broker.restart(kill: false, replacingDatabase: true)
                let second = try SwitchboardClient(url: broker.url, options: testOptions())
                #expect(try await second.publish("t.r", rawJSON: "101") == 1)
                let resumed = try await second.subscribe(
                    "t.*", from: .positions(try JSONDecoder().decode(Positions.self, from: saved)))
                var after = resumed.makeAsyncIterator()
                #expect(try await after.nextEvent() == .gap(Gap(topic: "t.r", from: 1, to: 3, reason: .historyLost)))
                let message = try await after.nextMessage()
                #expect(message.seq == 1 && message.json == "101", "\(message)")
                #expect(resumed.positions.seqs == ["t.r": 1])
                let newEpoch = try #require(resumed.positions.epoch)
                #expect(newEpoch != oldEpoch)
                await second.close()
            }
        }
    }

    /// A topic that first appears while a `.last(N)` pattern subscription is disconnected
    /// was published to only after the subscription began: the resume delivers all of its
    /// messages (from seq 1), not just the last N, so nothing published meanwhile is lost.
    @Test func aTopicFirstSeenAfterAReconnectArrivesWhole() async throws {
        try await withBroker(retain: "t.>") { broker in
            let relay = try await CuttingRelay(target: broker.port)
            let subscriber = try SwitchboardClient(url: "ws://127.0.0.1:\(relay.port)/", options: testOptions())
            let publisher = try SwitchboardClient(url: broker.url, options: testOptions())
            try await withTimeout("the resume") {
                for n in 1...3 { _ = try await publisher.publish("t.old", rawJSON: "\(n)") }
                let subscription = try await subscriber.subscribe("t.*", from: .last(1))
                var events = subscription.makeAsyncIterator()
                #expect(try await events.nextMessage().seq == 3)

                relay.setRefusing(true)
                relay.cutAll()
                _ = try await waitForState(subscriber, "disconnected") {
                    if case .disconnected = $0 { true } else { false }
                }
                for n in 1...3 { _ = try await publisher.publish("t.new", rawJSON: "\(n)") }
                _ = try await publisher.publish("t.old", rawJSON: "4")
                relay.setRefusing(false)
                subscriber.reconnectNow()

                var got: [String] = []
                for _ in 0..<4 {
                    let message = try await events.nextMessage()
                    got.append("\(message.topic) \(message.seq)")
                }
                #expect(got.sorted() == ["t.new 1", "t.new 2", "t.new 3", "t.old 4"])
            }
            await subscriber.close()
            await publisher.close()
            await relay.close()
        }
    }
}
