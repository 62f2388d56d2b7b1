import Logging
import NIOCore
import WebSocketCore
import WebSockets

/// One client connection of the broker: who it is, what it subscribed to, and how far
/// behind it is. Lives on its connection's event loop; every method runs there.
final class Session: Hashable {
    let socket: WebSocket
    let principal: Principal
    private unowned let broker: Broker
    private let hub: Hub
    private(set) var subscriptions: Set<TopicPattern> = []
    /// A frame was queued since the last flush.
    private var needsFlush = false
    /// Bytes of the frames queued since the last flush (not yet counted by the channel).
    private var unflushedBytes = 0
    /// Messages dropped for this slow consumer, per topic: the first and last seq missed.
    private var missed: [Topic: ClosedRange<UInt64>] = [:]
    private var closing = false
    /// Consecutive requests that failed to parse; past a limit the connection is closed.
    private var malformedInARow = 0
    private static let malformedLimit = 16

    init(socket: WebSocket, principal: Principal, broker: Broker, hub: Hub) {
        self.socket = socket
        self.principal = principal
        self.broker = broker
        self.hub = hub
    }

    /// The client's address for logs: `X-Forwarded-For` when a proxy set it, else the socket's.
    var peer: String {
        socket.request?.forwardedFor ?? socket.remoteAddress?.description ?? "?"
    }

    static func == (a: Session, b: Session) -> Bool { a === b }
    func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }

    // MARK: Requests

    func handle(_ message: WebSocketMessage) {
        let request: ClientRequest
        do {
            request = try message.kind == .text
                ? WireProtocol.parse(text: message.data, limits: broker.limits)
                : WireProtocol.parse(binary: message.data, limits: broker.limits)
            malformedInARow = 0
        } catch {
            reply(.error(error))
            if error.code == .badJSON || error.code == .badRequest {
                malformedInARow += 1
                if malformedInARow >= Self.malformedLimit {
                    close(.policyViolation, "\(Self.malformedLimit) malformed requests in a row")
                }
            }
            return
        }
        switch request {
        case .subscribe(let id, let pattern, _):
            subscribe(id: id, pattern)
        case .unsubscribe(let id, let pattern):
            unsubscribe(id: id, pattern)
        case .publish(let publish):
            self.publish(publish)
        }
    }

    private func subscribe(id: RequestID?, _ pattern: TopicPattern) {
        guard principal.canSubscribe(pattern) else {
            return reply(.error(ProtocolError(.forbidden, "not allowed to subscribe to \(pattern.name)", id: id)))
        }
        if !subscriptions.contains(pattern) {
            guard subscriptions.count < broker.configuration.maxSubscriptions else {
                return reply(.error(ProtocolError(
                    .limitExceeded, "at most \(broker.configuration.maxSubscriptions) subscriptions per connection",
                    id: id)))
            }
            subscriptions.insert(pattern)
            _ = hub.subscribe(self, to: pattern)
        }
        reply(.subscribed(id: id, pattern: pattern))
    }

    private func unsubscribe(id: RequestID?, _ pattern: TopicPattern) {
        guard subscriptions.remove(pattern) != nil else {
            return reply(.error(ProtocolError(.notFound, "not subscribed to \(pattern.name)", id: id)))
        }
        _ = hub.unsubscribe(self, from: pattern)
        reply(.unsubscribed(id: id, pattern: pattern))
    }

    private func publish(_ publish: Publish) {
        guard principal.canPublish(publish.topic) else {
            return reply(.error(ProtocolError(.forbidden, "not allowed to publish to \(publish.topic.name)", id: publish.id)))
        }
        let sequence = broker.publish(publish)
        if let id = publish.id {
            reply(.ack(id: id, sequence: sequence))
        }
    }

    private func reply(_ message: ServerMessage) {
        socket.send(WebSocketMessage(kind: .text, data: message.json()), promise: nil)
    }

    // MARK: Fan-out

    /// Queues a run of messages (consecutive messages of one topic, one shared frame
    /// buffer; see `Hub`); returns true when the session needs a flush at the end of the
    /// batch.
    ///
    /// The limit applies to everything queued for the connection: the channel's unwritten
    /// bytes and the frames gathered since the last flush (a batch of small frames does
    /// not make the channel unwritable until it is flushed). The check is made once per run
    /// (a run is bounded by `Hub.maxRunBytes`). Once messages are dropped for a slow
    /// consumer, every run is dropped until its backlog is down to half the limit; then the
    /// gap notice goes out first, so each gap is one contiguous range reported before the
    /// messages that follow it.
    func deliver(_ run: FanOut) -> Bool {
        guard !closing else { return false }
        let limit = broker.configuration.maxQueuedBytes
        if !socket.isWritableOnLoop || !missed.isEmpty || unflushedBytes > limit {
            let queued = socket.bufferedAmountOnLoop
            if !missed.isEmpty {
                if queued > limit / 2 {
                    missed[run.topic] = (missed[run.topic]?.lowerBound ?? run.first)...run.last
                    return false
                }
                reportGaps()
            } else if queued > limit {
                switch broker.configuration.slowConsumer {
                case .close:
                    close(.tryAgainLater, "slow consumer: \(queued) bytes queued")
                    return false
                case .drop:
                    broker.logger.notice("slow consumer: dropping messages", metadata: [
                        "peer": "\(peer)", "principal": "\(principal.logLabel)", "queued": "\(queued)",
                    ])
                    missed[run.topic] = run.first...run.last
                    return false
                }
            }
        }
        socket.queueEncoded(run.frame)
        unflushedBytes += run.frame.readableBytes
        defer { needsFlush = true }
        return !needsFlush
    }

    /// Tells a consumer that caught up which sequence ranges it missed, per topic.
    private func reportGaps() {
        var count: UInt64 = 0
        for (topic, range) in missed.sorted(by: { $0.key.name < $1.key.name }) {
            let json = "{\"op\":\"gap\",\"topic\":\"\(topic.name)\",\"from\":\(range.lowerBound),\"to\":\(range.upperBound)}"
            socket.queueEncoded(Self.textFrame(json))
            count += range.upperBound - range.lowerBound + 1
        }
        broker.logger.info("slow consumer caught up", metadata: [
            "peer": "\(peer)", "principal": "\(principal.logLabel)", "topics": "\(missed.count)", "missed": "\(count)",
        ])
        missed.removeAll()
    }

    static func textFrame(_ text: String) -> ByteBuffer {
        var buffer = ByteBuffer()
        var sender = Sender(role: .server)
        sender.writeFrame(opcode: .text, payload: ByteBuffer(string: text), into: &buffer)
        return buffer
    }

    func flush() {
        needsFlush = false
        unflushedBytes = 0
        socket.flush()
    }

    func close(_ code: CloseCode, _ reason: String) {
        guard !closing else { return }
        closing = true
        broker.logger.info("closing connection", metadata: [
            "peer": "\(peer)", "principal": "\(principal.logLabel)",
            "code": "\(code.rawValue)", "reason": "\(reason)",
        ])
        socket.close(code: code, reason: reason, promise: nil)
    }
}
