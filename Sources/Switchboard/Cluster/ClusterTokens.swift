import Foundation

/// Opaque tokens made on one node, shared with the others through the Redis hash
/// `sb:tokens`: field the token's SHA-256 in hex, value its record as JSON (id, name,
/// permissions, times), never the token itself. A node looks a presented token up there when
/// neither its cache nor its store knows it; revocations stay in `sb:revoked`.
enum ClusterTokens {
    static let key = "sb:tokens"

    static func field(hash: [UInt8]) -> String {
        hash.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }

    static func encode(_ record: TokenRecord) throws -> String {
        let object: [String: Any] = [
            "id": record.id, "name": record.name,
            "permissions": try TokenStore.encodePermissions(record.permissions),
            "created_at": TokenStore.milliseconds(record.createdAt),
            "expires_at": record.permissions.expiresAt.map { TokenStore.milliseconds($0) } ?? NSNull(),
        ]
        return String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self)
    }

    /// The record of `text` for the token whose hash is `hash`; nil when it is not one.
    static func decode(_ text: String, hash: [UInt8], revokedAt: Date?) -> TokenRecord? {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any],
            let id = object["id"] as? String, let name = object["name"] as? String,
            let json = object["permissions"] as? String,
            let createdAt = (object["created_at"] as? NSNumber)?.int64Value,
            var permissions = try? TokenStore.decodePermissions(json, id: id)
        else { return nil }
        permissions.expiresAt = (object["expires_at"] as? NSNumber).map { TokenStore.date($0.int64Value) }
        return TokenRecord(
            id: id, name: name, permissions: permissions, createdAt: TokenStore.date(createdAt), revokedAt: revokedAt,
            hash: hash)
    }
}
