import NIOConcurrencyHelpers
import NIOCore

/// The events of one subscription, as an `AsyncSequence` with one consumer: per topic each
/// seq exactly once, in increasing order, across reconnects and broker restarts; what cannot
/// be delivered comes as a `.gap` in its place. Ends when the client closes (throwing
/// `SwitchboardClientError.closed` unless the application closed it), or throws when the
/// broker refuses the subscription on a reconnect. Cancelling the iterating task, or dropping
/// the subscription, unsubscribes.
public struct Subscription: AsyncSequence, Sendable {
    /// A message or a gap.
    public typealias Element = SubscriptionEvent
    /// Holds one batch per read of the socket: the consumer wakes, and takes the buffer's
    /// lock, once per batch, not once per event. `BufferLevel` counts the events.
    typealias Producer = NIOThrowingAsyncSequenceProducer<[Delivery], any Error, Unbounded, SubscriptionDelegate>

    /// The topic or pattern subscribed to.
    public let pattern: String
    private let producer: Producer
    private let delivered: NIOLockedValueBox<Delivered>
    private let level: BufferLevel

    init(pattern: String, producer: Producer, delivered: NIOLockedValueBox<Delivered>, level: BufferLevel) {
        self.pattern = pattern
        self.producer = producer
        self.delivered = delivered
        self.level = level
    }

    /// Per topic, the last seq handed to the application (a message's seq or a gap's `to`),
    /// and the broker's epoch they count in. Persist it and pass it to
    /// `subscribe(_:from: .positions(…))` to continue in a later process exactly where this
    /// one stopped (or with a `.historyLost` gap, should the broker's history be another by then).
    public var positions: Positions { delivered.withLockedValue { $0.positions } }

    /// Iterates the events and records each topic's position as they are handed out; one task
    /// at a time.
    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: Producer.AsyncIterator
        let delivered: NIOLockedValueBox<Delivered>
        let level: BufferLevel
        var batch: [Delivery] = []
        var index = 0

        /// The next event; nil when the client was closed by the application. Throws
        /// `SwitchboardClientError.closed` when the client closed for another reason, the broker's
        /// refusal when a reconnect's resubscribe was refused, and `CancellationError` when the
        /// iterating task is cancelled (which unsubscribes).
        public mutating func next() async throws -> SubscriptionEvent? {
            while true {
                guard index < batch.count else {
                    guard let next = try await base.next() else { return nil }
                    level.took(next.count)
                    batch = next
                    index = 0
                    continue
                }
                let delivery = batch[index]
                index += 1
                switch delivery {
                case .event(let event):
                    delivered.withLockedValue { $0.record(event.topic, event.lastSeq) }
                    return event
                case .epoch(let epoch):
                    delivered.withLockedValue { $0.epoch = epoch }
                }
            }
        }
    }

    /// The iterator; make only one per subscription.
    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: producer.makeAsyncIterator(), delivered: delivered, level: level)
    }
}

/// The positions handed to the application: the map, plus the last event's topic and seq
/// kept apart, so that a run of events of one topic costs a comparison each, not a hash.
struct Delivered {
    private var saved: Positions
    private var topic: String?
    private var seq: UInt64 = 0

    init(_ positions: Positions) {
        saved = positions
    }

    var epoch: String? {
        get { saved.epoch }
        set { saved.epoch = newValue }
    }

    mutating func record(_ topic: String, _ seq: UInt64) {
        if topic != self.topic {
            if let previous = self.topic { saved.seqs[previous] = self.seq }
            self.topic = topic
        }
        self.seq = seq
    }

    var positions: Positions {
        var positions = saved
        if let topic { positions.seqs[topic] = seq }
        return positions
    }
}

/// How many events a subscription's buffer holds: added by the client's loop per batch,
/// taken by the consumer per batch. Past `high` the loop stops reading the socket; the
/// consumer taking the count below `low` has it read again.
final class BufferLevel: Sendable {
    let high: Int
    let low: Int
    private let count = NIOLockedValueBox(0)
    private let caughtUp: SubscriptionDelegate

    init(high: Int, caughtUp: SubscriptionDelegate) {
        self.high = high
        self.low = high / 2
        self.caughtUp = caughtUp
    }

    /// Counts `events` in; true when the buffer is full.
    func added(_ events: Int) -> Bool {
        count.withLockedValue { count in
            count += events
            return count >= high
        }
    }

    func took(_ events: Int) {
        let crossed = count.withLockedValue { count in
            defer { count -= events }
            return count >= low && count - events < low
        }
        if crossed { caughtUp.produceMore() }
    }
}

/// NIO's buffer never asks to stop: it holds batches, and `BufferLevel` decides on events.
struct Unbounded: NIOAsyncSequenceProducerBackPressureStrategy {
    mutating func didYield(bufferDepth: Int) -> Bool { true }
    mutating func didConsume(bufferDepth: Int) -> Bool { true }
}

/// What goes through a subscription's buffer: its events, and the broker's epoch where it
/// changes, so that the positions the application sees always carry the epoch of the
/// events it has taken.
enum Delivery: Sendable {
    case event(SubscriptionEvent)
    case epoch(String)
}

/// Tells the engine when a subscription's consumer catches up (read from the socket again)
/// or goes away (unsubscribe).
struct SubscriptionDelegate: NIOAsyncSequenceProducerDelegate {
    let engine: Engine
    let id: Int

    func produceMore() {
        engine.onLoop { [id] in $0.consumerCaughtUp(id) }
    }

    func didTerminate() {
        engine.onLoop { [id] in $0.consumerEnded(id) }
    }
}
