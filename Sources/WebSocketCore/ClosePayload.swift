import NIOCore

/// The body of a close frame (RFC 6455 §5.5.1): empty, or a 2-byte status code followed
/// by a UTF-8 reason, 125 bytes in all.
public enum ClosePayload {
    /// The longest reason that fits beside the status code in a control frame.
    public static let maxReasonBytes = 123

    /// Reads a received close body. An empty body is reported as `.noStatusReceived`
    /// (1005, local only); a 1-byte body or a code not allowed on the wire is a protocol
    /// error; a reason that is not UTF-8 is 1007.
    public static func parse(_ payload: ByteBuffer) throws(WebSocketError) -> (code: CloseCode, reason: String) {
        var payload = payload
        guard let rawCode = payload.readInteger(as: UInt16.self) else {
            if payload.readableBytes == 0 { return (.noStatusReceived, "") }
            throw .protocolError("close frame body of 1 byte")
        }
        let code = CloseCode(rawCode)
        guard code.isValidOnWire else {
            throw .protocolError("close code \(rawCode) is not allowed on the wire")
        }
        var validator = UTF8Validator()
        guard validator.validate(payload), validator.isAtCharacterBoundary else {
            throw .invalidPayload("close reason is not valid UTF-8")
        }
        return (code, payload.readString(length: payload.readableBytes) ?? "")
    }

    /// Builds a close body to send, refusing codes a peer would reject and reasons that do
    /// not fit, so we never put an invalid close frame on the wire.
    public static func make(code: CloseCode, reason: String, allocator: ByteBufferAllocator = ByteBufferAllocator())
        throws(UsageError) -> ByteBuffer
    {
        guard code.isValidOnWire else {
            throw UsageError("close code \(code.rawValue) may not be sent (allowed: 1000–1003, 1007–1014, 3000–4999)")
        }
        let reasonBytes = reason.utf8.count
        guard reasonBytes <= maxReasonBytes else {
            throw UsageError("close reason is \(reasonBytes) bytes; at most \(maxReasonBytes) fit in a close frame")
        }
        var buffer = allocator.buffer(capacity: 2 + reasonBytes)
        buffer.writeInteger(code.rawValue)
        buffer.writeString(reason)
        return buffer
    }
}
