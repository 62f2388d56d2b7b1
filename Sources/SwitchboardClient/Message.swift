#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import NIOCore

/// One message of a topic, as a subscription delivers it.
public struct Message: Sendable, Hashable {
    /// How the message was published, which says how to read `payload`.
    public enum Kind: Sendable, Hashable {
        /// Published as JSON: `payload` holds the publisher's `data` bytes, verbatim.
        case json
        /// Published as a binary frame: `payload` holds the bytes.
        case binary
    }

    /// The concrete topic it was published to.
    public var topic: String
    /// Its sequence number in `topic`: 1, 2, 3…
    public var seq: UInt64
    /// Publish time, unix milliseconds on the broker's clock.
    public var timeMilliseconds: Int64
    /// JSON or binary.
    public var kind: Kind
    /// The message's bytes: the JSON text of its `data`, or the binary payload.
    public var payload: ByteBuffer

    /// A message with these fields (for tests of code that consumes subscriptions).
    public init(topic: String, seq: UInt64, timeMilliseconds: Int64, kind: Kind, payload: ByteBuffer) {
        self.topic = topic
        self.seq = seq
        self.timeMilliseconds = timeMilliseconds
        self.kind = kind
        self.payload = payload
    }

    /// Publish time on the broker's clock.
    public var time: Date { Date(timeIntervalSince1970: Double(timeMilliseconds) / 1000) }

    /// The payload's bytes.
    public var bytes: [UInt8] { Array(payload.readableBytesView) }

    /// The text of a message whose JSON data is a string (`publish(_:text:)`); nil otherwise.
    public var text: String? {
        guard kind == .json else { return nil }
        return payload.withUnsafeReadableBytes { JSONScanner.string($0, 0..<$0.count) }
    }

    /// The JSON data as text (`"hi"`, `{"a":1}`); nil for a binary message.
    public var json: String? {
        kind == .json ? String(buffer: payload) : nil
    }

    /// Decodes the JSON data (`publish(_:json:)`), or a binary payload holding JSON.
    public func decode<T: Decodable>(_ type: T.Type, using decoder: JSONDecoder = JSONDecoder()) throws -> T {
        try decoder.decode(type, from: Data(payload.readableBytesView))
    }
}

/// Messages of a topic that this subscription will never see: `from`…`to`, inclusive. The
/// next message of `topic` it delivers is `to + 1` or later.
public struct Gap: Sendable, Hashable {
    /// Why the seqs were not delivered.
    public enum Reason: Sendable, Hashable {
        /// Not replayable on resume: older than the broker retains, never retained, or lost to
        /// a failed write (the broker reported it).
        case notRetained
        /// Dropped by the broker because this connection was too slow (its `slow_consumer=drop`
        /// policy; the broker reported it).
        case dropped
        /// The topic's history was lost on the broker (database replaced or recreated: its
        /// epoch changed): `from`…`to` is what this subscription had delivered of the old
        /// one, and the topic starts over, from the broker's seq 1 (the next message may have
        /// any seq; `positions` go back to 0).
        case historyLost
        /// The broker delivered a later seq without announcing the missing ones; reported so
        /// that nothing goes missing silently.
        case unannounced
    }

    /// The concrete topic the seqs belong to.
    public var topic: String
    /// The first seq not delivered.
    public var from: UInt64
    /// The last seq not delivered (at least `from`).
    public var to: UInt64
    /// Why they were not delivered.
    public var reason: Reason

    /// A gap of `from`…`to` in `topic`, for `reason`.
    public init(topic: String, from: UInt64, to: UInt64, reason: Reason) {
        self.topic = topic
        self.from = from
        self.to = to
        self.reason = reason
    }
}

/// What a subscription yields.
public enum SubscriptionEvent: Sendable, Hashable {
    /// The next message of its topic.
    case message(Message)
    /// Seqs of a topic that will not be delivered, in their place.
    case gap(Gap)

    /// The concrete topic of the message or gap.
    public var topic: String {
        switch self {
        case .message(let message): return message.topic
        case .gap(let gap): return gap.topic
        }
    }

    /// The last seq of `topic` this event accounts for.
    var lastSeq: UInt64 {
        switch self {
        case .message(let message): return message.seq
        case .gap(let gap): return gap.reason == .historyLost ? 0 : gap.to
        }
    }
}

/// Where a new subscription starts.
public enum StartPosition: Sendable, Hashable {
    /// Live messages from now on.
    case latest
    /// Every message after seq N of the (concrete) topic.
    case seq(UInt64)
    /// Every message published at or after this time.
    case time(Date)
    /// Every retained message, then live; what is no longer retained arrives as a gap.
    case beginning
    /// The last N retained messages of each topic (fewer when fewer are retained; no gap
    /// for older ones), then live.
    case last(UInt64)
    /// Per topic, every message after its seq (what `Subscription.positions` returned);
    /// topics absent from the map start from their first retained message. When the
    /// positions' epoch is not the broker's (its database was replaced since), each topic
    /// yields a `.historyLost` gap and starts over from seq 1.
    case positions(Positions)
}

/// Where a subscription stands, to persist (it is `Codable`) and continue from in a later
/// process with `subscribe(_:from: .positions(saved))`.
public struct Positions: Sendable, Hashable, Codable, ExpressibleByDictionaryLiteral {
    /// Per topic, the last seq handed to the application (a message's seq or a gap's `to`).
    public var seqs: [String: UInt64]
    /// The broker's history the seqs count in (`epoch` in docs/protocol.md); nil when not
    /// known (a broker without a replay log, or no answer seen yet).
    public var epoch: String?

    /// Positions from saved seqs per topic and the epoch they count in (see ``epoch``).
    public init(seqs: [String: UInt64] = [:], epoch: String? = nil) {
        self.seqs = seqs
        self.epoch = epoch
    }

    /// Positions written as `["chat.room1": 42]`: seqs per topic, epoch unknown; a topic
    /// given twice keeps its last seq.
    public init(dictionaryLiteral elements: (String, UInt64)...) {
        self.init(seqs: Dictionary(elements) { $1 })
    }
}
