import CSQLite
import Foundation

/// Retention on the writer's connection: deletes what the rules (count, age) and the size
/// cap no longer allow, in chunks of `pruneChunk` rows, one short transaction each, so the
/// writer loop goes back to appends between chunks. Used only on the writer thread.
final class ReplayPruner {
    private let writer: ReplayWriter
    private let db: OpaquePointer
    /// The rules in force: replaced at run time (`replaceRules`), applied from the next pass.
    private var rules: RetentionRules
    /// Used size past which the oldest messages go (`replay_max_bytes`); 0: no cap.
    private let maxBytes: Int64
    private let pruneChunk: Int
    /// Used bytes of the database (pages in use × page size) at the last measure.
    private(set) var usedBytes: Int64 = 0

    private let transactions: SQLiteTransactions
    private let firstMessage: SQLiteStatement
    private let scanTimes: SQLiteStatement
    private let lastTimeThrough: SQLiteStatement
    private let deleteThrough: SQLiteStatement
    private let markPruned: SQLiteStatement
    private let pageCount: SQLiteStatement
    private let freelistCount: SQLiteStatement
    private let pageSize: Int64

    /// Topics left in the current pass.
    private var pruneQueue: [Topic] = []
    private var sizePruning = false

    /// Prunes what `writer` wrote, on its connection; `writer.lastSeq` says which topics
    /// there are and where each ends.
    init(writer: ReplayWriter, rules: RetentionRules, maxBytes: Int64, pruneChunk: Int) throws(StoreError) {
        self.writer = writer
        self.db = writer.db
        self.rules = rules
        self.maxBytes = maxBytes
        self.pruneChunk = pruneChunk
        transactions = try SQLiteTransactions(db)
        firstMessage = try SQLiteStatement(db, "SELECT seq, time FROM replay_messages WHERE topic = ?1 ORDER BY seq LIMIT 1")
        scanTimes = try SQLiteStatement(
            db, "SELECT seq, time FROM replay_messages WHERE topic = ?1 AND seq <= ?2 ORDER BY seq")
        lastTimeThrough = try SQLiteStatement(
            db, "SELECT seq, time FROM replay_messages WHERE topic = ?1 AND seq <= ?2 ORDER BY seq DESC LIMIT 1")
        deleteThrough = try SQLiteStatement(db, "DELETE FROM replay_messages WHERE topic = ?1 AND seq <= ?2")
        markPruned = try SQLiteStatement(
            db, """
                UPDATE topic_sequences SET pruned_seq = max(pruned_seq, ?2), pruned_time = max(pruned_time, ?3)
                WHERE topic = ?1
                """)
        pageCount = try SQLiteStatement(db, "PRAGMA page_count")
        freelistCount = try SQLiteStatement(db, "PRAGMA freelist_count")
        pageSize = try SQLiteConnection(db: db).scalarInt("PRAGMA page_size") ?? 4096
        usedBytes = (try? measureUsedBytes()) ?? 0
    }

    /// Releases the statements, so that the writer can close the connection at once.
    func close() {
        transactions.finalize()
        for statement in [
            firstMessage, scanTimes, lastTimeThrough, deleteThrough, markPruned, pageCount, freelistCount,
        ] {
            statement.finalize()
        }
    }

    /// Applies `rules` from the next pass on (a pass under way goes on with its topics, each
    /// pruned by the new rules).
    func replaceRules(_ rules: RetentionRules) {
        self.rules = rules
    }

    /// Topics whose rule bounds their count or age.
    private var boundedTopics: [Topic] {
        writer.lastSeq.keys.filter { topic in
            guard let rule = rules.rule(for: topic) else { return false }
            return rule.maxMessages != nil || rule.maxAgeMilliseconds != nil
        }
    }

    /// Prunes every topic to its rule at once, chunk after chunk (at open, before any
    /// append or read); returns the rows deleted.
    func applyRules(now: Date) throws(StoreError) -> Int {
        let nowMilliseconds = Int64(now.timeIntervalSince1970 * 1000)
        var deleted = 0
        for topic in boundedTopics {
            var more = true
            while more {
                let step = try pruneByRule(topic, now: nowMilliseconds)
                deleted += step.deleted
                more = step.more
            }
        }
        return deleted
    }

    /// Begins a pass; returns whether there is anything to do.
    func startPass(now: Date) -> Bool {
        pruneQueue = boundedTopics
        usedBytes = (try? measureUsedBytes()) ?? usedBytes
        sizePruning = maxBytes > 0 && usedBytes > maxBytes
        return !pruneQueue.isEmpty || sizePruning
    }

    /// One chunk of pruning in its own transaction. Returns rows deleted and whether the
    /// pass has more to do.
    func step(now: Date) -> (deleted: Int, more: Bool) {
        let nowMilliseconds = Int64(now.timeIntervalSince1970 * 1000)
        do throws(StoreError) {
            if let topic = pruneQueue.last {
                let (deleted, more) = try pruneByRule(topic, now: nowMilliseconds)
                if !more { pruneQueue.removeLast() }
                return (deleted, true)
            }
            if sizePruning {
                usedBytes = try measureUsedBytes()
                guard usedBytes > maxBytes else {
                    sizePruning = false
                    return (0, false)
                }
                let deleted = try pruneOldest()
                if deleted == 0 { sizePruning = false }
                return (deleted, sizePruning)
            }
        } catch {
            // A failing disk: the append path reports it; try again next pass.
            transactions.rollBackIfOpen()
            pruneQueue.removeAll()
            sizePruning = false
        }
        return (0, false)
    }

    private func first(_ topic: Topic, _ name: UnsafePointer<CChar>) throws(StoreError) -> (sequence: UInt64, time: Int64)? {
        firstMessage.bind(1, text: name)
        defer { firstMessage.reset() }
        guard try firstMessage.step() else { return nil }
        return (UInt64(clamping: firstMessage.int(0)), firstMessage.int(1))
    }

    private func pruneByRule(_ topic: Topic, now: Int64) throws(StoreError) -> (deleted: Int, more: Bool) {
        guard let rule = rules.rule(for: topic) else { return (0, false) }
        let last = writer.lastSeq[topic] ?? 0
        let chunk = UInt64(max(1, pruneChunk))
        return try topic.name.cString { (name) throws(StoreError) -> (Int, Bool) in
            guard let first = try first(topic, name) else { return (0, false) }
            let limit = first.sequence + chunk - 1
            var through: UInt64 = 0
            if let maxMessages = rule.maxMessages, last > maxMessages {
                through = min(last - maxMessages, limit)
            }
            if let maxAge = rule.maxAgeMilliseconds, first.time < now - maxAge {
                let cutoff = now - maxAge
                scanTimes.bind(1, text: name)
                scanTimes.bind(2, Int64(bitPattern: limit))
                defer { scanTimes.reset() }
                while try scanTimes.step() {
                    guard scanTimes.int(1) < cutoff else { break }
                    through = max(through, UInt64(clamping: scanTimes.int(0)))
                }
            }
            guard through >= first.sequence else { return (0, false) }
            let deleted = try delete(name, through: through)
            return (deleted, through == limit)
        }
    }

    /// Deletes a chunk of the topic whose oldest message is the oldest of all.
    private func pruneOldest() throws(StoreError) -> Int {
        var oldest: (topic: Topic, sequence: UInt64, time: Int64)?
        for topic in writer.lastSeq.keys {
            try topic.name.cString { (name) throws(StoreError) in
                if let first = try first(topic, name), first.time < oldest?.time ?? .max {
                    oldest = (topic, first.sequence, first.time)
                }
            }
        }
        guard let oldest else { return 0 }
        let through = oldest.sequence + UInt64(max(1, pruneChunk)) - 1
        return try oldest.topic.name.cString { (name) throws(StoreError) in try delete(name, through: through) }
    }

    private func delete(_ name: UnsafePointer<CChar>, through: UInt64) throws(StoreError) -> Int {
        try transactions.begin()
        do throws(StoreError) {
            lastTimeThrough.bind(1, text: name)
            lastTimeThrough.bind(2, Int64(bitPattern: through))
            guard try lastTimeThrough.step() else {
                lastTimeThrough.reset()
                try transactions.commit()
                return 0
            }
            let prunedSeq = lastTimeThrough.int(0)
            let prunedTime = lastTimeThrough.int(1)
            lastTimeThrough.reset()
            deleteThrough.bind(1, text: name)
            deleteThrough.bind(2, Int64(bitPattern: through))
            try deleteThrough.run()
            let deleted = Int(sqlite3_changes(db))
            markPruned.bind(1, text: name)
            markPruned.bind(2, prunedSeq)
            markPruned.bind(3, prunedTime)
            try markPruned.run()
            try transactions.commit()
            return deleted
        } catch {
            transactions.rollBackIfOpen()
            throw error
        }
    }

    private func measureUsedBytes() throws(StoreError) -> Int64 {
        guard try pageCount.step() else { return 0 }
        let pages = pageCount.int(0)
        pageCount.reset()
        guard try freelistCount.step() else { return 0 }
        let free = freelistCount.int(0)
        freelistCount.reset()
        return (pages - free) * pageSize
    }
}
