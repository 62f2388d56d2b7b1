#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import WebSocketCore

/// Why a presented token was refused: the one-line reason of the handshake's 401.
/// Messages never contain the token (nor any part of it).
public struct AuthError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Reason: String, Sendable, Hashable {
        /// No token, and no anonymous access configured.
        case missing
        /// Not the shape of any token we accept, or an unreadable JWT.
        case malformed
        /// Well-formed opaque token that is not in the store.
        case unknown
        case expired
        case notYetValid = "not_yet_valid"
        case revoked
        /// JWT signature does not verify, or its algorithm is not HS256.
        case badSignature = "bad_signature"
        /// A JWT was presented but no JWT secret is configured.
        case unsupported
    }

    public let reason: Reason
    public let message: String

    public init(_ reason: Reason, _ message: String) {
        self.reason = reason
        self.message = message
    }

    /// The HTTP status for the handshake answer.
    public var httpStatus: Int { 401 }

    public var description: String { "\(reason.rawValue): \(message)" }
}

/// Who is on a connection, and what they may do. Carried by the connection; checked on
/// each subscribe/publish with `canSubscribe`/`canPublish` and `isExpired(at:)`.
@_spi(Fuzzing) public struct Principal: Sendable, Hashable {
    @_spi(Fuzzing) public enum Kind: Sendable, Hashable {
        /// An opaque token from the store; revoking `tokenID` must close the connection.
        case token(id: String)
        /// A verified JWT; `subject` is its `sub` claim.
        case jwt(subject: String?)
        case anonymous
    }

    @_spi(Fuzzing) public let kind: Kind
    package let permissions: Permissions

    package init(kind: Kind, permissions: Permissions) {
        self.kind = kind
        self.permissions = permissions
    }

    /// A short label safe for logs: `token:tok_…`, `jwt:<sub>`, `anonymous`.
    package var logLabel: String {
        switch kind {
        case .token(let id): "token:\(id)"
        case .jwt(let subject): "jwt:\(subject.map { String($0.prefix(64)) } ?? "-")"
        case .anonymous: "anonymous"
        }
    }

    /// The opaque token id, for revocation.
    package var tokenID: String? {
        if case .token(let id) = kind { id } else { nil }
    }

    package func canSubscribe(_ pattern: TopicPattern) -> Bool { permissions.canSubscribe(pattern) }
    package func canPublish(_ topic: Topic) -> Bool { permissions.canPublish(topic) }
    package var isAdmin: Bool { permissions.admin }
    package func isExpired(at now: Date) -> Bool { permissions.isExpired(at: now) }
}

/// Turns a presented token (or its absence) into a `Principal`, or an `AuthError` for a 401.
///
/// - `sb_…` tokens are looked up (by hash, in memory) in the `TokenStore`.
/// - Tokens of the form `a.b.c` are verified as HS256 JWTs with the configured secret.
/// - No token: the configured anonymous permissions, or `missing`.
/// Nothing here logs; callers must log `AuthError.reason` or `Principal.logLabel`, never
/// the token.
@_spi(Fuzzing) public struct Authenticator: Sendable {
    package let tokens: TokenStore?
    package let jwt: JWTVerifier?
    /// Permissions of clients that present no token; nil refuses them.
    package let anonymous: Permissions?

    @_spi(Fuzzing) public init(tokens: TokenStore?, jwt: JWTVerifier? = nil, anonymous: Permissions? = nil) {
        self.tokens = tokens
        self.jwt = jwt
        self.anonymous = anonymous
    }

    @_spi(Fuzzing) public func authenticate(_ presented: String?, now: Date = Date()) throws(AuthError) -> Principal {
        guard let presented, !presented.isEmpty else {
            guard let anonymous else {
                throw AuthError(.missing, "a token is required (Authorization: Bearer or ?token=)")
            }
            return Principal(kind: .anonymous, permissions: anonymous)
        }
        if presented.hasPrefix(OpaqueToken.prefix) {
            guard OpaqueToken.isWellFormed(presented) else {
                throw AuthError(.malformed, "the token is not a well-formed access token")
            }
            guard let record = tokens?.lookup(token: presented) else {
                throw AuthError(.unknown, "the token is not known")
            }
            if record.isRevoked { throw AuthError(.revoked, "the token has been revoked") }
            if record.permissions.isExpired(at: now) { throw AuthError(.expired, "the token has expired") }
            return Principal(kind: .token(id: record.id), permissions: record.permissions)
        }
        if presented.utf8.count(where: { $0 == UInt8(ascii: ".") }) == 2 {
            guard let jwt else { throw AuthError(.unsupported, "signed tokens are not enabled on this broker") }
            let (subject, permissions) = try jwt.verify(presented, now: now)
            return Principal(kind: .jwt(subject: subject), permissions: permissions)
        }
        throw AuthError(.malformed, "the token is neither an access token (sb_…) nor a JWT")
    }

    /// The token a handshake presents: `Authorization: Bearer <token>` first, else the first
    /// `token` parameter of the raw `query`, decoded by the rules of `URLQuery` (a `%` that
    /// starts no escape stays, and the token is then refused as `malformed` by
    /// `authenticate`); nil when neither is there. A non-Bearer Authorization header is `malformed`.
    @_spi(Fuzzing) public static func presentedToken(authorization: String?, query: String?) throws(AuthError) -> String? {
        if let authorization {
            let trimmed = authorization.drop { $0 == " " || $0 == "\t" }
            let parts = trimmed.split(maxSplits: 1, whereSeparator: { $0 == " " || $0 == "\t" })
            guard parts.count == 2, parts[0].lowercased() == "bearer" else {
                throw AuthError(.malformed, "the Authorization header must be 'Bearer <token>'")
            }
            let token = parts[1].trimmingWhitespace()
            guard !token.isEmpty else { throw AuthError(.malformed, "the Authorization header has an empty token") }
            return String(token)
        }
        guard let query, let token = URLQuery(query).first("token"), !token.isEmpty else { return nil }
        return token
    }
}

extension Substring {
    fileprivate func trimmingWhitespace() -> Substring {
        var s = self
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return s
    }
}
