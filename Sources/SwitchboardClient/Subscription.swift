import NIOConcurrencyHelpers
import NIOCore

/// The events of one subscription, as an `AsyncSequence` with one consumer: per topic each
/// seq exactly once, in increasing order, across reconnects and broker restarts; what cannot
/// be delivered comes as a `.gap` in its place. Ends when the client closes (throwing
/// `SwitchboardClientError.closed` unless the application closed it), or throws when the
/// broker refuses the subscription on a reconnect. Cancelling the iterating task, or dropping
/// the subscription, unsubscribes.
public struct Subscription: AsyncSequence, Sendable {
    public typealias Element = SubscriptionEvent
    typealias Producer = NIOThrowingAsyncSequenceProducer<
        Delivery, any Error, NIOAsyncSequenceProducerBackPressureStrategies.HighLowWatermark,
        SubscriptionDelegate
    >

    /// The topic or pattern subscribed to.
    public let pattern: String
    private let producer: Producer
    private let delivered: NIOLockedValueBox<Positions>

    init(pattern: String, producer: Producer, delivered: NIOLockedValueBox<Positions>) {
        self.pattern = pattern
        self.producer = producer
        self.delivered = delivered
    }

    /// Per topic, the last seq handed to the application (a message's seq or a gap's `to`),
    /// and the broker's epoch they count in. Persist it and pass it to
    /// `subscribe(_:from: .positions(…))` to continue in a later process exactly where this
    /// one stopped (or with a `.historyLost` gap, should the broker's history be another by then).
    public var positions: Positions { delivered.withLockedValue { $0 } }

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: Producer.AsyncIterator
        let delivered: NIOLockedValueBox<Positions>

        public mutating func next() async throws -> SubscriptionEvent? {
            while let delivery = try await base.next() {
                switch delivery {
                case .event(let event):
                    delivered.withLockedValue { $0.seqs[event.topic] = event.lastSeq }
                    return event
                case .epoch(let epoch):
                    delivered.withLockedValue { $0.epoch = epoch }
                }
            }
            return nil
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: producer.makeAsyncIterator(), delivered: delivered)
    }
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
