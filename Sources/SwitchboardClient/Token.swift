/// How a client authenticates: sent as `Authorization: Bearer <token>` at each handshake.
public enum Token: Sendable {
    /// No token: the broker's anonymous access applies.
    case none
    /// The same token at every connection.
    case `static`(String)
    /// Asked for a token before every connection attempt, so short-lived tokens (JWTs) are
    /// renewed across reconnects. A throw counts as a failed attempt (retried with backoff).
    case provider(@Sendable () async throws -> String)

    var isProvider: Bool {
        if case .provider = self { return true }
        return false
    }

    func current() async throws -> String? {
        switch self {
        case .none: return nil
        case .static(let token): return token
        case .provider(let provide): return try await provide()
        }
    }
}
