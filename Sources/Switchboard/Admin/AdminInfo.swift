import WebSockets

/// `GET /admin/v1/info`: the broker at a glance; on a cluster node, the live nodes too.
extension AdminAPI {
    func info() async -> PlainHTTPResponse {
        let counters = await broker.counters()
        let published = broker.publishedTotals
        let statistics = broker.statistics
        var body: [String: Any] = [
            "version": SwitchboardVersion.current,
            "uptime_seconds": Double(max(0, broker.clock() - broker.startedAt)) / 1000,
            "connections": counters.connections, "topics": statistics.topics, "subscriptions": counters.subscriptions,
            "messages_in": published.messages, "bytes_in": published.bytes,
            "messages_out": counters.delivered, "bytes_out": counters.deliveredBytes,
            "slow_consumer_closes": counters.slowConsumerCloses, "slow_consumer_drops": counters.dropped,
            "gaps_sent": counters.gaps, "replayed": statistics.replayed, "status": "ok",
        ]
        if let replay = statistics.replay, let log = broker.replayLog {
            var entry: [String: Any] = [
                "enabled": !log.rules.rules.isEmpty, "status": "ok", "size_bytes": replay.usedBytes,
                "queue_depth": replay.queued, "queue_limit": log.configuration.queueLimit,
                "committed": replay.committed, "failed": replay.failed, "rejected": replay.rejected, "pruned": replay.pruned,
            ]
            if case .degraded(let reason) = replay.status {
                entry["status"] = "degraded"
                entry["reason"] = reason
                body["status"] = "degraded"
                body["reason"] = "the replay log cannot write: \(reason)"
            }
            body["replay"] = entry
        }
        if let control = broker.cluster?.control {
            body["node"] = control.id
            body["nodes"] = control.nodes.map { node -> [String: Any] in
                ["id": node.id, "address": node.address, "started_at": node.startedAt, "connections": node.connections]
            }
        }
        return AdminJSON.response(200, body)
    }
}
