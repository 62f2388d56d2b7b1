import AsyncTestSupport
import Foundation
import Testing
import WebSockets

@_spi(Fuzzing) @testable import Switchboard

/// `/metrics` parsed as Prometheus text: every series docs/operations.md lists is there and
/// moves when what it counts happens.
@Suite struct MetricsTests {
    /// The series of docs/operations.md (histograms by their `_count`).
    static let documented = [
        "switchboard_connections", "switchboard_connects_total", "switchboard_disconnects_total",
        "switchboard_handshake_failures_total", "switchboard_subscriptions", "switchboard_topics",
        "switchboard_messages_published_total", "switchboard_bytes_published_total",
        "switchboard_messages_delivered_total", "switchboard_bytes_delivered_total",
        "switchboard_slow_consumer_closes_total", "switchboard_slow_consumer_dropped_messages_total",
        "switchboard_replayed_messages_total", "switchboard_gaps_sent_total", "switchboard_replay_queue_depth",
        "switchboard_replay_commit_seconds_count", "switchboard_publish_to_deliver_seconds_count",
    ]

    /// Sample values by series name, labelled samples summed.
    static func parse(_ text: String) -> [String: Double] {
        var values: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let parts = line.split(separator: " ")
            guard parts.count >= 2, let value = Double(parts[parts.count - 1]) else { continue }
            let name = String(parts[0].prefix { $0 != "{" })
            values[name, default: 0] += value
        }
        return values
    }

    func scrape(_ broker: TestBroker, token: String? = nil) async throws -> [String: Double] {
        let response = try await broker.http("GET", "/metrics", token: token)
        #expect(response.status == 200 && response.header("Content-Type")?.hasPrefix("text/plain") == true, "\(response)")
        return Self.parse(response.body)
    }

    @Test func everyDocumentedSeriesIsThereAndMoves() async throws {
        try await TestBroker.with({ $0.replay.rules = [try! ReplayRule.parse("kept.> count=100").get()] }) { broker in
            let subscriber = try await broker.client()
            try await subscriber.subscribe("kept.*")
            let publisher = try await broker.client()
            let before = try await scrape(broker)
            for n in 1...40 {
                try await publisher.publish("kept.a", "\(n)")
                _ = try await subscriber.next()
            }
            // A resume: replayed messages, and a gap for a topic that retains nothing.
            try await publisher.publish("loose.a", "1")
            let resumer = try await broker.client()
            _ = try await resumer.request(#"{"op":"sub","topic":"kept.a","since":38}"#)
            _ = try await resumer.next()
            _ = try await resumer.next()
            _ = try await resumer.request(#"{"op":"sub","topic":"loose.a","since":0}"#)
            #expect(try await resumer.nextJSON()["op"] == "gap")
            // A refused handshake and a disconnect.
            _ = try await Client.refusal(port: broker.port, token: "sb_" + String(repeating: "A", count: 43))
            await resumer.close()
            // The broker counts the close when its side of the connection has closed, which it
            // reports to no client: scrape until it shows (bounded).
            var after = try await scrape(broker)
            let deadline = ContinuousClock.now + .seconds(10)
            while after["switchboard_disconnects_total"] == nil, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
                after = try await scrape(broker)
            }
            for series in Self.documented {
                #expect(after[series] != nil, "\(series) is missing")
            }
            let moving = Self.documented.filter {
                !["switchboard_slow_consumer_closes_total", "switchboard_slow_consumer_dropped_messages_total",
                  "switchboard_replay_queue_depth", "switchboard_connections", "switchboard_subscriptions",
                  "switchboard_topics"].contains($0)
            }
            for series in moving {
                #expect((after[series] ?? 0) > (before[series] ?? 0), "\(series): \(before[series] ?? 0) → \(after[series] ?? 0)")
            }
            #expect(after["switchboard_connections"] == 2 && after["switchboard_subscriptions"] == 1)
            #expect(after["switchboard_topics"] == 2)
            #expect(after["switchboard_messages_published_total"] == 41)
        }
    }

    @Test func aMetricsTokenIsRequiredWhenSet() async throws {
        let secret = "a-metrics-token-of-some-length"
        try await TestBroker.with({ $0.metricsToken = secret }) { broker in
            #expect(try await broker.http("GET", "/metrics").status == 401)
            #expect(try await broker.http("GET", "/metrics", token: "wrong-token-wrong-token").status == 401)
            let metrics = try await scrape(broker, token: secret)
            #expect(metrics["switchboard_connections"] != nil)
        }
    }
}
