/// Where a client's connection stands (`SwitchboardClient.states`).
public enum ConnectionState: Sendable, Hashable {
    /// Opening a connection (asking the token provider, then the WebSocket handshake).
    case connecting
    /// Connected; subscriptions are (being) resumed and queued publishes sent.
    case connected
    /// Not connected; the next attempt comes in `retryIn` unless `reconnectNow()` is called.
    /// `code` is the close code of the connection that ended, nil when none was open.
    case disconnected(code: UInt16?, reason: String, retryIn: Duration)
    /// For good: `close()` was called, or the broker refused the token in a way a retry cannot fix.
    case closed(CloseReason)
}

/// Why a client closed for good.
public enum CloseReason: Sendable, Hashable, CustomStringConvertible {
    /// The application called `close()`.
    case closedByApplication
    /// The token was revoked (close code 4001, or 401 `revoked` at the handshake).
    case tokenRevoked
    /// The token expired (close code 4002, or 401 `expired`) and no fresh one came.
    case tokenExpired
    /// The handshake was refused with 401 for this reason (`unknown`, `bad_signature`, …).
    case unauthorized(String)
    /// The server answered the handshake with a status a retry cannot change (404, 400…).
    case refused(status: Int, body: String)

    /// One line saying why.
    public var description: String {
        switch self {
        case .closedByApplication: return "closed by the application"
        case .tokenRevoked: return "the token was revoked"
        case .tokenExpired: return "the token expired"
        case .unauthorized(let reason): return "the broker refused the token: \(reason)"
        case .refused(let status, let body): return "the broker refused the connection: \(status) \(body)"
        }
    }
}
