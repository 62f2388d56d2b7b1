import Foundation
import WebSockets

/// `/admin/v1/retention`: the replay log's retention rules, read and replaced at run time.
extension AdminAPI {
    /// `GET /admin/v1/retention`: the rules in force (`replay_retain` syntax), where they
    /// come from (`store` once set at run time, else `config`), the size cap and the write
    /// queue's limit.
    func retention() -> PlainHTTPResponse {
        let replay = broker.replayLog?.configuration ?? broker.configuration.replay
        let rules = broker.replayLog?.rules ?? replay.retention
        return AdminJSON.response(200, [
            "rules": rules.texts, "source": broker.replayLog?.rulesAreStored == true ? "store" : "config",
            "max_bytes": replay.maxBytes, "queue_limit": replay.queueLimit,
        ])
    }

    /// `PUT /admin/v1/retention` {`rules`: [RULE, …]}: replaces the rules, stored so that
    /// they outlast restarts; 400 naming the first bad rule and why, nothing changed. On a
    /// cluster node they are stored in Redis first and reach every node (503 when Redis
    /// does not take them).
    func replaceRetention(_ request: PlainHTTPRequest) async throws(AdminError) -> PlainHTTPResponse {
        let object = try AdminJSON.object(request.body)
        guard let texts = try AdminJSON.strings(object, "rules") else {
            throw .badRequest(#"rules is required: a list of rules like "chat.> count=10000 age=24h" ([] retains nothing)"#)
        }
        let rules: RetentionRules
        switch RetentionRules.parse(texts) {
        case .success(let parsed): rules = parsed
        case .failure(let problem): throw .badRequest(problem.message)
        }
        guard broker.replayLog != nil else { throw .notFound("this broker has no replay log") }
        if let control = broker.cluster?.control {
            // Redis first: rules no other node will ever get are not made this node's.
            do {
                try await control.share(rules)
            } catch {
                throw .unavailable("the retention rules are not in force on this node: \(error)")
            }
            return retention()
        }
        try await stored(failing: "the retention rules were not changed") { [broker] () async throws(ReplayError) in
            try await ReplayLog.offLoop { () throws(ReplayError) in try broker.replaceRetention(rules) }
        }
        return retention()
    }
}
