/// Wire protocol v1 (docs/protocol.md): what its two halves share, the subprotocol token
/// and its negotiation, the first byte of binary frames and the room a request's envelope
/// takes around its payload. `RequestDecoder` reads the client → broker half,
/// `MessageEncoder` writes the broker → client half.
public enum WireProtocol {
    /// The `Sec-WebSocket-Protocol` token of this version.
    public static let subprotocol = "switchboard.v1"

    package enum SubprotocolChoice: Sendable, Hashable {
        /// Speak v1; answer with `Sec-WebSocket-Protocol: header` when non-nil.
        case v1(header: String?)
        /// The client offered subprotocols, none of them ours: refuse the handshake.
        case unsupported(reason: String)
    }

    /// A client that offers no subprotocol gets v1 (and no header in the answer); one that
    /// offers `switchboard.v1` gets it echoed; one that offers only others is refused.
    package static func chooseSubprotocol(offered: [String]) -> SubprotocolChoice {
        if offered.isEmpty { return .v1(header: nil) }
        if offered.contains(subprotocol) { return .v1(header: subprotocol) }
        return .unsupported(reason: "unsupported subprotocol; this broker speaks \(subprotocol)")
    }

    /// Room in a frame for a publish's envelope around its payload (op, topic, id, JSON
    /// punctuation and some whitespace): frames up to `maxPayloadBytes` + this are read, so an
    /// oversized payload is answered `too_large` rather than closing the connection.
    package static let requestOverhead = 4096

    // MARK: Binary frame layout

    /// Version in the high nibble of a binary frame's first byte.
    package static let binaryVersion: UInt8 = 1
    /// Client → broker publish: `0x11, topicLength:u8, topic, idLength:u8, id, payload…`.
    @_spi(Fuzzing) public static let binaryPublish: UInt8 = 0x11
    /// Broker → client message: `0x12, topicLength:u8, topic, seq:u64be, time:i64be, payload…`.
    package static let binaryMessage: UInt8 = 0x12
}
