import Dispatch
import Metrics
import NIOConcurrencyHelpers
import NIOCore

/// A message ready for fan-out: its topic and its frame, encoded once for every subscriber.
struct Delivery: Sendable {
    var topic: Topic
    var sequence: UInt64
    var frame: ByteBuffer
    /// Its frame deflated once for every subscriber that takes compressed frames; nil when
    /// deflate is off or the message is under its threshold.
    var compressed: SharedCompression? = nil
}

/// Consecutive messages of one topic (a run of a hub's batch), delivered together: their
/// frames concatenated once, so each subscriber gets one buffer (a retain, not a copy) per
/// run instead of one per message. Subscribers of a topic are the same for the whole run.
/// A class: the hub hands the same run to every subscriber, and passing a struct of five
/// references would retain and release each of them once per subscriber.
final class FanOut {
    let topic: Topic
    let first: UInt64
    let last: UInt64
    let frame: ByteBuffer
    /// The messages one by one, for a session that must look at each (see `Session`).
    let deliveries: ArraySlice<Delivery>
    /// Some message of the run has a compressed frame (`Delivery.compressed`).
    let isCompressible: Bool

    init(_ run: ArraySlice<Delivery>) {
        deliveries = run
        let head = run[run.startIndex]
        topic = head.topic
        first = head.sequence
        last = run[run.endIndex - 1].sequence
        if run.count == 1 {
            frame = head.frame
            isCompressible = head.compressed != nil
        } else {
            var frame = ByteBufferAllocator().buffer(capacity: run.reduce(0) { $0 + $1.frame.readableBytes })
            var compressible = false
            for delivery in run {
                frame.writeImmutableBuffer(delivery.frame)
                compressible = compressible || delivery.compressed != nil
            }
            self.frame = frame
            isCompressible = compressible
        }
    }

    /// The run's frames with every message that has a compressed frame compressed (made
    /// now by `compressor` if no hub made it yet), joined once like `frame`.
    func compressedFrame(using compressor: FrameCompressor) -> ByteBuffer {
        if deliveries.count == 1 { return Hub.frame(of: deliveries[deliveries.startIndex], compressor) }
        var frames = ByteBufferAllocator().buffer(capacity: frame.readableBytes)
        for delivery in deliveries { frames.writeImmutableBuffer(Hub.frame(of: delivery, compressor)) }
        return frames
    }
}

/// The broker's part of one event loop: the sessions of the connections that loop owns,
/// indexed by their subscriptions' patterns and by token and expiry (`AccessIndex`), and an
/// inbox of messages to fan out.
///
/// Invariants:
/// - `inbox` is the only state touched off the loop; publishers append to it while holding
///   the broker's sequencing lock, and the replay log's writer in commit order (retained
///   topics), so each hub sees every topic's messages in seq order.
/// - A non-empty inbox has exactly one drain task scheduled: the loop gets one task per
///   batch of messages, never one per subscriber, and each touched session is flushed once
///   per batch (plus once per half of its queue limit, for a batch larger than that: see
///   `Session.deliver`).
/// - A batch is delivered as runs of consecutive same-topic messages (`FanOut`), in batch
///   order, so every session still sees messages in the order the hub received them.
final class Hub: Sendable {
    let eventLoop: any EventLoop
    private let inbox = NIOLockedValueBox(Inbox())
    private let state: NIOLoopBoundBox<State>

    private struct Inbox {
        var deliveries: [Delivery] = []
        var drainScheduled = false
        /// Batches scheduled so far; every `latencySampling`th is timed from its first
        /// message's hand-off (`sampledAt`, uptime ns) to the end of its fan-out.
        var batches: UInt64 = 0
        var sampledAt: UInt64?
    }

    /// One batch in this many has its publish-to-deliver latency recorded.
    static let latencySampling: UInt64 = 16
    private let deliverLatency: Metrics.Timer?
    /// The deflate settings when compression is on (then `State.compressor` exists).
    let deflate: DeflateConfiguration?

    /// Everything the loop owns.
    final class State {
        var index = SubscriptionIndex<Session>()
        /// Reused between messages so matching does not allocate.
        var matches: Set<Session> = []
        var touched: [Session] = []
        /// The sessions by token and by expiry, for revocation and expiry.
        let access: AccessIndex
        /// The sessions by connection id, for the admin API.
        var sessions: [UInt64: Session] = [:]
        /// What this loop's sessions delivered; read by the admin API and /metrics on the loop.
        let counters = DeliveryCounters()
        /// Compresses the messages no other hub compressed before (`SharedCompression`).
        let compressor: FrameCompressor?

        init(access: AccessIndex, compressor: FrameCompressor?) {
            self.access = access
            self.compressor = compressor
        }
    }

    init(eventLoop: any EventLoop, deliverLatency: Metrics.Timer? = nil, deflate: DeflateConfiguration? = nil) {
        self.eventLoop = eventLoop
        self.deliverLatency = deliverLatency
        self.deflate = deflate
        self.state = NIOLoopBoundBox.makeBoxSendingValue(
            State(access: AccessIndex(eventLoop: eventLoop), compressor: deflate.map(FrameCompressor.init)),
            eventLoop: eventLoop)
    }

    /// `delivery`'s frame as a session that takes compressed frames gets it.
    static func frame(of delivery: Delivery, _ compressor: FrameCompressor) -> ByteBuffer {
        delivery.compressed?.frame(of: delivery.frame, using: compressor) ?? delivery.frame
    }

    /// `frame(of:_:)` with this loop's compressor; on the loop.
    func compressedFrame(of delivery: Delivery) -> ByteBuffer {
        guard let compressor = state.value.compressor else { return delivery.frame }
        return Self.frame(of: delivery, compressor)
    }

    /// Replayed frames as a session that takes compressed frames gets them: each over the
    /// threshold compressed here (a catch-up's pages are its own: nothing to share); on the loop.
    func compressedFrames(_ frames: ByteBuffer) -> ByteBuffer {
        guard let compressor = state.value.compressor, let deflate else { return frames }
        return compressor.compressEach(frames, threshold: deflate.threshold)
    }

    /// Queues a message for this loop's subscribers; any thread.
    func enqueue(_ delivery: Delivery) {
        enqueue(contentsOf: CollectionOfOne(delivery))
    }

    /// Queues messages for this loop's subscribers, in order; any thread.
    func enqueue(contentsOf deliveries: some Collection<Delivery>) {
        let schedule = inbox.withLockedValue { inbox in
            inbox.deliveries.append(contentsOf: deliveries)
            guard !inbox.drainScheduled else { return false }
            inbox.drainScheduled = true
            inbox.batches &+= 1
            if inbox.batches % Self.latencySampling == 0 { inbox.sampledAt = DispatchTime.now().uptimeNanoseconds }
            return true
        }
        if schedule {
            eventLoop.execute { [self] in drain() }
        }
    }

    private func drain() {
        let (batch, sampledAt) = inbox.withLockedValue { inbox in
            inbox.drainScheduled = false
            defer {
                inbox.deliveries.removeAll(keepingCapacity: true)
                inbox.sampledAt = nil
            }
            return (inbox.deliveries, inbox.sampledAt)
        }
        let state = state.value
        var start = 0
        while start < batch.count {
            let end = Self.runEnd(batch, from: start)
            // Made for the first subscriber: a topic nobody here subscribes to costs no join.
            var made: FanOut?
            func run() -> FanOut {
                if let made { return made }
                let run = FanOut(batch[start..<end])
                made = run
                return run
            }
            // Likewise made once, for the first subscriber that takes compressed frames.
            var madeCompressed: ByteBuffer?
            func compressedRun() -> ByteBuffer {
                if let madeCompressed { return madeCompressed }
                // A session asks only when the run has something to compress, which only
                // a broker with deflate on (and so a compressor on every hub) makes.
                let frame = state.compressor.map { run().compressedFrame(using: $0) } ?? run().frame
                madeCompressed = frame
                return frame
            }
            if start == 0, end == batch.count {
                // The whole batch is one run: each subscriber gets it once, so write and flush
                // it there and then, while that connection's state is in cache.
                state.index.forEachMatch(batch[start].topic, scratch: &state.matches) { session in
                    if session.deliver(run(), compressed: compressedRun) { session.flush() }
                }
            } else {
                state.index.forEachMatch(batch[start].topic, scratch: &state.matches) { session in
                    if session.deliver(run(), compressed: compressedRun) { state.touched.append(session) }
                }
            }
            start = end
        }
        for session in state.touched { session.flush() }
        state.touched.removeAll(keepingCapacity: true)
        if let sampledAt, let deliverLatency {
            deliverLatency.recordNanoseconds(Int64(clamping: DispatchTime.now().uptimeNanoseconds &- sampledAt))
        }
    }

    /// At most this many messages, or bytes of frames, go out as one run.
    static let maxRunCount = 64
    static let maxRunBytes = 16 * 1024

    /// The end of the run of consecutive deliveries on one topic that starts at `start`.
    private static func runEnd(_ batch: [Delivery], from start: Int) -> Int {
        let topic = batch[start].topic
        var bytes = batch[start].frame.readableBytes
        var end = start + 1
        while end < batch.count, end - start < maxRunCount, batch[end].topic == topic {
            bytes += batch[end].frame.readableBytes
            guard bytes <= maxRunBytes else { break }
            end += 1
        }
        return end
    }

    // MARK: Loop-only bookkeeping

    func add(_ session: Session) {
        let state = state.value
        state.access.add(session)
        state.sessions[session.id] = session
    }

    func remove(_ session: Session) {
        let state = state.value
        state.access.remove(session)
        state.sessions[session.id] = nil
        for name in session.subscriptions {
            state.index.remove(TopicPattern(checked: name), session)
        }
    }

    /// Returns false when the session already had this subscription.
    func subscribe(_ session: Session, to pattern: TopicPattern) -> Bool {
        state.value.index.insert(pattern, session)
    }

    func unsubscribe(_ session: Session, from pattern: TopicPattern) -> Bool {
        state.value.index.remove(pattern, session)
    }

    /// The loop's delivery counters (on the loop: a session keeps them).
    var counters: DeliveryCounters { state.value.counters }

    /// Runs `body` on the loop with what the loop owns (the admin API's reads).
    func inspect<T: Sendable>(_ body: @escaping @Sendable (State) -> T) -> EventLoopFuture<T> {
        eventLoop.submit { [state] in body(state.value) }
    }

    /// The live sessions of opaque token `id`.
    func sessions(token id: String) -> Set<Session> { state.value.access.sessions(token: id) }
}

/// What the sessions of one loop delivered since start. Loop-only: incremented without locks
/// or atomics on the fan-out path, summed over the loops when someone asks (`Hub.inspect`).
final class DeliveryCounters {
    /// Messages and frame bytes queued to subscribers (live and replayed).
    var messages: UInt64 = 0
    var bytes: UInt64 = 0
    /// Subscribers closed with 1013 as slow consumers.
    var slowConsumerCloses: UInt64 = 0
    /// Messages dropped for slow consumers (`slow_consumer=drop`).
    var dropped: UInt64 = 0
    /// `gap` notices sent (slow consumers, and resumes past what is retained).
    var gaps: UInt64 = 0
}
