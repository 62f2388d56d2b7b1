import NIOConcurrencyHelpers

/// A cluster node's topics: Redis sequences, stores and fans out every publish (the
/// engine's script), and resumers read the topics' streams (`RedisHistory`). What operators
/// see of a topic (seq, time, what is retained) is read from Redis too, so every node shows
/// the cluster's topics; the node's own table counts only the publishes made through it.
final class ClusterStore: TopicStore {
    private let engine: ClusterEngine
    private let streams: RedisHistory
    private let rules: @Sendable () -> RetentionRules
    /// Shared with the broker, which reads its counters: the topics published through this
    /// node (each one's last seq and rate here), and how many messages and bytes.
    private let sequencing: NIOLockedValueBox<Broker.Sequencing>
    private let maxTopics: Int

    /// `rules`: the retention rules in force. `maxTopics`: the topics the node's table holds
    /// at most (the least recently published leaves first).
    init(
        engine: ClusterEngine, sequencing: NIOLockedValueBox<Broker.Sequencing>, maxTopics: Int,
        rules: @escaping @Sendable () -> RetentionRules
    ) {
        self.engine = engine
        self.sequencing = sequencing
        self.maxTopics = maxTopics
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
        let (topic, bytes) = (publish.topic, UInt64(publish.payload.readableBytes))
        engine.publish(publish, now: now, keep: keep(topic)) { [self] result in
            switch result {
            case .success(let published):
                count(topic, LastPublish(sequence: published.sequence, time: published.time), bytes: bytes, now: now)
                committed?(published.sequence, .success(()))
            case .failure(let error): committed?(0, .failure(error))
            }
        }
        return .awaitingCommit(0)
    }

    /// A publish through this node that Redis took. Replies may come back out of seq order
    /// (several connections), so the table keeps the latest.
    private func count(_ topic: Topic, _ last: LastPublish, bytes: UInt64, now: Int64) {
        sequencing.withLockedValue { state in
            let known = state.topics.state(of: topic)
            if known == nil, state.topics.count >= maxTopics {
                // Redis holds every topic's seq: any may leave the table.
                _ = state.topics.evict(publishedBefore: nil, durable: .max, limit: 1)
            }
            state.topics.update(topic, known.map { LastPublish.latest($0, last) } ?? last, note: 0, published: now)
            state.published += 1
            state.publishedBytes &+= bytes
        }
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

/// What operators see: the cluster's topics as Redis holds them, with each one's publishes
/// per second through this node.
extension ClusterStore {
    /// Every topic Redis has a seq for (a `SCAN` of the keyspace), by name; their seq hashes
    /// read at once, pipelined on the one connection.
    func topics(matching pattern: TopicPattern, limit: Int, now: Int64) async throws(ReplayError) -> [TopicActivity] {
        let log = engine.log
        let names = try await Self.redis { try await log.topics(matching: pattern, .sequence) }.prefix(limit)
        let states = try await Self.redis {
            try await withThrowingTaskGroup(of: (Topic, LastPublish?).self) { reads in
                for topic in names {
                    reads.addTask {
                        (topic, try await log.current(topic: topic).map { LastPublish(sequence: $0.sequence, time: $0.time) })
                    }
                }
                return try await reads.reduce(into: [Topic: LastPublish]()) { states, read in states[read.0] = read.1 }
            }
        }
        return sequencing.withLockedValue { table in
            names.compactMap { topic in
                states[topic].map {
                    TopicActivity(topic: topic, last: $0, perSecond: table.activity(of: topic, now: now)?.perSecond ?? 0)
                }
            }
        }
    }

    func topic(_ topic: Topic, now: Int64) async throws(ReplayError) -> TopicActivity? {
        let log = engine.log
        guard let current = try await Self.redis({ try await log.current(topic: topic) }) else { return nil }
        let perSecond = sequencing.withLockedValue { $0.activity(of: topic, now: now)?.perSecond } ?? 0
        return TopicActivity(topic: topic, last: LastPublish(sequence: current.sequence, time: current.time), perSecond: perSecond)
    }

    func retained(_ topic: Topic) async throws(ReplayError) -> (count: Int, bytes: Int64)? {
        guard rules().retains(topic) else { return nil }
        let log = engine.log
        return try await Self.redis { try await log.retainedSize(topic: topic) }
    }

    func read(_ topic: Topic, after: UInt64, limit: Int) async throws(ReplayError)
        -> (messages: [StoredMessage], firstRetained: UInt64?)
    {
        let log = engine.log
        return try await Self.redis {
            (try await log.read(topic: topic, after: after, limit: limit), try await log.first(topic: topic, atOrAfter: 0)?.sequence)
        }
    }

    func purge(_ topic: Topic) async throws(ReplayError) -> Int {
        let log = engine.log
        return try await Self.redis { try await log.purge(topic: topic) }
    }

    /// A Redis call; its errors become `unavailable`.
    private static func redis<T: Sendable>(_ body: () async throws -> T) async throws(ReplayError) -> T {
        do {
            return try await body()
        } catch {
            throw .unavailable("redis: \(error)")
        }
    }
}
