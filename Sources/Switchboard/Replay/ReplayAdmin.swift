import CSQLite
import NIOConcurrencyHelpers
import NIOPosix

/// What operators ask of the log (the admin API): how much a topic holds, and purging it.
/// Blocking: call off the event loops.
extension ReplayLog {
    /// Runs a blocking call of the log on NIO's thread pool, never on an event loop or the
    /// cooperative pool; `unavailable` once the pool is stopped (the broker is shutting down).
    static func offLoop<T: Sendable>(_ body: @escaping @Sendable () throws(ReplayError) -> T) async throws(ReplayError) -> T {
        let result: Result<T, ReplayError>
        do {
            result = try await NIOThreadPool.singleton.runIfActive { () -> Result<T, ReplayError> in
                do throws(ReplayError) {
                    return .success(try body())
                } catch {
                    return .failure(error)
                }
            }
        } catch {
            throw .unavailable("the broker is shutting down")
        }
        return try result.get()
    }

    /// Retained messages of `topic` and their payload bytes.
    package func retainedSize(of topic: Topic) throws(ReplayError) -> (count: Int, bytes: Int64) {
        try withReader { (c) throws(ReplayError) in
            do throws(StoreError) {
                let statement = try SQLiteConnection(db: c.db).prepare(
                    "SELECT count(*), coalesce(sum(length(payload)), 0) FROM replay_messages WHERE topic = ?")
                try statement.bind(topic.name, at: 1)
                guard try statement.step() else { return (0, 0) }
                return (Int(statement.int(0)), statement.int(1))
            } catch {
                throw Self.classify(error, path: path)
            }
        }
    }

    /// Deletes every retained message of `topic` committed so far, on the writer thread
    /// between batches, and records the newest as pruned: the topic's seqs continue, and a
    /// subscriber resuming from before it is told of a gap. Returns how many were deleted.
    package func purge(_ topic: Topic) throws(ReplayError) -> Int {
        let outcome = NIOLockedValueBox<Result<Int, ReplayError>>(.success(0))
        let ran = onWriter { db in
            let connection = SQLiteConnection(db: db)
            do throws(StoreError) {
                let deleted = try connection.transaction { (c) throws(StoreError) -> Int in
                    let newest = try c.prepare(
                        "SELECT seq, time FROM replay_messages WHERE topic = ?1 ORDER BY seq DESC LIMIT 1")
                    try newest.bind(topic.name, at: 1)
                    guard try newest.step() else { return 0 }
                    let (sequence, time) = (newest.int(0), newest.int(1))
                    let delete = try c.prepare("DELETE FROM replay_messages WHERE topic = ?1")
                    try delete.bind(topic.name, at: 1)
                    _ = try delete.step()
                    let count = c.changes
                    let mark = try c.prepare(
                        """
                        UPDATE topic_sequences SET pruned_seq = max(pruned_seq, ?2), pruned_time = max(pruned_time, ?3)
                        WHERE topic = ?1
                        """)
                    try mark.bind(topic.name, at: 1)
                    try mark.bind(sequence, at: 2)
                    try mark.bind(time, at: 3)
                    _ = try mark.step()
                    return count
                }
                outcome.withLockedValue { $0 = .success(deleted) }
            } catch {
                let failure = Self.classify(error, path: self.path)
                outcome.withLockedValue { $0 = .failure(failure) }
            }
        }
        guard ran else { throw .unavailable("the replay log is closed") }
        return try outcome.withLockedValue { $0 }.get()
    }
}
