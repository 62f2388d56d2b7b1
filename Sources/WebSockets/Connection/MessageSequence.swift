import NIOCore

extension WebSocket {
    /// The messages of one connection as an async sequence (`WebSocket.messages`). It ends
    /// when the connection closes cleanly and throws when it fails (the `WebSocketError` the
    /// peer caused, or a `CloseInfo` with 1006 when TCP dropped without a close), or with
    /// `CancellationError` when the iterating task is cancelled. Only one task may iterate it.
    ///
    /// While the consumer is behind by `highWatermark` messages, the connection stops reading
    /// from its socket, so a slow consumer slows the peer instead of growing memory.
    public struct MessageSequence: AsyncSequence, Sendable {
        /// Each element is one whole message.
        public typealias Element = WebSocketMessage
        typealias Producer = NIOThrowingAsyncSequenceProducer<
            WebSocketMessage, any Error, NIOAsyncSequenceProducerBackPressureStrategies.HighLowWatermark, Delegate
        >
        typealias Source = Producer.Source

        static let lowWatermark = 2
        static let highWatermark = 16

        private let producer: Producer

        init(producer: Producer) {
            self.producer = producer
        }

        /// Iterates the messages; one task at a time.
        public struct AsyncIterator: AsyncIteratorProtocol {
            var base: Producer.AsyncIterator

            /// The next message; nil once the connection closed cleanly. Throws as the sequence
            /// describes (a `WebSocketError`, a `CloseInfo` for an unclean close, `CancellationError`).
            public mutating func next() async throws -> WebSocketMessage? {
                try await base.next()
            }
        }

        /// The iterator; make only one per connection.
        public func makeAsyncIterator() -> AsyncIterator {
            AsyncIterator(base: producer.makeAsyncIterator())
        }

        /// Resumes reading when the consumer catches up or stops listening.
        struct Delegate: NIOAsyncSequenceProducerDelegate {
            let eventLoop: any EventLoop
            /// Used only on `eventLoop`, inside `resume`.
            nonisolated(unsafe) let handler: WebSocketHandler

            func produceMore() { resume() }

            func didTerminate() { resume() }

            private func resume() {
                eventLoop.execute {
                    eventLoop.preconditionInEventLoop()
                    handler.resume(.consumerBehind)
                }
            }
        }
    }
}
