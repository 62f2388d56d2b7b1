#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import WebSocketCore

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

// MARK: - Secrets

/// Helpers for secrets: constant-time comparison and base64url (RFC 4648 §5, unpadded).
public enum Secrets {
    /// Compares two byte strings in time that depends only on their lengths.
    public static func constantTimeEquals(_ a: some Collection<UInt8>, _ b: some Collection<UInt8>) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for (x, y) in zip(a, b) { difference |= x ^ y }
        return difference == 0
    }

    public static func base64URLEncode(_ bytes: some Sequence<UInt8>) -> String {
        var out = ""
        for c in Crypto.base64Encode(bytes).unicodeScalars {
            switch c {
            case "+": out.unicodeScalars.append("-")
            case "/": out.unicodeScalars.append("_")
            case "=": continue
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    /// Strict: only the base64url alphabet, no padding, canonical trailing bits.
    public static func base64URLDecode(_ text: Substring) -> [UInt8]? {
        guard text.utf8.count % 4 != 1 else { return nil }
        var standard = ""
        standard.reserveCapacity(text.utf8.count + 3)
        for c in text.unicodeScalars {
            switch c {
            case "-": standard.unicodeScalars.append("+")
            case "_": standard.unicodeScalars.append("/")
            case "+", "/", "=": return nil
            default: standard.unicodeScalars.append(c)
            }
        }
        while standard.utf8.count % 4 != 0 { standard += "=" }
        return Crypto.base64Decode(standard)
    }
}

// MARK: - Opaque tokens

/// Opaque access tokens: `sb_` followed by 32 random bytes in base64url (46 characters).
/// Only `hash(token)` (SHA-256 of the token string's bytes) is ever stored.
public enum OpaqueToken {
    public static let prefix = "sb_"

    /// A new random token string.
    public static func generate() -> String {
        prefix + Secrets.base64URLEncode(Crypto.randomBytes(count: 32))
    }

    /// A new public token id: `tok_` + 9 random bytes in base64url (safe to log).
    public static func generateID() -> String {
        "tok_" + Secrets.base64URLEncode(Crypto.randomBytes(count: 9))
    }

    public static func hash(_ token: String) -> [UInt8] {
        TokenCrypto.sha256(Array(token.utf8))
    }

    /// Whether `token` has the shape of an opaque token (not whether it exists).
    public static func isWellFormed(_ token: String) -> Bool {
        token.hasPrefix(prefix) && token.utf8.count == prefix.utf8.count + 43
            && Secrets.base64URLDecode(token.dropFirst(prefix.count))?.count == 32
    }
}

// MARK: - JWT (HS256)

/// JSON Web Tokens signed with HMAC-SHA256 under a secret shared with an app backend
/// (RFC 7519 / RFC 7515 compact form).
///
/// Header: `{"alg":"HS256","typ":"JWT"}`; any other `alg` (`none` included) is refused,
/// before the signature is looked at. `typ`, if present, must be `JWT`.
///
/// Claims (payload):
/// | claim | type | meaning |
/// | --- | --- | --- |
/// | `sub` | string | the subject (user/app id), for logs and metrics; optional |
/// | `exp` | number, unix seconds | expiry; required unless the verifier allows none |
/// | `nbf` | number, unix seconds | not valid before; optional |
/// | `iat` | number | ignored |
/// | `sub_patterns` | [string] | patterns the bearer may subscribe to |
/// | `pub_patterns` | [string] | patterns of topics the bearer may publish to |
/// | `admin` | bool | admin API right; default false |
public struct JWTVerifier: Sendable {
    public struct Claims: Sendable, Hashable, Codable {
        public var sub: String?
        public var exp: Double?
        public var nbf: Double?
        public var iat: Double?
        public var sub_patterns: [String]?
        public var pub_patterns: [String]?
        public var admin: Bool?

        public init(
            sub: String? = nil, exp: Double? = nil, nbf: Double? = nil, iat: Double? = nil,
            sub_patterns: [String]? = nil, pub_patterns: [String]? = nil, admin: Bool? = nil
        ) {
            self.sub = sub
            self.exp = exp
            self.nbf = nbf
            self.iat = iat
            self.sub_patterns = sub_patterns
            self.pub_patterns = pub_patterns
            self.admin = admin
        }
    }

    struct Header: Codable {
        var alg: String?
        var typ: String?
    }

    private let secret: [UInt8]
    /// Clock skew tolerated on `exp` and `nbf`.
    public var leewaySeconds: Double
    /// When true (the default) a token without `exp` is refused.
    public var requireExpiry: Bool

    public init(secret: [UInt8], leewaySeconds: Double = 0, requireExpiry: Bool = true) {
        self.secret = secret
        self.leewaySeconds = leewaySeconds
        self.requireExpiry = requireExpiry
    }

    /// Verifies `token` and returns its subject and permissions. Errors never contain the token.
    public func verify(_ token: String, now: Date) throws(AuthError) -> (subject: String?, permissions: Permissions) {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3,
            let headerBytes = Secrets.base64URLDecode(parts[0]),
            let payloadBytes = Secrets.base64URLDecode(parts[1]),
            let signature = Secrets.base64URLDecode(parts[2])
        else {
            throw AuthError(.malformed, "the token is not a well-formed JWT (three base64url parts)")
        }
        guard let header = try? JSONDecoder().decode(Header.self, from: Data(headerBytes)) else {
            throw AuthError(.malformed, "the JWT header is not valid JSON")
        }
        guard header.alg == "HS256" else {
            throw AuthError(.badSignature, "JWT algorithm \(header.alg.map { "\"\($0.prefix(16))\"" } ?? "(none)") is not accepted; only HS256")
        }
        if let typ = header.typ, typ.uppercased() != "JWT" {
            throw AuthError(.malformed, "JWT typ must be JWT")
        }
        let signingInput = parts[0].utf8.count + 1 + parts[1].utf8.count
        let expected = TokenCrypto.hmacSHA256(key: secret, data: token.utf8.prefix(signingInput))
        guard Secrets.constantTimeEquals(expected, signature) else {
            throw AuthError(.badSignature, "the JWT signature does not verify")
        }
        let claims: Claims
        do {
            claims = try JSONDecoder().decode(Claims.self, from: Data(payloadBytes))
        } catch {
            throw AuthError(.malformed, "the JWT claims are not valid (JSON object with sub, exp, sub_patterns, pub_patterns, admin)")
        }
        let nowSeconds = now.timeIntervalSince1970
        if let exp = claims.exp {
            guard nowSeconds < exp + leewaySeconds else { throw AuthError(.expired, "the token has expired") }
        } else if requireExpiry {
            throw AuthError(.malformed, "the JWT has no exp claim")
        }
        if let nbf = claims.nbf, nowSeconds + leewaySeconds < nbf {
            throw AuthError(.notYetValid, "the token is not valid yet (nbf)")
        }
        func patterns(_ names: [String]?, _ claim: String) throws(AuthError) -> [TopicPattern] {
            var result: [TopicPattern] = []
            for name in names ?? [] {
                do {
                    result.append(try TopicPattern(name))
                } catch {
                    throw AuthError(.malformed, "JWT claim \(claim) has an invalid pattern: \(error.message)")
                }
            }
            return result
        }
        let permissions = Permissions(
            subscribe: try patterns(claims.sub_patterns, "sub_patterns"),
            publish: try patterns(claims.pub_patterns, "pub_patterns"),
            admin: claims.admin ?? false,
            expiresAt: claims.exp.map { Date(timeIntervalSince1970: $0) }
        )
        return (claims.sub, permissions)
    }

    /// Mints an HS256 token (for tests, the CLI and examples of what a backend does).
    public static func mint(_ claims: Claims, secret: [UInt8]) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let header = Secrets.base64URLEncode(Array(#"{"alg":"HS256","typ":"JWT"}"#.utf8))
        let payload = Secrets.base64URLEncode((try? encoder.encode(claims)) ?? Data())
        let signingInput = header + "." + payload
        let signature = TokenCrypto.hmacSHA256(key: secret, data: Array(signingInput.utf8))
        return signingInput + "." + Secrets.base64URLEncode(signature)
    }
}
