import AsyncTestSupport
import BrokerProcess
import Foundation
import NIOCore
import SwitchboardClient
import Testing

/// Publish and subscribe through the SDK against a real `switchboard serve`: topics and
/// patterns, text, JSON, Codable and binary payloads, acks, and a typed error for each refusal.
@Suite struct ClientMessagingTests {
    struct Chat: Codable, Equatable {
        var user: String
        var text: String
    }

    @Test func topicsPatternsPayloadsAndAcks() async throws {
        try await withBroker { broker in
            let client = try SwitchboardClient(url: broker.url, options: testOptions())
            try await withTimeout("the exchange") {
                let exact = try await client.subscribe("t.a")
                let pattern = try await client.subscribe("t.*")
                #expect(try await client.publish("t.a", text: "hi \"there\"\n") == 1)
                #expect(try await client.publish("t.b", json: Chat(user: "ann", text: "yo")) == 1)
                #expect(try await client.publish("t.a", bytes: [0, 1, 2, 255]) == 2)
                #expect(try await client.publish("t.a", rawJSON: #"{"n": [1, 2]}"#) == 3)
                // Runs of backslashes before quotes, and one that ends the string.
                let escapes = #"a\"b"c\\"d"#
                #expect(try await client.publish("t.a", text: escapes) == 4)
                client.publishWithoutAck("t.b", text: "fire")

                var exactEvents = exact.makeAsyncIterator()
                var message = try await exactEvents.nextMessage()
                #expect(message.topic == "t.a" && message.seq == 1 && message.text == "hi \"there\"\n")
                #expect(message.kind == .json && message.json == #""hi \"there\"\n""#)
                #expect(abs(message.time.timeIntervalSinceNow) < 60)
                message = try await exactEvents.nextMessage()
                #expect(message.seq == 2 && message.kind == .binary && message.bytes == [0, 1, 2, 255] && message.text == nil)
                message = try await exactEvents.nextMessage()
                #expect(message.seq == 3 && message.json == #"{"n": [1, 2]}"#)
                message = try await exactEvents.nextMessage()
                #expect(message.seq == 4 && message.text == escapes)

                // The pattern's subscription gets both topics, each in order; the broker sends
                // a message once per connection, the client hands it to every match.
                var patternEvents = pattern.makeAsyncIterator()
                var seen: [String] = []
                for _ in 0..<6 {
                    let message = try await patternEvents.nextMessage()
                    seen.append("\(message.topic)#\(message.seq)")
                    if message.topic == "t.b", message.seq == 1 {
                        #expect(try message.decode(Chat.self) == Chat(user: "ann", text: "yo"))
                    }
                }
                #expect(seen.filter { $0.hasPrefix("t.a") } == ["t.a#1", "t.a#2", "t.a#3", "t.a#4"])
                #expect(seen.filter { $0.hasPrefix("t.b") } == ["t.b#1", "t.b#2"])
                #expect(exact.positions.seqs == ["t.a": 4])
                #expect(pattern.positions.seqs == ["t.a": 4, "t.b": 2])
            }
            await client.close()
        }
    }

    /// `.beginning` on a pattern replays every retained topic it matches (topic by topic);
    /// `.positions` continues after saved positions; `.seq` after N of one topic.
    @Test func startPositions() async throws {
        try await withBroker(retain: "t.>") { broker in
            let client = try SwitchboardClient(url: broker.url, options: testOptions())
            try await withTimeout("the replays") {
                for topic in ["t.x", "t.y", "t.x"] { try await client.publish(topic, text: topic) }
                var all = try await client.subscribe("t.*", from: .beginning).makeAsyncIterator()
                var seen: [String] = []
                for _ in 0..<3 {
                    let message = try await all.nextMessage()
                    seen.append("\(message.topic)#\(message.seq)")
                }
                #expect(seen.sorted() == ["t.x#1", "t.x#2", "t.y#1"])
                var after = try await client.subscribe("t.*", from: .positions(["t.x": 1, "t.y": 1])).makeAsyncIterator()
                var one = try await client.subscribe("t.x", from: .seq(1)).makeAsyncIterator()
                let next = try await after.nextMessage()
                #expect(next.topic == "t.x" && next.seq == 2)
                #expect(try await one.nextMessage().seq == 2)
            }
            await client.close()
        }
    }

    /// `.time(date)` starts at the first message published at or after `date`, on a topic
    /// and on a pattern; then live.
    @Test func startAtATime() async throws {
        try await withBroker(retain: "t.>") { broker in
            let client = try SwitchboardClient(url: broker.url, options: testOptions())
            try await withTimeout("the timed replays") {
                try await client.publish("t.early", text: "1")
                var all = try await client.subscribe("t.early", from: .beginning).makeAsyncIterator()
                let first = try await all.nextMessage()
                // The broker stamps milliseconds: later messages need a later millisecond.
                while Date().timeIntervalSince1970 * 1000 < Double(first.timeMilliseconds + 2) {
                    try await Task.sleep(for: .milliseconds(1))
                }
                try await client.publish("t.early", text: "2")
                try await client.publish("t.late", text: "3")
                let second = try await all.nextMessage()
                #expect(second.seq == 2 && second.timeMilliseconds > first.timeMilliseconds)

                var fromSecond = try await client.subscribe("t.early", from: .time(second.time)).makeAsyncIterator()
                #expect(try await fromSecond.nextMessage().seq == 2)
                var pattern = try await client.subscribe("t.*", from: .time(second.time)).makeAsyncIterator()
                var seen: [String] = []
                for _ in 0..<2 {
                    let message = try await pattern.nextMessage()
                    seen.append("\(message.topic)#\(message.seq)")
                }
                #expect(seen.sorted() == ["t.early#2", "t.late#1"])
                var fromFirst = try await client.subscribe("t.early", from: .time(first.time)).makeAsyncIterator()
                #expect(try await fromFirst.nextMessage().seq == 1)
                try await client.publish("t.early", text: "4")
                #expect(try await fromSecond.nextMessage().seq == 3, "live after the replay")
            }
            await client.close()
        }
    }

    /// Many acked publishes in flight at once on one connection: each call gets the seq of
    /// its own message (checked against what a subscriber receives), none is lost or doubled.
    @Test func pipelinedPublishesEachGetTheirOwnAck() async throws {
        try await withBroker { broker in
            let client = try SwitchboardClient(url: broker.url, options: testOptions())
            let subscriber = try SwitchboardClient(url: broker.url, options: testOptions())
            let count = 500
            try await withTimeout("the pipelined publishes") {
                var events = try await subscriber.subscribe("t.pipe").makeAsyncIterator()
                _ = try await waitForState(client, "connected") { $0 == .connected }
                let acks = try await withThrowingTaskGroup(of: (Int, UInt64).self) { group in
                    for n in 0..<count {
                        group.addTask { (n, try await client.publish("t.pipe", rawJSON: "\(n)")) }
                    }
                    return try await group.reduce(into: [Int: UInt64]()) { $0[$1.0] = $1.1 }
                }
                #expect(Set(acks.values) == Set(1...UInt64(count)))
                var received: [UInt64: String] = [:]
                for _ in 0..<count {
                    let message = try await events.nextMessage()
                    received[message.seq] = message.json
                }
                let mismatched = acks.filter { n, seq in received[seq] != "\(n)" }
                #expect(mismatched.isEmpty, "calls whose seq is another call's message: \(mismatched.prefix(5))")
            }
            await client.close()
            await subscriber.close()
        }
    }

    @Test func everyRefusalIsATypedError() async throws {
        try await withBroker(arguments: ["--max-payload", "64"]) { broker in
            let limited = try await broker.createToken(subscribe: ["a.>"], publish: ["a.x"])
            let client = try SwitchboardClient(url: broker.url, token: .static(limited.token), options: testOptions())
            try await withTimeout("the refusals") {
                func expectRefusal(_ code: BrokerErrorCode, _ body: () async throws -> Void) async {
                    do {
                        try await body()
                        Issue.record("expected \(code)")
                    } catch SwitchboardClientError.broker(let got, let message) {
                        #expect(got == code, "\(message)")
                    } catch {
                        Issue.record("expected \(code), got \(error)")
                    }
                }
                await expectRefusal(.forbidden) { _ = try await client.subscribe("b.>") }
                await expectRefusal(.forbidden) { try await client.publish("a.y", text: "no") }
                await expectRefusal(.badTopic) { try await client.publish("a..x", text: "no") }
                await expectRefusal(.badTopic) { _ = try await client.subscribe("a.b*") }
                await expectRefusal(.tooLarge) { try await client.publish("a.x", text: String(repeating: "x", count: 100)) }
                await expectRefusal(.tooLarge) { try await client.publish("a.x", bytes: [UInt8](repeating: 7, count: 100)) }
                await expectRefusal(.badJSON) { try await client.publish("a.x", rawJSON: "{nope") }
                // The connection survived every refusal.
                let seq = try await client.publish("a.x", text: "fine")
                #expect(seq == 1)
            }
            await client.close()

            // Refused tokens end the client with the reason; nothing is retried.
            let unknown = try SwitchboardClient(
                url: broker.url, token: .static("sb_" + String(repeating: "A", count: 43)), options: testOptions())
            let state = try await waitForState(unknown, "closed") { if case .closed = $0 { true } else { false } }
            #expect(state == .closed(.unauthorized("unknown")))
            await #expect(throws: SwitchboardClientError.closed(.unauthorized("unknown"))) {
                try await unknown.publish("t.a", text: "x")
            }
            await unknown.close()
        }
    }

    /// `.last(N)` on a pattern: the last N retained messages of each topic, then live.
    @Test func lastNOnAPatternThenLive() async throws {
        try await withBroker(retain: "t.>") { broker in
            let client = try SwitchboardClient(url: broker.url, options: testOptions())
            try await withTimeout("the replay") {
                for n in 1...5 { _ = try await client.publish("t.a", rawJSON: "\(n)") }
                for n in 1...2 { _ = try await client.publish("t.b", rawJSON: "\(n)") }
                let subscription = try await client.subscribe("t.*", from: .last(2))
                var events = subscription.makeAsyncIterator()
                var got: [String] = []
                for _ in 0..<4 {
                    let message = try await events.nextMessage()
                    got.append("\(message.topic) \(message.seq)")
                }
                #expect(got == ["t.a 4", "t.a 5", "t.b 1", "t.b 2"])
                _ = try await client.publish("t.a", rawJSON: "6")
                #expect(try await events.nextMessage().seq == 6)
            }
            await client.close()
        }
    }
}
