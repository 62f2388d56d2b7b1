import AsyncTestSupport
import CSQLite
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

@_spi(Fuzzing) @testable import Switchboard

/// Collects log messages, to check that a state change is logged once.
final class CollectingLogHandler: LogHandler, @unchecked Sendable {
    let messages = NIOLockedValueBox<[(Logger.Level, String)]>([])
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        messages.withLockedValue { $0.append((event.level, "\(event.message)")) }
    }
}

@Suite(.serialized) struct ReplayLogTests {
    static let topic = try! Topic("chat.room1")

    static func configuration(_ rules: String = "chat.>", maxBytes: Int64 = 0, queueLimit: Int = 65_536) -> ReplayConfiguration {
        var configuration = ReplayConfiguration()
        #expect(configuration.set("replay_retain", rules) == nil)
        configuration.maxBytes = maxBytes
        configuration.queueLimit = queueLimit
        return configuration
    }

    static func options(pruneInterval: Double = 3600, chunk: Int = 2000) -> ReplayLog.Options {
        var options = ReplayLog.Options()
        options.pruneInterval = pruneInterval
        options.pruneChunk = chunk
        return options
    }

    static func message(_ seq: UInt64, topic: Topic = topic, time: Int64? = nil, bytes: Int = 64) -> StoredMessage {
        StoredMessage(
            topic: topic, sequence: seq, time: time ?? Int64(Date().timeIntervalSince1970 * 1000), format: .json,
            payload: ByteBuffer(repeating: UInt8(ascii: "7"), count: bytes), publisher: "test")
    }

    /// Appends and waits for every completion; returns the results in seq order.
    @discardableResult
    static func appendAll(_ log: ReplayLog, _ messages: [StoredMessage]) throws -> [Result<Void, ReplayError>] {
        let results = NIOLockedValueBox<[Int: Result<Void, ReplayError>]>([:])
        let done = DispatchSemaphore(value: 0)
        for (i, m) in messages.enumerated() {
            try log.append(m) { result in
                results.withLockedValue { $0[i] = result }
                done.signal()
            }
        }
        for _ in messages { #expect(done.wait(timeout: .now() + 60) == .success) }
        return results.withLockedValue { r in (0..<messages.count).map { r[$0]! } }
    }

    @Test func configurationKeys() throws {
        var configuration = BrokerConfiguration()
        try configuration.set("replay_retain", "chat.> count=10000 age=24h, orders.* age=500ms, audit.>", source: "test")
        try configuration.set("replay_max_bytes", "0", source: "test")
        try configuration.set("replay_queue_limit", "100", source: "test")
        let replay = configuration.replay
        #expect(replay.rules.map(\.description) == ["chat.> count=10000 age=86400000ms", "orders.* age=500ms", "audit.>"])
        #expect(replay.retention.rule(for: try Topic("orders.eu"))?.maxAgeMilliseconds == 500)
        #expect(replay.retention.rule(for: try Topic("metrics.cpu")) == nil)
        #expect(replay.maxBytes == 0 && replay.queueLimit == 100)
        #expect(BrokerConfiguration.keys.contains { $0.key == "replay_retain" && $0.environment == "SWITCHBOARD_REPLAY_RETAIN" })
        for (key, value) in [("replay_retain", "chat.> count=0"), ("replay_retain", "chat* age=1h"), ("replay_retain", "a.b ttl=3"),
                             ("replay_max_bytes", "12"), ("replay_queue_limit", "0")] {
            #expect(throws: BrokerConfiguration.Error.self) { try configuration.set(key, value, source: "test") }
        }
    }

    @Test func groupCommitWritesManyAppendsInFewTransactions() throws {
        let dir = TempDirectory()
        let log = try ReplayLog(path: dir.path("r.db"), configuration: Self.configuration(), options: Self.options())
        defer { log.close() }
        let results = try Self.appendAll(log, (UInt64(1)...20_000).map { Self.message($0) })
        #expect(results.allSatisfy { if case .success = $0 { true } else { false } })
        let stats = log.statistics
        #expect(stats.committed == 20_000)
        #expect(stats.batches < 2_000, "group commit: \(stats.batches) transactions for 20000 appends")
        let page = try log.read(topic: Self.topic, after: 19_990, limit: 100)
        #expect(page.map(\.sequence) == Array(19_991...20_000))
        #expect(page.first?.publisher == "test")
        #expect(page.first?.payload.readableBytes == 64)
    }

    @Test func completionRunsOnlyOnceTheMessageIsCommitted() throws {
        let dir = TempDirectory()
        let path = dir.path("r.db")
        let log = try ReplayLog(path: path, configuration: Self.configuration(), options: Self.options())
        defer { log.close() }
        let visible = NIOLockedValueBox<[Bool]>([])
        let done = DispatchSemaphore(value: 0)
        for seq in UInt64(1)...50 {
            try log.append(Self.message(seq)) { _ in
                // Another connection sees it: it is committed, not just written.
                var db: OpaquePointer?
                sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, nil)
                var statement: OpaquePointer?
                sqlite3_prepare_v2(db, "SELECT count(*) FROM replay_messages WHERE seq = \(seq)", -1, &statement, nil)
                sqlite3_step(statement)
                let count = sqlite3_column_int64(statement, 0)
                sqlite3_finalize(statement)
                sqlite3_close_v2(db)
                visible.withLockedValue { $0.append(count == 1) }
                done.signal()
            }
        }
        for _ in 1...50 { #expect(done.wait(timeout: .now() + 30) == .success) }
        #expect(visible.withLockedValue { $0 } == Array(repeating: true, count: 50))
    }

    @Test func sequencesAndTheirTimesContinueAfterARestartForRetainedAndOtherTopics() throws {
        let dir = TempDirectory()
        let path = dir.path("r.db")
        let other = try Topic("metrics.cpu")
        do {
            let log = try ReplayLog(path: path, configuration: Self.configuration(), options: Self.options())
            try Self.appendAll(log, (UInt64(1)...10).map { Self.message($0, time: 1000 + Int64($0)) })
            try log.recordSequence(topic: other, LastPublish(sequence: 41, time: 2041))
            try log.recordSequence(topic: other, LastPublish(sequence: 42, time: 2042))
            try log.recordSequence(topic: other, LastPublish(sequence: 40, time: 2040))
            log.close()
        }
        let log = try ReplayLog(path: path, configuration: Self.configuration(), options: Self.options())
        defer { log.close() }
        #expect(try log.lastSequences() == [Self.topic: 10, other: 42])
        #expect(try log.topicState(other)?.lastTime == 2042)
        #expect(try log.topicState(Self.topic)?.lastTime == 1010)
        // Only the retained topic is held in memory from the start; the other is read back.
        #expect(log.retainedTopics() == [Self.topic: LastPublish(sequence: 10, time: 1010)])
        #expect(log.retains(Self.topic) && !log.retains(other))
        #expect(try log.read(topic: other, after: 0, limit: 10).isEmpty)
    }

    @Test func retentionByCount() async throws {
        let dir = TempDirectory()
        let log = try ReplayLog(
            path: dir.path("r.db"), configuration: Self.configuration("chat.> count=100"),
            options: Self.options(pruneInterval: 0.05, chunk: 150))
        defer { log.close() }
        try Self.appendAll(log, (UInt64(1)...1000).map { Self.message($0) })
        try await eventually("retention to keep the last 100") { try log.firstRetained(topic: Self.topic) == 901 }
        #expect(try log.read(topic: Self.topic, after: 0, limit: 1000).count == 100)
        let state = try log.topicState(Self.topic)
        #expect(state?.prunedSequence == 900)
        #expect(state?.lastSequence == 1000)
        #expect(log.statistics.pruned == 900)
    }

    @Test func retentionByAge() async throws {
        let dir = TempDirectory()
        let log = try ReplayLog(
            path: dir.path("r.db"), configuration: Self.configuration("chat.> age=10s"),
            options: Self.options(pruneInterval: 0.05, chunk: 64))
        defer { log.close() }
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        try Self.appendAll(log, (UInt64(1)...300).map { Self.message($0, time: now - 60_000 + Int64($0)) })
        try Self.appendAll(log, (UInt64(301)...310).map { Self.message($0, time: now) })
        try await eventually("retention to drop what is older than 10 s") { try log.firstRetained(topic: Self.topic) == 301 }
        #expect(try log.topicState(Self.topic)?.prunedTime == now - 60_000 + 300)
    }

    @Test func sizeCapPrunesTheOldestMessagesOfAnyTopic() async throws {
        let dir = TempDirectory()
        let cap: Int64 = 1 << 20
        let log = try ReplayLog(
            path: dir.path("r.db"), configuration: Self.configuration("chat.>", maxBytes: cap),
            options: Self.options(pruneInterval: 0.05, chunk: 100))
        defer { log.close() }
        let b = try Topic("chat.b")
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        var messages: [StoredMessage] = []
        for seq in UInt64(1)...2000 {  // ~4 MB, alternating topics, older first
            messages.append(Self.message(seq / 2 + seq % 2, topic: seq % 2 == 0 ? b : Self.topic, time: now - 2000 + Int64(seq), bytes: 2000))
        }
        try Self.appendAll(log, messages)
        try await eventually("pruning down to the cap") { log.statistics.pruned > 0 && log.statistics.usedBytes <= cap }
        try await eventually("the queue to empty") { log.statistics.queued == 0 }
        // The newest of both topics are still there; the oldest are gone.
        #expect(try log.read(topic: b, after: 999, limit: 10).map(\.sequence) == [1000])
        #expect(try log.read(topic: Self.topic, after: 999, limit: 10).map(\.sequence) == [1000])
        #expect(try log.firstRetained(topic: Self.topic)! > 1)
        #expect(try log.firstRetained(topic: b)! > 1)
    }

    /// A pruning backlog (a size cap far under what is stored) is worked off in chunks, with
    /// appends committed between them: an append waits for one chunk at most, never for the
    /// whole pass. A chain of appends, each made by the previous one's completion (on the
    /// writer thread, between its commit and its next pruning chunk), keeps one append always
    /// waiting; each notes how much had been pruned when it committed.
    @Test func pruningDoesNotHoldUpAppends() async throws {
        let dir = TempDirectory()
        let path = dir.path("r.db")
        let backlog: UInt64 = 60_000
        do {  // a backlog to prune, written without a cap
            let log = try ReplayLog(path: path, configuration: Self.configuration(), options: Self.options())
            try Self.appendAll(log, (1...backlog).map { Self.message($0) })
            log.close()
        }
        let chunk = 500
        let cap: Int64 = 256 * 1024
        let log = try ReplayLog(
            path: path, configuration: Self.configuration(maxBytes: cap),
            options: Self.options(pruneInterval: 0.01, chunk: chunk))
        defer { log.close() }
        let prunedAtCommits = NIOLockedValueBox<[UInt64]>([])
        let done = Waiter<Void>("pruning down to the cap, appends going on")
        @Sendable func chain(_ sequence: UInt64) {
            do {
                try log.append(Self.message(sequence)) { result in
                    let statistics = log.statistics
                    let count = prunedAtCommits.withLockedValue {
                        $0.append(statistics.pruned)
                        return $0.count
                    }
                    if case .failure(let error) = result {
                        done.fail(error)
                    } else if statistics.pruned > 0 && statistics.usedBytes <= cap {
                        done.fulfill(())
                    } else if count >= 100_000 {
                        done.fail(TimedOut(what: "pruning to finish within 100,000 appends"))
                    } else {
                        chain(sequence + 1)
                    }
                }
            } catch {
                done.fail(error)
            }
        }
        chain(backlog + 1)
        try await done.value()
        let pruned = prunedAtCommits.withLockedValue { $0 }
        let steps = zip(pruned, pruned.dropFirst()).map { $1 - $0 }
        #expect(steps.allSatisfy { $0 <= chunk }, "more than one chunk between two commits: \(steps.max() ?? 0) rows")
        // The pass had dozens of chunks to do, and appends committed between them.
        #expect(pruned.last! >= backlog / 2, "\(pruned.last!) pruned")
        #expect(steps.filter { $0 > 0 }.count >= Int(backlog / 2) / chunk)
    }

    /// Retention rules hold from the moment the log opens: what a restart finds past a
    /// rule (here, rules tightened while the broker was down) is gone before the first read,
    /// without waiting for a background pass (none runs here for an hour).
    @Test func retentionRulesHoldAsSoonAsTheLogOpens() throws {
        let dir = TempDirectory()
        let path = dir.path("r.db")
        let old = try Topic("chat.old")
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        do {
            let log = try ReplayLog(path: path, configuration: Self.configuration(), options: Self.options())
            try Self.appendAll(log, (UInt64(1)...300).map { Self.message($0) })
            try Self.appendAll(log, (UInt64(1)...50).map { Self.message($0, topic: old, time: now - 60_000 + Int64($0)) })
            log.close()
        }
        let log = try ReplayLog(
            path: path, configuration: Self.configuration("chat.room1 count=100, chat.> age=10s"), options: Self.options())
        defer { log.close() }
        #expect(try log.read(topic: Self.topic, after: 0, limit: 1000).map(\.sequence) == Array(201...300))
        #expect(try log.firstRetained(topic: Self.topic) == 201)
        #expect(try log.topicState(Self.topic)?.prunedSequence == 200)
        #expect(try log.read(topic: old, after: 0, limit: 100).isEmpty)
        #expect(try log.topicState(old) == TopicLogState(
            lastSequence: 50, lastTime: now - 60_000 + 50, prunedSequence: 50, prunedTime: now - 60_000 + 50))
        #expect(log.statistics.pruned == 250)
        #expect(try log.lastSequences() == [Self.topic: 300, old: 50])
    }

    @Test func fullDiskFailsAcksOnceLoggedThenRecovers() throws {
        let dir = TempDirectory()
        let handler = CollectingLogHandler()
        let log = try ReplayLog(
            path: dir.path("r.db"), configuration: Self.configuration(), options: Self.options(),
            logger: Logger(label: "test", factory: { _ in handler }))
        defer { log.close() }
        try Self.appendAll(log, (UInt64(1)...10).map { Self.message($0) })
        // Root ignores file modes: a page limit makes SQLite report SQLITE_FULL instead.
        log.onWriter { db in sqlite3_exec(db, "PRAGMA max_page_count = 1", nil, nil, nil) }
        for batch in 0..<3 {
            let results = try Self.appendAll(log, (UInt64(1)...200).map { Self.message(UInt64(11 + batch * 200) + $0, bytes: 1000) })
            for result in results {
                guard case .failure(.unavailable(let reason)) = result else {
                    Issue.record("expected unavailable, got \(result)")
                    break
                }
                #expect(reason.contains("full"), "\(reason)")
            }
        }
        guard case .degraded = log.status else { Issue.record("status \(log.status)"); return }
        #expect(log.statistics.failed == 600)
        log.onWriter { db in sqlite3_exec(db, "PRAGMA max_page_count = 1073741823", nil, nil, nil) }
        let results = try Self.appendAll(log, [Self.message(700)])
        #expect(results.allSatisfy { if case .success = $0 { true } else { false } })
        #expect(log.status == .healthy)
        let logged = handler.messages.withLockedValue { $0 }
        #expect(logged.filter { $0.0 == .error }.count == 1, "\(logged)")
        #expect(logged.filter { $0.0 == .notice }.count == 1, "\(logged)")
        // The failed seqs are a hole, seen by readers as such; the seq survived.
        #expect(try log.read(topic: Self.topic, after: 0, limit: 100).map(\.sequence) == Array(1...10) + [700])
    }

    @Test func readOnlyDatabaseFailsAcksThenRecovers() throws {
        let dir = TempDirectory()
        let log = try ReplayLog(path: dir.path("r.db"), configuration: Self.configuration(), options: Self.options())
        defer { log.close() }
        log.onWriter { db in sqlite3_exec(db, "PRAGMA query_only = 1", nil, nil, nil) }
        let failed = try Self.appendAll(log, [Self.message(1)])
        guard case .failure(.unavailable) = failed[0] else { Issue.record("\(failed)"); return }
        guard case .degraded(let reason) = log.status else { Issue.record("status \(log.status)"); return }
        #expect(reason.contains("readonly") || reason.contains("read-only") || reason.contains("query_only"), "\(reason)")
        log.onWriter { db in sqlite3_exec(db, "PRAGMA query_only = 0", nil, nil, nil) }
        let ok = try Self.appendAll(log, [Self.message(2)])
        guard case .success = ok[0] else { Issue.record("\(ok)"); return }
        #expect(log.status == .healthy)
    }

    @Test func fullQueueRefusesAppendsAtOnce() async throws {
        let dir = TempDirectory()
        let log = try ReplayLog(
            path: dir.path("r.db"), configuration: Self.configuration(queueLimit: 10), options: Self.options())
        defer { log.close() }
        let release = DispatchSemaphore(value: 0)
        let stalled = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            log.onWriter { _ in
                stalled.signal()
                release.wait()
            }
        }
        stalled.wait()
        for seq in UInt64(1)...10 { try log.append(Self.message(seq)) }
        #expect(throws: ReplayError.self) { try log.append(Self.message(11)) }
        #expect(log.statistics.rejected == 1)
        release.signal()
        try await eventually("the 10 queued appends to commit") { log.statistics.committed == 10 }
    }

    @Test func notADatabaseIsACorruptionErrorNamingTheFile() throws {
        let dir = TempDirectory()
        let path = dir.path("garbage.db")
        try Data((0..<8192).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }).write(to: URL(fileURLWithPath: path))
        do {
            _ = try ReplayLog(path: path, configuration: Self.configuration())
            Issue.record("opened a garbage file")
        } catch {
            guard case .corrupt = error else { Issue.record("\(error)"); return }
            #expect(error.description.contains(path))
            #expect(error.description.contains("restore"))
        }
    }

    @Test func damagedSchemaPageIsACorruptionError() throws {
        let dir = TempDirectory()
        let path = dir.path("damaged.db")
        do {
            let log = try ReplayLog(path: path, configuration: Self.configuration())
            try Self.appendAll(log, (UInt64(1)...100).map { Self.message($0) })
            log.close()
        }
        // Checkpointed into the main file by the close; scribble over page 1 past the header.
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        try handle.seek(toOffset: 100)
        try handle.write(contentsOf: Data(repeating: 0xA5, count: 3000))
        try handle.close()
        do {
            _ = try ReplayLog(path: path, configuration: Self.configuration())
            Issue.record("opened a damaged file")
        } catch {
            guard case .corrupt(let named, _) = error else { Issue.record("\(error)"); return }
            #expect(named == path)
        }
    }

    @Test func readsByPatternCursorAndTime() throws {
        let dir = TempDirectory()
        let log = try ReplayLog(path: dir.path("r.db"), configuration: Self.configuration(), options: Self.options())
        defer { log.close() }
        let b = try Topic("chat.b")
        try Self.appendAll(log, (UInt64(1)...50).flatMap { [Self.message($0, topic: Self.topic, time: 1000 + Int64($0)), Self.message($0, topic: b, time: 2000 + Int64($0))] })
        #expect(try log.firstRetained(topic: b) == 1)
        let page = try log.read(pattern: TopicPattern("chat.*"), after: [b: 45], limit: 10)
        #expect(page.map { "\($0.topic)#\($0.sequence)" } == ["chat.b#46", "chat.b#47", "chat.b#48", "chat.b#49", "chat.b#50"] + (UInt64(1)...5).map { "chat.room1#\($0)" })

        let cursor = ReplayCursor(log: log, pattern: try TopicPattern("chat.>"), position: .perTopic([Self.topic: 40]))
        var seen: [String] = []
        var pages = 0
        while !cursor.isExhausted {
            let page = try cursor.next(limit: 7)
            #expect(page.messages.count <= 7)
            #expect(page.messages.allSatisfy { $0.frame != nil })
            seen += page.messages.map { "\($0.topic)#\($0.sequence)" }
            pages += 1
        }
        #expect(seen == (UInt64(1)...50).map { "chat.b#\($0)" } + (UInt64(41)...50).map { "chat.room1#\($0)" })
        #expect(pages >= 9)

        let byTime = ReplayCursor(log: log, pattern: try TopicPattern("chat.>"), position: .time(unixMilliseconds: 1030))
        let first = try byTime.next(limit: 1000)
        #expect(first.starts == [b: 0, Self.topic: 29])
        #expect(first.messages.filter { $0.topic == Self.topic }.map(\.sequence) == Array(30...50))
    }

    @Test func catchUpWhilePublishingAtFullRateHasNoGapAndNoDuplicate() throws {
        let dir = TempDirectory()
        let log = try ReplayLog(path: dir.path("r.db"), configuration: Self.configuration(), options: Self.options())
        defer { log.close() }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let loop = group.next()
        try Self.appendAll(log, (UInt64(1)...20_000).map { Self.message($0) })

        // A publisher thread: sequence, append, fan out to the loop (as Broker.publish will).
        let sequence = NIOLockedValueBox<UInt64>(20_000)
        let catchUp = NIOLockedValueBox<ReplayCatchUp<UInt64>?>(nil)
        let received = NIOLockedValueBox<[UInt64]>([])
        let gaps = NIOLockedValueBox<Int>(0)
        let finished = DispatchSemaphore(value: 0)
        let stop = NIOLockedValueBox(false)
        let published = DispatchSemaphore(value: 0)
        let publisher = Thread {
            defer { published.signal() }
            // Bursts of 50, one loop task per burst (as a hub drains its inbox), ~25k/s, at
            // most 60,000 messages: a replay slower than the publisher (a debug build on a
            // loaded machine) never catches up, so publishing must end for the test to.
            while !stop.withLockedValue({ $0 }), sequence.withLockedValue({ $0 }) < 80_000 {
                let burst: [UInt64] = sequence.withLockedValue { seq in
                    (0..<50).map { _ in
                        seq += 1
                        try! log.append(Self.message(seq))
                        return seq
                    }
                }
                loop.execute {
                    // Not subscribed yet, or taken by the catch-up.
                    guard let c = catchUp.withLockedValue({ $0 }) else { return }
                    for s in burst where !c.live(s, topic: Self.topic, sequence: s) {
                        received.withLockedValue { $0.append(s) }
                    }
                }
                usleep(2000)
            }
        }
        publisher.start()
        usleep(20_000)
        try loop.submit {
            // Registered for live (the closure above sees it), then the high-water mark.
            let highWater = sequence.withLockedValue { $0 }
            let c = ReplayCatchUp<UInt64>(
                log: log, pattern: TopicPattern(Self.topic), position: .sequence(100), highWater: [Self.topic: highWater],
                eventLoop: loop,
                emit: { outputs in
                    for output in outputs {
                        switch output {
                        case .replayed(let m): received.withLockedValue { $0.append(m.sequence) }
                        case .live(let s): received.withLockedValue { $0.append(s) }
                        case .gap: gaps.withLockedValue { $0 += 1 }
                        }
                    }
                },
                canContinue: { true },
                finished: { _ in finished.signal() })
            catchUp.withLockedValue { $0 = c }
            c.start()
        }.wait()
        #expect(finished.wait(timeout: .now() + 120) == .success)
        usleep(50_000)
        stop.withLockedValue { $0 = true }
        #expect(published.wait(timeout: .now() + 60) == .success, "the publisher thread did not stop")
        try loop.submit {}.wait()
        let seqs = received.withLockedValue { $0 }
        let last = sequence.withLockedValue { $0 }
        #expect(gaps.withLockedValue { $0 } == 0)
        #expect(seqs.first == 101)
        #expect(seqs.count == Int(last - 100), "got \(seqs.count) of \(last - 100)")
        #expect(seqs == Array(101...last))
    }
}
