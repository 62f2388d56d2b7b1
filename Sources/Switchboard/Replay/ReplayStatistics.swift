/// What the writer is able to do.
public enum ReplayStatus: Sendable, Hashable {
    /// Appends are being committed.
    case healthy
    /// The last batch could not be written (disk full, read-only, I/O error…): appends fail
    /// with `unavailable` until a batch commits again. Every batch is retried against the disk,
    /// so writing resumes by itself once the condition clears.
    case degraded(reason: String)
}

/// Counters for stats and tests. Monotonic since the log was opened.
public struct ReplayStatistics: Sendable, Hashable {
    public var status: ReplayStatus
    /// Appends accepted into the queue.
    public var appended: UInt64
    /// Appended messages committed.
    public var committed: UInt64
    /// Appended messages whose batch failed (not acked).
    public var failed: UInt64
    /// Appends refused because the queue was full or the log closed.
    public var rejected: UInt64
    /// Write transactions committed for appends (one per batch: group commit).
    public var batches: UInt64
    /// Messages removed by retention and the size cap.
    public var pruned: UInt64
    /// Appends waiting for the writer right now.
    public var queued: Int
    /// Used bytes of the database at the last pruning check (pages in use × page size).
    public var usedBytes: Int64
}
