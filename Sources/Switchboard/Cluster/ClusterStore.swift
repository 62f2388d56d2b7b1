/// A cluster node's topics: Redis sequences, stores and fans out every publish (the
/// engine's script), and resumers read the topics' streams (`RedisHistory`).
final class ClusterStore: TopicStore {
    private let engine: ClusterEngine
    private let streams: RedisHistory
    private let rules: @Sendable () -> RetentionRules

    /// `rules`: the retention rules in force.
    init(engine: ClusterEngine, rules: @escaping @Sendable () -> RetentionRules) {
        self.engine = engine
        self.rules = rules
        self.streams = RedisHistory(log: engine.log, rules: rules)
    }

    var history: (any TopicHistory)? { streams }

    /// Always `.awaitingCommit`: `committed` is called once the script returned (with the
    /// seq), or with `unavailable` when Redis did not take the message; `loaded` never.
    func publish(
        _ publish: Publish, from publisher: Principal, now: Int64,
        committed: (@Sendable (UInt64, Result<Void, ReplayError>) -> Void)?,
        loaded: @escaping @Sendable (Result<Void, ReplayError>) -> Void
    ) -> Broker.Sequenced {
        engine.publish(publish, now: now, keep: keep(publish.topic)) { result in
            switch result {
            case .success(let sequence): committed?(sequence, .success(()))
            case .failure(let error): committed?(0, .failure(error))
            }
        }
        return .awaitingCommit(0)
    }

    /// None in memory: the catch-up reads them from Redis.
    func currentSequences(matching pattern: TopicPattern) -> [Topic: UInt64] { [:] }

    /// How many messages of `topic` the cluster's stream keeps: its rule's count, 0 when no
    /// rule retains it. Age-only rules keep up to `ClusterEngine.ageOnlyLimit` (trimming
    /// a stream by age is left to its count).
    private func keep(_ topic: Topic) -> Int {
        guard let rule = rules().rule(for: topic) else { return 0 }
        return Int(clamping: rule.maxMessages ?? ClusterEngine.ageOnlyLimit)
    }
}
