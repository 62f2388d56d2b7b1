import AsyncTestSupport
import BrokerProcess
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import RedisWire
import Testing

@testable import Switchboard

/// The cluster's publish script and stream reads against a real `redis-server`.
@Suite(.serialized) struct RedisTopicLogTests {
    let group = MultiThreadedEventLoopGroup.singleton

    private func connect(_ redis: RedisServerProcess) async throws -> RedisClient {
        let client = RedisClient(
            endpoint: try RedisEndpoint(url: redis.url), group: group,
            backoff: RedisBackoff(initial: .milliseconds(20), maximum: .milliseconds(200)))
        client.start()
        try await withTimeout("connect to redis") { try await client.waitUntilConnected() }
        return client
    }

    @Test func concurrentPublishersFromSeveralNodesGetOneSeqEachAndOneOrder() async throws {
        let redis = try await RedisServerProcess.start()
        defer { redis.stop() }
        let topic = try Topic("orders.eu")
        let heard = Inbox<ClusterMessage>()
        let subscriber = RedisSubscriber(
            endpoint: try RedisEndpoint(url: redis.url), group: group,
            onMessage: { message in
                if let parsed = ClusterMessage(channelPayload: message.payload) { heard.put(parsed) }
            })
        defer { subscriber.close() }
        subscriber.start()
        try await withTimeout("subscriber") { try await subscriber.waitUntilConnected() }
        try await subscriber.subscribe(channel: ClusterKeys(topic).channel)

        // Three "nodes", each with its own connection, publishing at once.
        let nodes = try await [connect(redis), connect(redis), connect(redis)]
        defer { for node in nodes { node.close() } }
        let perNode = 200
        let sequences = try await withThrowingTaskGroup(of: [UInt64].self) { tasks in
            for (index, node) in nodes.enumerated() {
                tasks.addTask {
                    let log = RedisTopicLog(redis: node)
                    var mine: [UInt64] = []
                    for i in 0..<perNode {
                        let published = try await log.publish(
                            topic: topic, format: .json, payload: ByteBuffer(string: "{\"n\":\(index),\"i\":\(i)}"),
                            now: 1_000 + Int64(i), keep: 10_000)
                        mine.append(published.sequence)
                    }
                    return mine
                }
            }
            return try await tasks.reduce(into: []) { $0 += $1 }
        }
        let total = nodes.count * perNode
        #expect(sequences.sorted() == Array(1...UInt64(total)))

        // Fan-out carries every seq once, in seq order, with a time that never decreases.
        var lastTime: Int64 = 0
        var epochs = Set<String>()
        for expected in 1...UInt64(total) {
            let message = try await heard.next()
            #expect(message.sequence == expected)
            #expect(message.time >= lastTime)
            lastTime = message.time
            epochs.insert(message.epoch)
        }
        #expect(epochs.count == 1)

        // History holds the same messages under the same seqs.
        let log = RedisTopicLog(redis: nodes[0])
        var stored: [StoredMessage] = []
        while stored.count < total {
            let page = try await log.read(topic: topic, after: stored.last?.sequence ?? 0, limit: 128)
            guard !page.isEmpty else { break }
            stored += page
        }
        #expect(stored.map(\.sequence) == Array(1...UInt64(total)))
        #expect(try await log.last(topic: topic, count: 3).map(\.sequence) == [598, 599, 600])
        let current = try await log.current(topic: topic)
        #expect(current?.sequence == UInt64(total) && current?.epoch == epochs.first)
    }

    @Test func aTopicNotRetainedIsSequencedAndPublishedButNotStored() async throws {
        let redis = try await RedisServerProcess.start()
        defer { redis.stop() }
        let client = try await connect(redis)
        defer { client.close() }
        let log = RedisTopicLog(redis: client)
        let topic = try Topic("live.only")
        for _ in 0..<3 {
            _ = try await log.publish(topic: topic, format: .binary, payload: ByteBuffer(bytes: [0, 1]), now: 5, keep: 0)
        }
        #expect(try await log.current(topic: topic)?.sequence == 3)
        #expect(try await log.read(topic: topic, after: 0, limit: 10).isEmpty)
    }

    @Test func theStreamIsTrimmedToAboutItsRetainedCount() async throws {
        let redis = try await RedisServerProcess.start()
        defer { redis.stop() }
        let client = try await connect(redis)
        defer { client.close() }
        let log = RedisTopicLog(redis: client)
        let topic = try Topic("trimmed")
        for i in 0..<400 {
            _ = try await log.publish(topic: topic, format: .binary, payload: ByteBuffer(string: "\(i)"), now: 1, keep: 50)
        }
        let length = try await client.send(["XLEN", RESPArgument(ClusterKeys(topic).stream)]).int ?? 0
        // `MAXLEN ~` trims whole macro nodes (100 entries by default): at least 50, well under 400.
        #expect(length >= 50 && length <= 200)
        let last = try await log.last(topic: topic, count: 1)
        #expect(last.map(\.sequence) == [400] && last.first.map { String(buffer: $0.payload) } == "399")
    }

    @Test func aFlushedRedisStartsANewEpochSoResumersSeeAGap() async throws {
        let redis = try await RedisServerProcess.start()
        defer { redis.stop() }
        let client = try await connect(redis)
        defer { client.close() }
        let epochs = NIOLockedValueBox(["first", "second"])
        let log = RedisTopicLog(redis: client, newEpoch: { epochs.withLockedValue { $0.removeFirst() } })
        let topic = try Topic("flushed")
        let before = try await log.publish(topic: topic, format: .json, payload: ByteBuffer(string: "1"), now: 1, keep: 10)
        #expect(before == .init(sequence: 1, time: 1, epoch: "first"))
        _ = try await client.send(["FLUSHALL"])
        let after = try await log.publish(topic: topic, format: .json, payload: ByteBuffer(string: "2"), now: 2, keep: 10)
        #expect(after == .init(sequence: 1, time: 2, epoch: "second"))
    }

    /// A subscriber learns a topic's epoch before its first publish, and that publish keeps it.
    @Test func anEpochMadeAtSubscriptionIsTheOneTheFirstPublishUses() async throws {
        let redis = try await RedisServerProcess.start()
        defer { redis.stop() }
        let client = try await connect(redis)
        defer { client.close() }
        let log = RedisTopicLog(redis: client)
        let topic = try Topic("fresh.topic")
        let epoch = try await log.epoch(topic: topic)
        #expect(try await log.epoch(topic: topic) == epoch)
        let published = try await log.publish(topic: topic, format: .json, payload: ByteBuffer(string: "1"), now: 5, keep: 10)
        #expect(published.sequence == 1 && published.epoch == epoch)
    }

    /// Resuming a pattern finds its topics by scanning the keyspace: only the matching ones,
    /// by name, streams or seqs as asked.
    @Test func aPatternsTopicsAreFoundByScanningTheirKeys() async throws {
        let redis = try await RedisServerProcess.start()
        defer { redis.stop() }
        let client = try await connect(redis)
        defer { client.close() }
        let log = RedisTopicLog(redis: client)
        for (name, keep) in [("a.b", 10), ("a.c.d", 10), ("ab.x", 10), ("a.e", 0)] {
            _ = try await log.publish(topic: try Topic(name), format: .json, payload: ByteBuffer(string: "1"), now: 1, keep: keep)
        }
        #expect(try await log.topics(matching: try TopicPattern("a.>"), .stream).map(\.name) == ["a.b", "a.c.d"])
        #expect(try await log.topics(matching: try TopicPattern("a.*"), .stream).map(\.name) == ["a.b"])
        #expect(try await log.topics(matching: try TopicPattern("a.*"), .sequence).map(\.name) == ["a.b", "a.e"])
        #expect(try await log.topics(matching: try TopicPattern("ab.x"), .stream).map(\.name) == ["ab.x"])
    }

    @Test func publishingWithoutRedisIsUnavailableAndWhatWasAckedSurvivesARestart() async throws {
        let redis = try await RedisServerProcess.start()
        defer { redis.stop() }
        let client = try await connect(redis)
        defer { client.close() }
        let log = RedisTopicLog(redis: client)
        let topic = try Topic("durable")
        for i in 1...20 {
            _ = try await log.publish(topic: topic, format: .json, payload: ByteBuffer(string: "\(i)"), now: 1, keep: 100)
        }
        try await redis.kill()
        await #expect {
            try await log.publish(topic: topic, format: .json, payload: ByteBuffer(string: "lost?"), now: 1, keep: 100)
        } throws: { error in
            if case RedisError.unavailable = error { true } else { false }
        }
        try await redis.launch()
        try await withTimeout("reconnect") { try await client.waitUntilConnected() }
        // The script cache died with the process: NOSCRIPT, loaded again, and seqs go on.
        let next = try await log.publish(topic: topic, format: .json, payload: ByteBuffer(string: "21"), now: 1, keep: 100)
        #expect(next.sequence == 21)
        #expect(try await log.read(topic: topic, after: 0, limit: 100).map { String(buffer: $0.payload) } == (1...21).map(String.init))
    }

    @Test func channelMessagesRoundTrip() {
        let parsed = ClusterMessage(channelPayload: ByteBuffer(string: "7 1700000000000 ab12 b\nx\ny"))
        #expect(parsed == ClusterMessage(sequence: 7, time: 1_700_000_000_000, epoch: "ab12", format: .binary, payload: ByteBuffer(string: "x\ny")))
        #expect(ClusterMessage(channelPayload: ByteBuffer(string: "7 1 e q\n")) == nil)
        #expect(ClusterMessage(channelPayload: ByteBuffer(string: "no newline")) == nil)
    }
}
