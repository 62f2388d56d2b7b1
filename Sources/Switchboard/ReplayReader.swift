import CSQLite
import Foundation
import NIOCore

/// One reader of the pool: a serial queue (its own thread while busy, never an event loop
/// nor the Swift cooperative pool) and a read connection used only on that queue.
final class Reader: @unchecked Sendable {
    let queue: DispatchQueue
    private let path: String
    private let options: ReplayLog.Options
    private var open: ReaderConnection?

    init(index: Int, path: String, options: ReplayLog.Options) {
        self.queue = DispatchQueue(label: "switchboard-replay-reader-\(index)")
        self.path = path
        self.options = options
    }

    /// The connection, opened on first use. On `queue` only.
    func connection() throws(ReplayError) -> ReaderConnection {
        if let open { return open }
        let db = try ReplayLog.open(path: path, readOnly: true, busyTimeout: options.busyTimeoutMilliseconds)
        do throws(StoreError) {
            let connection = try ReaderConnection(db: db)
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
final class ReaderConnection {
    let db: OpaquePointer
    private let readTopic: RawStatement
    private let first: RawStatement
    private let last: RawStatement
    private let state: RawStatement
    private let allTopics: RawStatement
    private let seek: RawStatement
    private let beginRead: RawStatement
    private let endRead: RawStatement

    init(db: OpaquePointer) throws(StoreError) {
        self.db = db
        readTopic = try RawStatement(
            db, "SELECT seq, time, format, payload, publisher FROM replay_messages WHERE topic = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3")
        first = try RawStatement(db, "SELECT seq, time FROM replay_messages WHERE topic = ?1 ORDER BY seq LIMIT 1")
        last = try RawStatement(db, "SELECT seq, time FROM replay_messages WHERE topic = ?1 ORDER BY seq DESC LIMIT 1")
        state = try RawStatement(db, "SELECT last_seq, pruned_seq, pruned_time FROM topic_sequences WHERE topic = ?1")
        allTopics = try RawStatement(db, "SELECT topic FROM topic_sequences ORDER BY topic")
        seek = try RawStatement(db, "SELECT seq, time FROM replay_messages WHERE topic = ?1 AND seq >= ?2 ORDER BY seq LIMIT 1")
        beginRead = try RawStatement(db, "BEGIN")
        endRead = try RawStatement(db, "COMMIT")
    }

    deinit { sqlite3_close_v2(db) }

    private func wrap<R>(_ body: () throws(StoreError) -> R) throws(ReplayError) -> R {
        do throws(StoreError) {
            return try body()
        } catch {
            throw ReplayError.isCorruption(error.code)
                ? .corrupt(path: String(cString: sqlite3_db_filename(db, "main")), detail: error.message)
                : .storage(error)
        }
    }

    /// Appends messages of `topic` with seq > `after` to `out`, up to `limit` messages or
    /// about `maxBytes` of payload; returns how many. With `frames`, each message's frame is
    /// written there instead of its payload being copied to a buffer of its own (see `PageFrames`).
    func read(
        topic: Topic, after: UInt64, limit: Int, maxBytes: Int, frames: inout PageFrames?, into out: inout [StoredMessage]
    ) throws(ReplayError) -> (count: Int, bytes: Int) {
        guard limit > 0 else { return (0, 0) }
        let allocator = ByteBufferAllocator()
        return try wrap { () throws(StoreError) in
            try topic.name.cString { (name) throws(StoreError) in
                readTopic.bind(1, text: name)
                // Clamped: a position past Int64.max means "after every stored seq", not -1.
                readTopic.bind(2, Int64(clamping: after))
                readTopic.bind(3, Int64(limit))
                defer { readTopic.reset() }
                var count = 0
                var bytes = 0
                while bytes < maxBytes, try readTopic.step() {
                    let raw = readTopic.blobBytes(3)
                    var message = StoredMessage(
                        topic: topic, sequence: UInt64(bitPattern: readTopic.int(0)), time: readTopic.int(1),
                        format: Publish.Format(storedValue: readTopic.int(2)), payload: PageFrames.placeholder,
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

    private func row(_ statement: RawStatement, _ topic: Topic, _ at: UInt64? = nil) throws(StoreError) -> (sequence: UInt64, time: Int64)? {
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
                    lastSequence: UInt64(bitPattern: state.int(0)), prunedSequence: UInt64(bitPattern: state.int(1)),
                    prunedTime: state.int(2))
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

/// The frames of a replay page, written in one buffer as its messages are read (no buffer
/// per message); `finish` then makes each message's `frame` and `payload` slices of it. The
/// slices are taken at the end because a slice taken earlier would make the next write copy
/// the whole buffer.
struct PageFrames {
    var buffer: ByteBuffer
    /// Per message, in order: where its frame starts, where its payload starts, its length.
    private var positions: [(frame: Int, payload: Int, length: Int)] = []

    /// Every message's payload until `finish`.
    static let placeholder = ByteBuffer()

    init(capacity: Int) {
        buffer = ByteBufferAllocator().buffer(capacity: capacity)
    }

    mutating func append(_ message: StoredMessage, payload: UnsafeRawBufferPointer) {
        let start = buffer.writerIndex
        let at = OutgoingMessage.writeFrame(
            topic: message.topic, sequence: message.sequence, time: message.time, payload: payload,
            format: message.format, into: &buffer)
        positions.append((start, at, payload.count))
    }

    /// Fills in `frame` and `payload` of `messages`, the messages appended, in order.
    func finish(_ messages: inout [StoredMessage]) {
        for index in messages.indices where index < positions.count {
            let position = positions[index]
            let end = index + 1 < positions.count ? positions[index + 1].frame : buffer.writerIndex
            messages[index].frame = buffer.getSlice(at: position.frame, length: end - position.frame)
            // Positions were recorded as the frames were written, so the slice is always there.
            messages[index].payload = buffer.getSlice(at: position.payload, length: position.length) ?? ByteBuffer()
        }
    }
}

/// One page of a replay.
public struct ReplayPage: Sendable {
    /// Messages in (topic name, seq) order, each with `frame` encoded when the cursor was
    /// asked to.
    public var messages: [StoredMessage]
    /// The position each topic visited for the first time in this page starts after (what
    /// `since`/`since_time` resolved to); `ResumeMerger` uses it to detect gaps.
    public var starts: [Topic: UInt64]
    /// True when every topic has been read to the end of what the log held.
    public var exhausted: Bool
    /// `ReplayLog.settledCount` taken when the cursor's current pass over the topics began
    /// (first page, or after `rewind`): every append up to it that committed was visible to
    /// every read of the pass.
    public var settledBefore: UInt64
    /// With frames encoded: every message's frame, in order, in one buffer (each `frame` is a
    /// slice of it), so a page that needs no filtering is written to a socket at once.
    public var frames: ByteBuffer? = nil
}

/// Pages through the retained messages of a topic or pattern from a replay position, in
/// bounded memory: per topic (in name order), seq order, at most `limit` messages and about
/// `maxBytes` of payload per page. Not thread-safe: one `next` at a time (successive calls
/// may come from different threads).
///
/// Positions: `.sequence(N)` resumes after N (for a pattern, every topic); `.perTopic(map)`
/// after map[topic], topics absent from the map from the beginning (0); `.time(T)` from the
/// first retained message published at or after T (per topic, by bisection). Replay order
/// for a pattern is by topic then seq, not by time: order is only defined per topic, and
/// this order pages with one index range scan per topic.
public final class ReplayCursor: @unchecked Sendable {
    public let pattern: TopicPattern
    public let position: ReplayPosition
    public let encodeFrames: Bool
    private let log: ReplayLog
    private var topics: [Topic]?
    private var index = 0
    private var passSettled: UInt64 = 0
    /// After which seq each visited topic continues.
    private var after: [Topic: UInt64] = [:]
    public private(set) var isExhausted = false

    public init(log: ReplayLog, pattern: TopicPattern, position: ReplayPosition, encodeFrames: Bool = true) {
        self.log = log
        self.pattern = pattern
        self.position = position
        self.encodeFrames = encodeFrames
    }

    /// Reads the next page, blocking: call from a reader queue or a plain thread.
    public func next(limit: Int = 2048, maxBytes: Int = 1 << 20) throws(ReplayError) -> ReplayPage {
        try log.withReader { (c) throws(ReplayError) in try next(c, limit: limit, maxBytes: maxBytes) }
    }

    /// Reads the next page on the log's reader pool; `completion` runs on that reader's queue.
    public func next(
        limit: Int = 2048, maxBytes: Int = 1 << 20,
        completion: @escaping @Sendable (Result<ReplayPage, ReplayError>) -> Void
    ) {
        let reader = log.reader()
        reader.queue.async { [self] in
            do throws(ReplayError) {
                completion(.success(try next(try reader.connection(), limit: limit, maxBytes: maxBytes)))
            } catch {
                completion(.failure(error))
            }
        }
    }

    /// After exhaustion: visit every topic again (and topics that appeared since) from where
    /// it stopped, to pick up messages committed since.
    public func rewind() {
        topics = nil
        index = 0
        isExhausted = false
    }

    func next(_ c: ReaderConnection, limit: Int, maxBytes: Int) throws(ReplayError) -> ReplayPage {
        let topics: [Topic]
        if let known = self.topics {
            topics = known
        } else {
            // A pass over the topics starts: what had settled by now is visible to every
            // read of the pass (a topic finished early in the pass is not read again in it).
            passSettled = log.settledCount
            topics = try c.topics(matching: pattern)
            self.topics = topics
        }
        var page = ReplayPage(messages: [], starts: [:], exhausted: false, settledBefore: passSettled)
        page.messages.reserveCapacity(min(limit, 4096))
        // Grows as needed: a short replay gets a small buffer.
        var frames = encodeFrames ? PageFrames(capacity: 16 << 10) : nil
        var bytes = 0
        while index < topics.count {
            let topic = topics[index]
            let start: UInt64
            if let known = after[topic] {
                start = known
            } else {
                start = try resolveStart(topic, c)
                after[topic] = start
                page.starts[topic] = start
            }
            let wanted = limit - page.messages.count
            let (count, read) = try c.read(
                topic: topic, after: start, limit: wanted, maxBytes: maxBytes - bytes, frames: &frames,
                into: &page.messages)
            bytes += read
            if count > 0 { after[topic] = page.messages[page.messages.count - 1].sequence }
            if count < wanted && bytes < maxBytes {
                index += 1  // this topic is done for now
            }
            if page.messages.count >= limit || bytes >= maxBytes { break }
        }
        if index >= topics.count {
            isExhausted = true
            page.exhausted = true
        }
        if let frames {
            frames.finish(&page.messages)
            page.frames = frames.buffer
        }
        return page
    }

    private func resolveStart(_ topic: Topic, _ c: ReaderConnection) throws(ReplayError) -> UInt64 {
        switch position {
        case .sequence(let n):
            return n
        case .perTopic(let map):
            return map[topic] ?? 0
        case .time(let time):
            // One snapshot: retention pruning between these reads would otherwise make the
            // pruned state, the bisection and the newest message disagree.
            return try c.snapshot { () throws(ReplayError) in
                let state = try c.topicState(topic)
                if let state, state.prunedSequence > 0, state.prunedTime >= time {
                    // Retention removed messages published at or after `time`: start before the
                    // newest of them, so the gap is reported.
                    return state.prunedSequence - 1
                }
                if let first = try c.firstSequence(topic: topic, atOrAfter: time) { return max(first, 1) - 1 }
                // Everything retained is older: start after the newest stored message.
                let stored = try c.lastRetained(topic: topic)?.sequence ?? 0
                return max(stored, state?.prunedSequence ?? 0)
            }
        }
    }
}
