import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import WebSocketCore
import WebSockets

/// A connection to a Switchboard broker that survives: it reconnects with backoff, resumes
/// every subscription where it stood (each seq exactly once, in order, gaps explicit), and
/// sends publishes made while disconnected once it is back. See docs/sdk.md.
///
///     let client = try SwitchboardClient(url: "ws://127.0.0.1:8080/", token: .static("sb_…"))
///     let sub = try await client.subscribe("chat.*", from: .latest)
///     let seq = try await client.publish("chat.room1", text: "hi")
///     for try await event in sub { … }
///     await client.close()
///
/// Every method may be called from any task. The client's state lives on one event loop of
/// `group`, where the broker's frames arrive too.
public final class SwitchboardClient: Sendable {
    private let engine: Engine
    private let runner: Task<Void, Never>

    /// Starts connecting at once. Throws `WebSocketURL.ParseError` for a bad URL and
    /// `InvalidOption` for an option out of its range.
    public convenience init(
        url: String, token: Token = .none, options: Options = Options(),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) throws {
        try self.init(url: WebSocketURL(url), token: token, options: options, group: group)
    }

    /// Starts connecting at once, to an already parsed URL. Throws `InvalidOption` for an option
    /// out of its range.
    public init(
        url: WebSocketURL, token: Token = .none, options: Options = Options(),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) throws {
        try options.validate()
        let engine = Engine(url: url, token: token, options: options, loop: group.next())
        self.engine = engine
        runner = Task { await engine.run() }
    }

    deinit {
        engine.onLoop { $0.finish(.closedByApplication) }
        runner.cancel()
    }

    // MARK: Subscribing

    /// Subscribes to a topic or pattern (`chat.*`, `chat.>`) and returns once the broker has
    /// confirmed it (waiting for a connection if there is none). Throws
    /// `SwitchboardClientError.broker` with `forbidden` or `bad_topic` when refused, `.closed`
    /// when the client is closed.
    public func subscribe(_ pattern: String, from start: StartPosition = .latest) async throws -> Subscription {
        let topic = TopicPattern(pattern)
        if case .seq = start, topic.isPattern {
            throw SwitchboardClientError.broker(
                code: .badRequest, message: "a pattern has a position per topic: use .positions, not .seq")
        }
        let startedAt = Int64(Date().timeIntervalSince1970 * 1000)
        let opened = engine.loop.makePromise(of: Void.self)
        let subscription = await engine.withCore { $0.subscribe(topic, from: start, startedAt: startedAt, opened: opened) }
        try await opened.futureResult.get()
        // Non-nil: `opened` fails when no subscription was made.
        return subscription!
    }

    // MARK: Publishing

    /// Publishes `text` as a JSON string and returns its seq once the broker acknowledged it
    /// (for a retained topic: once it is on disk). Throws `SwitchboardClientError`:
    /// `.broker` (`forbidden`, `too_large`, `unavailable`, `bad_topic`…), `.connectionLost`
    /// (the outcome is unknown), `.queueFull`, `.notConnected`, `.closed`.
    @discardableResult
    public func publish(_ topic: String, text: String) async throws -> UInt64 {
        try await publishAcked(topic, .text(text))
    }

    /// Publishes `value` encoded as JSON; see `publish(_:text:)`.
    @discardableResult
    public func publish(_ topic: String, json value: some Encodable, encoder: JSONEncoder = JSONEncoder()) async throws
        -> UInt64
    {
        try await publishAcked(topic, .json(ByteBuffer(bytes: encoder.encode(value))))
    }

    /// Publishes JSON text as it is (`{"a":1}`, `42`); see `publish(_:text:)`. Throws
    /// `.broker(code: .badJSON, …)` without sending when `json` is not one JSON value.
    @discardableResult
    public func publish(_ topic: String, rawJSON json: String) async throws -> UInt64 {
        try await publishAcked(topic, .json(Self.validJSON(json)))
    }

    /// Publishes bytes as a binary frame (delivered as binary); see `publish(_:text:)`.
    @discardableResult
    public func publish(_ topic: String, bytes: some Sequence<UInt8>) async throws -> UInt64 {
        try await publishAcked(topic, Self.binary(topic, bytes))
    }

    /// Publishes without waiting and without an ack: the broker answers only a refusal, which
    /// is logged. While disconnected it waits in the same queue as acked publishes.
    public func publishWithoutAck(_ topic: String, text: String) {
        hand(.init(topic: topic, payload: .text(text)))
    }

    /// Publishes `value` encoded as JSON without an ack; see `publishWithoutAck(_:text:)`.
    /// Throws what `encoder` throws.
    public func publishWithoutAck(_ topic: String, json value: some Encodable, encoder: JSONEncoder = JSONEncoder())
        throws
    {
        try hand(.init(topic: topic, payload: .json(ByteBuffer(bytes: encoder.encode(value)))))
    }

    /// Publishes bytes as a binary message without an ack; see `publishWithoutAck(_:text:)`.
    /// Throws `SwitchboardClientError.topicTooLong` for a topic over 255 bytes.
    public func publishWithoutAck(_ topic: String, bytes: some Sequence<UInt8>) throws {
        try hand(.init(topic: topic, payload: Self.binary(topic, bytes)))
    }

    private func publishAcked(_ topic: String, _ payload: Payload) async throws -> UInt64 {
        try await withUnsafeThrowingContinuation { ack in
            hand(.init(topic: topic, payload: payload, ack: ack))
        }
    }

    private static func validJSON(_ json: String) throws -> ByteBuffer {
        guard (try? JSONSerialization.jsonObject(with: Data(json.utf8), options: .fragmentsAllowed)) != nil else {
            throw SwitchboardClientError.broker(code: .badJSON, message: "not a JSON value")
        }
        return ByteBuffer(string: json)
    }

    private static func binary(_ topic: String, _ bytes: some Sequence<UInt8>) throws -> Payload {
        guard topic.utf8.count <= 255 else { throw SwitchboardClientError.topicTooLong(topic) }
        return .binary(ByteBuffer(bytes: bytes))
    }

    /// Hands a publish to the client's loop.
    private func hand(_ publish: Core.QueuedPublish) {
        engine.onLoop { $0.publish(publish) }
    }

    // MARK: Connection

    /// The connection's states, the current one first; ends after `.closed`.
    public var states: AsyncStream<ConnectionState> {
        let (stream, continuation) = AsyncStream.makeStream(
            of: ConnectionState.self, bufferingPolicy: .bufferingNewest(64))
        engine.onLoop { $0.watch(continuation) }
        return stream
    }

    /// Reconnects now: skips the backoff wait, or (when connected) drops the connection and
    /// opens a new one, resuming every subscription. For an app coming back to the foreground.
    public func reconnectNow() {
        engine.onLoop { $0.reconnectNow() }
    }

    /// Closes for good: subscriptions end (normally), unanswered and queued publishes fail
    /// with `.closed`; returns once the connection is closed and the client's task has ended.
    public func close() async {
        engine.onLoop { $0.finish(.closedByApplication) }
        await runner.value
    }
}
