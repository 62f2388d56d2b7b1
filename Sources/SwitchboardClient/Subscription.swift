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
    typealias Producer = NIOThrowingAsyncSequenceProducer<
        SubscriptionEvent, any Error, NIOAsyncSequenceProducerBackPressureStrategies.HighLowWatermark,
        SubscriptionDelegate
    >

    /// The topic or pattern subscribed to.
    public let pattern: String
    private let producer: Producer
    private let delivered: NIOLockedValueBox<[String: UInt64]>

    init(pattern: String, producer: Producer, delivered: NIOLockedValueBox<[String: UInt64]>) {
        self.pattern = pattern
        self.producer = producer
        self.delivered = delivered
    }

    /// Per topic, the last seq handed to the application (a message's seq or a gap's `to`).
    /// Persist it and pass it to `subscribe(_:from: .positions(…))` to continue in a later
    /// process exactly where this one stopped.
    public var positions: [String: UInt64] { delivered.withLockedValue { $0 } }

    /// Iterates the events and records each topic's position as they are handed out; one task
    /// at a time.
    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: Producer.AsyncIterator
        let delivered: NIOLockedValueBox<[String: UInt64]>

        /// The next event; nil when the client was closed by the application. Throws
        /// `SwitchboardClientError.closed` when the client closed for another reason, the broker's
        /// refusal when a reconnect's resubscribe was refused, and `CancellationError` when the
        /// iterating task is cancelled (which unsubscribes).
        public mutating func next() async throws -> SubscriptionEvent? {
            guard let event = try await base.next() else { return nil }
            delivered.withLockedValue { $0[event.topic] = event.lastSeq }
            return event
        }
    }

    /// The iterator; make only one per subscription.
    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: producer.makeAsyncIterator(), delivered: delivered)
    }
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
