import AsyncTestSupport
import BrokerProcess
import Foundation
import Testing

@_spi(Fuzzing) @testable import Switchboard

/// What a broker killed at the worst moment (kill -9, crash, OOM) leaves behind: the files
/// as they are on disk at that moment, copied while the replay log's writer is held between
/// batches, then a broker opened on the copy. A seq a subscriber saw must never be given to
/// another message after such a restart.
@Suite struct BrokerCrashTests {
    /// Copies the database and its WAL as a process killed now would leave them (the writer
    /// is held between batches, so no transaction is half written).
    static func copyAsKilled(_ broker: TestBroker) throws -> URL {
        let crashed = try makeTemporaryDirectory()
        for suffix in ["", "-wal"] {
            let source = URL(fileURLWithPath: broker.databasePath + suffix)
            guard FileManager.default.fileExists(atPath: source.path) else { continue }
            try FileManager.default.copyItem(
                at: source, to: crashed.appendingPathComponent("switchboard.db" + suffix))
        }
        return crashed
    }

    /// Holds the replay log's writer between batches until the returned closure is called.
    static func holdWriter(of log: ReplayLog) async throws -> @Sendable () -> Void {
        let held = Waiter<Void>("the writer held")
        let release = DispatchSemaphore(value: 0)
        let thread = Thread {
            log.onWriter { _ in
                held.fulfill(())
                release.wait()
            }
        }
        thread.start()
        try await held.value()
        return { release.signal() }
    }

    @Test func aRetainedMessageIsDeliveredOnlyOnceCommittedSoACrashReusesNoSeenSeq() async throws {
        let (crashed, lastSeen) = try await TestBroker.with(BrokerReplayTests.retaining("chat.>")) { broker in
            let publisher = try await broker.client()
            let subscriber = try await broker.client()
            try await subscriber.subscribe("chat.a")
            try await subscriber.subscribe("mark")
            #expect(try await publisher.publish("chat.a", "1") == 1)
            #expect(try await subscriber.nextJSON().int("seq") == 1)

            let release = try await Self.holdWriter(of: broker.broker.replayLog!)
            // Accepted, not committed: the process dies before its batch is written.
            try await publisher.send(#"{"op":"pub","topic":"chat.a","data":2}"#)
            // A non-retained marker behind it on the same connections: what the subscriber got
            // of chat.a is everything before the marker.
            _ = try await publisher.publish("mark", "0")
            var seen: [Int] = []
            while true {
                let message = try await subscriber.nextJSON()
                if message["topic"] == "mark" { break }
                seen.append(message.int("seq") ?? -1)
            }
            #expect(seen == [], "a message reached a subscriber before it was committed: \(seen)")
            let crashed = try Self.copyAsKilled(broker)
            release()
            return (crashed, seen.last ?? 1)
        }
        defer { try? FileManager.default.removeItem(at: crashed) }

        try await TestBroker.with(BrokerReplayTests.retaining("chat.>"), directory: crashed) { broker in
            let resuming = try await broker.client()
            // Resumes after the last seq it saw before the crash, as the SDK does.
            _ = try await resuming.request(#"{"op":"sub","topic":"chat.a","since":\#(lastSeen)}"#)
            let publisher = try await broker.client()
            let third = try await publisher.publish("chat.a", "3")
            let fourth = try await publisher.publish("chat.a", "4")
            // A client that deduplicates by seq (the SDK) would drop a message under a seq it saw.
            #expect(third > lastSeen, "seq \(third) was seen before the crash with another message")
            #expect(fourth == third + 1)
            let first = try await resuming.nextJSON()
            #expect(first.int("seq") == third && first["data"] == "3", "\(first)")
            let second = try await resuming.nextJSON()
            #expect(second.int("seq") == fourth && second["data"] == "4", "\(second)")
        }
    }

    /// A topic that is not retained has its seq noted to the store within 50 ms, so a crash
    /// can lose the last ones noted; the next start finds the log not closed and moves every
    /// such topic on by the note limit (`replay_queue_limit`), which no topic can run ahead
    /// of its committed seq: the seqs seen before the crash are never given again.
    @Test func aTopicNotRetainedContinuesPastEverySeqHandedOutBeforeACrash() async throws {
        let limit = 64
        let configure: @Sendable (inout BrokerConfiguration) -> Void = { $0.replay.queueLimit = limit }
        let (crashed, lastSeen) = try await TestBroker.with(configure) { broker in
            let publisher = try await broker.client()
            #expect(try await publisher.publish("plain", "1") == 1)
            let release = try await Self.holdWriter(of: broker.broker.replayLog!)
            var last = 1
            var refused = false
            for n in 2...(limit + 10) {
                let answer = try await publisher.request(#"{"op":"pub","topic":"plain","data":\#(n),"id":"p"}"#)
                guard answer["op"] == "ack" else {
                    // Past the limit of notes waiting for the held writer: refused, no seq used.
                    #expect(answer["code"] == "unavailable", "\(answer)")
                    refused = true
                    break
                }
                last = answer.int("seq") ?? -1
            }
            #expect(refused)
            let crashed = try Self.copyAsKilled(broker)
            release()
            return (crashed, last)
        }
        defer { try? FileManager.default.removeItem(at: crashed) }
        // Seq 1's note was committed before the hold, or not.
        #expect(lastSeen == limit || lastSeen == limit + 1)

        try await TestBroker.with(configure, directory: crashed) { broker in
            let resuming = try await broker.client()
            _ = try await resuming.request(#"{"op":"sub","topic":"plain","since":\#(lastSeen)}"#)
            let publisher = try await broker.client()
            let next = try await publisher.publish("plain", "\"after\"")
            #expect(next > lastSeen, "seq \(next) was handed out before the crash")
            var message = try await resuming.nextJSON()
            if message["op"] == "gap" {
                #expect(message.int("from") == lastSeen + 1 && message.int("to") == next - 1, "\(message)")
                message = try await resuming.nextJSON()
            }
            #expect(message.int("seq") == next && message["data"] == "after", "\(message)")
        }
    }
}
