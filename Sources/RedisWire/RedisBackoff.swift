/// Delay before reconnect attempt `n`: exponential with full jitter (a random delay between 0
/// and `initial · 2^(n-1)`, capped at `maximum`), so many nodes that lost Redis together do
/// not all come back in the same millisecond. Defaults: 50 ms, capped at 2 s.
public struct RedisBackoff: Sendable, Equatable {
    public var initial: Duration
    public var maximum: Duration

    public init(initial: Duration = .milliseconds(50), maximum: Duration = .seconds(2)) {
        self.initial = initial
        self.maximum = maximum
    }

    /// The ceiling of the random delay before attempt `attempt` (1 is the first retry).
    func ceiling(attempt: Int) -> Duration {
        guard attempt > 0 else { return .zero }
        let doublings = min(attempt - 1, 30)
        let grown = initial * (1 << doublings)
        return grown < maximum ? grown : maximum
    }

    public func delay(attempt: Int) -> Duration {
        let ceiling = ceiling(attempt: attempt)
        guard ceiling > .zero else { return .zero }
        let nanoseconds = ceiling.components.seconds * 1_000_000_000 + ceiling.components.attoseconds / 1_000_000_000
        return .nanoseconds(Int64.random(in: 0...nanoseconds))
    }
}
