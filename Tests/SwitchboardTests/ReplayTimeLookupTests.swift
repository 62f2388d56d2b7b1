import BrokerProcess
import CSQLite
import Foundation
import Testing

@_spi(Fuzzing) @testable import Switchboard

/// `since_time` resolution when retention prunes a topic in the middle of the look-up.
@Suite struct ReplayTimeLookupTests {
    /// Deletes every stored message of `topic` through another connection, from inside the
    /// reader, the first time the reader starts a statement whose SQL contains `trigger`.
    final class PruneOnStatement {
        let db: OpaquePointer
        let trigger: String
        let topic: String
        private(set) var pruned = false

        init(path: String, trigger: String, topic: String) throws {
            var handle: OpaquePointer?
            guard sqlite3_open(path, &handle) == SQLITE_OK, let handle else { throw TestFailure("cannot open \(path)") }
            sqlite3_busy_timeout(handle, 5000)
            db = handle
            self.trigger = trigger
            self.topic = topic
        }

        deinit { sqlite3_close(db) }

        func started(_ sql: String) {
            guard !pruned, sql.contains(trigger) else { return }
            pruned = true
            let rc = sqlite3_exec(
                db, """
                    BEGIN IMMEDIATE;
                    UPDATE topic_sequences SET pruned_seq = (SELECT max(seq) FROM replay_messages WHERE topic = '\(topic)'),
                        pruned_time = (SELECT max(time) FROM replay_messages WHERE topic = '\(topic)') WHERE topic = '\(topic)';
                    DELETE FROM replay_messages WHERE topic = '\(topic)';
                    COMMIT;
                    """, nil, nil, nil)
            #expect(rc == SQLITE_OK, "prune: \(String(cString: sqlite3_errmsg(db)))")
        }
    }

    @Test func pruningDuringTheBisectionDoesNotMoveTheAnswer() throws {
        let directory = TempDirectory()
        let path = directory.path("r.db")
        let log = try ReplayLog(path: path, configuration: ReplayLogTests.configuration(), options: ReplayLogTests.options())
        defer { log.close() }
        let topic = ReplayLogTests.topic
        try ReplayLogTests.appendAll(log, (UInt64(1)...64).map { ReplayLogTests.message($0, time: 1000 + Int64($0)) })
        // The bisection's probe (`seq >= ?2`) is the statement that found the rows gone.
        let pruner = try PruneOnStatement(path: path, trigger: "seq >= ?2", topic: topic.name)
        let pattern = try TopicPattern(topic.name)
        let page = try log.withReader { (c) throws(ReplayError) in
            sqlite3_trace_v2(
                c.db, UInt32(SQLITE_TRACE_STMT),
                { _, context, _, sql in
                    guard let context, let sql else { return 0 }
                    Unmanaged<PruneOnStatement>.fromOpaque(context).takeUnretainedValue()
                        .started(String(cString: sql.assumingMemoryBound(to: CChar.self)))
                    return 0
                }, Unmanaged.passUnretained(pruner).toOpaque())
            defer { sqlite3_trace_v2(c.db, 0, nil, nil) }
            let cursor = ReplayCursor(log: log, pattern: pattern, position: .time(unixMilliseconds: 1040))
            return try cursor.next(c, limit: 100, maxBytes: 1 << 20)
        }
        #expect(pruner.pruned)
        // The look-up saw the log as it was when it began: seq 40 is the first at 1040.
        #expect(page.starts == [topic: 39])
        // The messages themselves are gone by the time they are read.
        #expect(page.messages.isEmpty)
    }
}
