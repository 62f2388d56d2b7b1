#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// What a principal may do. Patterns are parsed once (when the token is created, loaded or
/// verified), so checks on each subscribe/publish are a walk over a few token arrays.
///
/// - `subscribe`: a subscription to pattern P is allowed when some entry covers P
///   (every topic P matches is matched by the entry: `chat.>` covers `chat.*` and
///   `chat.room1`, `chat.*` does not cover `chat.>`).
/// - `publish`: a publish to topic T is allowed when some entry matches T.
/// - `admin`: the admin API only; it grants no topic access by itself.
/// - `expiresAt`: after it, the principal is refused (at the handshake and on each request).
public struct Permissions: Sendable, Hashable, Codable {
    public var subscribe: [TopicPattern]
    public var publish: [TopicPattern]
    public var admin: Bool
    public var expiresAt: Date?

    public init(subscribe: [TopicPattern] = [], publish: [TopicPattern] = [], admin: Bool = false, expiresAt: Date? = nil) {
        self.subscribe = subscribe
        self.publish = publish
        self.admin = admin
        self.expiresAt = expiresAt
    }

    /// Everything: `>` for both, admin (for tests and a first bootstrap token). `try!` on a
    /// constant: `>` is a valid pattern, so it cannot trap.
    public static let all = Permissions(
        subscribe: [try! TopicPattern(">")], publish: [try! TopicPattern(">")], admin: true
    )

    public func canSubscribe(_ pattern: TopicPattern) -> Bool {
        subscribe.contains { $0.covers(pattern) }
    }

    public func canPublish(_ topic: Topic) -> Bool {
        publish.contains { $0.matches(topic) }
    }

    public func isExpired(at now: Date) -> Bool {
        expiresAt.map { now >= $0 } ?? false
    }

    // Stored as JSON in tokens.permissions; the expiry lives in its own column.
    enum CodingKeys: String, CodingKey { case subscribe, publish, admin }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        subscribe = try c.decodeIfPresent([TopicPattern].self, forKey: .subscribe) ?? []
        publish = try c.decodeIfPresent([TopicPattern].self, forKey: .publish) ?? []
        admin = try c.decodeIfPresent(Bool.self, forKey: .admin) ?? false
        expiresAt = nil
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(subscribe, forKey: .subscribe)
        try c.encode(publish, forKey: .publish)
        try c.encode(admin, forKey: .admin)
    }
}
