import NIOConcurrencyHelpers
import NIOCore

/// A message ready for fan-out: its topic and its frame, encoded once for every subscriber.
struct Delivery: Sendable {
    var topic: Topic
    var sequence: UInt64
    var frame: ByteBuffer
}

/// The broker's part of one event loop: the sessions of the connections that loop owns,
/// their subscriptions indexed by pattern, and an inbox of messages to fan out.
///
/// Invariants:
/// - `inbox` is the only state touched off the loop; publishers append to it while holding
///   the broker's sequencing lock, so each hub sees every topic's messages in seq order.
/// - A non-empty inbox has exactly one drain task scheduled: the loop gets one task per
///   batch of messages, never one per subscriber, and each touched session is flushed once
///   per batch.
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
        var sessions: Set<Session> = []
        /// Reused between messages so matching does not allocate.
        var matches: Set<Session> = []
        var touched: [Session] = []
    }

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
        self.state = NIOLoopBoundBox.makeBoxSendingValue(State(), eventLoop: eventLoop)
    }

    /// Queues a message for this loop's subscribers; any thread.
    func enqueue(_ delivery: Delivery) {
        let schedule = inbox.withLockedValue { inbox in
            inbox.deliveries.append(delivery)
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
        for delivery in batch {
            state.matches.removeAll(keepingCapacity: true)
            state.index.collectMatches(delivery.topic, into: &state.matches)
            for session in state.matches where session.deliver(delivery) {
                state.touched.append(session)
            }
        }
        for session in state.touched { session.flush() }
        state.touched.removeAll(keepingCapacity: true)
    }

    // MARK: Loop-only bookkeeping

    func add(_ session: Session) {
        state.value.sessions.insert(session)
    }

    func remove(_ session: Session) {
        let state = state.value
        state.sessions.remove(session)
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

    var sessions: Set<Session> { state.value.sessions }
}
