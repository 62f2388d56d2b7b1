import CSQLite
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore

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

    /// The wire code for this failure.
    public var wireCode: String {
        switch self {
        case .unavailable, .corrupt: "unavailable"
        case .storage: "internal"
        }
    }

    static func isCorruption(_ code: Int32) -> Bool {
        let primary = code & 0xff
        return primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB
    }
}

/// One message of the log: what is appended, and what a read returns.
public struct StoredMessage: Sendable {
    public var topic: Topic
    public var sequence: UInt64
    /// Publish time, unix milliseconds (broker clock).
    public var time: Int64
    public var format: Publish.Format
    public var payload: ByteBuffer
    /// Who published it (for example `Principal.logLabel`); nil = unknown.
    public var publisher: String?
    /// The `msg` frame, filled in by `ReplayCursor` when asked (encoded on the reader thread,
    /// off the event loop); nil on appends and plain reads.
    public var frame: ByteBuffer?

    public init(
        topic: Topic, sequence: UInt64, time: Int64, format: Publish.Format, payload: ByteBuffer,
        publisher: String? = nil
    ) {
        self.topic = topic
        self.sequence = sequence
        self.time = time
        self.format = format
        self.payload = payload
        self.publisher = publisher
        self.frame = nil
    }

    /// The server→client frame for this message, exactly as live subscribers received it.
    public func encodeFrame(allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        OutgoingMessage.encodeFrame(
            topic: topic, sequence: sequence, time: time, payload: payload, format: format, allocator: allocator)
    }
}

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

/// The replay log: retained messages of the topics matched by `ReplayConfiguration.rules`,
/// in SQLite (WAL mode) through the C API, written by one writer thread of its own with
/// group commit, read through a small pool of read connections.
///
/// ## Writing
/// `append` only enqueues (a lock and an array append: it may be called under the broker's
/// sequencing lock). The writer thread takes everything queued, writes it in one
/// `BEGIN IMMEDIATE … COMMIT` transaction with reused prepared statements (group commit),
/// then calls the completions, so an ack sent from a completion means "committed".
/// Completions run on the writer thread: hop to an event loop and return.
///
/// Durability: `PRAGMA synchronous=NORMAL` in WAL mode. A commit is in the WAL file (in the
/// OS page cache) when `COMMIT` returns, so it survives the broker process being killed
/// (kill -9, crash, OOM); only an OS crash or power loss can lose the last transactions
/// (FULL would fsync every commit, at a large cost in ingest). Acked means "survives a
/// process crash".
///
/// Backpressure: at most `queueLimit` appends wait for the writer; beyond, `append` throws
/// `unavailable` at once instead of growing memory.
///
/// ## Sequences
/// The last committed seq of *every* topic (retained or not) is kept in `topic_sequences`,
/// updated once per topic per batch. `recordSequence` notes a non-retained topic's seq
/// (coalesced in memory: one entry per topic, written within `sequenceFlushInterval`) and
/// returns a ticket; once `durableSequenceNotes` reaches it the seq is committed, and the
/// broker may drop the topic from memory and read it back (`lookUpSequence`) when it is
/// published again. After a restart the broker starts from `retainedSequences()` and reads
/// every other topic's seq on its first publish: a committed seq is never handed out again. Seqs that were live-delivered
/// but not yet committed when the process died (never acked) can be handed out again; after
/// a clean `close()` nothing is lost.
///
/// ## Faults
/// A batch that fails (SQLITE_FULL, SQLITE_READONLY, SQLITE_IOERR, …) is rolled back, its
/// completions get `unavailable`, `status` becomes `degraded` (logged once on the change,
/// and once when writing works again); the next batch tries the disk again. Live fan-out
/// never depends on the log. A message lost that way leaves a hole in the topic's stored
/// seqs, which a replay reports as a gap.
///
/// ## Retention
/// At open, every topic is pruned to its rule's count and age before anything is read or
/// appended. Then, between batches, the writer prunes in chunks of `pruneChunk` rows, one
/// short transaction each, going back to appends between chunks (a pass starts every
/// `pruneInterval`): per topic by its rule's count and age, then the oldest messages of any
/// topic while the database's used size is over `maxBytes`. Topics no rule matches are not
/// stored.
public final class ReplayLog: @unchecked Sendable {
    public struct Options: Sendable {
        /// Seconds between pruning passes. Default 1.
        public var pruneInterval: Double = 1
        /// Rows deleted per pruning transaction. Default 2000.
        public var pruneChunk: Int = 2000
        /// How long a non-retained topic's seq may wait before it is written (when no appends
        /// carry it along sooner). Default 0.05 s.
        public var sequenceFlushInterval: Double = 0.05
        /// Read connections (and reader threads). Default 2.
        public var readers: Int = 2
        /// Run `PRAGMA quick_check` at open (reads the whole file: slow on a big log). Default false:
        /// a file that is not a database or has a damaged header or schema is still detected.
        public var verifyOnOpen = false
        public var busyTimeoutMilliseconds: Int32 = 5000

        public init() {}
    }

    public let path: String
    public let configuration: ReplayConfiguration
    let options: Options
    let logger: Logger

    private let condition = NSCondition()
    /// Everything below is protected by `condition`.
    private var queue: [Pending] = []
    private var pendingSequences: [Topic: UInt64] = [:]
    /// Tickets of `recordSequence`: notes made, and notes committed.
    private var sequenceNotes: UInt64 = 0
    private var durableNotes: UInt64 = 0
    private var stopping = false
    private var stopped = false
    private var writerWaiting = false
    private var enqueued: UInt64 = 0
    private var settled: UInt64 = 0
    private var settleWaiters: [(ticket: UInt64, callback: @Sendable () -> Void)] = []
    private var stats: ReplayStatistics
    private let writerDone = DispatchSemaphore(value: 0)

    private let writer: Writer
    private let readerPool: [Reader]
    private let nextReader = NIOLockedValueBox(0)
    private let initialSequences: [Topic: UInt64]

    struct Pending {
        var message: StoredMessage
        var completion: (@Sendable (Result<Void, ReplayError>) -> Void)?
    }

    /// Opens (creating if needed) the log at `path`, applying schema migrations, and starts
    /// the writer. Throws `.corrupt` when the file is not a usable database.
    public init(
        path: String, configuration: ReplayConfiguration, options: Options = Options(),
        migrations: [Migration] = Migration.bundled, logger: Logger = Logger(label: "switchboard.replay")
    ) throws(ReplayError) {
        self.path = path
        self.configuration = configuration
        self.options = options
        self.logger = logger
        self.stats = ReplayStatistics(
            status: .healthy, appended: 0, committed: 0, failed: 0, rejected: 0, batches: 0, pruned: 0, queued: 0,
            usedBytes: 0)
        let db = try Self.open(path: path, readOnly: false, busyTimeout: options.busyTimeoutMilliseconds)
        do throws(StoreError) {
            let connection = Connection(db: db)
            if path != ":memory:" && !path.isEmpty {
                let mode = try connection.scalarText("PRAGMA journal_mode=WAL")
                guard mode?.lowercased() == "wal" else {
                    throw StoreError(code: 0, message: "cannot switch \(path) to WAL mode (journal_mode is \(mode ?? "?"))")
                }
            }
            try connection.execute("PRAGMA synchronous=NORMAL")
            try Store.migrate(connection, migrations: migrations, path: path)
            if options.verifyOnOpen {
                let result = try connection.scalarText("PRAGMA quick_check")
                guard result == "ok" else { throw StoreError(code: SQLITE_CORRUPT, message: result ?? "quick_check failed") }
            }
        } catch {
            sqlite3_close_v2(db)
            throw Self.classify(error, path: path)
        }
        let writer: Writer
        do throws(StoreError) {
            writer = try Writer(db: db, configuration: configuration, options: options)
        } catch {
            sqlite3_close_v2(db)
            throw Self.classify(error, path: path)
        }
        do throws(StoreError) {
            // The rules hold from the first read: what a restart finds past them (rules tightened
            // while the broker was down, messages aged out meanwhile) goes before the log opens,
            // not some passes later.
            stats.pruned = UInt64(try writer.applyRules(now: Date()))
        } catch {
            writer.close()
            throw Self.classify(error, path: path)
        }
        self.writer = writer
        self.initialSequences = writer.lastSeq
        self.readerPool = (0..<max(1, options.readers)).map { Reader(index: $0, path: path, options: options) }
        let thread = Thread { [self] in runWriter() }
        thread.name = "switchboard-replay-writer"
        thread.start()
    }

    static func open(path: String, readOnly: Bool, busyTimeout: Int32) throws(ReplayError) -> OpaquePointer {
        let handle: OpaquePointer
        do throws(StoreError) {
            handle = try Store.open(path: path, busyTimeout: busyTimeout)
        } catch {
            throw classify(error, path: path)
        }
        if readOnly { sqlite3_exec(handle, "PRAGMA query_only=1", nil, nil, nil) }
        return handle
    }

    static func classify(_ error: StoreError, path: String) -> ReplayError {
        ReplayError.isCorruption(error.code) ? .corrupt(path: path, detail: error.message) : .storage(error)
    }

    /// The last committed seq of every topic that is retained or has stored messages, read at
    /// open: the broker holds these topics in memory from the start.
    public func retainedSequences() -> [Topic: UInt64] { initialSequences }

    /// The rule retaining `topic`, nil when it is not retained.
    public func rule(for topic: Topic) -> ReplayRule? { configuration.rule(for: topic) }

    /// Whether `topic`'s messages are stored (and their acks wait for the commit).
    public func retains(_ topic: Topic) -> Bool { configuration.rule(for: topic) != nil }

    // MARK: Appending

    /// Queues `message` for the next group commit; never blocks on I/O. `completion` (if any)
    /// runs on the writer thread once the batch is committed (`.success`: the message is
    /// durable, ack it) or has failed (`.unavailable`). Throws `.unavailable` at once, without
    /// calling `completion`, when the queue is full or the log is closed.
    ///
    /// Call in seq order per topic (the broker calls it under its sequencing lock). The caller
    /// decides retention (`retains`); every appended message is stored.
    ///
    /// `accepted` runs under the log's lock once the message is accepted, before the writer
    /// can take it, so before it can be committed and read back: the broker hands the message
    /// to the hubs there, so that a replay reading it always finds its live copy already
    /// queued on the subscriber's loop (else the live copy could arrive after the catch-up
    /// finished, a duplicate).
    public func append(
        _ message: StoredMessage, completion: (@Sendable (Result<Void, ReplayError>) -> Void)? = nil,
        accepted: () -> Void = {}
    ) throws(ReplayError) {
        condition.lock()
        guard !stopping else {
            stats.rejected += 1
            condition.unlock()
            throw .unavailable("the replay log is closed")
        }
        guard queue.count < configuration.queueLimit else {
            stats.rejected += 1
            condition.unlock()
            throw .unavailable("the replay log's write queue is full (\(configuration.queueLimit) messages)")
        }
        accepted()
        queue.append(Pending(message: message, completion: completion))
        enqueued += 1
        stats.appended += 1
        let wake = writerWaiting
        if wake { writerWaiting = false }
        condition.unlock()
        if wake { condition.signal() }
    }

    /// Notes the seq just given to a message of a non-retained topic, so that the topic
    /// continues after it after a restart. Coalesced: cheap to call on every publish.
    /// Returns a ticket: the seq is committed once `durableSequenceNotes` reaches it.
    @discardableResult
    public func recordSequence(topic: Topic, sequence: UInt64) -> UInt64 {
        condition.lock()
        // The first note since the last write starts the flush interval: a waiting writer
        // must learn its deadline (it may be asleep until the next pruning pass).
        let wake = pendingSequences.isEmpty && writerWaiting
        if let known = pendingSequences[topic] {
            if sequence > known { pendingSequences[topic] = sequence }
        } else {
            pendingSequences[topic] = sequence
        }
        sequenceNotes += 1
        let ticket = sequenceNotes
        if wake { writerWaiting = false }
        condition.unlock()
        if wake { condition.signal() }
        return ticket
    }

    /// Every `recordSequence` whose ticket is at most this is committed to `topic_sequences`.
    public var durableSequenceNotes: UInt64 {
        condition.lock()
        defer { condition.unlock() }
        return durableNotes
    }

    /// Appends accepted so far: a ticket for `whenSettled`. Every message appended before this
    /// call has a ticket ≤ the value returned.
    public var enqueuedCount: UInt64 {
        condition.lock()
        defer { condition.unlock() }
        return enqueued
    }

    /// Appends whose batch has finished (committed or failed).
    public var settledCount: UInt64 {
        condition.lock()
        defer { condition.unlock() }
        return settled
    }

    /// Calls `callback` (on the writer thread, or at once) when every append up to `ticket`
    /// has been committed or has failed.
    public func whenSettled(_ ticket: UInt64, _ callback: @escaping @Sendable () -> Void) {
        condition.lock()
        if settled >= ticket || stopped {
            condition.unlock()
            callback()
            return
        }
        settleWaiters.append((ticket, callback))
        condition.unlock()
    }

    public var status: ReplayStatus {
        condition.lock()
        defer { condition.unlock() }
        return stats.status
    }

    public var statistics: ReplayStatistics {
        condition.lock()
        defer { condition.unlock() }
        var copy = stats
        copy.queued = queue.count
        return copy
    }

    /// Commits everything queued, stops the writer and closes the connections. Appends after
    /// this throw `unavailable`. Blocks until the writer is done: not on an event loop.
    public func close() {
        condition.lock()
        let first = !stopping
        stopping = true
        writerWaiting = false
        condition.unlock()
        condition.signal()
        guard first else { return }
        writerDone.wait()
        for reader in readerPool { reader.close() }
    }

    /// Runs `body` on the writer thread between batches (tests: simulate a full or read-only disk).
    func onWriter(_ body: @escaping @Sendable (OpaquePointer) -> Void) {
        let done = DispatchSemaphore(value: 0)
        writer.hooks.withLockedValue { $0.append { db in body(db); done.signal() } }
        condition.lock()
        let wake = writerWaiting
        writerWaiting = false
        condition.unlock()
        if wake { condition.signal() }
        done.wait()
    }

    // MARK: The writer thread

    private func runWriter() {
        var batch: [Pending] = []
        var nextPrune = Date().addingTimeInterval(options.pruneInterval)
        var pruning = false
        var seqsSince = Date.distantFuture
        while true {
            condition.lock()
            var sequences: [Topic: UInt64] = [:]
            var notes: UInt64 = 0
            var woken = false
            while true {
                if !queue.isEmpty || stopping || pruning || !writer.hooks.withLockedValue({ $0.isEmpty }) { break }
                let now = Date()
                if now >= nextPrune { break }
                if !pendingSequences.isEmpty {
                    if seqsSince == .distantFuture { seqsSince = now }
                    if now.timeIntervalSince(seqsSince) >= options.sequenceFlushInterval { break }
                }
                var deadline = nextPrune
                if !pendingSequences.isEmpty {
                    deadline = min(deadline, seqsSince.addingTimeInterval(options.sequenceFlushInterval))
                }
                writerWaiting = true
                _ = condition.wait(until: deadline)
                writerWaiting = false
                woken = true
            }
            if woken, !stopping, queue.count < 256 {
                // Woken by the first appends of a burst: let the appending thread run on first
                // (sched_yield returns at once when no other thread wants this CPU). On a busy
                // or single CPU the writer would otherwise preempt it and commit every few
                // messages, paying a transaction for each; now the batch holds what it appends
                // until it yields the CPU.
                condition.unlock()
                sched_yield()
                condition.lock()
            }
            swap(&batch, &queue)
            // Every note made so far is in `sequences`, or was committed before.
            notes = sequenceNotes
            if !pendingSequences.isEmpty {
                swap(&sequences, &pendingSequences)
                seqsSince = .distantFuture
            }
            let exiting = stopping && batch.isEmpty
            condition.unlock()

            for hook in writer.hooks.withLockedValue({ hooks in defer { hooks.removeAll() }; return hooks }) {
                hook(writer.db)
            }
            if !batch.isEmpty || !sequences.isEmpty {
                commit(&batch, sequences, notes: notes)
            }
            if exiting { break }
            let now = Date()
            if !pruning && now >= nextPrune {
                pruning = writer.startPrunePass(now: now)
                nextPrune = now.addingTimeInterval(options.pruneInterval)
            }
            if pruning {
                let result = writer.pruneStep(now: now)
                pruning = result.more
                condition.lock()
                stats.pruned += UInt64(result.deleted)
                stats.usedBytes = writer.usedBytes
                condition.unlock()
            }
        }
        writer.close()
        condition.lock()
        stopped = true
        let waiters = settleWaiters
        settleWaiters.removeAll()
        condition.unlock()
        for waiter in waiters { waiter.callback() }
        writerDone.signal()
    }

    private func commit(_ batch: inout [Pending], _ sequences: [Topic: UInt64], notes: UInt64) {
        let result = writer.write(batch, sequences: sequences)
        var change: (from: ReplayStatus, to: ReplayStatus)?
        condition.lock()
        if case .failure(let error) = result {
            // Keep the seqs for the next batch; a new status is logged once.
            for (topic, seq) in sequences where seq > pendingSequences[topic] ?? 0 { pendingSequences[topic] = seq }
            for pending in batch where pending.message.sequence > pendingSequences[pending.message.topic] ?? 0 {
                pendingSequences[pending.message.topic] = pending.message.sequence
            }
            stats.failed += UInt64(batch.count)
            let reason = error.message
            if stats.status == .healthy { change = (stats.status, .degraded(reason: reason)) }
            stats.status = .degraded(reason: reason)
        } else {
            if !batch.isEmpty { stats.batches += 1 }
            stats.committed += UInt64(batch.count)
            durableNotes = max(durableNotes, notes)
            if stats.status != .healthy { change = (stats.status, .healthy) }
            stats.status = .healthy
        }
        settled += UInt64(batch.count)
        var ready: [@Sendable () -> Void] = []
        if !settleWaiters.isEmpty {
            settleWaiters.removeAll { waiter in
                guard waiter.ticket <= settled else { return false }
                ready.append(waiter.callback)
                return true
            }
        }
        condition.unlock()

        if let change {
            switch change.to {
            case .degraded(let reason):
                logger.error("replay log cannot write; publishes that need an ack get `unavailable` until it can", metadata: [
                    "database": "\(path)", "error": "\(reason)",
                ])
            case .healthy:
                logger.notice("replay log is writing again", metadata: ["database": "\(path)"])
            }
        }
        switch result {
        case .success:
            for index in batch.indices { batch[index].completion?(.success(())) }
        case .failure(let error):
            let failure = ReplayError.unavailable("cannot write the replay log: \(error.message)")
            for index in batch.indices { batch[index].completion?(.failure(failure)) }
        }
        batch.removeAll(keepingCapacity: true)
        for callback in ready { callback() }
    }

    // MARK: Reading

    /// A read connection with its own serial queue: cursor pages run there, off the event
    /// loops. Page requests of all catching-up clients are spread round-robin over the pool
    /// and served in FIFO order, so one long replay cannot starve the others.
    func reader() -> Reader {
        let index = nextReader.withLockedValue { next in
            defer { next = (next + 1) % readerPool.count }
            return next
        }
        return readerPool[index]
    }

    /// Runs `body` with a read connection, blocking the caller: not on an event loop.
    func withReader<R>(_ body: (ReaderConnection) throws(ReplayError) -> R) throws(ReplayError) -> R {
        let reader = reader()
        let result: Result<R, ReplayError> = reader.queue.sync {
            do throws(ReplayError) {
                return .success(try body(try reader.connection()))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// Retained messages of `topic` with seq > `after`, in seq order, at most `limit`.
    /// Blocking: call off the event loops (or use `ReplayCursor` on a reader queue).
    public func read(topic: Topic, after sequence: UInt64, limit: Int) throws(ReplayError) -> [StoredMessage] {
        try withReader { (c) throws(ReplayError) in
            var out: [StoredMessage] = []
            var frames: PageFrames?
            _ = try c.read(topic: topic, after: sequence, limit: limit, maxBytes: .max, frames: &frames, into: &out)
            return out
        }
    }

    /// The seq of the oldest retained message of `topic`, nil when none is retained.
    public func firstRetained(topic: Topic) throws(ReplayError) -> UInt64? {
        try withReader { (c) throws(ReplayError) in try c.firstRetained(topic: topic)?.sequence }
    }

    /// What the log knows of `topic`: last committed seq, newest pruned seq and its time.
    public func topicState(_ topic: Topic) throws(ReplayError) -> TopicLogState? {
        try withReader { (c) throws(ReplayError) in try c.topicState(topic) }
    }

    /// One page of a pattern replay: retained messages of the topics `pattern` matches, ordered
    /// by (topic name, seq), each with seq > `after[topic]` (0 when absent), at most `limit`.
    /// Stateless paging: feed the last seq of each topic returned back into `after`. For
    /// large replays `ReplayCursor` is cheaper (it remembers where it is).
    public func read(pattern: TopicPattern, after: [Topic: UInt64], limit: Int) throws(ReplayError) -> [StoredMessage] {
        try withReader { (c) throws(ReplayError) in
            var out: [StoredMessage] = []
            var frames: PageFrames?
            for topic in try c.topics(matching: pattern) {
                let remaining = limit - out.count
                if remaining <= 0 { break }
                _ = try c.read(
                    topic: topic, after: after[topic] ?? 0, limit: remaining, maxBytes: .max, frames: &frames,
                    into: &out)
            }
            return out
        }
    }
}

/// What `topic_sequences` says of one topic.
public struct TopicLogState: Sendable, Hashable {
    public var lastSequence: UInt64
    /// The newest message removed by retention (0 = none) and its publish time.
    public var prunedSequence: UInt64
    public var prunedTime: Int64
}

// MARK: - SQLite helpers

/// SQLITE_STATIC: the bound bytes stay valid until the statement is stepped and reset.
private let staticDestructor: sqlite3_destructor_type? = nil

/// A prepared statement on a raw handle, for the hot paths (bind without copies).
final class RawStatement {
    let db: OpaquePointer
    let statement: OpaquePointer

    init(_ db: OpaquePointer, _ sql: String) throws(StoreError) {
        var statement: OpaquePointer?
        let rc = sqlite3_prepare_v3(db, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil)
        guard rc == SQLITE_OK, let statement else {
            throw StoreError(code: rc, message: "cannot prepare \(sql): \(String(cString: sqlite3_errmsg(db)))")
        }
        self.db = db
        self.statement = statement
    }

    private var isFinalized = false

    deinit { finalize() }

    /// Releases the statement now (so its connection can close at once); not usable after.
    func finalize() {
        guard !isFinalized else { return }
        isFinalized = true
        sqlite3_finalize(statement)
    }

    func fail(_ rc: Int32) -> StoreError {
        StoreError(code: sqlite3_extended_errcode(db), message: String(cString: sqlite3_errmsg(db)))
    }

    func bind(_ index: Int32, _ value: Int64) { sqlite3_bind_int64(statement, index, value) }

    func bind(_ index: Int32, text: UnsafePointer<CChar>) { sqlite3_bind_text(statement, index, text, -1, staticDestructor) }

    func bindNull(_ index: Int32) { sqlite3_bind_null(statement, index) }

    func bind(_ index: Int32, blob: UnsafeRawBufferPointer) {
        sqlite3_bind_blob(
            statement, index, blob.baseAddress ?? UnsafeRawPointer(bitPattern: 1), Int32(blob.count), staticDestructor)
    }

    /// Steps a statement that returns no rows, then resets it.
    func run() throws(StoreError) {
        let rc = sqlite3_step(statement)
        defer { sqlite3_reset(statement) }
        guard rc == SQLITE_DONE || rc == SQLITE_ROW else { throw fail(rc) }
    }

    func step() throws(StoreError) -> Bool {
        let rc = sqlite3_step(statement)
        if rc == SQLITE_ROW { return true }
        if rc == SQLITE_DONE { return false }
        let error = fail(rc)
        sqlite3_reset(statement)
        throw error
    }

    func reset() {
        sqlite3_reset(statement)
        sqlite3_clear_bindings(statement)
    }

    func int(_ column: Int32) -> Int64 { sqlite3_column_int64(statement, column) }

    func text(_ column: Int32) -> String {
        guard let pointer = sqlite3_column_text(statement, column) else { return "" }
        let count = Int(sqlite3_column_bytes(statement, column))
        return String(decoding: UnsafeBufferPointer(start: pointer, count: count), as: UTF8.self)
    }

    func optionalText(_ column: Int32) -> String? {
        sqlite3_column_type(statement, column) == SQLITE_NULL ? nil : text(column)
    }

    func blobBytes(_ column: Int32) -> UnsafeRawBufferPointer {
        let count = Int(sqlite3_column_bytes(statement, column))
        guard count > 0, let pointer = sqlite3_column_blob(statement, column) else {
            return UnsafeRawBufferPointer(start: nil, count: 0)
        }
        return UnsafeRawBufferPointer(start: pointer, count: count)
    }
}

extension Publish.Format {
    var storedValue: Int64 { self == .json ? 0 : 1 }
    init(storedValue: Int64) { self = storedValue == 0 ? .json : .binary }
}

// MARK: - Writer

/// The writer connection and its state; used only on the writer thread.
final class Writer: @unchecked Sendable {
    let db: OpaquePointer
    let configuration: ReplayConfiguration
    let options: Options
    typealias Options = ReplayLog.Options
    /// Last committed seq of every topic that is retained or has stored messages, kept in
    /// memory for retention (topics that are neither are only in `topic_sequences`).
    var lastSeq: [Topic: UInt64] = [:]
    var usedBytes: Int64 = 0
    /// Closures for tests, run between batches.
    let hooks = NIOLockedValueBox<[@Sendable (OpaquePointer) -> Void]>([])

    private let begin: RawStatement
    private let commitStatement: RawStatement
    private let rollback: RawStatement
    private let insert: RawStatement
    private let upsertSequence: RawStatement
    private let firstMessage: RawStatement
    private let scanTimes: RawStatement
    private let lastTimeThrough: RawStatement
    private let deleteThrough: RawStatement
    private let markPruned: RawStatement
    private let pageCount: RawStatement
    private let freelistCount: RawStatement
    private let pageSize: Int64

    /// Topics left in the current pruning pass.
    private var pruneQueue: [Topic] = []
    private var sizePruning = false

    init(db: OpaquePointer, configuration: ReplayConfiguration, options: Options) throws(StoreError) {
        self.db = db
        self.configuration = configuration
        self.options = options
        begin = try RawStatement(db, "BEGIN IMMEDIATE")
        commitStatement = try RawStatement(db, "COMMIT")
        rollback = try RawStatement(db, "ROLLBACK")
        insert = try RawStatement(
            db, "INSERT OR REPLACE INTO replay_messages (topic, seq, time, format, payload, publisher) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
        upsertSequence = try RawStatement(
            db, """
                INSERT INTO topic_sequences (topic, last_seq) VALUES (?1, ?2)
                ON CONFLICT (topic) DO UPDATE SET last_seq = max(last_seq, excluded.last_seq)
                """)
        firstMessage = try RawStatement(db, "SELECT seq, time FROM replay_messages WHERE topic = ?1 ORDER BY seq LIMIT 1")
        scanTimes = try RawStatement(
            db, "SELECT seq, time FROM replay_messages WHERE topic = ?1 AND seq <= ?2 ORDER BY seq")
        lastTimeThrough = try RawStatement(
            db, "SELECT seq, time FROM replay_messages WHERE topic = ?1 AND seq <= ?2 ORDER BY seq DESC LIMIT 1")
        deleteThrough = try RawStatement(db, "DELETE FROM replay_messages WHERE topic = ?1 AND seq <= ?2")
        markPruned = try RawStatement(
            db, """
                UPDATE topic_sequences SET pruned_seq = max(pruned_seq, ?2), pruned_time = max(pruned_time, ?3)
                WHERE topic = ?1
                """)
        pageCount = try RawStatement(db, "PRAGMA page_count")
        freelistCount = try RawStatement(db, "PRAGMA freelist_count")
        pageSize = try Connection(db: db).scalarInt("PRAGMA page_size") ?? 4096

        // Where every topic stands: topic_sequences, and the stored messages (the same
        // transaction wrote both, but max() costs one seek per topic and guards against a
        // table edited by hand).
        let all = try RawStatement(db, "SELECT topic, last_seq FROM topic_sequences")
        let maxSeq = try RawStatement(db, "SELECT max(seq) FROM replay_messages WHERE topic = ?1")
        while try all.step() {
            guard let topic = try? Topic(all.text(0)) else { continue }
            var last = UInt64(clamping: all.int(1))
            var stored = false
            try topic.name.cString { (name) throws(StoreError) in
                maxSeq.bind(1, text: name)
                if try maxSeq.step(), maxSeq.int(0) > 0 {
                    last = max(last, UInt64(clamping: maxSeq.int(0)))
                    stored = true
                }
                maxSeq.reset()
            }
            if stored || configuration.rule(for: topic) != nil { lastSeq[topic] = last }
        }
        all.reset()
        usedBytes = (try? measureUsedBytes()) ?? 0
    }

    /// Closes the connection now, not when this object goes away: whoever reopens the file
    /// right after `ReplayLog.close()` must find it closed (and, once the readers close too,
    /// checkpointed).
    func close() {
        for statement in [
            begin, commitStatement, rollback, insert, upsertSequence, firstMessage, scanTimes, lastTimeThrough,
            deleteThrough, markPruned, pageCount, freelistCount,
        ] {
            statement.finalize()
        }
        sqlite3_close_v2(db)
    }

    /// One group commit: every message of `batch` and the seqs, in one transaction.
    func write(_ batch: [ReplayLog.Pending], sequences: [Topic: UInt64]) -> Result<Void, StoreError> {
        var stored: [Topic: UInt64] = [:]
        do throws(StoreError) {
            try begin.run()
            // Indexed, not `for pending in batch`: each message is read in place rather than
            // copied (a copy retains and releases its four references). A topic's messages
            // come in seq order, so its maximum is its last message of a run: the dictionary
            // is touched once per run of one topic, not once per message.
            for index in batch.indices {
                let sequence = batch[index].message.sequence
                if index + 1 == batch.endIndex || batch[index + 1].message.topic != batch[index].message.topic,
                    sequence > stored[batch[index].message.topic] ?? 0
                {
                    stored[batch[index].message.topic] = sequence
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
            for (topic, seq) in sequences.merging(stored, uniquingKeysWith: max) {
                try topic.name.cString { (name) throws(StoreError) in
                    upsertSequence.bind(1, text: name)
                    upsertSequence.bind(2, Int64(bitPattern: seq))
                    try upsertSequence.run()
                }
            }
            try commitStatement.run()
        } catch {
            if sqlite3_get_autocommit(db) == 0 { try? rollback.run() }
            return .failure(error)
        }
        for (topic, seq) in stored where seq > lastSeq[topic] ?? 0 { lastSeq[topic] = seq }
        return .success(())
    }

    // MARK: Pruning

    /// Topics whose rule bounds their count or age.
    private var boundedTopics: [Topic] {
        lastSeq.keys.filter { topic in
            guard let rule = configuration.rule(for: topic) else { return false }
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
    func startPrunePass(now: Date) -> Bool {
        pruneQueue = boundedTopics
        usedBytes = (try? measureUsedBytes()) ?? usedBytes
        sizePruning = configuration.maxBytes > 0 && usedBytes > configuration.maxBytes
        return !pruneQueue.isEmpty || sizePruning
    }

    /// One chunk of pruning in its own transaction. Returns rows deleted and whether the
    /// pass has more to do.
    func pruneStep(now: Date) -> (deleted: Int, more: Bool) {
        let nowMilliseconds = Int64(now.timeIntervalSince1970 * 1000)
        do throws(StoreError) {
            if let topic = pruneQueue.last {
                let (deleted, more) = try pruneByRule(topic, now: nowMilliseconds)
                if !more { pruneQueue.removeLast() }
                return (deleted, true)
            }
            if sizePruning {
                usedBytes = try measureUsedBytes()
                guard usedBytes > configuration.maxBytes else {
                    sizePruning = false
                    return (0, false)
                }
                let deleted = try pruneOldest()
                if deleted == 0 { sizePruning = false }
                return (deleted, sizePruning)
            }
        } catch {
            // A failing disk: the append path reports it; try again next pass.
            if sqlite3_get_autocommit(db) == 0 { try? rollback.run() }
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
        guard let rule = configuration.rule(for: topic) else { return (0, false) }
        let last = lastSeq[topic] ?? 0
        let chunk = UInt64(max(1, options.pruneChunk))
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
        for topic in lastSeq.keys {
            try topic.name.cString { (name) throws(StoreError) in
                if let first = try first(topic, name), first.time < oldest?.time ?? .max {
                    oldest = (topic, first.sequence, first.time)
                }
            }
        }
        guard let oldest else { return 0 }
        let through = oldest.sequence + UInt64(max(1, options.pruneChunk)) - 1
        return try oldest.topic.name.cString { (name) throws(StoreError) in try delete(name, through: through) }
    }

    private func delete(_ name: UnsafePointer<CChar>, through: UInt64) throws(StoreError) -> Int {
        try begin.run()
        do throws(StoreError) {
            lastTimeThrough.bind(1, text: name)
            lastTimeThrough.bind(2, Int64(bitPattern: through))
            guard try lastTimeThrough.step() else {
                lastTimeThrough.reset()
                try commitStatement.run()
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
            try commitStatement.run()
            return deleted
        } catch {
            if sqlite3_get_autocommit(db) == 0 { try? rollback.run() }
            throw error
        }
    }

    func measureUsedBytes() throws(StoreError) -> Int64 {
        guard try pageCount.step() else { return 0 }
        let pages = pageCount.int(0)
        pageCount.reset()
        guard try freelistCount.step() else { return 0 }
        let free = freelistCount.int(0)
        freelistCount.reset()
        return (pages - free) * pageSize
    }
}

// Typed-throws wrappers (the standard library's `withCString` and NIO's
// `withUnsafeReadableBytes` rethrow `any Error`).
extension String {
    @inline(__always)
    func cString<R>(_ body: (UnsafePointer<CChar>) throws(StoreError) -> R) throws(StoreError) -> R {
        let result: Result<R, StoreError> = withCString { pointer in
            do throws(StoreError) { return .success(try body(pointer)) } catch { return .failure(error) }
        }
        return try result.get()
    }
}

extension ByteBuffer {
    @inline(__always)
    func withReadableBytes<R>(_ body: (UnsafeRawBufferPointer) throws(StoreError) -> R) throws(StoreError) -> R {
        let result: Result<R, StoreError> = withUnsafeReadableBytes { bytes in
            do throws(StoreError) { return .success(try body(bytes)) } catch { return .failure(error) }
        }
        return try result.get()
    }
}
