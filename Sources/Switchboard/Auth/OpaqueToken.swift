import WebSocketCore

/// Opaque access tokens: `sb_` followed by 32 random bytes in base64url (46 characters).
/// Only `hash(token)` (SHA-256 of the token string's bytes) is ever stored.
@_spi(Fuzzing) public enum OpaqueToken {
    @_spi(Fuzzing) public static let prefix = "sb_"

    /// A new random token string.
    package static func generate() -> String {
        prefix + Base64URL.encode(Crypto.randomBytes(count: 32))
    }

    /// A new package token id: `tok_` + 9 random bytes in base64url (safe to log).
    package static func generateID() -> String {
        "tok_" + Base64URL.encode(Crypto.randomBytes(count: 9))
    }

    package static func hash(_ token: String) -> [UInt8] {
        TokenCrypto.sha256(Array(token.utf8))
    }

    /// Whether `token` has the shape of an opaque token (not whether it exists).
    @_spi(Fuzzing) public static func isWellFormed(_ token: String) -> Bool {
        token.hasPrefix(prefix) && token.utf8.count == prefix.utf8.count + 43
            && Base64URL.decode(token.dropFirst(prefix.count))?.count == 32
    }
}
