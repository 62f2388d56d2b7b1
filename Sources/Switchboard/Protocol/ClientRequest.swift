import NIOCore

/// One parsed client request.
@_spi(Fuzzing) public enum ClientRequest: Sendable {
    /// `epoch`: the history `since` counts in (the broker's `subscribed` told it), when given.
    case subscribe(id: RequestID?, pattern: TopicPattern, since: ReplayPosition?, epoch: String? = nil)
    case unsubscribe(id: RequestID?, pattern: TopicPattern)
    case publish(Publish)

    @_spi(Fuzzing) public var id: RequestID? {
        switch self {
        case .subscribe(let id, _, _, _), .unsubscribe(let id, _): id
        case .publish(let publish): publish.id
        }
    }
}

/// A publish request. `payload` is a slice of the incoming frame, never decoded.
@_spi(Fuzzing) public struct Publish: Sendable {
    /// Present when the publisher wants an `ack`.
    @_spi(Fuzzing) public var id: RequestID?
    @_spi(Fuzzing) public var topic: Topic
    @_spi(Fuzzing) public var payload: ByteBuffer
    @_spi(Fuzzing) public var format: PayloadFormat

    @_spi(Fuzzing) public init(id: RequestID?, topic: Topic, payload: ByteBuffer, format: PayloadFormat) {
        self.id = id
        self.topic = topic
        self.payload = payload
        self.format = format
    }
}

/// How a message's payload is carried, from the publisher to the subscribers and the replay log.
public enum PayloadFormat: Sendable, Hashable {
    /// One complete JSON value (the `data` member of a text frame); subscribers receive it
    /// in a text `msg` envelope.
    case json
    /// Opaque bytes from a binary frame; subscribers receive a binary message.
    case binary
}

/// Where a subscription asks replay to start. Parsed and carried; the replay log decides.
public enum ReplayPosition: Sendable, Hashable {
    /// `"since": 42`: messages with sequence > 42.
    case sequence(UInt64)
    /// `"since": {"chat.a": 3, "chat.b": 7}`: per concrete topic (for patterns).
    case perTopic([Topic: UInt64])
    /// `"since_time": 1700000000000`: messages published at or after this time.
    case time(unixMilliseconds: Int64)
    /// `"last": 50`: the last 50 retained messages of each topic (fewer when fewer are retained).
    case last(UInt64)
}

/// A request id as the client wrote it: the raw JSON token (a string with its quotes, or
/// a number), echoed byte for byte in the answer.
@_spi(Fuzzing) public struct RequestID: Sendable, Hashable, CustomStringConvertible {
    /// The JSON token, e.g. `"7"` (with quotes) or `7`.
    @_spi(Fuzzing) public let json: ByteBuffer

    @_spi(Fuzzing) public init(json: ByteBuffer) { self.json = json }

    /// An id given as a plain string (binary frames, tests): stored JSON-encoded.
    @_spi(Fuzzing) public init(string: String) {
        var buffer = ByteBuffer()
        JSONWriter.writeString(string, to: &buffer)
        self.json = buffer
    }

    @_spi(Fuzzing) public var description: String { String(buffer: json) }
}
