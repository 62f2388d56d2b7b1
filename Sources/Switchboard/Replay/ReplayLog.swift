import CSQLite
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// The replay log: retained messages of the topics matched by its retention rules (`rules`:
/// the ones stored by `replaceRules`, else `ReplayConfiguration.rules`),
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
/// The last committed seq of *every* topic (retained or not), with its publish time, is kept
/// in `topic_sequences`, updated once per topic per batch. `recordSequence` notes a non-retained topic's seq
/// (coalesced in memory: one entry per topic, written within `sequenceFlushInterval`) and
/// returns a ticket; once `durableSequenceNotes` reaches it the seq is committed, and the
/// broker may drop the topic from memory and read it back (`lookUpSequence`) when it is
/// published again. After a restart the broker starts from `retainedTopics()` and reads
/// every other topic's seq on its first publish: a committed seq is never handed out again.
/// Nor is one anybody saw after a crash: committed messages go to the sink of
/// `deliverCommitted` (the broker's hubs) only once committed, and a topic that is not
/// retained moves past every seq it could have handed out unnoted (`markRunning`).
///
/// ## Faults
/// A batch that fails (SQLITE_FULL, SQLITE_READONLY, SQLITE_IOERR, …) is rolled back, its
/// completions get `unavailable`, `status` becomes `degraded` (logged once on the change,
/// and once when writing works again); the next batch tries the disk again. Its messages
/// are not handed over. A message lost that way leaves a hole in the topic's stored seqs,
/// which a replay reports as a gap.
///
/// ## Retention
/// At open, every topic is pruned to its rule's count and age before anything is read or
/// appended. Then, between batches, the writer prunes in chunks of `pruneChunk` rows, one
/// short transaction each, going back to appends between chunks (a pass starts every
/// `pruneInterval`): per topic by its rule's count and age, then the oldest messages of any
/// topic while the database's used size is over `maxBytes`. Topics no rule matches are not
/// stored. `replaceRules` stores new rules and hands them to the pruner for its next pass.
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
    /// As given: its `rules` are the initial ones, in force while the store holds none.
    public let configuration: ReplayConfiguration
    let options: Options
    let logger: Logger

    private let condition = NSCondition()
    /// Everything below is protected by `condition`.
    private var queue: [PendingAppend] = []
    private var pendingSequences: [Topic: LastPublish] = [:]
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
    /// Per topic, the last seq handed to `committedSink`: a read goes no further (see
    /// `delivered(through:)`). Topics absent have nothing committed in this process.
    private var handedOver: [Topic: UInt64] = [:]
    private var committedSink: (@Sendable ([PendingAppend]) -> Void)?
    private let writerDone = DispatchSemaphore(value: 0)
    /// Told how long each group commit took, in nanoseconds (the broker's metrics).
    private let commitObserver = NIOLockedValueBox<(@Sendable (Int64) -> Void)?>(nil)
    /// The rules in force, and whether they come from the store (else from `configuration`).
    private let retention: NIOLockedValueBox<(rules: RetentionRules, stored: Bool)>

    private let writer: ReplayWriter
    private let pruner: ReplayPruner
    let readerPool: [ReplayReader]
    let nextReader = NIOLockedValueBox(0)
    private let initialTopics: [Topic: LastPublish]
    /// The seq after which a topic the log has no seq for starts (see `markRunning`).
    let newTopicFloor: UInt64
    /// Names the history the seqs of this database count in: made when its replay state is
    /// first written, so a database replaced or recreated has another. Hex digits.
    public let epoch: String

    struct PendingAppend {
        var message: StoredMessage
        var completion: (@Sendable (Result<Void, ReplayError>) -> Void)?
    }

    /// Opens (creating if needed) the log at `path`, applying schema migrations, and starts
    /// the writer. Throws `.corrupt` when the file is not a usable database.
    public init(
        path: String, configuration: ReplayConfiguration, options: Options = Options(),
        logger: Logger = Logger(label: "switchboard.replay")
    ) throws(ReplayError) {
        self.path = path
        self.configuration = configuration
        self.options = options
        self.logger = logger
        self.stats = ReplayStatistics(
            status: .healthy, appended: 0, committed: 0, failed: 0, rejected: 0, batches: 0, pruned: 0, queued: 0,
            usedBytes: 0)
        let db = try Self.open(path: path, readOnly: false, busyTimeout: options.busyTimeoutMilliseconds)
        var floor: Int64 = 0
        var epoch = ""
        var rules = configuration.retention
        var stored = false
        do throws(StoreError) {
            let connection = SQLiteConnection(db: db)
            try connection.setUp(path: path, migrations: Migration.bundled)
            if options.verifyOnOpen {
                let result = try connection.scalarText("PRAGMA quick_check")
                guard result == "ok" else { throw StoreError(code: SQLITE_CORRUPT, message: result ?? "quick_check failed") }
            }
            if let texts = try RetentionStore.load(connection) {
                switch RetentionRules.parse(texts) {
                case .success(let parsed): rules = parsed
                case .failure(let problem):
                    throw StoreError(code: SQLITE_CORRUPT, message: "stored retention rules: \(problem.message)")
                }
                stored = true
            }
            let marked = try Self.markRunning(connection, rules: rules, queueLimit: configuration.queueLimit)
            floor = marked.floor
            epoch = String(UInt64(marked.epoch), radix: 16)
            if marked.jump > 0 {
                logger.notice("the last process stopped uncleanly: topics that may not have been retained continue further on", metadata: [
                    "database": "\(path)", "seqs": "\(marked.jump)",
                ])
            }
        } catch {
            sqlite3_close_v2(db)
            throw Self.classify(error, path: path)
        }
        let writer: ReplayWriter
        do throws(StoreError) {
            writer = try ReplayWriter(db: db, rules: rules)
        } catch {
            sqlite3_close_v2(db)
            throw Self.classify(error, path: path)
        }
        let pruner: ReplayPruner
        do throws(StoreError) {
            pruner = try ReplayPruner(writer: writer, rules: rules, maxBytes: configuration.maxBytes, pruneChunk: options.pruneChunk)
        } catch {
            writer.close()
            throw Self.classify(error, path: path)
        }
        do throws(StoreError) {
            // The rules hold from the first read: what a restart finds past them (rules tightened
            // while the broker was down, messages aged out meanwhile) goes before the log opens,
            // not some passes later.
            stats.pruned = UInt64(try pruner.applyRules(now: Date()))
        } catch {
            pruner.close()
            writer.close()
            throw Self.classify(error, path: path)
        }
        self.writer = writer
        self.pruner = pruner
        self.retention = NIOLockedValueBox((rules, stored))
        self.newTopicFloor = UInt64(clamping: floor)
        self.epoch = epoch
        self.initialTopics = writer.openedTopics
        self.readerPool = (0..<max(1, options.readers)).map { ReplayReader(index: $0, path: path, options: options) }
        let thread = Thread { [self] in runWriter() }
        thread.name = "switchboard-replay-writer"
        thread.start()
    }

    /// Marks the log as open by a running process that may hand out up to `queueLimit` seqs of
    /// topics that are not retained before they are noted (see `recordSequence`). When the
    /// mark is found from a process that did not close the log (kill -9, crash), every such
    /// topic first moves that process's limit further on, so none of the seqs it handed out
    /// is given again; so does `floor`, after which every topic the log has no seq for starts
    /// (the process may have handed out seqs of topics it never noted). A topic `rules`
    /// retain needs no jump, unless that process replaced the rules (`rules_changed`): the
    /// topic may not have been retained for part of its run. Returns that jump (0 after a
    /// clean close), the floor, and the database's epoch (made on its first open).
    private static func markRunning(
        _ c: SQLiteConnection, rules: RetentionRules, queueLimit: Int
    ) throws(StoreError) -> (jump: Int64, floor: Int64, epoch: Int64) {
        try c.transaction { (c) throws(StoreError) -> (jump: Int64, floor: Int64, epoch: Int64) in
            var epoch = try c.scalarInt("SELECT value FROM replay_state WHERE key = 'epoch'") ?? 0
            if epoch == 0 {
                epoch = Int64.random(in: 1...Int64.max)
                try c.execute("INSERT INTO replay_state (key, value) VALUES ('epoch', \(epoch))")
            }
            let jump = try c.scalarInt("SELECT value FROM replay_state WHERE key = 'running'") ?? 0
            var floor = try c.scalarInt("SELECT value FROM replay_state WHERE key = 'floor'") ?? 0
            let rulesChanged = try c.scalarInt("SELECT value FROM replay_state WHERE key = 'rules_changed'") ?? 0 != 0
            if jump > 0 {
                floor += jump
                try c.execute(
                    "INSERT INTO replay_state (key, value) VALUES ('floor', \(floor)) "
                        + "ON CONFLICT (key) DO UPDATE SET value = excluded.value")
                // Topics retained all along need none: their messages reach nobody before they
                // are committed.
                let all = try c.prepare("SELECT topic FROM topic_sequences")
                var moving: [String] = []
                while try all.step() {
                    let name = all.text(0)
                    if !rulesChanged, let topic = try? Topic(name), rules.retains(topic) { continue }
                    moving.append(name)
                }
                let update = try c.prepare("UPDATE topic_sequences SET last_seq = last_seq + ?1 WHERE topic = ?2")
                for name in moving {
                    try update.bind(jump, at: 1).bind(name, at: 2).run()
                }
            }
            try c.execute(
                "INSERT INTO replay_state (key, value) VALUES ('running', \(queueLimit)), ('rules_changed', 0) "
                    + "ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            return (jump, floor, epoch)
        }
    }

    static func open(path: String, readOnly: Bool, busyTimeout: Int32) throws(ReplayError) -> OpaquePointer {
        let handle: OpaquePointer
        do throws(StoreError) {
            handle = try SQLiteConnection.open(path: path, busyTimeout: busyTimeout)
        } catch {
            throw classify(error, path: path)
        }
        if readOnly { sqlite3_exec(handle, "PRAGMA query_only=1", nil, nil, nil) }
        return handle
    }

    static func classify(_ error: StoreError, path: String) -> ReplayError {
        error.isCorruption ? .corrupt(path: path, detail: error.message) : .storage(error)
    }

    /// The last committed seq and its time of every topic that is retained or has stored
    /// messages, read at open: the broker holds these topics in memory from the start.
    package func retainedTopics() -> [Topic: LastPublish] { initialTopics }

    /// The retention rules in force.
    public var rules: RetentionRules { retention.withLockedValue { $0.rules } }

    /// Whether `rules` come from the store (set by `replaceRules`, in this process or an
    /// earlier one) rather than from `configuration`.
    public var rulesAreStored: Bool { retention.withLockedValue { $0.stored } }

    /// The rule retaining `topic`, nil when it is not retained.
    public func rule(for topic: Topic) -> ReplayRule? { rules.rule(for: topic) }

    /// Whether `topic`'s messages are stored (and their acks wait for the commit).
    public func retains(_ topic: Topic) -> Bool { rules.retains(topic) }

    /// Stores `rules` as the log's rules from now on (and at every later open), then calls
    /// `install` with them, which must make them the ones publishes are decided by; the
    /// pruner applies them from its next pass. Runs on the writer thread between batches, so
    /// that replacements take effect in the order they are stored. Blocks: not on an event
    /// loop. Throws `unavailable` when the log is closing or the store cannot be written
    /// (the rules in force stay).
    package func replaceRules(_ rules: RetentionRules, install: @escaping @Sendable (RetentionRules) -> Void) throws(ReplayError) {
        let outcome = NIOLockedValueBox<Result<Void, StoreError>?>(nil)
        let ran = onWriter { [self] db in
            let result = RetentionStore.save(rules.texts, SQLiteConnection(db: db))
            if case .success = result {
                install(rules)
                retention.withLockedValue { $0 = (rules, true) }
                pruner.replaceRules(rules)
            }
            outcome.withLockedValue { $0 = result }
        }
        guard ran else { throw .unavailable("the replay log is closed") }
        if case .failure(let error) = outcome.withLockedValue({ $0 }) {
            throw .unavailable("cannot store the retention rules: \(error.message)")
        }
    }

    // MARK: Appending

    /// Queues `message` for the next group commit; never blocks on I/O. `completion` (if any)
    /// runs on the writer thread once the batch is committed (`.success`: the message is
    /// durable, ack it) or has failed (`.unavailable`). Throws `.unavailable` at once, without
    /// calling `completion`, when the queue is full or the log is closed.
    ///
    /// Call in seq order per topic (the broker calls it under its sequencing lock). The caller
    /// decides retention (`retains`); every appended message is stored.
    ///
    /// Once committed, the message goes to the sink set by `deliverCommitted` (with its
    /// `frame`, as the caller set it), before its completion runs.
    package func append(
        _ message: StoredMessage, completion: (@Sendable (Result<Void, ReplayError>) -> Void)? = nil
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
        queue.append(PendingAppend(message: message, completion: completion))
        enqueued += 1
        stats.appended += 1
        let wake = writerWaiting
        if wake { writerWaiting = false }
        condition.unlock()
        if wake { condition.signal() }
    }

    /// Sets where committed messages go (the broker: to its hubs). Called by the writer thread
    /// with each committed batch, in commit order (so in seq order per topic), before the
    /// batch's completions; a failed batch is not handed over. Set it before the first append.
    func deliverCommitted(to sink: @escaping @Sendable ([PendingAppend]) -> Void) {
        condition.lock()
        committedSink = sink
        condition.unlock()
    }

    /// The last seq of `topic` that a replay may read: committed *and* handed to the sink.
    /// A message read within it has its live copy already queued on every hub's loop, so a
    /// catch-up that reads it meets the live copy while still catching up (a duplicate it
    /// drops), never after it finished.
    func delivered(through topic: Topic) -> UInt64 {
        condition.lock()
        defer { condition.unlock() }
        return handedOver[topic] ?? .max
    }

    /// Notes the seq (and publish time) just given to a message of a non-retained topic, so
    /// that the topic continues after it after a restart. Coalesced: cheap to call on every
    /// publish. Returns a ticket: the seq is committed once `durableSequenceNotes` reaches it.
    ///
    /// Throws `unavailable` (the seq must not be handed out) while `queueLimit` notes already
    /// wait to be committed: after a crash the next process moves these topics on by that
    /// limit (`markRunning`), which is safe only while no topic runs further ahead of what
    /// is committed.
    @discardableResult
    package func recordSequence(topic: Topic, _ last: LastPublish) throws(ReplayError) -> UInt64 {
        condition.lock()
        guard !stopping else {
            condition.unlock()
            throw .unavailable("the replay log is closed")
        }
        guard sequenceNotes - durableNotes < UInt64(configuration.queueLimit) else {
            stats.rejected += 1
            condition.unlock()
            throw .unavailable(
                "\(configuration.queueLimit) seqs of topics that are not retained wait to be written (replay_queue_limit)")
        }
        // The first note since the last write starts the flush interval: a waiting writer
        // must learn its deadline (it may be asleep until the next pruning pass).
        let wake = pendingSequences.isEmpty && writerWaiting
        // `>=`: a first note at seq 0 is kept too, so that it is written (and its ticket settles).
        if last.sequence >= pendingSequences[topic]?.sequence ?? 0 { pendingSequences[topic] = last }
        sequenceNotes += 1
        let ticket = sequenceNotes
        if wake { writerWaiting = false }
        condition.unlock()
        if wake { condition.signal() }
        return ticket
    }

    /// Every `recordSequence` whose ticket is at most this is committed to `topic_sequences`.
    package var durableSequenceNotes: UInt64 {
        condition.lock()
        defer { condition.unlock() }
        return durableNotes
    }

    /// Appends accepted so far: a ticket for `whenSettled`. Every message appended before this
    /// call has a ticket ≤ the value returned.
    package var enqueuedCount: UInt64 {
        condition.lock()
        defer { condition.unlock() }
        return enqueued
    }

    /// Appends whose batch has finished (committed or failed).
    package var settledCount: UInt64 {
        condition.lock()
        defer { condition.unlock() }
        return settled
    }

    /// Calls `callback` (on the writer thread, or at once) when every append up to `ticket`
    /// has been committed or has failed.
    package func whenSettled(_ ticket: UInt64, _ callback: @escaping @Sendable () -> Void) {
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

    /// Runs `body` on the writer thread between batches (a purge; tests simulate a full or
    /// read-only disk), blocking until it has run; false, without running it, once the log is
    /// closing.
    @discardableResult
    func onWriter(_ body: @escaping @Sendable (OpaquePointer) -> Void) -> Bool {
        let done = DispatchSemaphore(value: 0)
        condition.lock()
        // Added under the lock that `close()` sets `stopping` with: a hook added before it is
        // run by the writer's last pass.
        guard !stopping else {
            condition.unlock()
            return false
        }
        writer.hooks.withLockedValue { $0.append { db in body(db); done.signal() } }
        let wake = writerWaiting
        writerWaiting = false
        condition.unlock()
        if wake { condition.signal() }
        done.wait()
        return true
    }

    /// Closures of `onWriter` that the writer has not taken yet (tests order theirs by it).
    var queuedWriterHooks: Int { writer.hooks.withLockedValue { $0.count } }

    // MARK: The writer thread

    private func runWriter() {
        var batch: [PendingAppend] = []
        var nextPrune = Date().addingTimeInterval(options.pruneInterval)
        var pruning = false
        var seqsSince = Date.distantFuture
        while true {
            condition.lock()
            var sequences: [Topic: LastPublish] = [:]
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
            // Until handed over, these messages stay out of reads even once committed; a topic
            // first written now has everything before them committed already.
            for index in batch.indices
            where index == batch.startIndex || batch[index - 1].message.topic != batch[index].message.topic {
                let topic = batch[index].message.topic
                if handedOver[topic] == nil { handedOver[topic] = batch[index].message.sequence - 1 }
            }
            // Every note made so far is in `sequences`, or was committed before.
            notes = sequenceNotes
            if !pendingSequences.isEmpty {
                swap(&sequences, &pendingSequences)
                seqsSince = .distantFuture
            }
            let exiting = stopping && batch.isEmpty
            let sink = committedSink
            condition.unlock()

            for hook in writer.hooks.withLockedValue({ hooks in defer { hooks.removeAll() }; return hooks }) {
                hook(writer.db)
            }
            if !batch.isEmpty || !sequences.isEmpty {
                commit(&batch, sequences, notes: notes, sink: sink)
            }
            if exiting { break }
            let now = Date()
            if !pruning && now >= nextPrune {
                pruning = pruner.startPass(now: now)
                nextPrune = now.addingTimeInterval(options.pruneInterval)
            }
            if pruning {
                let result = pruner.step(now: now)
                pruning = result.more
                condition.lock()
                stats.pruned += UInt64(result.deleted)
                stats.usedBytes = pruner.usedBytes
                condition.unlock()
            }
        }
        condition.lock()
        let clean = pendingSequences.isEmpty && stats.status == .healthy
        condition.unlock()
        // Everything noted is committed: the next open needs no jump.
        if clean { sqlite3_exec(writer.db, "UPDATE replay_state SET value = 0 WHERE key = 'running'", nil, nil, nil) }
        pruner.close()
        writer.close()
        condition.lock()
        stopped = true
        let waiters = settleWaiters
        settleWaiters.removeAll()
        condition.unlock()
        for waiter in waiters { waiter.callback() }
        writerDone.signal()
    }

    /// Calls `observer` on the writer thread with the duration of each group commit, in
    /// nanoseconds (one call per batch, not per message). Replaces an earlier observer.
    package func onCommit(_ observer: @escaping @Sendable (Int64) -> Void) {
        commitObserver.withLockedValue { $0 = observer }
    }

    private func commit(
        _ batch: inout [PendingAppend], _ sequences: [Topic: LastPublish], notes: UInt64,
        sink: (@Sendable ([PendingAppend]) -> Void)?
    ) {
        let started = DispatchTime.now().uptimeNanoseconds
        let result = writer.write(batch, sequences: sequences)
        if !batch.isEmpty, let observer = commitObserver.withLockedValue({ $0 }) {
            observer(Int64(clamping: DispatchTime.now().uptimeNanoseconds &- started))
        }
        // Handed over before `settled` and `handedOver` move: a replay that sees either
        // already finds these messages' live copies queued.
        if case .success = result, !batch.isEmpty, let sink { sink(batch) }
        var change: (from: ReplayStatus, to: ReplayStatus)?
        condition.lock()
        if case .failure(let error) = result {
            // Keep the seqs for the next batch; a new status is logged once.
            for (topic, last) in sequences where last.sequence > pendingSequences[topic]?.sequence ?? 0 {
                pendingSequences[topic] = last
            }
            for pending in batch where pending.message.sequence > pendingSequences[pending.message.topic]?.sequence ?? 0 {
                pendingSequences[pending.message.topic] = LastPublish(
                    sequence: pending.message.sequence, time: pending.message.time)
            }
            stats.failed += UInt64(batch.count)
            let reason = error.message
            if stats.status == .healthy { change = (stats.status, .degraded(reason: reason)) }
            stats.status = .degraded(reason: reason)
        } else {
            if !batch.isEmpty { stats.batches += 1 }
            // A topic's messages come in seq order: its last of a run is its highest.
            for index in batch.indices
            where index + 1 == batch.endIndex || batch[index + 1].message.topic != batch[index].message.topic {
                handedOver[batch[index].message.topic] = batch[index].message.sequence
            }
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
}
