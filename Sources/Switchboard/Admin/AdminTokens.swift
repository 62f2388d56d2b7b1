import Foundation
import NIOPosix
import WebSockets

/// `/admin/v1/tokens…`: opaque client tokens. The secret is in the answer to a create only;
/// the store keeps its hash.
extension AdminAPI {
    /// The longest `ttl_seconds`: 100 years.
    static let maxTokenLifetime = 3_153_600_000

    /// `POST /admin/v1/tokens` {name, subscribe?, publish?, ttl_seconds?, admin?} → 201 with
    /// the token, shown this once. On a cluster node it is shared with every node through
    /// Redis (503 when Redis does not take it; the record is then left revoked).
    func createToken(_ request: PlainHTTPRequest) async throws(AdminError) -> PlainHTTPResponse {
        let object = try AdminJSON.object(request.body)
        guard let name = try AdminJSON.string(object, "name"), !name.isEmpty, name.utf8.count <= 255 else {
            throw .badRequest("name is required: 1 to 255 bytes")
        }
        func patterns(_ key: String) throws(AdminError) -> [TopicPattern] {
            var parsed: [TopicPattern] = []
            for text in try AdminJSON.strings(object, key) ?? [] {
                do {
                    parsed.append(try TopicPattern(text))
                } catch {
                    throw .badRequest("\(key): bad pattern \(text.debugDescription): \(error.message)")
                }
            }
            return parsed
        }
        let ttl = try AdminJSON.integer(object, "ttl_seconds", maximum: Self.maxTokenLifetime)
        if ttl == 0 { throw .badRequest("ttl_seconds must be at least 1 (leave it out for no expiry)") }
        let permissions = Permissions(
            subscribe: try patterns("subscribe"), publish: try patterns("publish"),
            admin: try AdminJSON.bool(object, "admin") ?? false,
            expiresAt: ttl.map { Date().addingTimeInterval(TimeInterval($0)) })
        let tokens = broker.tokens
        let created = try? await NIOThreadPool.singleton.runIfActive {
            try tokens.create(name: name, permissions: permissions)
        }
        guard let (token, record) = created else { throw .unavailable("the token could not be stored") }
        if let control = broker.cluster?.control {
            do {
                try await control.share(token: record)
            } catch {
                // Not left usable on one node only; the token was never shown.
                _ = try? await NIOThreadPool.singleton.runIfActive { try tokens.revoke(id: record.id) }
                throw .unavailable("the token was not created: redis did not take it (\(error))")
            }
        }
        var body = record.adminDescription
        body["token"] = token
        return AdminJSON.response(201, body)
    }

    /// `GET /admin/v1/tokens`: every token, oldest first, never a secret.
    func listTokens() -> PlainHTTPResponse {
        AdminJSON.response(200, ["tokens": broker.tokens.list().map(\.adminDescription)])
    }

    /// `GET /admin/v1/tokens/{id}`.
    func showToken(_ id: String) throws(AdminError) -> PlainHTTPResponse {
        guard let record = broker.tokens.record(id: id) else { throw .notFound("no token with id \(id)") }
        return AdminJSON.response(200, record.adminDescription)
    }

    /// `DELETE /admin/v1/tokens/{id}`: revokes it; its live connections close with 4001 at once
    /// (on a cluster node, on every node: `ClusterControl`).
    func revokeToken(_ id: String) async throws(AdminError) -> PlainHTTPResponse {
        let tokens = broker.tokens
        let revoked: TokenRecord??
        do {
            revoked = try await NIOThreadPool.singleton.runIfActive { try tokens.revoke(id: id) }
        } catch {
            throw .unavailable("the revocation could not be stored")
        }
        guard let record = revoked ?? nil else { throw .notFound("no token with id \(id)") }
        // On a cluster node, answered once every node can learn it from Redis.
        await broker.cluster?.control.settled()
        return AdminJSON.response(200, record.adminDescription)
    }
}

extension TokenRecord {
    /// The token as the admin API shows it (never its secret): id, name, state (`active`,
    /// `expired`, `revoked`), patterns, admin right, times in unix milliseconds.
    public var adminDescription: [String: Any] {
        let state = isRevoked ? "revoked" : (permissions.isExpired(at: Date()) ? "expired" : "active")
        func milliseconds(_ date: Date?) -> Any { date.map { TokenStore.milliseconds($0) } ?? NSNull() }
        return [
            "id": id, "name": name, "state": state,
            "subscribe": permissions.subscribe.map(\.name), "publish": permissions.publish.map(\.name),
            "admin": permissions.admin, "created_at": milliseconds(createdAt),
            "expires_at": milliseconds(permissions.expiresAt), "revoked_at": milliseconds(revokedAt),
        ]
    }
}
