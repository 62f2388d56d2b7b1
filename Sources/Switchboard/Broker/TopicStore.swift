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
}
