import Logging
import WebSocketCore
import WebSockets

extension SwitchboardClient {
    /// Every setting of a client, each with its default.
    public struct Options: Sendable {
        /// Delays between connection attempts: full jitter (a uniform random delay between 0
        /// and `min(maxDelay, initialDelay × 2^attempt)`), reset by a successful connection.
        /// Defaults 0.5 s and 20 s.
        public var reconnect = Backoff(initialDelay: .milliseconds(500), maxDelay: .seconds(20))
        /// Ping the broker every `interval`; a pong missing after `timeout` drops the
        /// connection and reconnects, so a dead TCP path is noticed in seconds. Default every
        /// 10 s, 5 s timeout; nil: no heartbeat.
        public var heartbeat: ConnectionOptions.Heartbeat? = .init(interval: .seconds(10), timeout: .seconds(5))
        /// Events one subscription holds for a consumer that is behind; past it the client
        /// stops reading from the socket (every subscription of the client waits) until the
        /// consumer is down to half, so the broker's slow-consumer policy, not the app's
        /// memory, takes over. A few more events may arrive from bytes already read. Default 1024.
        public var subscriptionBuffer = 1024
        /// What a publish does while no connection is open. Default: waits in a queue of 1000.
        public var publishQueue = PublishQueue.wait(limit: 1000)
        /// The WebSocket options (handshake timeout, TLS, proxy, `maxPayload`…); the client
        /// sets the `Authorization` header, the `switchboard.v1` subprotocol and the heartbeat.
        public var webSocket = ClientOptions()
        /// Where the client logs connects, disconnects and refusals. Never logs a token.
        /// Default: silent.
        public var logger = Logger(label: "switchboard-client", factory: { _ in SwiftLogNoOpLogHandler() })

        /// Every setting at its default.
        public init() {}

        /// Throws `InvalidOption` naming the first setting out of its range.
        public func validate() throws(InvalidOption) {
            try InvalidOption.check("subscriptionBuffer", subscriptionBuffer, atLeast: 2)
            if case .wait(let limit) = publishQueue { try InvalidOption.check("publishQueue.limit", limit, atLeast: 0) }
            try reconnect.validate()
            var webSocket = webSocket
            webSocket.connection.heartbeat = heartbeat
            try webSocket.validate()
        }
    }

    /// What a publish does while the client is not connected.
    public enum PublishQueue: Sendable, Hashable {
        /// Waits (up to `limit` publishes) for the next connection; past it a publish
        /// throws `queueFull`.
        case wait(limit: Int)
        /// Throws `notConnected` at once.
        case failFast
    }

    /// Exponential backoff with full jitter.
    public struct Backoff: Sendable, Hashable {
        /// The longest wait before the first retry (positive).
        public var initialDelay: Duration
        /// The cap on any wait (at least `initialDelay`).
        public var maxDelay: Duration

        /// Backoff from `initialDelay`, doubling up to `maxDelay`; `validate()` checks both.
        public init(initialDelay: Duration, maxDelay: Duration) {
            self.initialDelay = initialDelay
            self.maxDelay = maxDelay
        }

        /// The delay before attempt `attempt` (0 after a success).
        func delay(attempt: Int, random: Double = Double.random(in: 0...1)) -> Duration {
            let ceiling = min(maxDelay, initialDelay * (1 << min(attempt, 30)))
            return ceiling * random
        }

        func validate() throws(InvalidOption) {
            guard initialDelay > .zero else {
                throw InvalidOption(option: "reconnect.initialDelay", allowed: "> 0", value: "\(initialDelay)")
            }
            guard maxDelay >= initialDelay else {
                throw InvalidOption(option: "reconnect.maxDelay", allowed: ">= initialDelay", value: "\(maxDelay)")
            }
        }
    }
}
