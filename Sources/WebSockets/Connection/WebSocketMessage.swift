import NIOCore

/// A whole message: its kind and its bytes. Text is guaranteed valid UTF-8 when received
/// (unless validation was turned off), so `text` never fails.
public struct WebSocketMessage: Sendable, Hashable {
    public enum Kind: Sendable, Hashable {
        case text
        case binary
    }

    public var kind: Kind
    public var data: ByteBuffer

    public init(kind: Kind, data: ByteBuffer) {
        self.kind = kind
        self.data = data
    }

    public static func text(_ string: String) -> WebSocketMessage {
        WebSocketMessage(kind: .text, data: ByteBuffer(string: string))
    }

    public static func binary(_ data: ByteBuffer) -> WebSocketMessage {
        WebSocketMessage(kind: .binary, data: data)
    }

    public static func binary(_ bytes: some Sequence<UInt8>) -> WebSocketMessage {
        WebSocketMessage(kind: .binary, data: ByteBuffer(bytes: bytes))
    }

    /// The payload decoded as UTF-8 (for binary messages, with replacement characters).
    public var text: String { String(buffer: data) }
}

/// The life of a connection, as `ws`'s `readyState`.
public enum ReadyState: UInt8, Sendable, Hashable {
    case connecting = 0
    case open = 1
    case closing = 2
    case closed = 3
}
