import AsyncTestSupport
import Foundation
import NIOConcurrencyHelpers
import Testing
import WebSocketCore

@_spi(Fuzzing) @testable import Switchboard

@Suite struct TokenTests {
    let secret = Array("a-shared-secret-of-some-length!!".utf8)
    let now = Date(timeIntervalSince1970: 1_700_000_000)

    func patterns(_ names: String...) -> [TopicPattern] { names.map { try! TopicPattern($0) } }

    // MARK: Permissions

    @Test func permissionChecks() throws {
        let permissions = Permissions(subscribe: patterns("chat.>", "news.*"), publish: patterns("chat.*.in"))
        #expect(permissions.canSubscribe(try TopicPattern("chat.*")))
        #expect(permissions.canSubscribe(try TopicPattern("chat.a.b")))
        #expect(permissions.canSubscribe(try TopicPattern("news.x")))
        #expect(!permissions.canSubscribe(try TopicPattern("news.>")))
        #expect(!permissions.canSubscribe(try TopicPattern(">")))
        #expect(permissions.canPublish(try Topic("chat.r1.in")))
        #expect(!permissions.canPublish(try Topic("chat.r1.out")))
        #expect(!permissions.isExpired(at: now))
        #expect(Permissions(expiresAt: now).isExpired(at: now))
    }

    // MARK: Base64URL and constant-time comparison

    @Test func base64URL() {
        for n in 0..<40 {
            let bytes = Crypto.randomBytes(count: n)
            let text = Base64URL.encode(bytes)
            #expect(!text.contains("=") && !text.contains("+") && !text.contains("/"))
            #expect(Base64URL.decode(Substring(text)) == bytes)
        }
        #expect(Base64URL.decode("a") == nil)
        #expect(Base64URL.decode("ab+/") == nil)
        #expect(Base64URL.decode("YQ==") == nil, "no padding in base64url")
    }

    @Test func constantTimeEquals() {
        #expect(TokenCrypto.constantTimeEquals([1, 2, 3], [1, 2, 3]))
        #expect(!TokenCrypto.constantTimeEquals([1, 2, 3], [1, 2, 4]))
        #expect(!TokenCrypto.constantTimeEquals([1, 2], [1, 2, 3]))
        #expect(TokenCrypto.constantTimeEquals([UInt8](), []))
    }

    @Test func opaqueTokenShape() {
        let token = OpaqueToken.generate()
        #expect(token.hasPrefix("sb_"))
        #expect(token.count == 46)
        #expect(OpaqueToken.isWellFormed(token))
        #expect(!OpaqueToken.isWellFormed("sb_short"))
        #expect(OpaqueToken.generate() != token)
        #expect(OpaqueToken.hash(token).count == 32)
        #expect(OpaqueToken.generateID().hasPrefix("tok_"))
    }

    // MARK: JWT

    func verify(_ token: String, at date: Date? = nil, leeway: Double = 0) throws(AuthError) -> (subject: String?, permissions: Permissions) {
        try JWTVerifier(secret: secret, leewaySeconds: leeway).verify(token, now: date ?? now)
    }

    func reason(_ body: () throws -> Void) -> AuthError.Reason? {
        do {
            try body()
            return nil
        } catch let error as AuthError {
            #expect(!error.message.contains("eyJ"), "no token material in messages")
            return error.reason
        } catch {
            Issue.record("unexpected \(error)")
            return nil
        }
    }

    @Test func jwtRoundTrip() throws {
        let token = JWTVerifier.mint(
            .init(sub: "user-1", exp: now.timeIntervalSince1970 + 60, sub_patterns: ["chat.>"], pub_patterns: ["chat.user-1"], admin: true),
            secret: secret
        )
        let (subject, permissions) = try verify(token)
        #expect(subject == "user-1")
        #expect(permissions.subscribe == patterns("chat.>"))
        #expect(permissions.publish == patterns("chat.user-1"))
        #expect(permissions.admin)
        #expect(permissions.expiresAt == Date(timeIntervalSince1970: now.timeIntervalSince1970 + 60))
    }

    /// A token signed by jwt.io-style tooling (HS256, secret "your-256-bit-secret"): the
    /// standard example with an exp claim added, computed independently of `mint`.
    @Test func jwtKnownVector() throws {
        let key = Array("your-256-bit-secret".utf8)
        let header = Base64URL.encode(Array(#"{"alg":"HS256","typ":"JWT"}"#.utf8))
        #expect(header == "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9")
        let payload = Base64URL.encode(Array(#"{"sub":"1234567890","name":"John Doe","iat":1516239022}"#.utf8))
        let signature = Base64URL.encode(TokenCrypto.hmacSHA256(key: key, data: Array((header + "." + payload).utf8)))
        #expect(signature == "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
        let verifier = JWTVerifier(secret: key, requireExpiry: false)
        #expect(try verifier.verify(header + "." + payload + "." + signature, now: now).subject == "1234567890")
    }

    @Test func jwtRejections() {
        let exp = now.timeIntervalSince1970 + 60
        let good = JWTVerifier.mint(.init(sub: "u", exp: exp), secret: secret)
        let parts = good.split(separator: ".").map(String.init)

        #expect(reason { _ = try verify(JWTVerifier.mint(.init(sub: "u", exp: exp), secret: Array("other".utf8))) } == .badSignature)
        #expect(reason { _ = try verify(good, at: Date(timeIntervalSince1970: exp)) } == .expired)
        #expect(reason { _ = try verify(good, at: Date(timeIntervalSince1970: exp + 5), leeway: 10) } == nil)
        #expect(reason { _ = try verify(JWTVerifier.mint(.init(sub: "u"), secret: secret)) } == .malformed, "no exp")
        #expect(reason { _ = try verify(JWTVerifier.mint(.init(sub: "u", exp: exp, nbf: exp - 10), secret: secret)) } == .notYetValid)
        #expect(reason { _ = try verify(parts[0] + "." + parts[1]) } == .malformed)
        #expect(reason { _ = try verify(parts[0] + "." + parts[1] + ".") } == .badSignature)
        #expect(reason { _ = try verify("a.b.c") } == .malformed)
        // Tampered claims.
        let tampered = Base64URL.encode(Array(#"{"sub":"admin","exp":9999999999,"admin":true}"#.utf8))
        #expect(reason { _ = try verify(parts[0] + "." + tampered + "." + parts[2]) } == .badSignature)
        // alg none (unsigned) and other algorithms are refused even with a "valid" signature.
        for alg in ["none", "HS512", "RS256", "hs256"] {
            let header = Base64URL.encode(Array(#"{"alg":"\#(alg)","typ":"JWT"}"#.utf8))
            let signature = Base64URL.encode(TokenCrypto.hmacSHA256(key: secret, data: Array((header + "." + parts[1]).utf8)))
            #expect(reason { _ = try verify(header + "." + parts[1] + "." + signature) } == .badSignature, "\(alg)")
            #expect(reason { _ = try verify(header + "." + parts[1] + ".") } == .badSignature, "\(alg) unsigned")
        }
        // Invalid pattern in a claim.
        #expect(reason { _ = try verify(JWTVerifier.mint(.init(sub: "u", exp: exp, sub_patterns: ["a..b"]), secret: secret)) } == .malformed)
    }

    // MARK: Token store (real SQLite files)

    /// An expiry past what Int64 milliseconds hold (`token create --expires-in` of a huge
    /// number) is stored clamped, not trapped on.
    @Test func farExpiryIsClamped() throws {
        let dir = TempDirectory()
        let tokens = try TokenStore(store: Store(path: dir.path("switchboard.db")))
        let far = Date(timeIntervalSince1970: 1e300)
        let (token, _) = try tokens.create(name: "far", permissions: Permissions(expiresAt: far), now: now)
        let found = try #require(tokens.lookup(token: token))
        #expect(found.permissions.isExpired(at: now) == false)
        #expect(TokenStore.milliseconds(far) == .max)
        #expect(TokenStore.milliseconds(Date(timeIntervalSince1970: -1e300)) == .min)
        #expect(TokenStore.milliseconds(Date(timeIntervalSince1970: 1.5)) == 1500)
    }

    @Test func createLookupListRevoke() throws {
        let dir = TempDirectory()
        let store = try Store(path: dir.path("switchboard.db"))
        let tokens = try TokenStore(store: store)
        let permissions = Permissions(subscribe: patterns("chat.>"), publish: patterns("chat.*"), admin: false, expiresAt: now.addingTimeInterval(3600))
        let (token, record) = try tokens.create(name: "dashboard", permissions: permissions, now: now)
        let (token2, _) = try tokens.create(name: "backend", permissions: .all, now: now.addingTimeInterval(1))

        #expect(tokens.lookup(token: token)?.id == record.id)
        #expect(tokens.lookup(token: OpaqueToken.generate()) == nil)
        #expect(tokens.list().map(\.name) == ["dashboard", "backend"])

        // Only the hash is stored: the token string appears nowhere in the database file.
        let raw = try store.withConnection { (c) throws(StoreError) -> [UInt8] in
            let s = try c.prepare("SELECT hash FROM tokens WHERE id = ?")
            try s.bind(record.id, at: 1)
            _ = try s.step()
            return s.blob(0)
        }
        #expect(raw == TokenCrypto.sha256(Array(token.utf8)))
        let fileBytes = try Data(contentsOf: URL(fileURLWithPath: dir.path("switchboard.db")))
            + ((try? Data(contentsOf: URL(fileURLWithPath: dir.path("switchboard.db-wal")))) ?? Data())
        #expect(fileBytes.range(of: Data(token.utf8)) == nil)
        #expect(fileBytes.range(of: Data(token2.utf8)) == nil)

        // Revocation: durable, observed, idempotent.
        let observed = NIOLockedValueBox<[String]>([])
        tokens.onRevoke { record in observed.withLockedValue { $0.append(record.id) } }
        #expect(try tokens.revoke(id: record.id, now: now)?.isRevoked == true)
        #expect(try tokens.revoke(id: record.id, now: now.addingTimeInterval(5))?.revokedAt == now)
        #expect(try tokens.revoke(id: "tok_nope") == nil)
        #expect(observed.withLockedValue { $0 } == [record.id])
        #expect(tokens.list(includeRevoked: false).map(\.name) == ["backend"])

        // A second process (or a restart) sees the same state.
        let reopened = try TokenStore(store: try Store(path: dir.path("switchboard.db")))
        let again = try #require(reopened.lookup(token: token))
        #expect(again.isRevoked)
        #expect(again.permissions == permissions)
        #expect(again.createdAt == now)
        #expect(reopened.lookup(token: token2)?.permissions.admin == true)
    }

    // MARK: Authenticator

    @Test func authenticatorOutcomes() throws {
        let dir = TempDirectory()
        let tokens = try TokenStore(store: try Store(path: dir.path("db.sqlite")))
        let (active, activeRecord) = try tokens.create(name: "a", permissions: Permissions(subscribe: patterns("x.>")), now: now)
        let (expired, _) = try tokens.create(name: "b", permissions: Permissions(expiresAt: now), now: now)
        let (revoked, revokedRecord) = try tokens.create(name: "c", permissions: Permissions(), now: now)
        try tokens.revoke(id: revokedRecord.id)

        let auth = Authenticator(tokens: tokens, jwt: JWTVerifier(secret: secret))
        func reason(_ token: String?) -> AuthError.Reason? {
            do {
                _ = try auth.authenticate(token, now: now)
                return nil
            } catch {
                if let token { #expect(!error.message.contains(token)) }
                #expect(error.httpStatus == 401)
                return error.reason
            }
        }
        let principal = try auth.authenticate(active, now: now)
        #expect(principal.tokenID == activeRecord.id)
        #expect(principal.logLabel == "token:\(activeRecord.id)")
        #expect(principal.canSubscribe(try TopicPattern("x.y")))
        #expect(reason(nil) == .missing)
        #expect(reason("") == .missing)
        #expect(reason(expired) == .expired)
        #expect(reason(revoked) == .revoked)
        #expect(reason(OpaqueToken.generate()) == .unknown)
        #expect(reason("sb_garbage") == .malformed)
        #expect(reason("hello") == .malformed)
        #expect(reason(JWTVerifier.mint(.init(sub: "u", exp: now.timeIntervalSince1970 - 1), secret: secret)) == .expired)
        #expect(reason(JWTVerifier.mint(.init(sub: "u", exp: now.timeIntervalSince1970 + 1), secret: [1])) == .badSignature)

        let jwtPrincipal = try auth.authenticate(
            JWTVerifier.mint(.init(sub: "app-user", exp: now.timeIntervalSince1970 + 1, pub_patterns: ["a.b"]), secret: secret), now: now
        )
        #expect(jwtPrincipal.kind == .jwt(subject: "app-user"))
        #expect(jwtPrincipal.canPublish(try Topic("a.b")))
        #expect(jwtPrincipal.isExpired(at: now.addingTimeInterval(2)))

        let noJWT = Authenticator(tokens: tokens)
        #expect(throws: AuthError.self) { try noJWT.authenticate(JWTVerifier.mint(.init(exp: 1e10), secret: secret)) }

        let anonymous = Authenticator(tokens: nil, anonymous: Permissions(subscribe: patterns("public.>")))
        let anon = try anonymous.authenticate(nil)
        #expect(anon.kind == .anonymous)
        #expect(anon.canSubscribe(try TopicPattern("public.news")))
        #expect(!anon.canPublish(try Topic("public.news")))
    }

    @Test func presentedToken() throws {
        #expect(try Authenticator.presentedToken(authorization: "Bearer abc.def", query: "token=zzz") == "abc.def")
        #expect(try Authenticator.presentedToken(authorization: "bearer   sb_x ", query: nil) == "sb_x")
        #expect(try Authenticator.presentedToken(authorization: nil, query: "a=1&token=sb_%41b&c") == "sb_Ab")
        #expect(try Authenticator.presentedToken(authorization: nil, query: "a=1") == nil)
        #expect(try Authenticator.presentedToken(authorization: nil, query: nil) == nil)
        #expect(throws: AuthError.self) { try Authenticator.presentedToken(authorization: "Basic dXNlcg==", query: nil) }
        #expect(throws: AuthError.self) { try Authenticator.presentedToken(authorization: "Bearer", query: nil) }
        // The query follows URLQuery's rules: the first `token` wins, a `%` that starts no
        // escape stays (and `authenticate` refuses what it gives as malformed).
        #expect(try Authenticator.presentedToken(authorization: nil, query: "=&token=sb_a&token=sb_b") == "sb_a")
        #expect(try Authenticator.presentedToken(authorization: nil, query: "token=%zz") == "%zz")
        #expect(try Authenticator.presentedToken(authorization: nil, query: "token=") == nil)
        #expect(throws: AuthError(.malformed, "the token is neither an access token (sb_…) nor a JWT")) {
            try Authenticator(tokens: nil).authenticate("%zz")
        }
    }
}
