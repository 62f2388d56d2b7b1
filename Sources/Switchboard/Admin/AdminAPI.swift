import Foundation
import NIOCore
import NIOPosix
import WebSocketCore
import WebSockets

/// The admin HTTP API and the health checks, served on the broker's WebSocket port to the
/// requests that are not upgrades (docs/admin-api.md). Everything under `/admin/v1/` needs
/// a token with the admin right; `/healthz` and `/readyz` need none, nor the browser files
/// (`WebAssets`).
struct AdminAPI: Sendable {
    let broker: Broker

    static let prefix = "/admin/v1/"

    /// The answer to one request: JSON, errors as `{"error":{"code","message"}}`.
    func handle(_ request: PlainHTTPRequest) async -> PlainHTTPResponse {
        do throws(AdminError) {
            return try await route(request)
        } catch {
            return AdminJSON.response(error)
        }
    }

    private func route(_ request: PlainHTTPRequest) async throws(AdminError) -> PlainHTTPResponse {
        let path = request.path
        switch path {
        case "/healthz":
            try allow(request, "GET")
            return AdminJSON.response(200, ["status": "ok"])
        case "/readyz":
            try allow(request, "GET")
            return await readiness()
        case "/metrics":
            try allow(request, "GET")
            return try await metrics(request)
        default:
            if let asset = broker.web.response(request) { return asset }
        }
        guard path.hasPrefix(Self.prefix) else { throw .notFound("no such path: \(path)") }
        let principal = try await authenticate(request)
        let segments = path.dropFirst(Self.prefix.count).split(separator: "/", omittingEmptySubsequences: false)
            .map { $0.removingPercentEncoding ?? String($0) }
        switch (segments.count, segments.first ?? "") {
        case (1, "publish"):
            try allow(request, "POST")
            return try await publish(request, principal)
        case (1, "broadcast"):
            try allow(request, "POST")
            return try await broadcast(request, principal)
        case (1, "topics"):
            try allow(request, "GET")
            return try await topics(request)
        case (2, "topics"):
            try allow(request, "GET")
            return try await topic(segments[1])
        case (3, "topics") where segments[2] == "history":
            switch try allow(request, "GET", "DELETE") {
            case "GET": return try await history(segments[1], request)
            default: return try await purge(segments[1])
            }
        case (1, "retention"):
            switch try allow(request, "GET", "PUT") {
            case "GET": return retention()
            default: return try await replaceRetention(request)
            }
        case (1, "tokens"):
            switch try allow(request, "GET", "POST") {
            case "GET": return listTokens()
            default: return try await createToken(request)
            }
        case (2, "tokens"):
            switch try allow(request, "GET", "DELETE") {
            case "GET": return try showToken(segments[1])
            default: return try await revokeToken(segments[1])
            }
        case (1, "connections"):
            try allow(request, "GET")
            return try await connections(request)
        case (3, "connections") where segments[2] == "close":
            try allow(request, "POST")
            return try await closeConnection(segments[1])
        case (1, "info"):
            try allow(request, "GET")
            return await info()
        default:
            throw .notFound("no such path: \(path)")
        }
    }

    /// The request's method when it is one of `methods`; 405 naming them otherwise.
    @discardableResult
    private func allow(_ request: PlainHTTPRequest, _ methods: String...) throws(AdminError) -> String {
        guard methods.contains(request.method) else { throw .methodNotAllowed(request.method, allowed: methods) }
        return request.method
    }

    /// The principal of the request's bearer token, which must have the admin right. The
    /// token is looked up by its hash (`TokenStore`), never logged.
    private func authenticate(_ request: PlainHTTPRequest) async throws(AdminError) -> Principal {
        let presented: String?
        do throws(AuthError) {
            presented = try Authenticator.presentedToken(authorization: request.headers.first("Authorization"), query: nil)
        } catch {
            throw .unauthorized(error.message)
        }
        guard let presented else { throw .unauthorized("an admin token is required (Authorization: Bearer <token>)") }
        let principal: Principal
        do throws(AuthError) {
            principal = try await broker.authenticate(presented)
        } catch {
            throw .unauthorized("\(error.reason.rawValue): \(error.message)")
        }
        guard principal.isAdmin else { throw .forbidden("this token does not have the admin right") }
        return principal
    }

    /// `/metrics`: the Prometheus text format; with `metrics_token` set, only for a request
    /// that presents it (compared by hash, in constant time).
    private func metrics(_ request: PlainHTTPRequest) async throws(AdminError) -> PlainHTTPResponse {
        if let expected = broker.configuration.metricsToken {
            let presented = try? Authenticator.presentedToken(authorization: request.headers.first("Authorization"), query: nil)
            guard let presented,
                TokenCrypto.constantTimeEquals(TokenCrypto.sha256(presented.utf8), TokenCrypto.sha256(expected.utf8))
            else {
                throw .unauthorized("/metrics needs the metrics token (Authorization: Bearer <metrics_token>)")
            }
        }
        let text = broker.metrics.render(
            await broker.counters(), published: broker.publishedTotals, statistics: broker.statistics)
        var headers = HTTPFields()
        headers.add(name: "Content-Type", value: "text/plain; version=0.0.4; charset=utf-8")
        return PlainHTTPResponse(status: 200, headers: headers, body: ByteBuffer(bytes: text))
    }

    /// `/readyz`: listening, the store takes writes, the replay log is not degraded.
    private func readiness() async -> PlainHTTPResponse {
        var problems: [String] = []
        if !broker.isListening { problems.append("not listening") }
        let store = broker.tokens.store
        do {
            try await NIOThreadPool.singleton.runIfActive { try store.checkWritable() }
        } catch {
            problems.append("the store \(store.path) does not take writes")
        }
        if case .degraded(let reason)? = broker.replayLog?.status {
            problems.append("the replay log is degraded: \(reason)")
        }
        guard problems.isEmpty else {
            return AdminJSON.response(503, ["status": "not_ready", "reason": problems.joined(separator: "; ")])
        }
        return AdminJSON.response(200, ["status": "ready"])
    }
}
