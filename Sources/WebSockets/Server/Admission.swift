import NIOConcurrencyHelpers
import NIOCore

/// A server's count of its connections and its limits on new ones: the rate at which
/// handshakes may start, the handshakes in progress, the connections from one remote
/// address. A connection arrives when it is accepted (standalone) or when its upgrade
/// request is routed to the server (attached); it then holds one handshake until the
/// upgrade handler goes (upgraded or closed), and its place in the counts until it closes.
/// One lock, taken three times per connection, never per message.
final class Admission: Sendable {
    /// What an arriving connection is told.
    enum Verdict: Equatable {
        /// Counted as open and handshaking and, for an IP connection, against its address
        /// (the key its close gives back).
        case admitted(address: String?)
        /// Counted as open and handshaking, but not against its address, which already has
        /// `limit` connections: its request is answered 429.
        case tooManyFromAddress(String, limit: Int)
        /// Not counted: past the handshake rate or the handshakes in progress.
        case overloaded(Overload)
    }

    enum Overload: Equatable {
        /// The token bucket is empty; a token comes back in `retryAfter` seconds.
        case rate(perSecond: Int, retryAfter: Int)
        case handshakes(limit: Int)
    }

    private struct State {
        var open = 0
        var handshaking = 0
        var perAddress: [String: Int] = [:]
        var bucket: TokenBucket?
    }

    private let maxHandshakes: Int
    private let maxPerAddress: Int?
    private let state: NIOLockedValueBox<State>

    init(options: WebSocketServer.Options) {
        maxHandshakes = options.maxConcurrentHandshakes
        maxPerAddress = options.maxConnectionsPerAddress
        state = NIOLockedValueBox(State(bucket: options.handshakeRate.map { TokenBucket($0, now: .now()) }))
    }

    /// Connections counted and not yet closed.
    var openConnections: Int { state.withLockedValue { $0.open } }

    func arrive(from remote: SocketAddress?) -> Verdict {
        let address = maxPerAddress == nil ? nil : remote?.ipAddress
        let now = NIODeadline.now()
        return state.withLockedValue { state in
            guard state.handshaking < maxHandshakes else { return .overloaded(.handshakes(limit: maxHandshakes)) }
            if state.bucket?.take(now: now) == false, let bucket = state.bucket {
                return .overloaded(.rate(perSecond: bucket.limit.perSecond, retryAfter: bucket.secondsUntilNextToken))
            }
            state.open += 1
            state.handshaking += 1
            guard let address, let limit = maxPerAddress else { return .admitted(address: nil) }
            let count = state.perAddress[address, default: 0]
            guard count < limit else { return .tooManyFromAddress(address, limit: limit) }
            state.perAddress[address] = count + 1
            return .admitted(address: address)
        }
    }

    /// The connection was upgraded, or went before it could be.
    func handshakeEnded() {
        state.withLockedValue { $0.handshaking -= 1 }
    }

    /// The connection closed; `address` is the key `arrive` counted it under, if any.
    func closed(address: String?) {
        state.withLockedValue { state in
            state.open -= 1
            guard let address, let count = state.perAddress[address] else { return }
            state.perAddress[address] = count > 1 ? count - 1 : nil
        }
    }
}

/// How fast a server starts handshakes: `burst` at once after a quiet spell, then
/// `perSecond` on average.
public struct HandshakeRateLimit: Sendable, Hashable {
    /// Handshakes per second on average (at least 1).
    public var perSecond: Int
    /// Handshakes allowed at once after a quiet spell (at least 1).
    public var burst: Int

    /// A limit of `perSecond` on average with bursts of `burst`.
    public init(perSecond: Int, burst: Int) {
        self.perSecond = perSecond
        self.burst = burst
    }
}

/// The handshake rate limit's bucket: it holds up to `burst` tokens, gains `perSecond` a
/// second, and each handshake takes one. Refilled when asked, so it needs no timer. Both
/// numbers are at least 1 (`Options.validate()` runs before a connection can arrive).
struct TokenBucket {
    let limit: HandshakeRateLimit
    private var tokens: Double
    private var refilled: NIODeadline

    init(_ limit: HandshakeRateLimit, now: NIODeadline) {
        self.limit = limit
        self.tokens = Double(limit.burst)
        self.refilled = now
    }

    mutating func take(now: NIODeadline) -> Bool {
        let elapsed = Double(max((now - refilled).nanoseconds, 0)) / 1e9
        tokens = min(Double(limit.burst), tokens + elapsed * Double(limit.perSecond))
        refilled = now
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }

    /// Whole seconds until the next token, at least 1 (for `Retry-After`), just after `take`.
    var secondsUntilNextToken: Int {
        max(1, Int(((1 - tokens) / Double(limit.perSecond)).rounded(.up)))
    }
}
