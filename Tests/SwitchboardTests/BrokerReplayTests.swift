import AsyncTestSupport
import BrokerProcess
import CSQLite
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import Testing
import WebSocketCore
import WebSockets

@_spi(Fuzzing) @testable import Switchboard

/// The replay log wired into the broker, end to end over real sockets: acks after commit,
/// `since` / `since_time` resumes that continue live with no gap and no duplicate, gap
/// notices, restarts, a failing disk.
@Suite struct BrokerReplayTests {
    static func retaining(_ rules: String...) -> (inout BrokerConfiguration) -> Void {
        { configuration in
            configuration.replay.rules = rules.map { try! ReplayRule.parse($0).get() }
        }
    }

    /// `subscribed` names the database's epoch; a `since` given with another epoch counts in
    /// another history, so the topic replays from its start instead of after that seq.
    @Test func aSinceFromAnotherEpochReplaysFromTheStart() async throws {
        try await TestBroker.with(Self.retaining("chat.>")) { broker in
            let publisher = try await broker.client()
            for n in 1...3 { try await publisher.publish("chat.a", "\(n)") }
            let client = try await broker.client()
            let answer = try await client.request(#"{"op":"sub","topic":"chat.a","id":"1"}"#)
            let epoch = try #require(answer["epoch"])
            #expect(epoch == broker.broker.replayLog?.epoch && !epoch.isEmpty, "\(answer)")

            let same = try await broker.client()
            _ = try await same.request(#"{"op":"sub","topic":"chat.a","since":2,"epoch":"\#(epoch)"}"#)
            #expect(try await same.nextJSON().int("seq") == 3)
            try await same.expectNothingPending()

            let other = try await broker.client()
            let answered = try await other.request(#"{"op":"sub","topic":"chat.a","since":2,"epoch":"0"}"#)
            #expect(answered["epoch"] == epoch)
            for n in 1...3 { #expect(try await other.nextJSON().int("seq") == n) }

            let refused = try await other.request(#"{"op":"pub","topic":"chat.a","data":1,"epoch":"0","id":"p"}"#)
            #expect(refused["code"] == "bad_request", "\(refused)")
        }
    }

    /// `last: N` over a pattern: each matching topic's last N retained messages (all of them
    /// when it has fewer, with no gap for older ones), topic by topic, then live.
    @Test func lastNReplaysTheLastMessagesOfEachTopicThenGoesLive() async throws {
        try await TestBroker.with(Self.retaining("chat.>")) { broker in
            let publisher = try await broker.client()
            for n in 1...5 { try await publisher.publish("chat.a", "\(n)") }
            for n in 1...2 { try await publisher.publish("chat.b", "\(n)") }
            try await publisher.publish("other", "0")
            let client = try await broker.client()
            _ = try await client.request(#"{"op":"sub","topic":"chat.*","last":3}"#)
            var got: [String] = []
            for _ in 0..<5 {
                let message = try await client.nextJSON()
                got.append("\(message["topic"] ?? "?") \(message.int("seq") ?? -1)")
            }
            #expect(got == ["chat.a 3", "chat.a 4", "chat.a 5", "chat.b 1", "chat.b 2"])
            try await publisher.publish("chat.b", "3")
            #expect(try await client.nextJSON().int("seq") == 3)
            try await client.expectNothingPending()

            let both = try await client.request(#"{"op":"sub","topic":"chat.a","last":1,"since":2,"id":"x"}"#)
            #expect(both["code"] == "bad_request", "\(both)")
        }
    }

    @Test func ackComesOnlyAfterCommitAndSinceReplaysThenGoesLive() async throws {
        try await TestBroker.with(Self.retaining("chat.>")) { broker in
            let publisher = try await broker.client()
            for n in 1...50 {
                let seq = try await publisher.publish("chat.a", "\(n)")
                #expect(seq == n)
                // The ack means the message is on disk.
                #expect(broker.broker.replayLog!.statistics.committed >= UInt64(n))
            }
            let subscriber = try await broker.client()
            let subscribed = try await subscriber.request(#"{"op":"sub","topic":"chat.a","id":"r","since":20}"#)
            #expect(subscribed["op"] == "subscribed" && subscribed["id"] == "r", "\(subscribed)")
            for n in 21...50 {
                let message = try await subscriber.nextJSON()
                #expect(message["op"] == "msg" && message.int("seq") == n && message["data"] == "\(n)", "\(message)")
            }
            try await publisher.publish("chat.a", "51")
            let live = try await subscriber.nextJSON()
            #expect(live.int("seq") == 51, "\(live)")
            try await subscriber.expectNothingPending()
            let statistics = broker.broker.statistics
            #expect(statistics.published == 51 && statistics.replay?.status == .healthy)
        }
    }

    /// A broker's first life: `body` runs on a broker retaining `rules`, which then shuts down
    /// and leaves its files for a restart on the returned directory (the caller removes it).
    static func firstLife(_ rules: String, _ body: (TestBroker) async throws -> Void) async throws -> URL {
        let broker = try await TestBroker.start(retaining(rules))
        do {
            try await body(broker)
            try await broker.shutdown()
        } catch {
            try? await broker.stop()
            throw error
        }
        return broker.directory
    }

    @Test func sinceOlderThanWhatIsRetainedGetsAGapFirst() async throws {
        var options = ReplayLog.Options()
        options.pruneInterval = 0.02
        try await TestBroker.with(Self.retaining("chat.> count=10"), replayOptions: options) { broker in
            let publisher = try await broker.client()
            for n in 1...30 { try await publisher.publish("chat.a", "\(n)") }
            try await eventually("retention to prune 20 messages") {
                broker.broker.replayLog!.statistics.pruned >= 20
            }
            let subscriber = try await broker.client()
            _ = try await subscriber.request(#"{"op":"sub","topic":"chat.a","since":0}"#)
            let gap = try await subscriber.nextJSON()
            #expect(gap["op"] == "gap" && gap.int("from") == 1 && gap.int("to") == 20, "\(gap)")
            for n in 21...30 {
                #expect(try await subscriber.nextJSON().int("seq") == n)
            }
            try await subscriber.expectNothingPending()
        }
    }

    @Test func patternResumeByTopicMapAndByTime() async throws {
        try await TestBroker.with(Self.retaining("chat.>")) { broker in
            let publisher = try await broker.client()
            for n in 1...5 {
                if n == 4 {
                    // chat.b's seq 4 gets a later millisecond than its seq 3, so that a
                    // `since_time` of its time must skip 1…3.
                    try await Task.sleep(for: .milliseconds(5))
                }
                try await publisher.publish("chat.a", "\(n)")
                try await publisher.publish("chat.b", "\(n)")
            }
            let byMap = try await broker.client()
            _ = try await byMap.request(#"{"op":"sub","topic":"chat.*","since":{"chat.a":3}}"#)
            // Topic by topic, by name: chat.a after 3, then chat.b (absent: from its first).
            var got: [String] = []
            for _ in 0..<7 {
                let message = try await byMap.nextJSON()
                got.append("\(message["topic"] ?? "?"):\(message.int("seq") ?? -1)")
            }
            #expect(got == ["chat.a:4", "chat.a:5", "chat.b:1", "chat.b:2", "chat.b:3", "chat.b:4", "chat.b:5"])

            // since_time: from the first message at or after the time of chat.b's seq 4.
            let log = try #require(broker.broker.replayLog)
            let b = try Topic("chat.b")
            let time = try log.topicTime(b, sequence: 4)
            #expect(try log.topicTime(b, sequence: 3) < time)
            let byTime = try await broker.client()
            _ = try await byTime.request(#"{"op":"sub","topic":"chat.b","since_time":\#(time)}"#)
            for n in 4...5 {
                let message = try await byTime.nextJSON()
                let stored = try log.topicTime(b, sequence: UInt64(n))
                #expect(message.int("seq") == n && message.int("time").map(Int64.init) == stored, "\(message)")
            }
            try await byTime.expectNothingPending()
        }
    }

    @Test func topicsThatAreNotRetainedReportWhatWasMissed() async throws {
        try await TestBroker.with(Self.retaining("chat.>")) { broker in
            let publisher = try await broker.client()
            for n in 1...5 { try await publisher.publish("news.x", "\(n)") }
            let subscriber = try await broker.client()
            _ = try await subscriber.request(#"{"op":"sub","topic":"news.x","since":2}"#)
            let gap = try await subscriber.nextJSON()
            #expect(gap["op"] == "gap" && gap.int("from") == 3 && gap.int("to") == 5, "\(gap)")
            try await publisher.publish("news.x", "6")
            #expect(try await subscriber.nextJSON().int("seq") == 6)
        }
    }

    @Test func withoutAReplayLogSinceReportsTheGap() async throws {
        try await TestBroker.with { broker in
            let publisher = try await broker.client()
            for n in 1...5 { try await publisher.publish("chat.a", "\(n)") }
            let subscriber = try await broker.client()
            _ = try await subscriber.request(#"{"op":"sub","topic":"chat.a","since":1}"#)
            let gap = try await subscriber.nextJSON()
            #expect(gap["op"] == "gap" && gap.int("from") == 2 && gap.int("to") == 5, "\(gap)")
            let caughtUp = try await broker.client()
            _ = try await caughtUp.request(#"{"op":"sub","topic":"chat.a","since":5}"#)
            try await caughtUp.expectNothingPending()
        }
    }

    @Test func aRestartContinuesEveryTopicsSequenceAndKeepsTheLog() async throws {
        let directory = try await Self.firstLife("chat.>") { first in
            let publisher = try await first.client()
            for n in 1...10 { try await publisher.publish("chat.a", "\(n)") }
            for n in 1...5 { try await publisher.publish("news.x", "\(n)") }
            await publisher.close()
        }
        defer { try? FileManager.default.removeItem(at: directory) }
        try await TestBroker.with(Self.retaining("chat.>"), directory: directory) { second in
            let publisher = try await second.client()
            #expect(try await publisher.publish("chat.a", "11") == 11)
            #expect(try await publisher.publish("news.x", "6") == 6)
            let subscriber = try await second.client()
            _ = try await subscriber.request(#"{"op":"sub","topic":"chat.a","since":0}"#)
            for n in 1...11 {
                #expect(try await subscriber.nextJSON().int("seq") == n)
            }
        }
    }

    /// A clock that steps back across a restart (the first life's an hour ahead, as before an
    /// NTP correction): publish times still never decrease, for a retained topic (in memory
    /// from the start) and for one that is not (its last seq read back on its first publish).
    @Test func publishTimesNeverDecreaseAcrossARestartWhoseClockStepsBack() async throws {
        let ahead = Int64(Date().timeIntervalSince1970 * 1000) + 3_600_000
        let first = try await TestBroker.start(Self.retaining("chat.>"), clock: { ahead })
        let directory = first.directory
        defer { try? FileManager.default.removeItem(at: directory) }
        let publisher = try await first.client()
        try await publisher.publish("chat.a", "1")
        try await publisher.publish("news.x", "1")
        await publisher.close()
        try await first.shutdown()

        try await TestBroker.with(Self.retaining("chat.>"), directory: directory) { second in
            let subscriber = try await second.client()
            try await subscriber.subscribe(">")
            let publisher = try await second.client()
            #expect(try await publisher.publish("chat.a", "2") == 2)
            #expect(try await publisher.publish("news.x", "2") == 2)
            for topic in ["chat.a", "news.x"] {
                let message = try await subscriber.nextJSON()
                #expect(message["topic"] == topic && message.int("seq") == 2, "\(message)")
                #expect(Int64(message.int("time") ?? 0) >= ahead, "\(message) is earlier than \(ahead)")
            }
        }
    }

    /// The issue's case: rules tightened across a restart apply to the very first resume,
    /// with no background pass run yet (the interval is an hour here).
    @Test func retentionByCountHoldsRightAfterARestart() async throws {
        let directory = try await Self.firstLife("chat.>") { first in
            let publisher = try await first.client()
            for n in 1...300 { try await publisher.send(#"{"op":"pub","topic":"chat.a","data":\#(n)}"#) }
            #expect(try await publisher.publish("chat.a", "\"last\"") == 301)
            await publisher.close()
        }
        var options = ReplayLog.Options()
        options.pruneInterval = 3600
        try await TestBroker.with(Self.retaining("chat.> count=100"), directory: directory, replayOptions: options) { second in
            let subscriber = try await second.client()
            _ = try await subscriber.request(#"{"op":"sub","topic":"chat.a","since":0}"#)
            let gap = try await subscriber.nextJSON()
            #expect(gap["op"] == "gap" && gap.int("from") == 1 && gap.int("to") == 201, "\(gap)")
            guard gap["op"] == "gap" else { throw TestFailure("expected the gap first, got \(gap)") }
            var seqs: [Int] = []
            for _ in 202...301 { seqs.append(try await subscriber.nextJSON().int("seq") ?? -1) }
            #expect(seqs == Array(202...301))
            try await subscriber.expectNothingPending()
        }
    }

    /// A retained message reaches subscribers only once committed: what fails to be written
    /// is answered `unavailable` and delivered to nobody (live subscribers see the seq jump,
    /// a resume reports the hole as a gap).
    @Test func aFailingDiskAcksUnavailableDeliversOnlyWhatIsCommittedAndRecovers() async throws {
        try await TestBroker.with(Self.retaining("chat.>")) { broker in
            let log = broker.broker.replayLog!
            let publisher = try await broker.client()
            let subscriber = try await broker.client()
            try await subscriber.subscribe("chat.a")
            try await publisher.publish("chat.a", "1")
            #expect(try await subscriber.nextJSON().int("seq") == 1)

            // No page may be added any more: the first message that needs one fails.
            log.onWriter { db in sqlite3_exec(db, "PRAGMA max_page_count = 1", nil, nil, nil) }
            let filler = "\"" + String(repeating: "x", count: 1500) + "\""
            var seq = 1
            var refusedSeq: Int?
            while refusedSeq == nil, seq < 200 {
                seq += 1
                let answer = try await publisher.request(#"{"op":"pub","topic":"chat.a","data":\#(filler),"id":"p"}"#)
                if answer["op"] == "error" {
                    #expect(answer["code"] == "unavailable" && answer["id"] == "p", "\(answer)")
                    refusedSeq = seq
                } else {
                    #expect(answer["op"] == "ack" && answer.int("seq") == seq, "\(answer)")
                    #expect(try await subscriber.nextJSON().int("seq") == seq)
                }
            }
            let firstRefused = try #require(refusedSeq)
            guard case .degraded = broker.broker.statistics.replay?.status else {
                Issue.record("status is \(String(describing: broker.broker.statistics.replay?.status))")
                return
            }
            let again = try await publisher.request(#"{"op":"pub","topic":"chat.a","data":\#(filler),"id":"p"}"#)
            #expect(again["code"] == "unavailable", "\(again)")
            #expect(broker.logs.all.filter { $0.message.hasPrefix("replay log cannot write") }.count == 1)

            log.onWriter { db in sqlite3_exec(db, "PRAGMA max_page_count = 1073741823", nil, nil, nil) }
            #expect(try await publisher.publish("chat.a", "\"after\"") == firstRefused + 2)
            // The refused ones were never delivered: the next live message is the one after them.
            #expect(try await subscriber.nextJSON().int("seq") == firstRefused + 2)
            #expect(broker.broker.statistics.replay?.status == .healthy)
            _ = try await broker.logs.waitFor("the recovery line") { $0.message == "replay log is writing again" }

            // What failed to be written is a gap for a resuming client.
            let resuming = try await broker.client()
            _ = try await resuming.request(#"{"op":"sub","topic":"chat.a","since":0}"#)
            for n in 1..<firstRefused {
                #expect(try await resuming.nextJSON().int("seq") == n)
            }
            let gap = try await resuming.nextJSON()
            #expect(gap["op"] == "gap" && gap.int("from") == firstRefused && gap.int("to") == firstRefused + 1, "\(gap)")
            #expect(try await resuming.nextJSON().int("seq") == firstRefused + 2)
        }
    }

    /// The issue's test: a publisher at full speed while 10 clients come in with various
    /// `since` values; each must see exactly seqs N + 1 … last, in order.
    @Test func resumesUnderFullRatePublishingAreContiguous() async throws {
        try await TestBroker.with(Self.retaining("load.>")) { broker in
            let total = 20_000
            let publisher = try await broker.client()
            // Fulfilled as the publisher passes each joining point.
            let joins = (1...10).map { (at: $0 * total / 12, waiter: Waiter<Int>("publish \($0 * total / 12)")) }
            let publishing = Task {
                var next = 0
                for n in 1...total {
                    try await publisher.send(#"{"op":"pub","topic":"load.t","data":\#(n)}"#)
                    if next < joins.count, n == joins[next].at {
                        joins[next].waiter.fulfill(n)
                        next += 1
                    }
                }
            }
            var resumers: [(since: Int, client: Client)] = []
            for (index, join) in joins.enumerated() {
                // Join at spread-out moments, asking for positions behind, at, or near the head.
                let head = try await join.waiter.value()
                let since = [0, head / 2, max(head - 100, 0), head][index % 4]
                let client = try await broker.client()
                try await client.send(#"{"op":"sub","topic":"load.t","since":\#(since)}"#)
                resumers.append((since, client))
            }
            try await publishing.value
            let last = try await publisher.publish("load.t", "\"end\"")
            #expect(last == total + 1)
            for (since, client) in resumers {
                #expect(try await client.nextJSON()["op"] == "subscribed")
                var expected = since + 1
                while expected <= last {
                    let message = try await client.next()
                    guard let seq = Self.seq(of: message) else {
                        Issue.record("since \(since): not a msg: \(message.text)")
                        return
                    }
                    guard seq == expected else {
                        Issue.record("since \(since): expected seq \(expected), got \(seq)")
                        return
                    }
                    expected += 1
                }
                try await client.expectNothingPending()
            }
        }
    }

    /// `"seq":N` of a `msg` text frame, without parsing the rest.
    static func seq(of message: WebSocketMessage) -> Int? {
        let text = message.text
        guard text.hasPrefix(#"{"op":"msg""#), let range = text.range(of: #","seq":"#) else { return nil }
        return Int(text[range.upperBound...].prefix { $0.isNumber })
    }
}

extension ReplayLog {
    /// The publish time of a stored message (tests); throws when it is not stored.
    func topicTime(_ topic: Topic, sequence: UInt64) throws -> Int64 {
        guard let message = try read(topic: topic, after: sequence - 1, limit: 1).first, message.sequence == sequence else {
            throw TestFailure("\(topic.name) seq \(sequence) is not in the replay log")
        }
        return message.time
    }
}
