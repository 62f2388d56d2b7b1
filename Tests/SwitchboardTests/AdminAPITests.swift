import AsyncTestSupport
import CSQLite
import Foundation
import NIOCore
import TestPeers
import Testing
import WebSockets

@_spi(Fuzzing) @testable import Switchboard

/// The admin HTTP API over real HTTP on the broker's own port: every endpoint, and every
/// error status it answers.
@Suite struct AdminAPITests {
    static func retaining(_ rule: String) -> (inout BrokerConfiguration) -> Void {
        { $0.replay.rules = [try! ReplayRule.parse(rule).get()] }
    }

    @Test func healthChecksNeedNoTokenAndTheRestNeedsAnAdminToken() async throws {
        try await TestBroker.with { broker in
            let health = try await broker.http("GET", "/healthz")
            #expect(health.status == 200 && health.json["status"] == "ok", "\(health)")
            #expect(health.header("Content-Type") == "application/json")
            let ready = try await broker.http("GET", "/readyz")
            #expect(ready.status == 200 && ready.json["status"] == "ready", "\(ready)")

            let missing = try await broker.http("GET", "/admin/v1/info")
            #expect(missing.status == 401 && missing.errorCode == "unauthorized", "\(missing)")
            #expect(missing.header("WWW-Authenticate")?.hasPrefix("Bearer") == true)
            let unknown = try await broker.http("GET", "/admin/v1/info", token: "sb_" + String(repeating: "A", count: 43))
            #expect(unknown.status == 401 && unknown.body.contains("unknown"), "\(unknown)")
            let notBearer = try await broker.http("GET", "/admin/v1/info", headers: "Authorization: Basic eDp5\r\n")
            #expect(notBearer.status == 401, "\(notBearer)")
            let client = try broker.token().token
            let forbidden = try await broker.http("GET", "/admin/v1/info", token: client)
            #expect(forbidden.status == 403 && forbidden.errorCode == "forbidden", "\(forbidden)")
            #expect(!forbidden.body.contains(client))

            let admin = try broker.adminToken()
            let info = try await broker.http("GET", "/admin/v1/info", token: admin)
            #expect(info.status == 200, "\(info)")
            let revokedID = try #require(broker.tokens.list().last?.id)
            try broker.tokens.revoke(id: revokedID)
            let revoked = try await broker.http("GET", "/admin/v1/info", token: admin)
            #expect(revoked.status == 401 && revoked.body.contains("revoked"), "\(revoked)")
        }
    }

    @Test func unknownPathsAre404AndWrongMethods405() async throws {
        try await TestBroker.with { broker in
            let admin = try broker.adminToken()
            #expect(try await broker.http("GET", "/nothing/here").status == 404)
            let unknown = try await broker.http("GET", "/admin/v1/nothing", token: admin)
            #expect(unknown.status == 404 && unknown.errorCode == "not_found", "\(unknown)")
            #expect(try await broker.http("GET", "/admin/v1/topics/a/b/c", token: admin).status == 404)
            let wrong = try await broker.http("DELETE", "/admin/v1/info", token: admin)
            #expect(wrong.status == 405 && wrong.errorCode == "method_not_allowed", "\(wrong)")
            #expect(wrong.header("Allow") == "GET")
            let publishGet = try await broker.http("GET", "/admin/v1/publish", token: admin)
            #expect(publishGet.status == 405 && publishGet.header("Allow") == "POST", "\(publishGet)")
            #expect(try await broker.http("POST", "/healthz").status == 405)
            // The WebSocket endpoint is as it was.
            let client = try await broker.client()
            try await client.subscribe("still.works")
            await client.close()
        }
    }

    @Test func publishReachesSubscribersAndBadRequestsAre400Or413() async throws {
        try await TestBroker.with({ $0.maxPayload = 64 }) { broker in
            let admin = try broker.adminToken()
            let subscriber = try await broker.client()
            let subscribed = try await subscriber.request(#"{"op":"sub","topic":"orders.*","id":"s"}"#)
            let epoch = try #require(subscribed["epoch"])
            let published = try await broker.http(
                "POST", "/admin/v1/publish", token: admin, body: #"{"topic":"orders.1","data":{"n":1.50,"big":12345678901234567890}}"#)
            #expect(published.status == 200 && published.json.int("seq") == 1, "\(published)")
            // The epoch a resuming subscriber passes with `since` to continue after this seq.
            #expect(published.json["epoch"] == epoch && published.json["topic"] == "orders.1", "\(published)")
            let message = try await subscriber.nextJSON()
            #expect(message["topic"] == "orders.1" && message.int("seq") == 1)
            // The data's bytes are forwarded as they came.
            #expect(message.text.contains(#""data":{"n":1.50,"big":12345678901234567890}"#), "\(message)")

            let binary = try await broker.http(
                "POST", "/admin/v1/publish", token: admin, body: #"{"topic":"orders.2","data_base64":"AAEC/w=="}"#)
            #expect(binary.status == 200, "\(binary)")
            let frame = try await subscriber.next()
            #expect(frame.kind == .binary)

            for body in [
                "{", "[1]", #"{"data":1}"#, #"{"topic":"a.*","data":1}"#, #"{"topic":"a","data":1,"data_base64":"AA=="}"#,
                #"{"topic":"a"}"#, #"{"topic":"a","data_base64":"%%%"}"#, #"{"topic":7,"data":1}"#,
                #"{"topic":"a","data":1,"idempotency_key":""}"#,
            ] {
                let refused = try await broker.http("POST", "/admin/v1/publish", token: admin, body: body)
                #expect(refused.status == 400 && refused.errorCode == "bad_request", "\(body): \(refused)")
            }
            let empty = try await broker.http("POST", "/admin/v1/publish", token: admin, body: "")
            #expect(empty.status == 400, "\(empty)")
            let large = try await broker.http(
                "POST", "/admin/v1/publish", token: admin,
                body: #"{"topic":"a","data":""# + String(repeating: "x", count: 100) + #""}"#)
            #expect(large.status == 413 && large.errorCode == "too_large", "\(large)")
            // A body past the server's bound is refused before it is read whole.
            let huge = try await broker.http(
                "POST", "/admin/v1/publish", token: admin,
                body: #"{"topic":"a","data":""# + String(repeating: "x", count: 70_000) + #""}"#)
            #expect(huge.status == 413, "\(huge)")
            try await subscriber.expectNothingPending()
        }
    }

    @Test func idempotentPublishIsPublishedOnceAndAConflictingReuseIs409() async throws {
        try await TestBroker.with { broker in
            let admin = try broker.adminToken()
            let subscriber = try await broker.client()
            try await subscriber.subscribe("pay.>")
            let body = #"{"topic":"pay.1","data":"once","idempotency_key":"k-1"}"#
            let first = try await broker.http("POST", "/admin/v1/publish", token: admin, body: body)
            let again = try await broker.http("POST", "/admin/v1/publish", token: admin, body: body)
            #expect(first.status == 200 && again.status == 200, "\(first) \(again)")
            #expect(first.json.int("seq") == 1 && again.json.int("seq") == 1)
            #expect(again.header("Idempotent-Replayed") == "true" && first.header("Idempotent-Replayed") == nil)
            #expect(try await subscriber.nextJSON().int("seq") == 1)
            try await subscriber.expectNothingPending()

            let conflict = try await broker.http(
                "POST", "/admin/v1/publish", token: admin, body: #"{"topic":"pay.1","data":"other","idempotency_key":"k-1"}"#)
            #expect(conflict.status == 409 && conflict.errorCode == "conflict", "\(conflict)")
            let other = try await broker.http(
                "POST", "/admin/v1/publish", token: admin, body: #"{"topic":"pay.1","data":"once","idempotency_key":"k-2"}"#)
            #expect(other.json.int("seq") == 2)
        }
    }

    @Test func broadcastPublishesOnePayloadToEveryTopic() async throws {
        try await TestBroker.with { broker in
            let admin = try broker.adminToken()
            let subscriber = try await broker.client()
            var epochs: [String?] = []
            for topic in ["room.a", "room.b"] {
                epochs.append(try await subscriber.request(#"{"op":"sub","topic":"\#(topic)","id":"\#(topic)"}"#)["epoch"])
            }
            let answer = try await broker.http(
                "POST", "/admin/v1/broadcast", token: admin, body: #"{"topics":["room.a","room.b"],"data":{"hi":1}}"#)
            #expect(answer.status == 200, "\(answer)")
            let results = try #require(answer.json.object["results"] as? [[String: Any]])
            #expect(results.map { $0["topic"] as? String } == ["room.a", "room.b"])
            #expect(results.map { ($0["seq"] as? NSNumber)?.intValue } == [1, 1], "\(answer)")
            // Each topic's epoch, as `publish` answers it: what a resume with `since` passes.
            #expect(!epochs.contains(nil) && results.map { $0["epoch"] as? String } == epochs, "\(epochs) \(answer)")
            #expect(try await subscriber.nextJSON()["topic"] == "room.a")
            #expect(try await subscriber.nextJSON()["topic"] == "room.b")
            let bad = try await broker.http("POST", "/admin/v1/broadcast", token: admin, body: #"{"topics":[],"data":1}"#)
            #expect(bad.status == 400, "\(bad)")
        }
    }

    @Test func topicsListShowHistoryAndPurgeWithAGapOnResume() async throws {
        try await TestBroker.with(Self.retaining("chat.> count=100")) { broker in
            let admin = try broker.adminToken()
            let publisher = try await broker.client()
            for n in 1...5 { try await publisher.publish("chat.a", "\(n)") }
            try await publisher.publish("news.x", "1")
            let watcher = try await broker.client()
            try await watcher.subscribe("chat.*")

            let list = try await broker.http("GET", "/admin/v1/topics?pattern=chat.%3E", token: admin)
            #expect(list.status == 200, "\(list)")
            let topics = try #require(list.json.object["topics"] as? [[String: Any]])
            #expect(topics.map { $0["name"] as? String } == ["chat.a"], "\(list)")
            let chat = topics[0]
            #expect((chat["last_seq"] as? NSNumber)?.intValue == 5 && (chat["subscribers"] as? NSNumber)?.intValue == 1)
            #expect(((chat["messages_per_second"] as? NSNumber)?.doubleValue ?? 0) > 0)
            let retained = try #require(chat["retained"] as? [String: Any])
            #expect((retained["count"] as? NSNumber)?.intValue == 5 && (retained["bytes"] as? NSNumber)?.intValue == 5)
            let all = try await broker.http("GET", "/admin/v1/topics", token: admin)
            #expect((all.json.object["topics"] as? [Any])?.count == 2, "\(all)")
            #expect(try await broker.http("GET", "/admin/v1/topics?pattern=a..b", token: admin).status == 400)

            let show = try await broker.http("GET", "/admin/v1/topics/news.x", token: admin)
            #expect(show.status == 200 && show.json["retained"] == "<null>", "\(show)")
            #expect(try await broker.http("GET", "/admin/v1/topics/never.seen", token: admin).status == 404)
            #expect(try await broker.http("GET", "/admin/v1/topics/bad..topic", token: admin).status == 400)

            let history = try await broker.http("GET", "/admin/v1/topics/chat.a/history?since=2&limit=2", token: admin)
            #expect(history.status == 200, "\(history)")
            let messages = try #require(history.json.object["messages"] as? [[String: Any]])
            #expect(messages.map { ($0["seq"] as? NSNumber)?.intValue } == [3, 4])
            let last = try await broker.http("GET", "/admin/v1/topics/chat.a/history?last=2", token: admin)
            let lastSeqs = (last.json.object["messages"] as? [[String: Any]])?.map { ($0["seq"] as? NSNumber)?.intValue }
            #expect(lastSeqs == [4, 5], "\(last)")
            #expect(try await broker.http("GET", "/admin/v1/topics/chat.a/history?since=x", token: admin).status == 400)
            #expect(try await broker.http("GET", "/admin/v1/topics/chat.a/history?since=1&last=1", token: admin).status == 400)

            let purge = try await broker.http("DELETE", "/admin/v1/topics/chat.a/history", token: admin)
            #expect(purge.status == 200 && purge.json.int("purged") == 5, "\(purge)")
            let emptied = try await broker.http("GET", "/admin/v1/topics/chat.a/history", token: admin)
            #expect((emptied.json.object["messages"] as? [Any])?.isEmpty == true, "\(emptied)")
            // The seq continues; a resume from before the purge is told of the gap.
            #expect(try await publisher.publish("chat.a", "6") == 6)
            let resumer = try await broker.client()
            _ = try await resumer.request(#"{"op":"sub","topic":"chat.a","since":2}"#)
            let gap = try await resumer.nextJSON()
            #expect(gap["op"] == "gap" && gap.int("from") == 3 && gap.int("to") == 5, "\(gap)")
            #expect(try await resumer.nextJSON().int("seq") == 6)
        }
    }

    @Test func tokensCreateListShowRevokeAndRevocationClosesWith4001() async throws {
        try await TestBroker.with { broker in
            let admin = try broker.adminToken()
            let created = try await broker.http(
                "POST", "/admin/v1/tokens", token: admin,
                body: #"{"name":"dash","subscribe":["metrics.>"],"publish":["metrics.in.*"],"ttl_seconds":3600}"#)
            #expect(created.status == 201, "\(created)")
            let token = try #require(created.json["token"])
            let id = try #require(created.json["id"])
            #expect(created.json["expires_at"] != "<null>")

            let list = try await broker.http("GET", "/admin/v1/tokens", token: admin)
            #expect(list.status == 200 && list.body.contains(id) && !list.body.contains(token), "\(list)")
            let show = try await broker.http("GET", "/admin/v1/tokens/\(id)", token: admin)
            #expect(show.status == 200 && show.json["state"] == "active" && !show.body.contains(token), "\(show)")
            #expect(try await broker.http("GET", "/admin/v1/tokens/tok_nope", token: admin).status == 404)

            let client = try await Client.connect(port: broker.port, token: token)
            try await client.subscribe("metrics.cpu")
            let revoked = try await broker.http("DELETE", "/admin/v1/tokens/\(id)", token: admin)
            #expect(revoked.status == 200 && revoked.json["state"] == "revoked", "\(revoked)")
            let close = try await client.waitForClose(timeout: .seconds(1))
            #expect(close.code.rawValue == 4001)
            #expect(try await broker.http("DELETE", "/admin/v1/tokens/tok_nope", token: admin).status == 404)

            for body in [#"{"subscribe":[]}"#, #"{"name":"x","subscribe":["a..b"]}"#, #"{"name":"x","ttl_seconds":-1}"#,
                         #"{"name":"x","admin":"yes"}"#] {
                let refused = try await broker.http("POST", "/admin/v1/tokens", token: admin, body: body)
                #expect(refused.status == 400, "\(body): \(refused)")
            }
        }
    }

    @Test func connectionsArePagedAndCanBeClosed() async throws {
        try await TestBroker.with { broker in
            let admin = try broker.adminToken()
            var clients: [Client] = []
            for _ in 0..<3 { clients.append(try await broker.client()) }
            try await clients[0].subscribe("a.b")
            let first = try await broker.http("GET", "/admin/v1/connections?limit=2", token: admin)
            #expect(first.status == 200, "\(first)")
            let page = try #require(first.json.object["connections"] as? [[String: Any]])
            #expect(page.count == 2)
            #expect(page[0]["subscriptions"] as? [String] == ["a.b"] && (page[0]["principal"] as? String)?.hasPrefix("token:") == true)
            let next = try #require(first.json["next"])
            let rest = try await broker.http("GET", "/admin/v1/connections?limit=2&after=\(next)", token: admin)
            let second = try #require(rest.json.object["connections"] as? [[String: Any]])
            #expect(second.count == 1 && rest.json["next"] == nil, "\(rest)")

            let id = try #require(page[0]["id"] as? String)
            let closed = try await broker.http("POST", "/admin/v1/connections/\(id)/close", token: admin)
            #expect(closed.status == 200, "\(closed)")
            #expect(try await clients[0].waitForClose().code.rawValue == 4003)
            #expect(try await broker.http("POST", "/admin/v1/connections/\(id)/close", token: admin).status == 404)
            #expect(try await broker.http("POST", "/admin/v1/connections/x/close", token: admin).status == 400)
            #expect(try await broker.http("GET", "/admin/v1/connections?limit=x", token: admin).status == 400)
            for client in clients.dropFirst() { await client.close() }
        }
    }

    @Test func infoAndRetentionAndA503WhenTheLogCannotWrite() async throws {
        try await TestBroker.with(Self.retaining("keep.> count=10")) { broker in
            let admin = try broker.adminToken()
            let subscriber = try await broker.client()
            try await subscriber.subscribe("keep.*")
            _ = try await broker.http("POST", "/admin/v1/publish", token: admin, body: #"{"topic":"keep.a","data":"x"}"#)
            _ = try await subscriber.nextJSON()
            let info = try await broker.http("GET", "/admin/v1/info", token: admin)
            let json = info.json
            #expect(info.status == 200 && json["status"] == "ok" && json["version"] == SwitchboardVersion.current, "\(info)")
            #expect(json.int("connections") == 1 && json.int("subscriptions") == 1 && json.int("messages_in") == 1)
            #expect(json.int("messages_out") == 1 && json.int("bytes_in") == 3)
            let retention = try await broker.http("GET", "/admin/v1/retention", token: admin)
            #expect(retention.status == 200 && retention.body.contains("keep.> count=10"), "\(retention)")

            let log = try #require(broker.broker.replayLog)
            log.onWriter { db in sqlite3_exec(db, "PRAGMA query_only = 1", nil, nil, nil) }
            let refused = try await broker.http("POST", "/admin/v1/publish", token: admin, body: #"{"topic":"keep.a","data":"y"}"#)
            #expect(refused.status == 503 && refused.errorCode == "unavailable", "\(refused)")
            let ready = try await broker.http("GET", "/readyz")
            #expect(ready.status == 503 && ready.body.contains("degraded"), "\(ready)")
            let degraded = try await broker.http("GET", "/admin/v1/info", token: admin)
            #expect(degraded.json["status"] == "degraded", "\(degraded)")
            log.onWriter { db in sqlite3_exec(db, "PRAGMA query_only = 0", nil, nil, nil) }
        }
    }
}
