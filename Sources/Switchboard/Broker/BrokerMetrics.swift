import Dispatch
import Metrics
import NIOConcurrencyHelpers
import Prometheus
import WebSocketCore

/// The broker's metrics in the Prometheus text format (`GET /metrics`), through swift-metrics
/// with a swift-prometheus factory of the broker's own (not the process-wide `MetricsSystem`,
/// which belongs to the embedding application). docs/operations.md lists the series.
///
/// Counting stays off the fan-out path: events that happen once per connection (connects,
/// disconnects, refused handshakes) and once per replay-log batch increment their metric as
/// they happen; what happens per message is counted by the hubs on their loops and by the
/// broker under its sequencing lock, and turned into these counters at scrape time (the
/// difference since the last scrape is added).
final class BrokerMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory

    private let connects: Metrics.Counter
    private let published: Metrics.Counter
    private let publishedBytes: Metrics.Counter
    private let delivered: Metrics.Counter
    private let deliveredBytes: Metrics.Counter
    private let slowConsumerCloses: Metrics.Counter
    private let slowConsumerDrops: Metrics.Counter
    private let replayed: Metrics.Counter
    private let gaps: Metrics.Counter
    private let connections: Metrics.Gauge
    private let subscriptions: Metrics.Gauge
    private let topics: Metrics.Gauge
    private let replayQueue: Metrics.Gauge
    /// Replay-log group commits, one sample per batch.
    let commitLatency: Metrics.Timer
    /// From a message's hand-off to a hub to the end of its fan-out there; sampled (see `Hub`).
    let deliverLatency: Metrics.Timer
    /// The totals added to the counters so far, by name.
    private let exported = NIOLockedValueBox<[String: UInt64]>([:])

    init() {
        var factory = PrometheusMetricsFactory(registry: registry)
        let fine: [Duration] = [
            .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1),
            .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
            .milliseconds(100), .milliseconds(250), .seconds(1),
        ]
        factory.durationHistogramBuckets["switchboard_replay_commit_seconds"] = fine
        factory.durationHistogramBuckets["switchboard_publish_to_deliver_seconds"] = fine
        self.factory = factory
        func counter(_ name: String) -> Metrics.Counter { Metrics.Counter(label: name, factory: factory) }
        func gauge(_ name: String) -> Metrics.Gauge { Metrics.Gauge(label: name, factory: factory) }
        connects = counter("switchboard_connects_total")
        published = counter("switchboard_messages_published_total")
        publishedBytes = counter("switchboard_bytes_published_total")
        delivered = counter("switchboard_messages_delivered_total")
        deliveredBytes = counter("switchboard_bytes_delivered_total")
        slowConsumerCloses = counter("switchboard_slow_consumer_closes_total")
        slowConsumerDrops = counter("switchboard_slow_consumer_dropped_messages_total")
        replayed = counter("switchboard_replayed_messages_total")
        gaps = counter("switchboard_gaps_sent_total")
        connections = gauge("switchboard_connections")
        subscriptions = gauge("switchboard_subscriptions")
        topics = gauge("switchboard_topics")
        replayQueue = gauge("switchboard_replay_queue_depth")
        commitLatency = Metrics.Timer(label: "switchboard_replay_commit_seconds", factory: factory)
        deliverLatency = Metrics.Timer(label: "switchboard_publish_to_deliver_seconds", factory: factory)
    }

    func connected() { connects.increment() }

    /// A connection closed with `code`: the codes the broker and RFC 6455 define have their
    /// own label, any other is `other` (clients choose their codes: the label set stays small).
    func disconnected(_ code: CloseCode) {
        let known: Set<UInt16> = [1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1010, 1011, 1013, 4001, 4002, 4003]
        let label = known.contains(code.rawValue) ? String(code.rawValue) : "other"
        Metrics.Counter(label: "switchboard_disconnects_total", dimensions: [("code", label)], factory: factory).increment()
    }

    /// A handshake the broker refused, by a reason from a fixed set.
    func handshakeFailed(_ reason: String) {
        Metrics.Counter(label: "switchboard_handshake_failures_total", dimensions: [("reason", reason)], factory: factory)
            .increment()
    }

    /// The text format, with the aggregated counters and gauges brought up to date first.
    func render(_ counters: BrokerCounters, published: (messages: UInt64, bytes: UInt64), statistics: BrokerStatistics) -> [UInt8] {
        let totals: [(Metrics.Counter, String, UInt64)] = [
            (self.published, "published", published.messages), (publishedBytes, "publishedBytes", published.bytes),
            (delivered, "delivered", counters.delivered), (deliveredBytes, "deliveredBytes", counters.deliveredBytes),
            (slowConsumerCloses, "slowCloses", counters.slowConsumerCloses), (slowConsumerDrops, "drops", counters.dropped),
            (replayed, "replayed", statistics.replayed), (gaps, "gaps", counters.gaps),
        ]
        exported.withLockedValue { exported in
            for (counter, name, total) in totals {
                let before = exported[name] ?? 0
                if total > before { counter.increment(by: Int64(clamping: total - before)) }
                exported[name] = max(before, total)
            }
        }
        connections.record(counters.connections)
        subscriptions.record(counters.subscriptions)
        topics.record(statistics.topics)
        replayQueue.record(statistics.replay?.queued ?? 0)
        return registry.emitToBuffer()
    }
}
