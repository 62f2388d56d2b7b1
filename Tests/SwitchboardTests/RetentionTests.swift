import AsyncTestSupport
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import Testing

@_spi(Fuzzing) @testable import Switchboard

/// Retention rules replaced at run time (`PUT /admin/v1/retention`) over real HTTP against a
/// running broker: stored, kept over a restart, and never a seq given twice while a topic
/// switches between retained and not retained.
@Suite struct RetentionTests {
    static func put(_ broker: TestBroker, _ admin: String, _ rules: [String]) async throws -> AdminResponse {
        let body = String(decoding: try JSONSerialization.data(withJSONObject: ["rules": rules]), as: UTF8.self)
        return try await broker.http("PUT", "/admin/v1/retention", token: admin, body: body)
    }

    @Test func rulesSetAtRunTimeAreStoredAndWinOverTheConfigurationAfterARestart() async throws {
        let directory = try await BrokerReplayTests.firstLife("other.>") { broker in
            let admin = try broker.adminToken()
            let before = try await broker.http("GET", "/admin/v1/retention", token: admin)
            #expect(before.json["source"] == "config" && before.body.contains("other.>"), "\(before)")
            let put = try await Self.put(broker, admin, ["chat.> count=3", "audit.>"])
            #expect(put.status == 200 && put.json["source"] == "store", "\(put)")
            #expect(put.body.contains(#""rules":["chat.> count=3","audit.>"]"#), "\(put)")
            let publisher = try await broker.client()
            for n in 1...5 { #expect(try await publisher.publish("chat.a", "\(n)") == n) }
        }
        defer { try? FileManager.default.removeItem(at: directory) }
        // The configuration still says other.>: the stored rules win.
        try await TestBroker.with(BrokerReplayTests.retaining("other.>"), directory: directory) { broker in
            let admin = try broker.adminToken()
            let after = try await broker.http("GET", "/admin/v1/retention", token: admin)
            #expect(after.json["source"] == "store" && after.body.contains(#""rules":["chat.> count=3","audit.>"]"#), "\(after)")
            // Pruned to count=3 at open; the seq continues.
            let history = try await broker.http("GET", "/admin/v1/topics/chat.a/history", token: admin)
            #expect(history.body.contains(#""seq":3"#) && history.body.contains(#""seq":5"#) && !history.body.contains(#""seq":2"#), "\(history)")
            let publisher = try await broker.client()
            #expect(try await publisher.publish("chat.a", "6") == 6)
        }
    }

    @Test func aBadRuleIs400NamingItAndChangesNothing() async throws {
        try await TestBroker.with(BrokerReplayTests.retaining("chat.>")) { broker in
            let admin = try broker.adminToken()
            for (rules, needle) in [(["chat.> count=2", "orders* age=1h"], "orders*"), (["chat.> ttl=3"], "ttl"),
                                    (["chat.> age=forever"], "age"), ([""], "empty")] {
                let refused = try await Self.put(broker, admin, rules)
                #expect(refused.status == 400 && refused.errorCode == "bad_request" && refused.body.contains(needle), "\(refused)")
            }
            for body in [#"{}"#, #"{"rules":"chat.>"}"#, "not json"] {
                let refused = try await broker.http("PUT", "/admin/v1/retention", token: admin, body: body)
                #expect(refused.status == 400, "\(body): \(refused)")
            }
            let unauthenticated = try await broker.http("PUT", "/admin/v1/retention", body: #"{"rules":[]}"#)
            #expect(unauthenticated.status == 401)
            let deleted = try await broker.http("DELETE", "/admin/v1/retention", token: admin)
            #expect(deleted.status == 405)
            let after = try await broker.http("GET", "/admin/v1/retention", token: admin)
            #expect(after.json["source"] == "config" && after.body.contains(#""rules":["chat.>"]"#), "\(after)")
        }
    }

    @Test func thePrunerAppliesNewRulesOnItsNextPass() async throws {
        var options = ReplayLog.Options()
        options.pruneInterval = 0.02
        try await TestBroker.with(BrokerReplayTests.retaining("chat.>"), replayOptions: options) { broker in
            let admin = try broker.adminToken()
            let publisher = try await broker.client()
            for n in 1...6 { _ = try await publisher.publish("chat.a", "\(n)") }
            #expect(try await Self.put(broker, admin, ["chat.> count=2"]).status == 200)
            let log = try #require(broker.broker.replayLog)
            try await eventually("the pruner to apply count=2") { log.statistics.pruned >= 4 }
            let history = try await broker.http("GET", "/admin/v1/topics/chat.a/history", token: admin)
            #expect(history.body.contains(#""seq":5"#) && !history.body.contains(#""seq":4"#), "\(history)")
        }
    }

    /// A topic evicted while not retained, then retained: its seq is read back, not restarted.
    @Test func aTopicEvictedWhileNotRetainedContinuesOnceRetained() async throws {
        try await TestBroker.with({ $0.maxTopics = 2 }) { broker in
            let admin = try broker.adminToken()
            let client = try await broker.client()
            for n in 1...3 { #expect(try await client.publish("a", "\(n)") == n) }
            #expect(try await client.publish("b", "1") == 1)
            try await broker.waitUntilSeqsAreStored()
            #expect(try await client.publish("c", "1") == 1)
            #expect(broker.broker.currentSequences(matching: try TopicPattern("a")).isEmpty, "a is still in memory")
            #expect(try await Self.put(broker, admin, ["a"]).status == 200)
            try await broker.waitUntilSeqsAreStored()
            #expect(try await client.publish("a", "4") == 4)
            let history = try await broker.http("GET", "/admin/v1/topics/a/history", token: admin)
            #expect(history.body.contains(#""seq":4"#), "\(history)")
            #expect(try await Self.put(broker, admin, []).status == 200)
            #expect(try await client.publish("a", "5") == 5)
        }
    }

    /// Publishers keep publishing while the rules switch a topic between retained and not,
    /// again and again: a subscriber sees every seq once, in order.
    @Test func switchingATopicInAndOutOfRetentionWhilePublishingNeverRepeatsASeq() async throws {
        try await TestBroker.with { broker in
            let admin = try broker.adminToken()
            let subscriber = try await broker.client()
            try await subscriber.subscribe("sw.a")
            let publishers = 3
            let each = 200
            let acked = NIOLockedValueBox<[Int]>([])
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<publishers {
                    let publisher = try await broker.client()
                    group.addTask {
                        for n in 1...each {
                            let seq = try await publisher.publish("sw.a", "\(n)")
                            acked.withLockedValue { $0.append(seq) }
                        }
                    }
                }
                group.addTask {
                    for round in 0..<40 {
                        let answer = try await Self.put(broker, admin, round % 2 == 0 ? ["sw.>"] : ["other.>"])
                        #expect(answer.status == 200, "\(answer)")
                        let seen = acked.withLockedValue { $0.count }
                        try await eventually("more publishes") { acked.withLockedValue { $0.count } >= min(seen + 5, publishers * each) }
                    }
                }
                try await group.waitForAll()
            }
            let total = publishers * each
            var seqs: [Int] = []
            while seqs.count < total { seqs.append(try await subscriber.nextJSON().int("seq") ?? -1) }
            let misplaced = seqs.enumerated().filter { $0.offset + 1 != $0.element }.map(\.element)
            #expect(Set(seqs).count == total && misplaced.isEmpty, "repeated or out of order: \(misplaced.prefix(10))")
            #expect(acked.withLockedValue { $0.sorted() } == Array(1...total))
            let history = try await broker.http("GET", "/admin/v1/topics/sw.a/history?limit=1000", token: admin)
            #expect(history.status == 200 && history.body.contains(#""seq""#), "nothing was retained: \(history)")
        }
    }

    /// A topic leaves retention while its last message waits for the commit: the next
    /// message, now live at once, waits for it, so that it does not overtake it.
    @Test func aTopicLeavingRetentionDeliversNothingAheadOfItsUncommittedMessages() async throws {
        try await TestBroker.with(BrokerReplayTests.retaining("sw.>")) { broker in
            let admin = try broker.adminToken()
            let log = try #require(broker.broker.replayLog)
            let subscriber = try await broker.client()
            try await subscriber.subscribe("sw.a")
            let publisher = try await broker.client()
            #expect(try await publisher.publish("sw.a", "1") == 1)
            #expect(try await subscriber.nextJSON().int("seq") == 1)

            // The writer holds message 2 uncommitted while the new rules are installed.
            let releaseFirst = try await BrokerCrashTests.holdWriter(of: log)
            try await publisher.send(#"{"op":"pub","topic":"sw.a","data":2}"#)
            try await eventually("message 2 to be queued") { log.statistics.appended == 2 }
            let put = Task { try await Self.put(broker, admin, ["other.>"]) }
            try await eventually("the rules to wait for the writer") { log.queuedWriterHooks == 1 }
            let second = Task { try await BrokerCrashTests.holdWriter(of: log) }
            try await eventually("the second hold to queue") { log.queuedWriterHooks == 2 }
            releaseFirst()
            let releaseSecond = try await second.value
            #expect(try await put.value.status == 200)
            #expect(!log.retains(try Topic("sw.a")))

            let principal = Principal(kind: .anonymous, permissions: Permissions(publish: [try TopicPattern("sw.a")]))
            let third = Publish(id: nil, topic: try Topic("sw.a"), payload: ByteBuffer(string: "3"), format: .json)
            let republished = Waiter<Void>("message 3 published after waiting")
            let outcome = broker.broker.publish(third, from: principal, loaded: { [broker] _ in
                if case .published(3) = broker.broker.publish(third, from: principal) { republished.fulfill(()) }
            })
            guard case .deferred = outcome else {
                releaseSecond()
                Issue.record("message 3 went out ahead of message 2: \(outcome)")
                return
            }
            releaseSecond()
            try await republished.value()
            #expect(try await subscriber.nextJSON().int("seq") == 2)
            #expect(try await subscriber.nextJSON().int("seq") == 3)
        }
    }

    /// The rules replaced during a run that then crashes: a topic they retain may not have
    /// been retained for part of that run (its seqs noted coalesced), so it moves on too.
    @Test func aCrashAfterTheRulesChangedMovesRetainedTopicsOnToo() async throws {
        let (crashed, seen) = try await TestBroker.with { broker in
            let admin = try broker.adminToken()
            let publisher = try await broker.client()
            for n in 1...3 { #expect(try await publisher.publish("sw.a", "\(n)") == n) }
            #expect(try await Self.put(broker, admin, ["sw.>"]).status == 200)
            #expect(try await publisher.publish("sw.a", "4") == 4)
            let release = try await BrokerCrashTests.holdWriter(of: broker.broker.replayLog!)
            defer { release() }
            return (try BrokerCrashTests.copyAsKilled(broker), 4)
        }
        defer { try? FileManager.default.removeItem(at: crashed) }
        try await TestBroker.with(directory: crashed) { broker in
            let publisher = try await broker.client()
            let next = try await publisher.publish("sw.a", "5")
            #expect(next > seen + ReplayConfiguration().queueLimit, "sw.a continued at \(next) only")
        }
    }
}
