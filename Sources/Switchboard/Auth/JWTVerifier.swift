#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

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
            let headerBytes = Base64URL.decode(parts[0]),
            let payloadBytes = Base64URL.decode(parts[1]),
            let signature = Base64URL.decode(parts[2])
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
        guard TokenCrypto.constantTimeEquals(expected, signature) else {
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
        let header = Base64URL.encode(Array(#"{"alg":"HS256","typ":"JWT"}"#.utf8))
        let payload = Base64URL.encode((try? encoder.encode(claims)) ?? Data())
        let signingInput = header + "." + payload
        let signature = TokenCrypto.hmacSHA256(key: secret, data: Array(signingInput.utf8))
        return signingInput + "." + Base64URL.encode(signature)
    }
}
