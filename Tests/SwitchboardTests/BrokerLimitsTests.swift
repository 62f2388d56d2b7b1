import AsyncTestSupport
import CSQLite
import Foundation
import NIOCore
import Testing
import WebSockets

@_spi(Fuzzing) @testable import Switchboard

/// The broker bounded under abuse, over real sockets with a real store: the request rate,
/// connections per token, topics in memory (evicted and read back without a seq lost), and
/// revocation and expiry without a sweep over every connection.
@Suite(.serialized) struct BrokerLimitsTests {
    // MARK: Request rate

    @Test func requestsPastTheRateAreRefusedThenTheConnectionIsClosed() async throws {
        try await TestBroker.with({ $0.requestRate = 1; $0.requestBurst = 5 }) { broker in
            let client = try await broker.client()
            // The burst is admitted (answered `not_found`: nothing is subscribed).
            for n in 1...6 { try await client.send(#"{"op":"unsub","topic":"t","id":"\#(n)"}"#) }
            for n in 1...5 {
                let answer = try await client.nextJSON()
                #expect(answer["code"] == "not_found" && answer["id"] == "\(n)", "\(answer)")
            }
            let refused = try await client.nextJSON()
            #expect(refused["code"] == "rate_limited" && refused["id"] == "6", "\(refused)")
            // Sending on through the refusals: another burst's worth and the connection goes.
            for n in 7...20 { try? await client.send(#"{"op":"pub","topic":"t","data":\#(n),"id":"\#(n)"}"#) }
            let info = try await client.waitForClose()
            #expect(info.code == .policyViolation && info.reason.contains("rate"), "\(info)")
            var answers: [JSON] = []
            while client.inbox.count > 0 { answers.append(try await client.nextJSON()) }
            #expect(answers.allSatisfy { $0["code"] == "rate_limited" }, "\(answers)")
            #expect(broker.broker.statistics.published == 0, "a refused publish was carried out")
        }
    }

    @Test func theRateLimitRefillsAndForgivesAClientThatWaits() {
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        var limit = RequestRateLimit(rate: 10, burst: 3, now: start)
        #expect((0..<3).map { _ in limit.admit(at: start) } == [.admitted, .admitted, .admitted])
        #expect(limit.admit(at: start) == .refused)
        // 0.5 s later, 5 requests' worth has come back: the debt of one, then four admitted…
        let later = start + .milliseconds(500)
        #expect((0..<3).map { _ in limit.admit(at: later) } == [.admitted, .admitted, .admitted])
        // …up to the burst, no more.
        let muchLater = later + .seconds(60)
        #expect((0..<4).map { _ in limit.admit(at: muchLater) } == [.admitted, .admitted, .admitted, .refused])
        // Refused requests count: three more and the debt passes the burst.
        #expect((0..<3).map { _ in limit.admit(at: muchLater) } == [.refused, .refused, .exceeded])
        var off = RequestRateLimit(rate: 0, burst: 1, now: start)
        #expect((0..<1000).allSatisfy { _ in off.admit(at: start) == .admitted })
    }

    // MARK: Connections per token

    @Test func aTokenPastItsConnectionsIsRefusedWith429UntilOneCloses() async throws {
        try await TestBroker.with({ $0.maxConnectionsPerToken = 2 }) { broker in
            let token = try broker.token().token
            let first = try await broker.client(token: token)
            let second = try await broker.client(token: token)
            let refused = try await Client.refusal(port: broker.port, token: token)
            #expect(refused.status == 429 && refused.body.contains("max_connections_per_token"), "\(refused)")
            #expect(!refused.body.contains("\n") || refused.body.firstIndex(of: "\n") == refused.body.index(before: refused.body.endIndex))
            // Another token is not affected.
            let other = try await broker.client()
            await first.close()
            _ = try await broker.logs.waitFor("the first connection closed") { $0.message == "connection closed" }
            let third = try await broker.client(token: token)
            try await third.subscribe("a")
            try await second.subscribe("b")
            await second.close()
            await third.close()
            await other.close()
        }
    }

    // MARK: Topics in memory

    @Test func aNewTopicPastMaxTopicsIsRefusedAndTheConnectionStays() async throws {
        // Retained topics never leave memory: nothing can make room.
        try await TestBroker.with({
            $0.maxTopics = 3
            $0.replay.rules = [ReplayRule(pattern: try! TopicPattern("kept.>"))]
        }) { broker in
            let client = try await broker.client()
            for topic in ["kept.a", "kept.b", "kept.c"] { #expect(try await client.publish(topic, "1") == 1) }
            let refused = try await client.request(#"{"op":"pub","topic":"kept.d","data":1,"id":"d"}"#)
            #expect(refused["code"] == "limit_exceeded" && refused["id"] == "d", "\(refused)")
            // Known topics still publish, on the same connection.
            #expect(try await client.publish("kept.a", "2") == 2)
            #expect(broker.broker.statistics.topics == 3)
        }
    }

    @Test func atMaxTopicsTheLeastRecentlyPublishedLeavesAndComesBackWithItsSeq() async throws {
        try await TestBroker.with({ $0.maxTopics = 2 }) { broker in
            let client = try await broker.client()
            for n in 1...3 { #expect(try await client.publish("a", "\(n)") == n) }
            #expect(try await client.publish("b", "1") == 1)
            try await broker.waitUntilSeqsAreStored()
            // `a` is the least recently published: it makes room for `c`.
            #expect(try await client.publish("c", "1") == 1)
            #expect(broker.broker.statistics.topics == 2)
            #expect(broker.broker.currentSequences(matching: try TopicPattern("a")).isEmpty, "a is still in memory")
            try await broker.waitUntilSeqsAreStored()
            // `a` is read back and continues; `b` makes room for it.
            #expect(try await client.publish("a", "4") == 4)
            #expect(broker.broker.statistics.topics == 2)
        }
    }

    @Test func aTopicWhoseSeqIsNotStoredYetNeverLeavesMemory() async throws {
        try await TestBroker.with({ $0.maxTopics = 1 }) { broker in
            let log = try #require(broker.broker.replayLog)
            // The store takes no writes: no seq becomes durable, so nothing may be evicted.
            log.onWriter { db in sqlite3_exec(db, "PRAGMA query_only = 1", nil, nil, nil) }
            let client = try await broker.client()
            #expect(try await client.publish("a", "1") == 1)
            let refused = try await client.request(#"{"op":"pub","topic":"b","data":1,"id":"b"}"#)
            #expect(refused["code"] == "limit_exceeded" && refused["id"] == "b", "\(refused)")
            log.onWriter { db in sqlite3_exec(db, "PRAGMA query_only = 0", nil, nil, nil) }
            try await broker.waitUntilSeqsAreStored()
            #expect(try await client.publish("b", "1") == 1)
            try await broker.waitUntilSeqsAreStored()
            #expect(try await client.publish("a", "2") == 2, "a's seq was not kept")
        }
    }

    @Test func aSeqNoteIsCommittedWithinTheFlushIntervalEvenWhenTheWriterSleeps() async throws {
        let directory = TempDirectory()
        var options = ReplayLog.Options()
        options.pruneInterval = 3600  // nothing else would wake the writer for an hour
        let log = try ReplayLog(path: directory.path("r.db"), configuration: ReplayConfiguration(), options: options)
        defer { log.close() }
        for round in 1...3 {
            let ticket = try log.recordSequence(topic: try Topic("t.\(round)"), LastPublish(sequence: 1, time: 0))
            try await eventually("note \(round) to be committed") { log.durableSequenceNotes >= ticket }
        }
        #expect(try log.lastSequences().count == 3)
    }

    @Test func idleTopicsLeaveMemoryAndContinueAfterwardsAndAfterARestart() async throws {
        let first = try await TestBroker.start({ $0.topicIdleSeconds = 1 })
        let directory = first.directory
        defer { try? FileManager.default.removeItem(at: directory) }
        let publisher = try await first.client()
        for topic in (0..<50).map({ "idle.\($0)" }) {
            for n in 1...3 { #expect(try await publisher.publish(topic, "\(n)") == n) }
        }
        #expect(first.broker.statistics.topics == 50)
        try await eventually("the idle topics to leave memory") { first.broker.statistics.topics == 0 }
        // A subscriber that resumes an evicted topic hears of what it missed first.
        let subscriber = try await first.client()
        _ = try await subscriber.request(#"{"op":"sub","topic":"idle.7","since":1}"#)
        let gap = try await subscriber.nextJSON()
        #expect(gap["op"] == "gap" && gap.int("from") == 2 && gap.int("to") == 3, "\(gap)")
        #expect(try await publisher.publish("idle.7", "4") == 4)
        #expect(try await subscriber.nextJSON().int("seq") == 4)
        await publisher.close()
        await subscriber.close()
        try await first.shutdown()

        let second = try await TestBroker.start(directory: directory)
        let client = try await second.client()
        #expect(second.broker.statistics.topics == 0, "unretained topics are read back when published")
        #expect(try await client.publish("idle.7", "5") == 5)
        #expect(try await client.publish("idle.8", "4") == 4)
        await client.close()
        try await second.shutdown()
    }

    @Test func aPatternResumeReportsGapsOfEvictedTopics() async throws {
        try await TestBroker.with({ $0.topicIdleSeconds = 1 }) { broker in
            let publisher = try await broker.client()
            for n in 1...4 { try await publisher.publish("room.a", "\(n)") }
            for n in 1...2 { try await publisher.publish("room.b", "\(n)") }
            try await eventually("the idle topics to leave memory") { broker.broker.statistics.topics == 0 }
            let bySeq = try await broker.client()
            _ = try await bySeq.request(#"{"op":"sub","topic":"room.*","since":1}"#)
            var gaps: [String: (Int?, Int?)] = [:]
            for _ in 0..<2 {
                let gap = try await bySeq.nextJSON()
                #expect(gap["op"] == "gap", "\(gap)")
                gaps[gap["topic"] ?? "?"] = (gap.int("from"), gap.int("to"))
            }
            #expect(gaps["room.a"]! == (2, 4) && gaps["room.b"]! == (2, 2), "\(gaps)")
            let byMap = try await broker.client()
            _ = try await byMap.request(#"{"op":"sub","topic":"room.*","since":{"room.b":2}}"#)
            try await publisher.publish("room.b", "3")
            #expect(try await byMap.nextJSON().int("seq") == 3)
            #expect(try await bySeq.nextJSON().int("seq") == 3)
            try await byMap.expectNothingPending()
        }
    }

    @Test func publishesWaitingForTheirTopicKeepTheConnectionsOrder() async throws {
        try await TestBroker.with { broker in
            let subscriber = try await broker.client()
            try await subscriber.subscribe(">")
            let publisher = try await broker.client()
            // New topics are looked up in the store; known ones are not: the order still holds.
            try await publisher.publish("known", "0")
            _ = try await subscriber.nextJSON()
            var sent: [String] = []
            for n in 1...40 {
                let topic = n % 2 == 0 ? "known" : "new.\(n)"
                sent.append(topic)
                try await publisher.send(#"{"op":"pub","topic":"\#(topic)","data":\#(n)}"#)
            }
            var received: [String] = []
            for _ in sent { received.append(try await subscriber.nextJSON()["topic"] ?? "?") }
            #expect(received == sent)
        }
    }

    // MARK: Revocation and expiry

    @Test func aRevocationClosesOnlyThatTokensConnections() async throws {
        try await TestBroker.with { broker in
            let (token, record) = try broker.token()
            let revoked = try await [broker.client(token: token), broker.client(token: token)]
            var others: [Client] = []
            for _ in 0..<20 { others.append(try await broker.client()) }
            // As `switchboard token revoke` does: its own connection to the same file.
            try TokenStore(store: Store(path: broker.databasePath)).revoke(id: record.id)
            for client in revoked {
                #expect(try await client.waitForClose().code == Broker.CloseCodes.tokenRevoked)
            }
            for client in others {
                try await client.expectNothingPending()
                await client.close()
            }
        }
    }

    @Test func connectionsCloseAtTheirOwnExpiryEarliestFirst() async throws {
        try await TestBroker.with { broker in
            let now = Date()
            let late = try await broker.client(token: try broker.token(expiresAt: now.addingTimeInterval(3)).token)
            let early = try await broker.client(token: try broker.token(expiresAt: now.addingTimeInterval(1.5)).token)
            let forever = try await broker.client()
            #expect(try await early.waitForClose().code == Broker.CloseCodes.tokenExpired)
            #expect(!late.closed.isFulfilled, "the later expiry closed with the earlier one")
            #expect(Date() >= now.addingTimeInterval(1.5))
            #expect(try await late.waitForClose().code == Broker.CloseCodes.tokenExpired)
            #expect(Date() >= now.addingTimeInterval(3))
            try await forever.expectNothingPending()
        }
    }

    @Test func expiryIndexSkipsClosedSessionsAndKeepsOrder() {
        var heap = DeadlineHeap()
        let ids = (0..<200).map { _ in ObjectIdentifier(NSObject()) }
        var random = SplitMix(seed: 7)
        var deadlines: [Date] = []
        for id in ids {
            let deadline = Date(timeIntervalSince1970: Double(random.next() % 10_000))
            deadlines.append(deadline)
            heap.push(deadline, id)
        }
        var popped: [Date] = []
        while let first = heap.first {
            popped.append(first.deadline)
            heap.pop()
        }
        #expect(popped == deadlines.sorted())
        let rebuilt = DeadlineHeap(zip(deadlines, ids).map { ($0, $1) })
        #expect(rebuilt.first?.deadline == deadlines.min())
    }
}
