import NIOCore

/// A whole message: its kind and its bytes. Text is guaranteed valid UTF-8 when received
/// (unless validation was turned off), so `text` never fails.
public struct WebSocketMessage: Sendable, Hashable {
    /// Text (UTF-8) or binary, as the message's first frame said.
    public enum Kind: Sendable, Hashable {
        /// A text message: UTF-8, validated unless `ConnectionOptions.validateUTF8` is off.
        case text
        /// A binary message.
        case binary
    }

    /// Text or binary.
    public var kind: Kind
    /// The payload, whole (every fragment joined, decompressed).
    public var data: ByteBuffer

    /// A message of `kind` carrying `data`.
    public init(kind: Kind, data: ByteBuffer) {
        self.kind = kind
        self.data = data
    }

    /// A text message of `string`'s UTF-8 bytes.
    public static func text(_ string: String) -> WebSocketMessage {
        WebSocketMessage(kind: .text, data: ByteBuffer(string: string))
    }

    /// A binary message carrying `data`.
    public static func binary(_ data: ByteBuffer) -> WebSocketMessage {
        WebSocketMessage(kind: .binary, data: data)
    }

    /// A binary message carrying a copy of `bytes`.
    public static func binary(_ bytes: some Sequence<UInt8>) -> WebSocketMessage {
        WebSocketMessage(kind: .binary, data: ByteBuffer(bytes: bytes))
    }

    /// The payload decoded as UTF-8 (for binary messages, with replacement characters).
    public var text: String { String(buffer: data) }
}

/// The life of a connection, as `ws`'s `readyState`.
public enum ReadyState: UInt8, Sendable, Hashable {
    /// Handshaking.
    case connecting = 0
    /// Open: messages go both ways.
    case open = 1
    /// A close frame was sent or received; the close handshake is under way.
    case closing = 2
    /// The TCP connection is gone.
    case closed = 3
}
