import AsyncTestSupport
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import TestPeers
import Testing
import WebSockets

@_spi(Fuzzing) @testable import Switchboard

/// A subscriber that stops reading never slows the others down nor grows the broker's
/// memory: past `maxQueuedBytes` it is closed with 1013, or (with `slow_consumer=drop`)
/// its messages are dropped and it is told what it missed.
@Suite struct BrokerSlowConsumerTests {
    static let limit = 64 * 1024
    /// Messages below the WebSocket handler's copy threshold, so that a batch of them is
    /// gathered in one buffer before the flush (the channel does not see them until then).
    static let data = #""\#(String(repeating: "x", count: 3000))""#
    /// How far the publisher may run ahead of the normal subscriber (in messages, well
    /// under the limit): on a loaded machine a healthy reader may stall for a moment, and
    /// must not be mistaken for a slow consumer.
    static let window = 8
    /// Enough to fill a stalled peer's socket buffers several times over.
    static let maxMessages = 20_000

    /// A raw subscriber to `topic` with a small receive buffer, that then stops reading.
    func stalledSubscriber(_ broker: TestBroker, topic: String) async throws -> RawPeer {
        let peer = try await RawPeer.upgraded(port: broker.port, token: try broker.token().token, receiveBuffer: 4096)
        try await peer.send(text: #"{"op":"sub","topic":"\#(topic)","id":"slow"}"#)
        let answer = try await peer.readFrame()
        let epoch = broker.broker.replayLog?.epoch ?? ""
        #expect(answer.text == #"{"op":"subscribed","id":"slow","topic":"\#(topic)","epoch":"\#(epoch)"}"#)
        try await peer.stopReading()
        return peer
    }

    /// A normal subscriber that collects the seqs it receives; the waiter fires at `upTo`.
    final class Tracker: Sendable {
        let seqs = NIOLockedValueBox<[Int]>([])
        let target = NIOLockedValueBox<(Int, Waiter<Void>)?>(nil)

        func add(_ seq: Int) {
            let count = seqs.withLockedValue { $0.append(seq); return $0.count }
            if let (upTo, waiter) = target.withLockedValue({ $0 }), count >= upTo { waiter.fulfill(()) }
        }

        func wait(for count: Int) async throws {
            let waiter = Waiter<Void>("\(count) messages at the normal subscriber")
            target.withLockedValue { $0 = (count, waiter) }
            if seqs.withLockedValue({ $0.count }) >= count { waiter.fulfill(()) }
            try await waiter.value(timeout: .seconds(30))
        }
    }

    func normalSubscriber(_ broker: TestBroker, topic: String) async throws -> (Client, Tracker) {
        let client = try await broker.client()
        try await client.subscribe(topic)
        let tracker = Tracker()
        try await client.onMessage { message in
            tracker.add((try? JSON(message.text).int("seq")) ?? -1)
        }
        return (client, tracker)
    }

    @Test func slowConsumerIsClosedWith1013() async throws {
        try await TestBroker.with({ $0.maxQueuedBytes = Self.limit }) { broker in
            let slow = try await stalledSubscriber(broker, topic: "feed")
            let (normal, tracker) = try await normalSubscriber(broker, topic: "feed")
            let publisher = try await broker.client(subscribe: [], publish: ["feed"])
            let closing = Task {
                try await broker.logs.waitFor("the broker to close the slow consumer", timeout: .seconds(30)) {
                    $0.message == "closing connection" && $0.metadata["code"] == "1013"
                }
            }
            // Publish (each acked) until the broker gives up on the slow consumer, then a few more.
            var published = 0
            var after = 0
            while published < Self.maxMessages, after < 20 {
                try await tracker.wait(for: published - Self.window)
                published = try await publisher.publish("feed", Self.data)
                if broker.logs.all.contains(where: { $0.message == "closing connection" }) { after += 1 }
            }
            let entry = try await closing.value
            #expect(entry.metadata["principal"]?.hasPrefix("token:") == true)
            // The normal subscriber got every message, in order.
            try await tracker.wait(for: published)
            #expect(tracker.seqs.withLockedValue { $0 } == Array(1...published))
            // The slow one: what it was sent is contiguous from 1, then the close frame with 1013.
            try await slow.resumeReading()
            var seqs: [Int] = []
            let close = try await slow.readUntilClose(timeout: .seconds(20)) { frame in
                seqs.append((try? JSON(frame.text).int("seq")) ?? -1)
            }
            #expect(close.closeCode == 1013, "\(close)")
            #expect(!seqs.isEmpty && seqs == Array(1...seqs.count), "\(seqs.prefix(3))…\(seqs.suffix(3))")
            #expect(seqs.count < published)
            let metrics = try await Self.metrics(broker)
            #expect(metrics["switchboard_slow_consumer_closes_total"] == 1)
            #expect(metrics["switchboard_slow_consumer_dropped_messages_total"] == 0)
            try await slow.send(clientFrame(opcode: 0x8, [0x03, 0xE8]))
            try await slow.waitForEOF()
            await normal.close()
            await publisher.close()
        }
    }

    /// A publisher that never reads its acks is closed with 1013 once its backlog reaches the
    /// socket's limit (2 × `maxQueuedBytes`), as a slow consumer is: every ack it was sent
    /// arrives, in order, before the close; none is dropped on the way.
    @Test func publisherThatStopsReadingItsAcksIsClosedWith1013() async throws {
        try await TestBroker.with({ $0.maxQueuedBytes = 1024 }) { broker in
            let publisher = try await RawPeer.upgraded(
                port: broker.port, token: try broker.token().token, receiveBuffer: 4096)
            try await publisher.stopReading()
            // Long ids make long acks: the kernel's buffers and then the broker's fill sooner.
            let pad = String(repeating: "x", count: 100)
            func id(_ n: Int) -> String { "\(pad)-\(n)" }
            var published = 0
            while published < 20_000,
                !broker.logs.all.contains(where: { $0.message == "closing connection" })
            {
                published += 1
                try await publisher.send(text: #"{"op":"pub","topic":"feed","data":1,"id":"\#(id(published))"}"#)
            }
            let entry = try await broker.logs.waitFor("the broker to close the publisher", timeout: .seconds(30)) {
                $0.message == "closing connection"
            }
            #expect(entry.metadata["code"] == "1013", "\(entry.metadata)")

            try await publisher.resumeReading()
            var acked: [String] = []
            let close = try await publisher.readUntilClose(timeout: .seconds(20)) { frame in
                let json = try? JSON(frame.text)
                #expect(json?["op"] == "ack", "\(frame.text)")
                acked.append(json?["id"] ?? "?")
            }
            #expect(close.closeCode == 1013, "\(close)")
            #expect(!acked.isEmpty && acked == (1...acked.count).map(id), "acks lost: \(acked.count) of \(published)")
            #expect(acked.count < published)
            let metrics = try await Self.metrics(broker)
            #expect(metrics["switchboard_slow_consumer_closes_total"] == 1)
            try await publisher.send(clientFrame(opcode: 0x8, [0x03, 0xE8]))
            try await publisher.waitForEOF()
        }
    }

    /// A broker with the `drop` policy, a stalled subscriber and a normal one on `feed.*`,
    /// and a publisher.
    func withDroppingBroker(
        limit: Int = Self.limit, _ body: (TestBroker, RawPeer, Client, Tracker, Client) async throws -> Void
    ) async throws {
        try await TestBroker.with({
            $0.maxQueuedBytes = limit
            $0.slowConsumer = .drop
        }) { broker in
            let slow = try await stalledSubscriber(broker, topic: "feed.*")
            let (normal, tracker) = try await normalSubscriber(broker, topic: "feed.*")
            let publisher = try await broker.client(subscribe: [], publish: ["feed.*"])
            try await body(broker, slow, normal, tracker, publisher)
        }
    }

    @Test func slowConsumerWithDropGetsGapNotice() async throws {
        try await withDroppingBroker { broker, slow, normal, tracker, publisher in
            var published = 0
            var after = 0
            while published < Self.maxMessages, after < 20 {
                try await tracker.wait(for: published - Self.window)
                published = try await publisher.publish("feed.a", Self.data)
                if Self.isDropping(broker) { after += 1 }
            }
            #expect(after == 20, "the broker never dropped messages for the stalled subscriber")
            try await tracker.wait(for: published)
            #expect(tracker.seqs.withLockedValue { $0 } == Array(1...published))

            // The slow one catches up; the next messages after that bring the gap notice
            // first, then they follow it with no further gap.
            try await slow.resumeReading()
            let publishing = Task {
                // Keeps messages coming until the test has seen the gap (bounded).
                for _ in 0..<2000 {
                    if Task.isCancelled { return }
                    _ = try await publisher.publish("feed.a", "1")
                }
            }
            defer { publishing.cancel() }
            var seqs: [Int] = []
            var gap: JSON?
            while gap == nil {
                let frame = try await slow.readFrame(timeout: .seconds(20))
                let json = try JSON(frame.text)
                if json["op"] == "gap" { gap = json } else { seqs.append(json.int("seq") ?? -1) }
            }
            let notice = try #require(gap)
            #expect(notice["topic"] == "feed.a")
            #expect(!seqs.isEmpty && seqs == Array(1...seqs.count))
            #expect(notice.int("from") == seqs.count + 1, "\(notice)")
            let to = try #require(notice.int("to"))
            #expect(to >= seqs.count + 1)
            let next = try JSON(try await slow.readFrame().text)
            #expect(next.int("seq") == to + 1, "after the gap: \(next)")
            publishing.cancel()
            _ = try? await publishing.value
            // The slow subscriber was not closed.
            #expect(!broker.logs.all.contains { $0.message == "closing connection" })
            slow.close()
            await normal.close()
            await publisher.close()
        }
    }

    @Test func dropGapNoticeComesWhenTheSocketDrainsWithoutAnotherMessage() async throws {
        try await withDroppingBroker { broker, slow, normal, tracker, publisher in
            var published = 0
            while published < Self.maxMessages,
                !Self.isDropping(broker)
            {
                try await tracker.wait(for: published - Self.window)
                published = try await publisher.publish("feed.a", Self.data)
            }
            // A few more, all dropped; then nothing more is published.
            for _ in 0..<5 { published = try await publisher.publish("feed.a", Self.data) }
            try await tracker.wait(for: published)

            try await slow.resumeReading()
            var seqs: [Int] = []
            var gap: JSON?
            while gap == nil {
                let json = try JSON(try await slow.readFrame(timeout: .seconds(20)).text)
                if json["op"] == "gap" { gap = json } else { seqs.append(json.int("seq") ?? -1) }
            }
            let notice = try #require(gap)
            #expect(seqs == Array(1...seqs.count))
            #expect(notice.int("from") == seqs.count + 1 && notice.int("to") == published, "\(notice)")
            // Every message the stalled subscriber missed is counted once, and nobody was closed.
            let metrics = try await Self.metrics(broker)
            #expect(metrics["switchboard_slow_consumer_dropped_messages_total"] == Double(published - seqs.count))
            #expect(metrics["switchboard_slow_consumer_closes_total"] == 0)
            #expect(metrics["switchboard_gaps_sent_total"] == 1)
            slow.close()
            await normal.close()
            await publisher.close()
        }
    }

    /// The broker's `/metrics`, by series.
    static func metrics(_ broker: TestBroker) async throws -> [String: Double] {
        MetricsTests.parse(try await broker.http("GET", "/metrics").body)
    }

    /// Whether the broker has started dropping messages for a slow consumer.
    static func isDropping(_ broker: TestBroker) -> Bool {
        broker.logs.all.contains { $0.message == "slow consumer: dropping messages" }
    }

    /// Lets a stalled subscriber read again and reads until everything up to `published` is
    /// accounted for (the gap notice comes when its socket drains): every seq in order, as a
    /// message or in a gap notice, and at least one gap.
    func expectAccountedForWithGaps(
        _ slow: RawPeer, upTo published: Int, sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        try await slow.resumeReading()
        let account = Account()
        for _ in 0...published where account.last < published {
            account.add(try await slow.readFrame(timeout: .seconds(20)).text)
        }
        #expect(account.last == published, sourceLocation: sourceLocation)
        #expect(account.breaks.isEmpty, "\(account.breaks)", sourceLocation: sourceLocation)
        #expect(account.gaps > 0, "nothing was dropped", sourceLocation: sourceLocation)
    }

    /// A limit under the channel's write watermark (64 kB), where a socket that is still
    /// writable can hold more than the limit: the stalled subscriber's messages are dropped
    /// with a gap notice, never lost silently.
    @Test func limitUnderTheWriteWatermarkStillReportsWhatIsDropped() async throws {
        try await withDroppingBroker(limit: 8 * 1024) { broker, slow, normal, tracker, publisher in
            var published = 0
            while published < Self.maxMessages, !Self.isDropping(broker) {
                try await tracker.wait(for: published - Self.window)
                published = try await publisher.publish("feed.a", Self.data)
            }
            #expect(Self.isDropping(broker), "the broker never dropped messages for the stalled subscriber")
            for _ in 0..<5 { published = try await publisher.publish("feed.a", Self.data) }
            try await tracker.wait(for: published)
            #expect(tracker.seqs.withLockedValue { $0 } == Array(1...published))

            try await expectAccountedForWithGaps(slow, upTo: published)
            slow.close()
            await normal.close()
            await publisher.close()
        }
    }

    /// What one subscriber was told, in order: messages and gap notices.
    final class Account: Sendable {
        enum Event: Sendable { case message(Int), gap(Int, Int) }
        let events = NIOLockedValueBox<[Event]>([])
        let target = NIOLockedValueBox<(Int, Waiter<Void>)?>(nil)

        func add(_ text: String) {
            guard let json = try? JSON(text) else { return }
            let event: Event = json["op"] == "gap"
                ? .gap(json.int("from") ?? -1, json.int("to") ?? -1) : .message(json.int("seq") ?? -1)
            let last = events.withLockedValue { $0.append(event); return lastSeq($0) }
            if let (upTo, waiter) = target.withLockedValue({ $0 }), last >= upTo { waiter.fulfill(()) }
        }

        func lastSeq(_ events: [Event]) -> Int {
            switch events.last {
            case .message(let seq): seq
            case .gap(_, let to): to
            case nil: 0
            }
        }

        var last: Int { events.withLockedValue { lastSeq($0) } }

        var gaps: Int {
            events.withLockedValue { $0.filter { if case .gap = $0 { true } else { false } }.count }
        }

        func wait(upTo seq: Int) async throws {
            let waiter = Waiter<Void>("seq \(seq) to be accounted for")
            target.withLockedValue { $0 = (seq, waiter) }
            if last >= seq { waiter.fulfill(()) }
            try await waiter.value()
        }

        /// Problems: a message or gap that does not continue exactly where the last one ended.
        var breaks: [String] {
            var next = 1
            var problems: [String] = []
            for event in events.withLockedValue({ $0 }) {
                switch event {
                case .message(let seq):
                    if seq != next { problems.append("message \(seq) where \(next) was due") }
                    next = seq + 1
                case .gap(let from, let to):
                    if from != next || to < from { problems.append("gap \(from)…\(to) where \(next) was due") }
                    next = to + 1
                }
            }
            return problems
        }
    }

    /// `count` publishes of `data` on `topic` as one write (so they arrive in one read, or a
    /// few), only the last asking for an ack.
    static func burst(topic: String, count: Int, data: String) -> [UInt8] {
        var bytes: [UInt8] = []
        for i in 1...count {
            let id = i == count ? #","id":"last""# : ""
            bytes += clientFrame(opcode: 0x1, Array(#"{"op":"pub","topic":"\#(topic)","data":\#(data)\#(id)}"#.utf8))
        }
        return bytes
    }

    /// Bursts of small messages to a subscriber that has stopped reading, each burst arriving
    /// in one read (so fanned out in one batch): past the limit messages are dropped in the
    /// middle of a batch, and whatever the subscriber does not get, it is told about.
    @Test func burstPastTheLimitIsNeverLostSilently() async throws {
        try await TestBroker.with({
            $0.maxQueuedBytes = Self.limit
            $0.slowConsumer = .drop
        }) { broker in
            let slow = try await stalledSubscriber(broker, topic: "burst")
            let publisher = try await RawPeer.upgraded(port: broker.port, token: try broker.token().token)
            // Bursts of 100 publishes of 3 kB until the broker drops (at most 50: 15 MB).
            var published = 0
            for _ in 0..<50 where !Self.isDropping(broker) {
                try await publisher.send(Self.burst(topic: "burst", count: 100, data: Self.data))
                let ack = try JSON(try await publisher.readFrame().text)
                #expect(ack["op"] == "ack" && ack.int("seq") == published + 100, "\(ack)")
                published += 100
            }
            #expect(Self.isDropping(broker), "the broker never dropped messages for the stalled subscriber")

            try await expectAccountedForWithGaps(slow, upTo: published)
            #expect(!broker.logs.all.contains { $0.message == "closing connection" })
            publisher.close()
            slow.close()
        }
    }

    /// The issue's case: a burst larger than the limit (100 publishes of 1 kB in flight,
    /// limit 64 kB) fanned out in one batch to a subscriber that reads as fast as it can.
    /// What the socket takes at the flush is no backlog: nothing is dropped and the
    /// subscriber is not closed, whatever the policy.
    @Test(arguments: [BrokerConfiguration.SlowConsumerPolicy.close, .drop])
    func aReaderThatKeepsUpIsNeverASlowConsumer(policy: BrokerConfiguration.SlowConsumerPolicy) async throws {
        // The broker on one loop, so that a burst published in one task on it is fanned out
        // in one batch.
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        do {
            try await TestBroker.with({
                $0.maxQueuedBytes = Self.limit
                $0.slowConsumer = policy
            }, group: group) { broker in
                let subscriber = try await broker.client()
                try await subscriber.subscribe("burst")
                let account = Account()
                try await subscriber.onMessage { account.add($0.text) }
                let data = #""\#(String(repeating: "x", count: 1000))""#
                let topic = try Topic("burst")
                let principal = Principal(kind: .anonymous, permissions: Permissions(publish: [TopicPattern(topic)]))
                // A new topic's last seq is read from the store before it is published to (the
                // publish is deferred, not carried out): bring it into memory first, so that
                // the burst below is sequenced in one task.
                let loaded = Waiter<Void>("the topic's last seq read from the store")
                try await group.next().submit {
                    let probe = Publish(id: nil, topic: topic, payload: ByteBuffer(string: data), format: .json)
                    guard case .deferred = broker.broker.publish(probe, from: principal, loaded: { _ in loaded.fulfill(()) }) else {
                        loaded.fail(TopicNotDeferred())
                        return
                    }
                }.get()
                try await loaded.value()
                try await group.next().submit {
                    for _ in 1...100 {
                        let publish = Publish(id: nil, topic: topic, payload: ByteBuffer(string: data), format: .json)
                        _ = broker.broker.publish(publish, from: principal)
                    }
                }.get()
                try await account.wait(upTo: 100)

                // The same over the wire: 100 publishes in one write.
                let publisher = try await RawPeer.upgraded(port: broker.port, token: try broker.token().token)
                try await publisher.send(Self.burst(topic: "burst", count: 100, data: data))
                #expect(try await publisher.readFrame().text == #"{"op":"ack","id":"last","seq":200}"#)
                try await account.wait(upTo: 200)

                #expect(account.breaks.isEmpty, "\(account.breaks)")
                #expect(account.gaps == 0, "messages were dropped")
                let judged = broker.logs.all.filter {
                    $0.message == "closing connection" || $0.message == "slow consumer: dropping messages"
                }
                #expect(judged.isEmpty, "\(judged.map(\.metadata))")
                publisher.close()
                await subscriber.close()
            }
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        try await group.shutdownGracefully()
    }
}

private struct TopicNotDeferred: Error {}
