// libFuzzer entry point for the tokens a client presents: where the broker's handshake
// finds them (`Authenticator.presentedToken`: the `Authorization` header, the `token`
// query parameter), what it makes of them (`Authenticator.authenticate`: opaque `sb_…`
// tokens, HS256 JWTs), and base64url (`Base64URL`).
//
// Input: byte 0 bit 0 clear: the rest is one string, used as an Authorization value, as a
// query, as a presented token and as base64url. Bit 0 set: the rest is cut at its first
// newline into a JWT header and claims (JSON, as raw bytes), which the fuzzer signs with
// the verifier's secret, so that claim decoding is reached past the signature.
//
// Checks: every AuthError message is one line and never shows the token or a part of it; base64url decodes only canonical text; an accepted JWT verifies only under
// its own secret, with `exp`/`nbf` honoured and its patterns valid.
import FuzzerSupport
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
@_spi(Fuzzing) import Switchboard

runFuzzer(fuzz)

enum Fixture {
    static let secret = Array("a fuzzing secret of at least 32 bytes".utf8)
    static let now = Date(timeIntervalSince1970: 1_700_000_000)
    static let verifiers = [
        JWTVerifier(secret: secret),
        JWTVerifier(secret: secret, leewaySeconds: 30, requireExpiry: false),
    ]
    static let otherSecret = JWTVerifier(secret: Array("another secret, also 32 bytes long".utf8), requireExpiry: false)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = inputBytes(data, size)
    guard let mode = bytes.first else { return 0 }
    let rest = Array(bytes.dropFirst())
    if mode & 1 == 0 {
        checkPresented(String(decoding: rest, as: UTF8.self))
    } else {
        let pieces = parts(of: rest, separator: UInt8(ascii: "\n"), maxParts: 2)
        checkSigned(header: pieces[0], claims: pieces[1])
    }
    return 0
}

func checkPresented(_ text: String) {
    for (authorization, query) in [(text, nil), (nil, text)] as [(String?, String?)] {
        do {
            if let token = try Authenticator.presentedToken(authorization: authorization, query: query) {
                require(!token.isEmpty, "an empty token was presented")
                if authorization != nil {
                    require(token.first != " " && token.last != " " && token.first != "\t" && token.last != "\t",
                                 "the token keeps whitespace")
                }
                authenticate(token)
            }
        } catch {
            checkAuthError(error, token: text)
        }
    }
    authenticate(text)
    if let decoded = Base64URL.decode(Substring(text)) {
        require(Base64URL.encode(decoded) == text, "base64url accepted a non-canonical text")
    }
    if OpaqueToken.isWellFormed(text) {
        require(text.hasPrefix(OpaqueToken.prefix) && text.utf8.count == 46, "a well-formed token of another shape")
    }
}

/// Authenticates `token` with every verifier (no token store: opaque tokens are unknown).
func authenticate(_ token: String) {
    for verifier in Fixture.verifiers {
        do {
            let principal = try Authenticator(tokens: nil, jwt: verifier).authenticate(token, now: Fixture.now)
            guard case .jwt = principal.kind else { fatalError("accepted a token no store holds") }
        } catch {
            checkAuthError(error, token: token)
        }
    }
}

func checkSigned(header: [UInt8], claims: [UInt8]) {
    let signingInput = Base64URL.encode(header) + "." + Base64URL.encode(claims)
    let token = signingInput + "." + Base64URL.encode(TokenCrypto.hmacSHA256(key: Fixture.secret, data: Array(signingInput.utf8)))
    for verifier in Fixture.verifiers {
        do {
            let (_, permissions) = try verifier.verify(token, now: Fixture.now)
            let seconds = Fixture.now.timeIntervalSince1970
            if let expiry = permissions.expiresAt {
                // `Date` keeps its seconds from 2001: allow for the rounding of that shift.
                let limit = expiry.timeIntervalSince1970 + verifier.leewaySeconds + 1e-3
                require(seconds < limit, "accepted an expired token")
            } else {
                require(!verifier.requireExpiry, "accepted a token without exp")
            }
            for pattern in permissions.subscribe + permissions.publish {
                require((try? TopicPattern(pattern.name)) == pattern, "a claimed pattern does not parse again")
            }
            do {
                _ = try Fixture.otherSecret.verify(token, now: Fixture.now)
                fatalError("a JWT verified under another secret")
            } catch {
                require(error.reason == .badSignature, "another secret's refusal is \(error.reason)")
            }
        } catch {
            checkAuthError(error, token: token)
        }
    }
}

/// A message must be one line and must not show the token: no run of 20 or more
/// non-blank bytes of it (its parts, its whole) appears in the message. (Shorter runs may
/// be words of the fixed messages.)
func checkAuthError(_ error: AuthError, token: String) {
    checkOneLine(error.message, "auth error")
    for part in token.split(separator: ".") + [Substring(token)]
    where part.utf8.count >= 20 && !part.contains(where: { $0 == " " || $0 == "\t" }) {
        require(!error.message.contains(part), "an auth error shows the token")
    }
}
