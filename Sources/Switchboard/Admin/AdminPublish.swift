import Foundation
import NIOCore
import WebSockets

/// `POST /admin/v1/publish` and `POST /admin/v1/broadcast`: a backend publishes over HTTP.
extension AdminAPI {
    /// The largest request body: a `max_payload` payload in base64 (4/3 of it) with room for
    /// the rest of the request. Larger bodies are refused with 413 before they are read whole.
    static func maxBody(maxPayload: Int) -> Int { maxPayload / 3 * 4 + 4 + 64 * 1024 }

    /// The most topics one broadcast may name.
    static let maxBroadcastTopics = 1000

    func publish(_ request: PlainHTTPRequest, _ principal: Principal) async throws(AdminError) -> PlainHTTPResponse {
        let object = try AdminJSON.object(request.body)
        guard let name = try AdminJSON.string(object, "topic") else { throw .badRequest("topic is required") }
        let topic = try Self.topic(name)
        let (payload, format) = try payload(object, request.body)
        return try await idempotent(object, fingerprint: ["publish", name], payload) { () async -> PlainHTTPResponse in
            switch await broker.publishAwaitingCommit(
                Publish(id: nil, topic: topic, payload: payload, format: format), from: principal)
            {
            case .success(let sequence): return AdminJSON.response(200, await published(topic, sequence))
            case .failure(let failure): return AdminJSON.response(Self.error(failure))
            }
        }
    }

    func broadcast(_ request: PlainHTTPRequest, _ principal: Principal) async throws(AdminError) -> PlainHTTPResponse {
        let object = try AdminJSON.object(request.body)
        guard let names = try AdminJSON.strings(object, "topics"), !names.isEmpty else {
            throw .badRequest("topics is required: a list of topic names")
        }
        guard names.count <= Self.maxBroadcastTopics else {
            throw .badRequest("at most \(Self.maxBroadcastTopics) topics per broadcast, not \(names.count)")
        }
        var topics: [Topic] = []
        for name in names { topics.append(try Self.topic(name)) }
        let (payload, format) = try payload(object, request.body)
        return try await idempotent(object, fingerprint: ["broadcast"] + names, payload) { () async -> PlainHTTPResponse in
            var results: [[String: Any]] = []
            for topic in topics {
                switch await broker.publishAwaitingCommit(
                    Publish(id: nil, topic: topic, payload: payload, format: format), from: principal)
                {
                case .success(let sequence):
                    results.append(await published(topic, sequence))
                case .failure(let failure):
                    let error = Self.error(failure)
                    results.append(["topic": topic.name, "error": ["code": error.code, "message": error.message]])
                }
            }
            return AdminJSON.response(200, ["results": results])
        }
    }

    /// What a publish to `topic` answers: the topic, its seq and epoch (the pair a resume
    /// with `since` passes).
    private func published(_ topic: Topic, _ sequence: UInt64) async -> [String: Any] {
        var answer: [String: Any] = ["topic": topic.name, "seq": sequence]
        if let epoch = await epoch(of: topic) { answer["epoch"] = epoch }
        return answer
    }

    /// The epoch a subscriber of `topic` is told in `subscribed` (what a `since` resumes
    /// against); nil without a history, or when a cluster's history cannot say right now:
    /// the publish happened either way.
    private func epoch(of topic: Topic) async -> String? {
        guard let history = broker.history else { return nil }
        return try? await history.epoch(of: TopicPattern(checked: topic.name), on: broker.group.next()).get()
    }

    /// Runs `body` once per `idempotency_key` (when the request has one) within the window.
    private func idempotent(
        _ object: [String: Any], fingerprint parts: [String], _ payload: ByteBuffer,
        _ body: () async -> PlainHTTPResponse
    ) async throws(AdminError) -> PlainHTTPResponse {
        guard let key = try AdminJSON.string(object, "idempotency_key") else { return await body() }
        guard !key.isEmpty, key.utf8.count <= IdempotencyCache.maxKeyBytes else {
            throw .badRequest("idempotency_key must be 1 to \(IdempotencyCache.maxKeyBytes) bytes")
        }
        var hashed = Array(parts.joined(separator: "\n").utf8)
        hashed.append(0)
        hashed += payload.readableBytesView
        let fingerprint = TokenCrypto.sha256(hashed)
        switch await broker.idempotency.claim(key, fingerprint: fingerprint, now: broker.clock()) {
        case .conflict:
            throw .conflict("idempotency_key \(key.debugDescription) was used for a different request in the last 5 minutes")
        case .replay(var response):
            response.headers.replaceOrAdd(name: "Idempotent-Replayed", value: "true")
            return response
        case .first:
            let response = await body()
            broker.idempotency.finish(key, response)
            return response
        }
    }

    /// `data` (any JSON value, forwarded as it came) or `data_base64` (bytes, delivered as
    /// a binary message), within `max_payload`.
    private func payload(_ object: [String: Any], _ body: ByteBuffer) throws(AdminError) -> (ByteBuffer, PayloadFormat) {
        let payload: ByteBuffer
        let format: PayloadFormat
        switch (object["data"] != nil, try AdminJSON.string(object, "data_base64")) {
        case (true, nil):
            guard let raw = AdminJSON.rawMember("data", of: body) else { throw .badRequest("data is not readable") }
            (payload, format) = (raw, .json)
        case (false, let encoded?):
            guard let bytes = Data(base64Encoded: encoded) else { throw .badRequest("data_base64 is not valid base64") }
            (payload, format) = (ByteBuffer(bytes: bytes), .binary)
        case (true, _?):
            throw .badRequest("give data or data_base64, not both")
        case (false, nil):
            throw .badRequest("data (any JSON value) or data_base64 is required")
        }
        let limit = broker.configuration.maxPayload
        guard payload.readableBytes <= limit else {
            throw .tooLarge("the payload is \(payload.readableBytes) bytes; at most \(limit) (max_payload)")
        }
        return (payload, format)
    }

    static func topic(_ name: String) throws(AdminError) -> Topic {
        do {
            return try Topic(name)
        } catch {
            throw .badRequest("bad topic \(name.debugDescription): \(error.message)")
        }
    }

    private static func error(_ failure: Broker.AdminPublishFailure) -> AdminError {
        switch failure {
        case .unavailable(let message): .unavailable(message)
        case .tooManyTopics: .unavailable("the broker holds its limit of topics (max_topics); try again later")
        }
    }
}
