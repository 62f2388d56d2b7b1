import NIOCore

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
        let at = MessageEncoder.writeFrame(
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
package struct ReplayPage: Sendable {
    /// Messages in (topic name, seq) order, each with `frame` encoded when the cursor was
    /// asked to.
    package var messages: [StoredMessage]
    /// The position each topic visited for the first time in this page starts after (what
    /// `since`/`since_time` resolved to); `ResumeMerger` uses it to detect gaps.
    package var starts: [Topic: UInt64]
    /// True when every topic has been read to the end of what the log held.
    package var exhausted: Bool
    /// `ReplayLog.settledCount` taken when the cursor's current pass over the topics began
    /// (first page, or after `rewind`): every append up to it that committed was visible to
    /// every read of the pass.
    package var settledBefore: UInt64
    /// With frames encoded: every message's frame, in order, in one buffer (each `frame` is a
    /// slice of it), so a page that needs no filtering is written to a socket at once.
    package var frames: ByteBuffer? = nil
    /// The seq each topic visited for the first time in this page had reached, when the
    /// history knows it and the broker's sequence map does not (a cluster's Redis): the
    /// replay reaches it or reports a gap up to it, as it does a topic's seq at registration.
    package var reached: [Topic: UInt64] = [:]
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
package final class ReplayCursor: @unchecked Sendable {
    package let pattern: TopicPattern
    package let position: ReplayPosition
    package let encodeFrames: Bool
    private let log: ReplayLog
    private var topics: [Topic]?
    private var index = 0
    private var passSettled: UInt64 = 0
    /// After which seq each visited topic continues.
    private var after: [Topic: UInt64] = [:]
    package private(set) var isExhausted = false

    package init(log: ReplayLog, pattern: TopicPattern, position: ReplayPosition, encodeFrames: Bool = true) {
        self.log = log
        self.pattern = pattern
        self.position = position
        self.encodeFrames = encodeFrames
    }

    /// Reads the next page, blocking: call from a reader queue or a plain thread.
    package func next(limit: Int = 2048, maxBytes: Int = 1 << 20) throws(ReplayError) -> ReplayPage {
        try log.withReader { (c) throws(ReplayError) in try next(c, limit: limit, maxBytes: maxBytes) }
    }

    /// Reads the next page on the log's reader pool; `completion` runs on that reader's queue.
    package func next(
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
    package func rewind() {
        topics = nil
        index = 0
        isExhausted = false
    }

    func next(_ c: ReplayReadConnection, limit: Int, maxBytes: Int) throws(ReplayError) -> ReplayPage {
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
            // Only what the hubs already have: a message read here has its live copy queued
            // on the loop before this page gets there (see `ReplayLog.delivered(through:)`).
            let (count, read) = try c.read(
                topic: topic, after: start, through: log.delivered(through: topic), limit: wanted, maxBytes: maxBytes - bytes, frames: &frames,
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

    private func resolveStart(_ topic: Topic, _ c: ReplayReadConnection) throws(ReplayError) -> UInt64 {
        switch position {
        case .sequence, .perTopic:
            return position.explicitStart(of: topic) ?? 0
        case .last(let count):
            // The last `count` stored, or all of them: older ones are not asked for, so no gap.
            return try c.snapshot { () throws(ReplayError) in
                guard let last = try c.lastRetained(topic: topic)?.sequence else {
                    return try c.topicState(topic).map { max($0.lastSequence, $0.prunedSequence) } ?? 0
                }
                let first = try c.firstRetained(topic: topic)?.sequence ?? last
                return max(last - min(count, last), first - 1)
            }
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
