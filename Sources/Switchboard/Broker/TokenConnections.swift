import NIOConcurrencyHelpers

/// Open connections per token, for `max_connections_per_token`: checked at the handshake
/// (`isFull`, answered 429) and counted once the connection is open.
final class TokenConnections: Sendable {
    let limit: Int
    private let counts = NIOLockedValueBox<[String: Int]>([:])

    init(limit: Int) {
        self.limit = limit
    }

    func isFull(_ key: String) -> Bool {
        counts.withLockedValue { ($0[key] ?? 0) >= limit }
    }

    /// Counts a connection; false (and not counted) when the token is at its limit.
    func open(_ key: String) -> Bool {
        counts.withLockedValue { counts in
            let count = counts[key] ?? 0
            guard count < limit else { return false }
            counts[key] = count + 1
            return true
        }
    }

    func close(_ key: String) {
        counts.withLockedValue { counts in
            let count = (counts[key] ?? 1) - 1
            counts[key] = count > 0 ? count : nil
        }
    }
}

extension Principal {
    /// What `max_connections_per_token` counts by: the opaque token, or the JWT's subject
    /// (every token minted for one subject shares it). Nil for anonymous clients and JWTs
    /// without `sub`, which are not counted.
    var connectionKey: String? {
        switch kind {
        case .token(let id): "token:\(id)"
        case .jwt(let subject?): "jwt:\(subject)"
        case .jwt(nil), .anonymous: nil
        }
    }
}
