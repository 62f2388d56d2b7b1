/// Where publishes are sequenced, stored and fanned out, and what resuming subscribers
/// read: on a single node the broker's own sequencing with the SQLite replay log
/// (`LocalTopicStore`), on a cluster node Redis (`ClusterStore`). The broker and its
/// sessions know only this.
protocol TopicStore: Sendable {
    /// Sequences `publish` and fans it out (see `LocalTopicStore` and `ClusterStore` for
    /// when `committed` and `loaded` are called).
    func publish(
        _ publish: Publish, from publisher: Principal, now: Int64,
        committed: (@Sendable (UInt64, Result<Void, ReplayError>) -> Void)?,
        loaded: @escaping @Sendable (Result<Void, ReplayError>) -> Void
    ) -> Broker.Sequenced

    /// The current seq of the topics `pattern` matches that the store holds in memory, taken
    /// after a subscription is registered: the seqs its catch-up must reach.
    func currentSequences(matching pattern: TopicPattern) -> [Topic: UInt64]

    /// What resumers read; nil when nothing is retained.
    var history: (any TopicHistory)? { get }

    // What operators see (the admin API), as the store knows it. Failures are `unavailable`.

    /// The topics `pattern` matches, by name, at most `limit`. `now`: unix ms, for the rates.
    func topics(matching pattern: TopicPattern, limit: Int, now: Int64) async throws(ReplayError) -> [TopicActivity]
    /// One topic; nil when it was never published.
    func topic(_ topic: Topic, now: Int64) async throws(ReplayError) -> TopicActivity?
    /// What `topic` retains (messages, bytes); nil when no rule retains it.
    func retained(_ topic: Topic) async throws(ReplayError) -> (count: Int, bytes: Int64)?
    /// Up to `limit` retained messages of `topic` after seq `after`, oldest first, and the
    /// seq of the oldest it retains.
    func read(_ topic: Topic, after: UInt64, limit: Int) async throws(ReplayError)
        -> (messages: [StoredMessage], firstRetained: UInt64?)
    /// Deletes what `topic` retains; its seqs continue, and a subscriber resuming from
    /// before is told of a gap. Returns how many messages went.
    func purge(_ topic: Topic) async throws(ReplayError) -> Int
}

extension Broker.Sequencing {
    /// `topic` as this node's table holds it, with its publishes per second here.
    func activity(of topic: Topic, now: Int64) -> TopicActivity? {
        topics.state(of: topic).map { TopicActivity(topic: topic, last: $0, perSecond: topics.messagesPerSecond(topic, now: now)) }
    }
}
