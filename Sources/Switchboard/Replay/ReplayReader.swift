import CSQLite
import Foundation
import NIOCore

/// One reader of the pool: a serial queue (its own thread while busy, never an event loop
/// nor the Swift cooperative pool) and a read connection used only on that queue.
final class ReplayReader: @unchecked Sendable {
    let queue: DispatchQueue
    private let path: String
    private let options: ReplayLog.Options
    private var open: ReplayReadConnection?

    init(index: Int, path: String, options: ReplayLog.Options) {
        self.queue = DispatchQueue(label: "switchboard-replay-reader-\(index)")
        self.path = path
        self.options = options
    }

    /// The connection, opened on first use. On `queue` only.
    func connection() throws(ReplayError) -> ReplayReadConnection {
        if let open { return open }
        let db = try ReplayLog.open(path: path, readOnly: true, busyTimeout: options.busyTimeoutMilliseconds)
        do throws(StoreError) {
            let connection = try ReplayReadConnection(db: db)
            open = connection
            return connection
        } catch {
            sqlite3_close_v2(db)
            throw ReplayLog.classify(error, path: path)
        }
    }

    func close() {
        queue.sync { open = nil }
    }
}

/// A read connection (`PRAGMA query_only`) and its prepared statements. WAL lets it read
/// while the writer writes; each statement sees the log as of its first step, and the
/// statements inside `snapshot` all see it as of the first of them.
final class ReplayReadConnection {
    let db: OpaquePointer
    private let readTopic: SQLiteStatement
    private let first: SQLiteStatement
    private let last: SQLiteStatement
    private let state: SQLiteStatement
    private let allTopics: SQLiteStatement
    private let seek: SQLiteStatement
    private let beginRead: SQLiteStatement
    private let endRead: SQLiteStatement

    init(db: OpaquePointer) throws(StoreError) {
        self.db = db
        readTopic = try SQLiteStatement(
            db, "SELECT seq, time, format, payload, publisher FROM replay_messages WHERE topic = ?1 AND seq > ?2 AND seq <= ?4 ORDER BY seq LIMIT ?3")
        first = try SQLiteStatement(db, "SELECT seq, time FROM replay_messages WHERE topic = ?1 ORDER BY seq LIMIT 1")
        last = try SQLiteStatement(db, "SELECT seq, time FROM replay_messages WHERE topic = ?1 ORDER BY seq DESC LIMIT 1")
        state = try SQLiteStatement(
            db, "SELECT last_seq, last_time, pruned_seq, pruned_time FROM topic_sequences WHERE topic = ?1")
        allTopics = try SQLiteStatement(db, "SELECT topic FROM topic_sequences ORDER BY topic")
        seek = try SQLiteStatement(db, "SELECT seq, time FROM replay_messages WHERE topic = ?1 AND seq >= ?2 ORDER BY seq LIMIT 1")
        beginRead = try SQLiteStatement(db, "BEGIN")
        endRead = try SQLiteStatement(db, "COMMIT")
    }

    deinit { sqlite3_close_v2(db) }

    private func wrap<R>(_ body: () throws(StoreError) -> R) throws(ReplayError) -> R {
        do throws(StoreError) {
            return try body()
        } catch {
            throw error.isCorruption
                ? .corrupt(path: String(cString: sqlite3_db_filename(db, "main")), detail: error.message)
                : .storage(error)
        }
    }

    /// Appends messages of `topic` with seq > `after` (and at most `through`) to `out`, up to
    /// `limit` messages or about `maxBytes` of payload; returns how many. With `frames`, each message's frame is
    /// written there instead of its payload being copied to a buffer of its own (see `PageFrames`).
    func read(
        topic: Topic, after: UInt64, through: UInt64 = .max, limit: Int, maxBytes: Int, frames: inout PageFrames?,
        into out: inout [StoredMessage]
    ) throws(ReplayError) -> (count: Int, bytes: Int) {
        guard limit > 0 else { return (0, 0) }
        let allocator = ByteBufferAllocator()
        return try wrap { () throws(StoreError) in
            try topic.name.cString { (name) throws(StoreError) in
                readTopic.bind(1, text: name)
                // Clamped: a position past Int64.max means "after every stored seq", not -1.
                readTopic.bind(2, Int64(clamping: after))
                readTopic.bind(3, Int64(limit))
                readTopic.bind(4, Int64(clamping: through))
                defer { readTopic.reset() }
                var count = 0
                var bytes = 0
                while bytes < maxBytes, try readTopic.step() {
                    let raw = readTopic.blobBytes(3)
                    var message = StoredMessage(
                        topic: topic, sequence: UInt64(bitPattern: readTopic.int(0)), time: readTopic.int(1),
                        format: PayloadFormat(storedValue: readTopic.int(2)), payload: PageFrames.placeholder,
                        publisher: readTopic.optionalText(4))
                    if frames != nil {
                        frames?.append(message, payload: raw)
                    } else {
                        message.payload = allocator.buffer(capacity: raw.count)
                        message.payload.writeBytes(raw)
                    }
                    out.append(message)
                    count += 1
                    bytes += raw.count
                }
                return (count, bytes)
            }
        }
    }

    /// Runs `body` in one read transaction: every statement in it sees the log as of the
    /// first one, so retention pruning committed meanwhile cannot change the answer of a
    /// look-up made of several statements. Not nested.
    func snapshot<R>(_ body: () throws(ReplayError) -> R) throws(ReplayError) -> R {
        try wrap { () throws(StoreError) in try beginRead.run() }
        let result: R
        do throws(ReplayError) {
            result = try body()
        } catch {
            try? wrap { () throws(StoreError) in try endRead.run() }
            throw error
        }
        try wrap { () throws(StoreError) in try endRead.run() }
        return result
    }

    func firstRetained(topic: Topic) throws(ReplayError) -> (sequence: UInt64, time: Int64)? {
        try wrap { () throws(StoreError) in try row(first, topic) }
    }

    func lastRetained(topic: Topic) throws(ReplayError) -> (sequence: UInt64, time: Int64)? {
        try wrap { () throws(StoreError) in try row(last, topic) }
    }

    private func row(_ statement: SQLiteStatement, _ topic: Topic, _ at: UInt64? = nil) throws(StoreError) -> (sequence: UInt64, time: Int64)? {
        try topic.name.cString { (name) throws(StoreError) in
            statement.bind(1, text: name)
            if let at { statement.bind(2, Int64(bitPattern: at)) }
            defer { statement.reset() }
            guard try statement.step() else { return nil }
            return (UInt64(bitPattern: statement.int(0)), statement.int(1))
        }
    }

    func topicState(_ topic: Topic) throws(ReplayError) -> TopicLogState? {
        try wrap { () throws(StoreError) in
            try topic.name.cString { (name) throws(StoreError) in
                state.bind(1, text: name)
                defer { state.reset() }
                guard try state.step() else { return nil }
                return TopicLogState(
                    lastSequence: UInt64(bitPattern: state.int(0)), lastTime: state.int(1),
                    prunedSequence: UInt64(bitPattern: state.int(2)), prunedTime: state.int(3))
            }
        }
    }

    /// Topics the log knows (every topic ever published to) that `pattern` matches, by name.
    func topics(matching pattern: TopicPattern) throws(ReplayError) -> [Topic] {
        if pattern.isConcrete, let topic = try? Topic(pattern.name) { return [topic] }
        return try wrap { () throws(StoreError) in
            defer { allTopics.reset() }
            var topics: [Topic] = []
            while try allTopics.step() {
                if let topic = try? Topic(allTopics.text(0)), pattern.matches(topic) { topics.append(topic) }
            }
            return topics
        }
    }

    /// The seq of the first retained message of `topic` published at or after `time`, by
    /// bisection over seq (publish times are non-decreasing along a topic's seqs): O(log n)
    /// index seeks, no scan. Call it inside `snapshot`: its statements must see one state of
    /// the log (outside one, pruning between them yields nil rather than a wrong seq).
    func firstSequence(topic: Topic, atOrAfter time: Int64) throws(ReplayError) -> UInt64? {
        try wrap { () throws(StoreError) in
            guard let low = try row(first, topic), let high = try row(last, topic), high.time >= time else { return nil }
            if low.time >= time { return low.sequence }
            var lo = low.sequence
            var hi = high.sequence
            while lo < hi {
                let mid = lo + (hi - lo) / 2
                // In one snapshot a row at or after `mid` exists (`high` is one); a miss means
                // the topic was pruned under a caller that took no snapshot.
                guard let probe = try row(seek, topic, mid) else { return nil }
                if probe.time >= time { hi = mid } else { lo = mid + 1 }
            }
            return try row(seek, topic, lo)?.sequence
        }
    }
}

/// Reading: a pool of read connections, each with its own serial queue.
extension ReplayLog {
    /// A read connection with its own serial queue: cursor pages run there, off the event
    /// loops. Page requests of all catching-up clients are spread round-robin over the pool
    /// and served in FIFO order, so one long replay cannot starve the others.
    func reader() -> ReplayReader {
        let index = nextReader.withLockedValue { next in
            defer { next = (next + 1) % readerPool.count }
            return next
        }
        return readerPool[index]
    }

    /// Runs `body` with a read connection, blocking the caller: not on an event loop.
    func withReader<R>(_ body: (ReplayReadConnection) throws(ReplayError) -> R) throws(ReplayError) -> R {
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
    /// The publish time of `lastSequence`, unix milliseconds (0 when written before the
    /// log kept it).
    public var lastTime: Int64
    /// The newest message removed by retention (0 = none) and its publish time.
    public var prunedSequence: UInt64
    public var prunedTime: Int64
}
