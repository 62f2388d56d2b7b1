import AsyncTestSupport
import BrokerProcess
import NIOCore
import NIOPosix
import RedisWire
import Testing

@testable import Switchboard

/// Age retention on the topic streams, against a real `redis-server`.
@Suite(.serialized) struct ClusterStreamTrimTests {
    @Test func entriesOlderThanTheRulesAgeGoAndYoungerOnesStay() async throws {
        let redis = try await RedisServerProcess.start()
        defer { redis.stop() }
        let client = RedisClient(endpoint: try RedisEndpoint(url: redis.url), group: MultiThreadedEventLoopGroup.singleton)
        defer { client.close() }
        client.start()
        try await withTimeout("connect to redis") { try await client.waitUntilConnected() }
        let log = RedisTopicLog(redis: client)
        // More old entries than one trim script reads, so the trim takes several pages.
        let old = ClusterStreamTrim.page + 500
        for i in 0..<old {
            _ = try await log.publish(
                topic: try Topic("aged.t"), format: .json, payload: ByteBuffer(string: "\(i)"), now: 1_000 + Int64(i), keep: 1_000_000)
        }
        for i in 0..<5 {
            _ = try await log.publish(
                topic: try Topic("aged.t"), format: .json, payload: ByteBuffer(string: "\(i)"), now: 100_000 + Int64(i),
                keep: 1_000_000)
        }
        // A topic whose rule has no age keeps everything, however old.
        for i in 0..<3 {
            _ = try await log.publish(
                topic: try Topic("counted.t"), format: .json, payload: ByteBuffer(string: "\(i)"), now: Int64(i), keep: 1_000_000)
        }
        guard case .success(let rules) = RetentionRules.parse(["aged.> age=10s", "counted.> count=100"]) else {
            Issue.record("rules do not parse")
            return
        }
        let trimmed = try await ClusterStreamTrim.trim(client, rules: rules, now: 100_000 + 10_000)
        #expect(trimmed == old)
        let kept = try await log.read(topic: try Topic("aged.t"), after: 0, limit: 10_000)
        #expect(kept.map(\.sequence) == Array(UInt64(old + 1)...UInt64(old + 5)))
        #expect(try await log.read(topic: try Topic("counted.t"), after: 0, limit: 10).count == 3)
        // Nothing old left: a second pass trims nothing.
        #expect(try await ClusterStreamTrim.trim(client, rules: rules, now: 100_000 + 10_000) == 0)
    }

    /// A node trims by age on its own: with `age=5s` and no count, the stream empties once
    /// its entries are older, and a fresh publish is stored again.
    @Test func aNodeTrimsTheStreamsOfAnAgeRule() async throws {
        let redis = try await RedisServerProcess.start()
        defer { redis.stop() }
        let node = try SwitchboardProcess.start(
            [
                "serve", "--port", "0", "--host", "127.0.0.1", "--anonymous-subscribe", "c.>", "--anonymous-publish", "c.>",
                "--cluster", redis.url,
            ],
            in: try makeTemporaryDirectory(), environment: ["SWITCHBOARD_REPLAY_RETAIN": "c.> age=5s"])
        defer { node.kill() }
        let publisher = try await Client.connect(port: try await node.listeningPort())
        for i in 1...3 { _ = try await publisher.publish("c.aged", "\(i)") }
        let client = RedisClient(endpoint: try RedisEndpoint(url: redis.url), group: MultiThreadedEventLoopGroup.singleton)
        defer { client.close() }
        client.start()
        try await withTimeout("connect to redis") { try await client.waitUntilConnected() }
        let log = RedisTopicLog(redis: client)
        #expect(try await log.last(topic: try Topic("c.aged"), count: 10).count > 0, "stored before the trim")
        try await eventually("the stream trimmed", timeout: .seconds(20)) {
            try await log.last(topic: try Topic("c.aged"), count: 10).isEmpty
        }
        _ = try await publisher.publish("c.aged", "4")
        #expect(try await log.last(topic: try Topic("c.aged"), count: 10).map(\.sequence) == [4])
        await publisher.close()
    }

    @Test func theTrimIntervalFollowsTheShortestAge() throws {
        func interval(_ texts: [String]) throws -> TimeAmount? {
            guard case .success(let rules) = RetentionRules.parse(texts) else { throw TestFailure("rules do not parse") }
            return ClusterStreamTrim.interval(rules)
        }
        #expect(try interval(["a.> count=10"]) == nil)
        #expect(try interval(["a.> age=1h", "b.> age=2m"]) == .seconds(30))
        #expect(try interval(["a.> age=1s"]) == .seconds(1))
        #expect(try interval(["a.> age=7d"]) == .seconds(60))
    }
}
