/// Why the replay log could not do something.
public enum ReplayError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The message could not be made durable: the append queue is full, the disk is full,
    /// the database is read-only or failing, or the log is closed. Wire code `unavailable`;
    /// the publish is not acked (its live fan-out has happened regardless).
    case unavailable(String)
    /// The database file is not an SQLite database or is damaged. `switchboard serve` exits
    /// with status 69 (EX_UNAVAILABLE) printing `description`.
    case corrupt(path: String, detail: String)
    /// Any other failure opening or reading the database.
    case storage(StoreError)

    public var description: String {
        switch self {
        case .unavailable(let reason):
            return "replay log unavailable: \(reason)"
        case .corrupt(let path, let detail):
            return "the replay log database \(path) is corrupt (\(detail)). Stop the broker, move \(path) "
                + "and its -wal and -shm files aside or restore them from a backup, then start again "
                + "(`sqlite3 \(path) .recover` may salvage retained messages from the damaged copy)"
        case .storage(let error):
            return "replay log: \(error)"
        }
    }

    /// The one line a publisher gets for a publish that was not made durable. Seq 0: the
    /// message was never sequenced (a cluster node's Redis did not take it), so nobody got it;
    /// any other seq went out live before its commit failed.
    package static func notDurable(sequence: UInt64, _ error: ReplayError) -> String {
        sequence == 0 ? "not published: \(error)" : "seq \(sequence) was delivered live but is not durable: \(error)"
    }

    /// The wire code for this failure.
    package var wireCode: String {
        switch self {
        case .unavailable, .corrupt: "unavailable"
        case .storage: "internal"
        }
    }
}
