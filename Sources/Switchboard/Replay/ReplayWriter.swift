import CSQLite
import NIOConcurrencyHelpers

/// The writer connection and its group commit: each batch of appends, with the seqs noted
/// for other topics, in one transaction. Used only on the writer thread (`ReplayLog`'s
/// writer loop); `ReplayPruner` deletes on the same connection between batches.
final class ReplayWriter: @unchecked Sendable {
    let db: OpaquePointer
    /// Last committed seq of every topic that was retained at open, has stored messages, or
    /// was written since, kept in memory for retention (other topics are only in
    /// `topic_sequences`).
    var lastSeq: [Topic: UInt64] = [:]
    /// The same topics' last seq and its time as the log was opened.
    private(set) var openedTopics: [Topic: LastPublish] = [:]
    /// Closures for tests, run between batches.
    let hooks = NIOLockedValueBox<[@Sendable (OpaquePointer) -> Void]>([])

    private let transactions: SQLiteTransactions
    private let insert: SQLiteStatement
    private let upsertSequence: SQLiteStatement

    /// `rules`: the rules at open, which say which topics without stored messages are retained.
    init(db: OpaquePointer, rules: RetentionRules) throws(StoreError) {
        self.db = db
        transactions = try SQLiteTransactions(db)
        insert = try SQLiteStatement(
            db, "INSERT OR REPLACE INTO replay_messages (topic, seq, time, format, payload, publisher) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
        upsertSequence = try SQLiteStatement(
            db, """
                INSERT INTO topic_sequences (topic, last_seq, last_time) VALUES (?1, ?2, ?3)
                ON CONFLICT (topic) DO UPDATE SET
                    last_seq = max(last_seq, excluded.last_seq), last_time = max(last_time, excluded.last_time)
                """)

        // Where every topic stands: topic_sequences, and the newest stored message (the same
        // transaction wrote both, but the message costs one seek per topic, guards against a
        // table edited by hand and has the time of a database from before `last_time`).
        let all = try SQLiteStatement(db, "SELECT topic, last_seq, last_time FROM topic_sequences", persistent: false)
        let newest = try SQLiteStatement(
            db, "SELECT seq, time FROM replay_messages WHERE topic = ?1 ORDER BY seq DESC LIMIT 1", persistent: false)
        while try all.step() {
            guard let topic = try? Topic(all.text(0)) else { continue }
            var last = LastPublish(sequence: UInt64(clamping: all.int(1)), time: all.int(2))
            var stored = false
            try topic.name.cString { (name) throws(StoreError) in
                newest.bind(1, text: name)
                if try newest.step(), newest.int(0) > 0 {
                    last = .latest(last, LastPublish(sequence: UInt64(clamping: newest.int(0)), time: newest.int(1)))
                    stored = true
                }
                newest.reset()
            }
            if stored || rules.retains(topic) {
                openedTopics[topic] = last
                lastSeq[topic] = last.sequence
            }
        }
        all.reset()
    }

    /// Closes the connection now, not when this object goes away: whoever reopens the file
    /// right after `ReplayLog.close()` must find it closed (and, once the readers close too,
    /// checkpointed). Close the pruner, which shares the connection, first.
    func close() {
        transactions.finalize()
        insert.finalize()
        upsertSequence.finalize()
        sqlite3_close_v2(db)
    }

    /// One group commit: every message of `batch` and the seqs, in one transaction.
    func write(_ batch: [ReplayLog.PendingAppend], sequences: [Topic: LastPublish]) -> Result<Void, StoreError> {
        var stored: [Topic: LastPublish] = [:]
        do throws(StoreError) {
            try transactions.begin()
            // Indexed, not `for pending in batch`: each message is read in place rather than
            // copied (a copy retains and releases its four references). A topic's messages
            // come in seq order, so its maximum is its last message of a run: the dictionary
            // is touched once per run of one topic, not once per message.
            for index in batch.indices {
                let sequence = batch[index].message.sequence
                if index + 1 == batch.endIndex || batch[index + 1].message.topic != batch[index].message.topic,
                    sequence > stored[batch[index].message.topic]?.sequence ?? 0
                {
                    stored[batch[index].message.topic] = LastPublish(sequence: sequence, time: batch[index].message.time)
                }
                try batch[index].message.topic.name.cString { (name) throws(StoreError) in
                    try batch[index].message.payload.withReadableBytes { (payload) throws(StoreError) in
                        insert.bind(1, text: name)
                        insert.bind(2, Int64(bitPattern: sequence))
                        insert.bind(3, batch[index].message.time)
                        insert.bind(4, batch[index].message.format.storedValue)
                        insert.bind(5, blob: payload)
                        if let publisher = batch[index].message.publisher {
                            try publisher.cString { (p) throws(StoreError) in
                                insert.bind(6, text: p)
                                try insert.run()
                            }
                        } else {
                            insert.bindNull(6)
                            try insert.run()
                        }
                    }
                }
            }
            for (topic, last) in sequences.merging(stored, uniquingKeysWith: LastPublish.latest) {
                try topic.name.cString { (name) throws(StoreError) in
                    upsertSequence.bind(1, text: name)
                    upsertSequence.bind(2, Int64(bitPattern: last.sequence))
                    upsertSequence.bind(3, last.time)
                    try upsertSequence.run()
                }
            }
            try transactions.commit()
        } catch {
            transactions.rollBackIfOpen()
            return .failure(error)
        }
        for (topic, last) in stored where last.sequence > lastSeq[topic] ?? 0 { lastSeq[topic] = last.sequence }
        return .success(())
    }
}

extension PayloadFormat {
    var storedValue: Int64 { self == .json ? 0 : 1 }
    init(storedValue: Int64) { self = storedValue == 0 ? .json : .binary }
}
