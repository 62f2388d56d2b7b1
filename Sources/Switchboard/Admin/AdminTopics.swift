import Foundation
import NIOCore
import WebSockets

/// `/admin/v1/topics…`: what topics there are, what they hold, and purging what is retained.
extension AdminAPI {
    /// Topics listed at most, and by default.
    static let maxTopicsListed = 10_000
    static let defaultTopicsListed = 1000
    /// History messages per request at most, and by default.
    static let maxHistory = 1000
    static let defaultHistory = 100

    /// `GET /admin/v1/topics?pattern=P&limit=N`: the topics the store lists (a single node's
    /// in memory, a cluster's in Redis) that P matches (default `>`), by name.
    func topics(_ request: PlainHTTPRequest) async throws(AdminError) -> PlainHTTPResponse {
        let query = request.query
        let pattern: TopicPattern
        do {
            pattern = try TopicPattern(query["pattern"] ?? ">")
        } catch {
            throw .badRequest("bad pattern \((query["pattern"] ?? "").debugDescription): \(error.message)")
        }
        let limit = Int(try AdminJSON.query(query, "limit", maximum: UInt64(Self.maxTopicsListed)) ?? UInt64(Self.defaultTopicsListed))
        let (store, now) = (broker.store, broker.clock())
        let found = try await stored { () async throws(ReplayError) in try await store.topics(matching: pattern, limit: limit, now: now) }
        return AdminJSON.response(200, ["topics": try await describe(found)])
    }

    /// `GET /admin/v1/topics/{topic}`: one topic the store knows.
    func topic(_ name: String) async throws(AdminError) -> PlainHTTPResponse {
        let activity = try await known(try Self.topic(name))
        return AdminJSON.response(200, try await describe([activity])[0])
    }

    /// `GET /admin/v1/topics/{topic}/history?since=N|last=N&limit=M`: retained messages after
    /// seq N (default 0), or the last N, oldest first, at most M.
    func history(_ name: String, _ request: PlainHTTPRequest) async throws(AdminError) -> PlainHTTPResponse {
        let activity = try await known(try Self.topic(name))
        let query = request.query
        let since = try AdminJSON.query(query, "since", maximum: UInt64(Int64.max))
        let last = try AdminJSON.query(query, "last", maximum: UInt64(Self.maxHistory))
        if since != nil, last != nil { throw .badRequest("give since or last, not both") }
        var limit = Int(try AdminJSON.query(query, "limit", maximum: UInt64(Self.maxHistory)) ?? UInt64(Self.defaultHistory))
        var after = since ?? 0
        if let last {
            after = activity.last.sequence > last ? activity.last.sequence - last : 0
            limit = Int(last)
        }
        let store = try retainingStore()
        let topic = activity.topic
        let (from, count) = (after, limit)
        let page = try await stored { () async throws(ReplayError) in try await store.read(topic, after: from, limit: count) }
        var body = ByteBuffer()
        body.writeString("{\"topic\":")
        JSONWriter.writeString(topic.name, to: &body)
        body.writeString(",\"last_seq\":\(activity.last.sequence),\"first_retained_seq\":")
        body.writeString(page.firstRetained.map(String.init) ?? "null")
        body.writeString(",\"messages\":[")
        for (index, message) in page.messages.enumerated() {
            if index > 0 { body.writeString(",") }
            body.writeString("{\"seq\":\(message.sequence),\"time\":\(message.time),")
            switch message.format {
            case .json:
                body.writeString("\"data\":")
                body.writeImmutableBuffer(message.payload)
            case .binary:
                body.writeString("\"data_base64\":\"\(Data(message.payload.readableBytesView).base64EncodedString())\"")
            }
            body.writeString("}")
        }
        body.writeString("]}\n")
        return AdminJSON.response(200, body: body)
    }

    /// `DELETE /admin/v1/topics/{topic}/history`: removes what the topic retains. Its seqs
    /// continue; a subscriber resuming from before is told of a gap.
    func purge(_ name: String) async throws(AdminError) -> PlainHTTPResponse {
        let activity = try await known(try Self.topic(name))
        let store = try retainingStore()
        let topic = activity.topic
        let purged = try await stored { () async throws(ReplayError) in try await store.purge(topic) }
        return AdminJSON.response(200, ["topic": topic.name, "purged": purged, "last_seq": activity.last.sequence])
    }

    /// The topic as the store knows it; 404 when it was never published.
    private func known(_ topic: Topic) async throws(AdminError) -> TopicActivity {
        let (store, now) = (broker.store, broker.clock())
        if let activity = try await stored({ () async throws(ReplayError) in try await store.topic(topic, now: now) }) {
            return activity
        }
        throw .notFound("no topic \(topic.name) (never published)")
    }

    /// The store, when it retains anything (a replay log, or a cluster's streams).
    private func retainingStore() throws(AdminError) -> any TopicStore {
        guard broker.history != nil else { throw .notFound("this broker has no replay log") }
        return broker.store
    }

    /// The JSON of each topic: in memory, subscribers on this node, rate, what is retained.
    private func describe(_ topics: [TopicActivity]) async throws(AdminError) -> [[String: Any]] {
        let subscribers = await broker.subscriberCounts(topics.map(\.topic))
        var described: [[String: Any]] = []
        for (activity, subscribers) in zip(topics, subscribers) {
            var entry: [String: Any] = [
                "name": activity.topic.name, "last_seq": activity.last.sequence, "last_time": activity.last.time,
                "subscribers": subscribers, "messages_per_second": (activity.perSecond * 100).rounded() / 100,
                "retained": NSNull(),
            ]
            let (store, topic) = (broker.store, activity.topic)
            if let size = try await stored({ () async throws(ReplayError) in try await store.retained(topic) }) {
                entry["retained"] = ["count": size.count, "bytes": size.bytes]
            }
            described.append(entry)
        }
        return described
    }

    /// Runs a read or write of the topic store; its failure is 503 `failing`: the error.
    func stored<T: Sendable>(
        failing: String = "the topic store cannot be read", _ body: () async throws(ReplayError) -> T
    ) async throws(AdminError) -> T {
        do throws(ReplayError) {
            return try await body()
        } catch {
            throw .unavailable("\(failing): \(error)")
        }
    }
}
