import NIOConcurrencyHelpers
import NIOCore

/// A message ready for fan-out: its topic and its frame, encoded once for every subscriber.
struct Delivery: Sendable {
    var topic: Topic
    var sequence: UInt64
    var frame: ByteBuffer
}

/// Consecutive messages of one topic (a run of a hub's batch), delivered together: their
/// frames concatenated once, so each subscriber gets one buffer (a retain, not a copy) per
/// run instead of one per message. Subscribers of a topic are the same for the whole run.
struct FanOut {
    var topic: Topic
    var first: UInt64
    var last: UInt64
    var frame: ByteBuffer
    /// The messages one by one, for a session that must look at each (see `Session`).
    var deliveries: ArraySlice<Delivery>

    init(_ run: ArraySlice<Delivery>) {
        deliveries = run
        let head = run[run.startIndex]
        topic = head.topic
        first = head.sequence
        last = run[run.endIndex - 1].sequence
        if run.count == 1 {
            frame = head.frame
        } else {
            var frame = ByteBufferAllocator().buffer(capacity: run.reduce(0) { $0 + $1.frame.readableBytes })
            for delivery in run { frame.writeImmutableBuffer(delivery.frame) }
            self.frame = frame
        }
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
    }

    /// Everything the loop owns.
    final class State {
        var index = SubscriptionIndex<Session>()
        /// Reused between messages so matching does not allocate.
        var matches: Set<Session> = []
        var touched: [Session] = []
        /// The sessions by token and by expiry, for revocation and expiry.
        let access: AccessIndex

        init(access: AccessIndex) {
            self.access = access
        }
    }

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
        self.state = NIOLoopBoundBox.makeBoxSendingValue(
            State(access: AccessIndex(eventLoop: eventLoop)), eventLoop: eventLoop)
    }

    /// Queues a message for this loop's subscribers; any thread.
    func enqueue(_ delivery: Delivery) {
        enqueue(contentsOf: CollectionOfOne(delivery))
    }

    /// Queues messages for this loop's subscribers, in order; any thread.
    func enqueue(contentsOf deliveries: some Collection<Delivery>) {
        let schedule = inbox.withLockedValue { inbox in
            inbox.deliveries.append(contentsOf: deliveries)
            defer { inbox.drainScheduled = true }
            return !inbox.drainScheduled
        }
        if schedule {
            eventLoop.execute { [self] in drain() }
        }
    }

    private func drain() {
        let batch = inbox.withLockedValue { inbox in
            inbox.drainScheduled = false
            defer { inbox.deliveries.removeAll(keepingCapacity: true) }
            return inbox.deliveries
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
            if start == 0, end == batch.count {
                // The whole batch is one run: each subscriber gets it once, so write and flush
                // it there and then, while that connection's state is in cache.
                state.index.forEachMatch(batch[start].topic, scratch: &state.matches) { session in
                    if session.deliver(run()) { session.flush() }
                }
            } else {
                state.index.forEachMatch(batch[start].topic, scratch: &state.matches) { session in
                    if session.deliver(run()) { state.touched.append(session) }
                }
            }
            start = end
        }
        for session in state.touched { session.flush() }
        state.touched.removeAll(keepingCapacity: true)
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
        state.value.access.add(session)
    }

    func remove(_ session: Session) {
        let state = state.value
        state.access.remove(session)
        for pattern in session.subscriptions {
            state.index.remove(pattern, session)
        }
    }

    /// Returns false when the session already had this subscription.
    func subscribe(_ session: Session, to pattern: TopicPattern) -> Bool {
        state.value.index.insert(pattern, session)
    }

    func unsubscribe(_ session: Session, from pattern: TopicPattern) -> Bool {
        state.value.index.remove(pattern, session)
    }

    /// The live sessions of opaque token `id`.
    func sessions(token id: String) -> Set<Session> { state.value.access.sessions(token: id) }
}
