import AsyncTestSupport
import BrokerProcess
import Foundation
import Testing

@testable import Switchboard

/// `switchboard serve --cluster` nodes, real processes, sharing one real `redis-server`.
@Suite(.serialized) struct ClusterProcessTests {
    /// A node on an ephemeral port, anonymous clients allowed on `c.>`, retaining `c.>`.
    static func node(_ redis: RedisServerProcess) async throws -> (process: SwitchboardProcess, port: Int) {
        let directory = try makeTemporaryDirectory()
        let process = try SwitchboardProcess.start(
            [
                "serve", "--port", "0", "--host", "127.0.0.1", "--anonymous-subscribe", "c.>",
                "--anonymous-publish", "c.>", "--cluster", redis.url,
            ],
            in: directory, environment: ["SWITCHBOARD_REPLAY_RETAIN": "c.> count=1000"])
        return (process, try await process.listeningPort())
    }

    @Test func subscribersOnEveryNodeGetEveryMessageOnceInOneOrder() async throws {
        let redis = try await RedisServerProcess.start()
        defer { redis.stop() }
        var nodes: [(process: SwitchboardProcess, port: Int)] = []
        defer { for node in nodes { node.process.kill() } }
        for _ in 0..<3 { nodes.append(try await Self.node(redis)) }

        var subscribers: [Client] = []
        for node in nodes {
            let subscriber = try await Client.connect(port: node.port)
            try await subscriber.subscribe("c.t")
            subscribers.append(subscriber)
        }
        let perNode = 30
        let acked = try await withThrowingTaskGroup(of: [Int].self) { tasks in
            for (index, node) in nodes.enumerated() {
                tasks.addTask {
                    let publisher = try await Client.connect(port: node.port)
                    var seqs: [Int] = []
                    for i in 0..<perNode { seqs.append(try await publisher.publish("c.t", "\(index * 1000 + i)")) }
                    await publisher.close()
                    return seqs
                }
            }
            return try await tasks.reduce(into: []) { $0 += $1 }
        }
        let total = nodes.count * perNode
        #expect(acked.sorted() == Array(1...total))

        var orders: [[String]] = []
        for subscriber in subscribers {
            var seen: [(seq: Int, data: String)] = []
            while seen.count < total {
                let message = try await subscriber.nextJSON()
                guard message["op"] == "msg" else { continue }
                seen.append((message.int("seq") ?? -1, message["data"] ?? ""))
            }
            #expect(seen.map(\.seq) == Array(1...total))
            orders.append(seen.map(\.data))
            // Exactly once: nothing else is on its way.
            try await subscriber.expectNothingPending()
        }
        #expect(Set(orders.map { $0.joined(separator: ",") }).count == 1, "every node delivers in the same order")
        var published: Set<String> = []
        for n in 0..<nodes.count {
            for i in 0..<perNode { published.insert(String(n * 1000 + i)) }
        }
        #expect(Set(orders[0]) == published)
    }

    /// Until catch-up reads the topic streams, a resume on a cluster node is refused in so
    /// many words, never answered from the node's own (empty) log as if nothing was missed.
    @Test func aResumeOnAClusterNodeIsRefusedNotAnsweredEmpty() async throws {
        let redis = try await RedisServerProcess.start()
        defer { redis.stop() }
        let node = try await Self.node(redis)
        defer { node.process.kill() }
        let publisher = try await Client.connect(port: node.port)
        for n in 1...3 { _ = try await publisher.publish("c.r", "\(n)") }
        let resumer = try await Client.connect(port: node.port)
        for request in [#""since":1"#, #""last":2"#, #""since_time":0"#] {
            let answer = try await resumer.request(#"{"op":"sub","topic":"c.r","id":"r",\#(request)}"#)
            #expect(answer["op"] == "error" && answer["code"] == "unavailable", "\(request): \(answer)")
        }
        // Nor subscribed: of a publish to c.r and then one to c.other (one Redis connection
        // carries both to the node in that order), only the second reaches it.
        try await resumer.subscribe("c.other")
        _ = try await publisher.publish("c.r", "4")
        _ = try await publisher.publish("c.other", "5")
        let next = try await resumer.nextJSON()
        #expect(next["topic"] == "c.other", "\(next)")
        await publisher.close()
        await resumer.close()
    }

    @Test func publishesDuringARedisOutageAreUnavailableAndNothingAckedIsLost() async throws {
        let redis = try await RedisServerProcess.start()
        defer { redis.stop() }
        let node = try await Self.node(redis)
        defer { node.process.kill() }
        let subscriber = try await Client.connect(port: node.port)
        try await subscriber.subscribe("c.o")
        let publisher = try await Client.connect(port: node.port)
        for i in 1...5 { #expect(try await publisher.publish("c.o", "\(i)") == i) }

        try await redis.kill()
        let refused = try await publisher.request(#"{"op":"pub","topic":"c.o","data":6,"id":"p"}"#)
        #expect(refused["op"] == "error" && refused["code"] == "unavailable", "\(refused)")

        try await redis.launch()
        // The node reconnects with backoff (at most 2 s apart); nothing announces it to a client.
        var answer = try await publisher.request(#"{"op":"pub","topic":"c.o","data":7,"id":"p"}"#)
        for _ in 0..<100 where answer["code"] == "unavailable" {
            try await Task.sleep(for: .milliseconds(100))
            answer = try await publisher.request(#"{"op":"pub","topic":"c.o","data":7,"id":"p"}"#)
        }
        // Acked before the outage, so stored (appendonly, fsync always): seqs go on after 5.
        #expect(answer["op"] == "ack" && answer.int("seq") == 6, "\(answer)")
        var seen: [Int] = []
        while seen.count < 6 {
            let message = try await subscriber.nextJSON()
            if message["op"] == "msg" { seen.append(message.int("data") ?? -1) }
        }
        #expect(seen == [1, 2, 3, 4, 5, 7])
    }
}
