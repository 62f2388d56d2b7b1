/// The broker as the cluster's control channel sees it (`ClusterControl.Member`).
extension Broker {
    var clusterMember: ClusterControl.Member {
        ClusterControl.Member(
            revoke: { [weak self] ids in
                guard let self else { return }
                for id in ids {
                    do {
                        try tokens.revoke(id: id)
                    } catch {
                        logger.error("cluster: cannot store a revocation", metadata: ["token": "\(id)", "error": "\(error)"])
                    }
                }
            },
            revokedTokens: { [weak self] in self?.tokens.list().filter(\.isRevoked).map(\.id) ?? [] },
            adopt: { [weak self] record in try self?.tokens.adopt(record) },
            retention: { [weak self] in self?.retentionRules ?? RetentionRules([]) },
            replaceRetention: { [weak self] rules in try self?.replaceRetention(rules) },
            connections: { [weak self] in self?.statistics.connections ?? 0 },
            now: { [weak self] in self?.clock() ?? 0 })
    }

    /// The retention rules in force: the replay log's, else the configuration's.
    var retentionRules: RetentionRules { replayLog?.rules ?? configuration.replay.retention }
}
