import AsyncTestSupport
import BrokerProcess
import Foundation
import Testing

@testable import Switchboard

/// The admin API of `switchboard serve --cluster` nodes (real processes, one real
/// `redis-server`): a node shows the cluster's topics, their history and purges them as
/// Redis holds them, and counts the publishes made through it.
@Suite(.serialized) struct ClusterAdminTests {
    typealias Seed = ClusterControlTests.Seed

    static let retain = ["SWITCHBOARD_REPLAY_RETAIN": "c.> count=1000"]

    /// The topics `GET /admin/v1/topics?pattern=c.>` on `port` lists, by name.
    static func topics(_ port: Int, admin: String) async throws -> [String: [String: Any]] {
        let listed = try await httpExchange(port: port, "GET", "/admin/v1/topics?pattern=c.%3E", token: admin)
        #expect(listed.status == 200, "\(listed)")
        let topics = listed.json.object["topics"] as? [[String: Any]] ?? []
        return Dictionary(uniqueKeysWithValues: topics.compactMap { topic in (topic["name"] as? String).map { ($0, topic) } })
    }

    @Test func anotherNodeListsReadsAndPurgesWhatOneNodePublished() async throws {
        let redis = try await RedisServerProcess.start()
        defer { redis.stop() }
        let seed = try await Seed.make()
        let a = try await seed.node(redis, environment: Self.retain)
        defer { a.process.kill() }
        let b = try await seed.node(redis, environment: Self.retain)
        defer { b.process.kill() }

        let publisher = try await Client.connect(port: a.port)
        for n in 1...5 { #expect(try await publisher.publish("c.adm", "\(n)") == n) }
        #expect(try await publisher.publish("c.other", "1") == 1)

        let listed = try await Self.topics(b.port, admin: seed.admin)
        #expect(Set(listed.keys) == ["c.adm", "c.other"], "\(listed)")
        #expect(listed["c.adm"]?["last_seq"] as? Int == 5 && listed["c.other"]?["last_seq"] as? Int == 1, "\(listed)")
        #expect((listed["c.adm"]?["retained"] as? [String: Any])?["count"] as? Int == 5, "\(listed)")

        let detail = try await httpExchange(port: b.port, "GET", "/admin/v1/topics/c.adm", token: seed.admin)
        #expect(detail.status == 200 && detail.json.int("last_seq") == 5 && detail.json.int("last_time") ?? 0 > 0, "\(detail)")
        let unknown = try await httpExchange(port: b.port, "GET", "/admin/v1/topics/c.never", token: seed.admin)
        #expect(unknown.status == 404, "\(unknown)")

        let history = try await httpExchange(port: b.port, "GET", "/admin/v1/topics/c.adm/history?since=2", token: seed.admin)
        let messages = history.json.object["messages"] as? [[String: Any]] ?? []
        #expect(history.status == 200 && history.json.int("first_retained_seq") == 1, "\(history)")
        #expect(messages.map { $0["seq"] as? Int } == [3, 4, 5] && messages.map { $0["data"] as? Int } == [3, 4, 5], "\(history)")

        // The node the publishes went through counts them; the other does not.
        let metrics = try await httpExchange(port: a.port, "GET", "/metrics")
        #expect(MetricsTests.parse(metrics.body)["switchboard_messages_published_total"] == 6, "\(metrics.body)")
        #expect(MetricsTests.parse(metrics.body)["switchboard_topics"] == 2, "\(metrics.body)")
        let info = try await httpExchange(port: a.port, "GET", "/admin/v1/info", token: seed.admin)
        #expect(info.json.int("messages_in") == 6 && info.json.int("topics") == 2, "\(info)")
        let otherInfo = try await httpExchange(port: b.port, "GET", "/admin/v1/info", token: seed.admin)
        #expect(otherInfo.json.int("messages_in") == 0, "\(otherInfo)")

        // Purged on B: A's resumer from seq 2 is told of a gap up to 5 at once, then goes live.
        let subscriber = try await Client.connect(port: a.port)
        let epoch = try #require(try await subscriber.request(#"{"op":"sub","topic":"c.adm","id":"s"}"#)["epoch"])
        await subscriber.close()
        let purged = try await httpExchange(port: b.port, "DELETE", "/admin/v1/topics/c.adm/history", token: seed.admin)
        #expect(purged.status == 200 && purged.json.int("purged") == 5 && purged.json.int("last_seq") == 5, "\(purged)")
        let emptied = try await httpExchange(port: b.port, "GET", "/admin/v1/topics/c.adm/history", token: seed.admin)
        #expect((emptied.json.object["messages"] as? [Any])?.isEmpty == true && emptied.json.object["first_retained_seq"] is NSNull, "\(emptied)")
        #expect((try await Self.topics(b.port, admin: seed.admin)["c.adm"]?["retained"] as? [String: Any])?["count"] as? Int == 0)

        let resumer = try await Client.connect(port: a.port)
        let answer = try await resumer.request(#"{"op":"sub","topic":"c.adm","id":"r","since":2,"epoch":"\#(epoch)"}"#)
        #expect(answer["op"] == "subscribed" && answer["epoch"] == epoch, "\(answer)")
        #expect(try await ClusterProcessTests.receive(resumer, through: 5).map(\.data) == ["gap to 5"])
        #expect(try await publisher.publish("c.adm", "6") == 6)
        #expect(try await ClusterProcessTests.receive(resumer, through: 6).map(\.seq) == [6])
        try await resumer.expectNothingPending()
        for client in [publisher, resumer] { await client.close() }
    }
}
