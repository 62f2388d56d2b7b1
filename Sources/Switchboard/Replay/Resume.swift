import NIOCore

/// The merge of a replay with the live stream for one subscription with `since`: a pure
/// state machine, no I/O, so that "no gap, no duplicate" can be tested exhaustively.
///
/// The subscription is registered for live messages *before* the replay starts, so every
/// message sequenced after registration arrives live. While catching up (`catchingUp`),
/// live messages of replayed topics are buffered; replayed pages are delivered as they
/// come. When the log is exhausted (and every append made before registration has been
/// committed or has failed: see `ReplayCatchUp`), `finish` drains the buffer, skipping
/// every seq already replayed, and the subscription is `live`.
///
/// Per topic it keeps the last seq delivered; a message at or below it is a duplicate and
/// is skipped, one above it + 1 means messages are missing and a `.gap` (the missing range;
/// the first available seq is `missing.upperBound + 1`) is emitted first. So the subscriber
/// sees, per topic, every seq from its position + 1 exactly once, or an explicit gap.
///
/// Bounded: past `bufferLimit` messages or `bufferByteLimit` bytes the buffer is dropped
/// (`.overflowed`); the highest seq dropped per topic becomes a seq the replay must reach,
/// and the caller keeps paging the log, where those messages are (or will be once their
/// batch commits).
///
/// Topics that are not replayed (no retention rule) pass straight through, live: a
/// position given for one that is behind the topic's current seq gets a `.gap` up front.
/// A topic the broker did not hold in memory has no current seq in `highWater`: with
/// `resolving`, its live messages are held until `resolve` gives the seqs read from the log
/// (its gap comes first, then what was held).
package struct ResumeMerger<Live> {
    package enum Output {
        case replayed(StoredMessage)
        case live(Live)
        /// Messages of `topic` the subscriber will never get (pruned, not retained, or lost
        /// to a write failure); the next message it gets is `missing.upperBound + 1` or later.
        case gap(topic: Topic, missing: ClosedRange<UInt64>)
    }

    package enum Phase: Sendable, Hashable {
        case catchingUp
        case live
    }

    package enum LiveDecision: Sendable, Hashable {
        /// Send it now.
        case deliver
        /// Held until the replay finishes.
        case buffered
        /// Already delivered (or inside a gap already reported): drop it.
        case duplicate
        /// The buffer was over its limit and has been dropped, this message with it: the
        /// replay must now read further (`required`), see `ReplayCatchUp`.
        case overflowed
    }

    package private(set) var phase = Phase.catchingUp
    package let position: ReplayPosition
    package let bufferLimit: Int
    package let bufferByteLimit: Int
    /// Times the buffer overflowed.
    package private(set) var overflows = 0
    private let isReplayed: (Topic) -> Bool
    private let highWater: [Topic: UInt64]
    /// Non-replayed topics missing from `highWater` wait for `resolve`.
    private var resolving: Bool
    /// Last seq delivered (or skipped as a gap) per topic.
    private var delivered: [Topic: UInt64] = [:]
    /// Seqs the replay must reach per topic: the seq at registration, and dropped live seqs.
    package private(set) var required: [Topic: UInt64] = [:]
    private var buffer: [(topic: Topic, sequence: UInt64, item: Live, size: Int)] = []
    private var bufferBytes = 0

    /// - Parameters:
    ///   - position: the subscription's `since` / `since_time`.
    ///   - highWater: each matching topic's current seq when the subscription was registered
    ///     for live messages (the broker's sequence map); the replay is not finished before
    ///     every replayed topic has reached it (or reported a gap up to it).
    ///   - isReplayed: whether a topic is retained by the log.
    ///   - resolving: the current seqs of topics missing from `highWater` come later (`resolve`).
    package init(
        position: ReplayPosition, highWater: [Topic: UInt64], isReplayed: @escaping (Topic) -> Bool,
        resolving: Bool = false, bufferLimit: Int = 16_384, bufferByteLimit: Int = 8 << 20
    ) {
        self.position = position
        self.highWater = highWater
        self.resolving = resolving
        self.isReplayed = isReplayed
        self.bufferLimit = bufferLimit
        self.bufferByteLimit = bufferByteLimit
        for (topic, seq) in highWater where isReplayed(topic) { required[topic] = seq }
    }

    private func explicitStart(_ topic: Topic) -> UInt64? {
        position.explicitStart(of: topic)
    }

    private func baseline(_ topic: Topic) -> UInt64 {
        delivered[topic] ?? explicitStart(topic) ?? 0
    }

    /// Gaps known before anything is replayed: non-retained topics whose explicit position
    /// is behind their current seq. Call once, first.
    package mutating func begin(into out: inout [Output]) {
        for (topic, current) in highWater.sorted(by: { $0.key.name < $1.key.name }) where !isReplayed(topic) {
            let start: UInt64
            switch position {
            case .sequence(let n): start = n
            case .perTopic(let map):
                guard let n = map[topic] else { continue }
                start = n
            case .time, .last: return
            }
            if current > start {
                out.append(.gap(topic: topic, missing: (start + 1)...current))
            }
            // Live messages up to here (still in the hub's inbox) were seen or reported.
            delivered[topic] = max(start, current)
        }
    }

    /// Whether `topic`'s messages wait for `resolve`: not replayed, not in `highWater`, and
    /// given an explicit position.
    private func awaitsResolution(_ topic: Topic) -> Bool {
        guard resolving, highWater[topic] == nil, !isReplayed(topic) else { return false }
        switch position {
        case .sequence: return true
        case .perTopic(let map): return map[topic] != nil
        case .time, .last: return false
        }
    }

    /// A live message for this subscription.
    package mutating func live(_ item: Live, topic: Topic, sequence: UInt64, size: Int = 0) -> LiveDecision {
        if phase == .live || (!isReplayed(topic) && !awaitsResolution(topic)) {
            if sequence <= baseline(topic) { return .duplicate }
            delivered[topic] = sequence
            return .deliver
        }
        buffer.append((topic, sequence, item, size))
        bufferBytes += size
        if buffer.count > bufferLimit || bufferBytes > bufferByteLimit {
            for entry in buffer where entry.sequence > required[entry.topic] ?? 0 {
                required[entry.topic] = entry.sequence
            }
            buffer.removeAll()
            bufferBytes = 0
            overflows += 1
            return .overflowed
        }
        return .buffered
    }

    /// The current seqs of topics that were missing from `highWater`, as the log has them
    /// committed: their gaps (like `begin`'s), then their live messages held meanwhile.
    package mutating func resolve(_ found: [Topic: UInt64], into out: inout [Output]) {
        guard resolving else { return }
        var topics = Set(found.keys.filter(awaitsResolution))
        for entry in buffer where awaitsResolution(entry.topic) { topics.insert(entry.topic) }
        // Messages of these topics dropped when the buffer overflowed are missing too.
        for topic in required.keys where awaitsResolution(topic) { topics.insert(topic) }
        for topic in topics.sorted(by: { $0.name < $1.name }) {
            let start = explicitStart(topic) ?? 0
            let current = max(found[topic] ?? 0, required.removeValue(forKey: topic) ?? 0)
            if current > start {
                out.append(.gap(topic: topic, missing: (start + 1)...current))
            }
            delivered[topic] = max(start, current)
        }
        resolving = false
        var kept: [(topic: Topic, sequence: UInt64, item: Live, size: Int)] = []
        for entry in buffer {
            guard topics.contains(entry.topic) else {
                kept.append(entry)
                continue
            }
            bufferBytes -= entry.size
            release(entry, into: &out)
        }
        buffer = kept
    }

    /// A held live message goes out, after the gap before it if any; skipped when it was
    /// already delivered.
    private mutating func release(_ entry: (topic: Topic, sequence: UInt64, item: Live, size: Int), into out: inout [Output]) {
        let base = baseline(entry.topic)
        guard entry.sequence > base else { return }
        if entry.sequence > base + 1 {
            out.append(.gap(topic: entry.topic, missing: (base + 1)...(entry.sequence - 1)))
        }
        out.append(.live(entry.item))
        delivered[entry.topic] = entry.sequence
    }

    /// Where the topics a page visits first start, and what they must reach.
    private mutating func enter(_ page: ReplayPage) {
        for (topic, start) in page.starts where delivered[topic] == nil {
            delivered[topic] = start
        }
        for (topic, seq) in page.reached where seq > required[topic] ?? 0 {
            required[topic] = seq
        }
    }

    /// A page read from the log.
    package mutating func replayed(_ page: ReplayPage, into out: inout [Output]) {
        enter(page)
        for message in page.messages {
            let base = baseline(message.topic)
            guard message.sequence > base else { continue }
            if message.sequence > base + 1 {
                out.append(.gap(topic: message.topic, missing: (base + 1)...(message.sequence - 1)))
            }
            out.append(.replayed(message))
            delivered[message.topic] = message.sequence
        }
    }

    /// `replayed(_:into:)` for the common page: when its messages are all of one topic and
    /// follow on exactly from what that topic was delivered (nothing to skip, no gap), marks
    /// them delivered and returns true, so the caller sends the page's frames as they are,
    /// without an output per message. Otherwise returns false having delivered nothing:
    /// call `replayed(_:into:)`.
    package mutating func replayedWhole(_ page: ReplayPage) -> Bool {
        enter(page)
        // A page holds each topic's messages together, in seq order (see `ReplayCursor`):
        // first and last of one topic means all of one topic, and their seqs tell whether
        // they are contiguous.
        guard let first = page.messages.first, let last = page.messages.last, first.topic == last.topic,
            last.sequence >= first.sequence, last.sequence - first.sequence == UInt64(page.messages.count - 1),
            first.sequence > 0, first.sequence - 1 == baseline(first.topic)
        else { return false }
        delivered[first.topic] = last.sequence
        return true
    }

    /// Whether every replayed topic has reached the seq it must reach; when false after the
    /// log is exhausted, the missing messages are still being written (or failed to be).
    package var reachedRequired: Bool {
        required.allSatisfy { topic, seq in baseline(topic) >= seq }
    }

    /// The replay is over: drains the buffer past what was replayed, reports what is missing,
    /// and turns live.
    package mutating func finish(into out: inout [Output]) {
        guard phase == .catchingUp else { return }
        resolving = false
        for entry in buffer { release(entry, into: &out) }
        buffer.removeAll()
        bufferBytes = 0
        for (topic, seq) in required.sorted(by: { $0.key.name < $1.key.name }) {
            let base = baseline(topic)
            if seq > base {
                out.append(.gap(topic: topic, missing: (base + 1)...seq))
                delivered[topic] = seq
            }
        }
        phase = .live
    }

    /// Messages held right now.
    package var bufferedCount: Int { buffer.count }

    /// Per topic, the last seq delivered or reported missing.
    package var deliveredThrough: [Topic: UInt64] { delivered }
}

/// Drives one subscription's catch-up on its connection's event loop: pages the history
/// (`TopicHistory`: the replay log, or a cluster's Redis streams) off the loop, feeds pages and live messages through a
/// `ResumeMerger`, hands the output to `emit`, and respects the connection's backpressure.
///
/// Every method runs on `eventLoop`; the callbacks are called there.
///
/// 1. The session registers the subscription for live messages, takes each matching topic's
///    current seq (`highWater`: the topics in the broker's memory), then creates this and
///    calls `start()`. Topics with an explicit position that are not in `highWater` nor
///    retained have their last seq read from the log first (`ResumeMerger.resolve`).
/// 2. Each live delivery for the subscription goes to `live(_:topic:sequence:size:)` first;
///    when it returns true the catch-up has taken it (buffered or dropped as a duplicate).
///    A page that needs nothing skipped nor reported goes to `emitFrames` (when given) as
///    its frames in one buffer, with its message count; anything else goes to `emit`.
/// 3. After each page `canContinue()` is asked; when false (the socket is not writable, or
///    its queued bytes are over a limit) reading stops until `resume()` is called.
/// 4. When the log is exhausted and every append made before the subscription (and before
///    any buffer overflow) has settled, the buffer is drained and `finished` is called; from
///    then on the session delivers live messages directly.
///
/// Every method runs on `eventLoop`; `preconditionInEventLoop` checks the callers (the
/// session, on its own loop), and no input decides where a call runs.
package final class ReplayCatchUp<Live>: @unchecked Sendable {
    package typealias Output = ResumeMerger<Live>.Output

    package struct Limits: Sendable {
        package var pageMessages = 2048
        package var pageBytes = 1 << 20
        package var bufferMessages = 16_384
        package var bufferBytes = 8 << 20
        package init() {}
    }

    private enum State {
        case idle, resolving, reading, paused, waitingForWriter, finished, cancelled
    }

    package let eventLoop: any EventLoop
    private let log: any TopicHistory
    private let cursor: any HistoryCursor
    private let pattern: TopicPattern
    private let limits: Limits
    /// Topics whose current seq must be read from the log (nil: every topic the pattern
    /// matches that is not in `known`), when `needsResolution`.
    private let unresolved: Set<Topic>?
    private let known: Set<Topic>
    private let needsResolution: Bool
    private var merger: ResumeMerger<Live>
    private var ticket: UInt64 = 0
    private var state = State.idle
    private let emit: ([Output]) -> Void
    private let emitFrames: ((ByteBuffer, Int) -> Void)?
    private let canContinue: () -> Bool
    private let finished: (Result<Void, ReplayError>) -> Void
    /// Messages replayed so far (for stats and tests).
    package private(set) var replayedCount = 0

    package init(
        log: any TopicHistory, pattern: TopicPattern, position: ReplayPosition, highWater: [Topic: UInt64],
        eventLoop: any EventLoop, limits: Limits = Limits(),
        emit: @escaping ([Output]) -> Void, emitFrames: ((ByteBuffer, Int) -> Void)? = nil,
        canContinue: @escaping () -> Bool, finished: @escaping (Result<Void, ReplayError>) -> Void
    ) {
        self.log = log
        self.eventLoop = eventLoop
        self.limits = limits
        self.cursor = log.cursor(pattern: pattern, position: position)
        self.pattern = pattern
        var unresolved: Set<Topic>?
        switch position {
        case .time, .last:
            unresolved = []
        case .sequence:
            if pattern.isConcrete { unresolved = Set((try? Topic(pattern.name)).map { [$0] } ?? []) }
        case .perTopic(let map):
            unresolved = Set(map.keys.filter(pattern.matches))
        }
        unresolved = unresolved.map { $0.filter { highWater[$0] == nil && !log.retains($0) } }
        self.unresolved = unresolved
        self.known = Set(highWater.keys)
        self.needsResolution = unresolved.map { !$0.isEmpty } ?? true
        self.merger = ResumeMerger(
            position: position, highWater: highWater, isReplayed: { log.retains($0) }, resolving: needsResolution,
            bufferLimit: limits.bufferMessages, bufferByteLimit: limits.bufferBytes)
        self.emit = emit
        self.emitFrames = emitFrames
        self.canContinue = canContinue
        self.finished = finished
    }

    package var isCatchingUp: Bool { merger.phase == .catchingUp && state != .cancelled }

    /// Per topic, the last seq delivered or reported missing (`ResumeMerger.deliveredThrough`).
    package var deliveredThrough: [Topic: UInt64] { merger.deliveredThrough }

    package func start() {
        eventLoop.preconditionInEventLoop()
        guard state == .idle else { return }
        ticket = log.ticket()
        var out: [Output] = []
        merger.begin(into: &out)
        if !out.isEmpty { emit(out) }
        guard needsResolution else { return read() }
        state = .resolving
        log.lookUpSequences(of: unresolved, matching: pattern, except: known) { [self] result in
            eventLoop.execute { [self] in resolved(result) }
        }
    }

    private func resolved(_ result: Result<[Topic: UInt64], ReplayError>) {
        guard state == .resolving else { return }
        switch result {
        case .success(let found):
            var out: [Output] = []
            merger.resolve(found, into: &out)
            if !out.isEmpty { emit(out) }
            read()
        case .failure(let error):
            fail(error)
        }
    }

    /// A live message for the subscription. Returns true when the catch-up took it (the
    /// session must not deliver it), false when the session delivers it now.
    package func live(_ item: Live, topic: Topic, sequence: UInt64, size: Int = 0) -> Bool {
        eventLoop.preconditionInEventLoop()
        guard state != .cancelled else { return false }
        switch merger.live(item, topic: topic, sequence: sequence, size: size) {
        case .deliver: return false
        case .buffered, .duplicate: return true
        case .overflowed:
            // What was dropped was appended before now: wait for it to settle too.
            ticket = log.ticket()
            return true
        }
    }

    /// Ends the catch-up on a read error: what was held goes out, and the subscription is live.
    private func fail(_ error: ReplayError) {
        var out: [Output] = []
        merger.finish(into: &out)
        if !out.isEmpty { emit(out) }
        state = .finished
        finished(.failure(error))
    }

    /// The connection can take more: continue a paused replay.
    package func resume() {
        eventLoop.preconditionInEventLoop()
        guard state == .paused else { return }
        read()
    }

    /// Stops (unsubscribe, connection closed). No callback is called afterwards.
    package func cancel() {
        state = .cancelled
    }

    private func read() {
        state = .reading
        cursor.next(limit: limits.pageMessages, maxBytes: limits.pageBytes) { [self] result in
            eventLoop.execute { [self] in received(result) }
        }
    }

    private func received(_ result: Result<ReplayPage, ReplayError>) {
        guard state == .reading else { return }
        let page: ReplayPage
        switch result {
        case .success(let p): page = p
        case .failure(let error):
            return fail(error)
        }
        if let emitFrames, let frames = page.frames, merger.replayedWhole(page) {
            emitFrames(frames, page.messages.count)
        } else {
            var out: [Output] = []
            out.reserveCapacity(page.messages.count)
            merger.replayed(page, into: &out)
            if !out.isEmpty { emit(out) }
        }
        replayedCount += page.messages.count
        guard page.exhausted else {
            if canContinue() { read() } else { state = .paused }
            return
        }
        // Exhausted. Done when the read saw every append made before `ticket` settle; else
        // wait for the writer and read what it committed since.
        if page.settledBefore >= ticket || merger.reachedRequired {
            var tail: [Output] = []
            merger.finish(into: &tail)
            state = .finished
            if !tail.isEmpty { emit(tail) }
            finished(.success(()))
            return
        }
        state = .waitingForWriter
        log.whenSettled(ticket) { [self] in
            eventLoop.execute { [self] in
                guard state == .waitingForWriter else { return }
                cursor.rewind()
                if canContinue() { read() } else { state = .paused }
            }
        }
    }
}
