import AsyncTestSupport
import Foundation
import Testing
import WebSockets

@_spi(Fuzzing) @testable import Switchboard

/// Tokens at the handshake (opaque, JWT, anonymous), and revocation and expiry closing
/// live connections.
@Suite struct BrokerAuthTests {
    static let secret = "an-HS256-secret-of-at-least-32-bytes!"

    static func jwt(
        sub: String = "user-42", exp: Double = Date().timeIntervalSince1970 + 300,
        subscribe: [String] = ["chat.>"], publish: [String] = ["chat.*"], secret: String = secret
    ) -> String {
        JWTVerifier.mint(
            .init(sub: sub, exp: exp, sub_patterns: subscribe, pub_patterns: publish), secret: Array(secret.utf8))
    }

    /// Expects the handshake to be refused with 401 naming `reason`.
    func expectRefused(
        _ broker: TestBroker, token: String?, query: String = "", reason: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let (status, body) = try await Client.refusal(port: broker.port, token: token, query: query)
        #expect(status == 401, sourceLocation: sourceLocation)
        #expect(body.contains(reason), "\(body)", sourceLocation: sourceLocation)
        #expect(body.hasPrefix("unauthorized: \(reason): "), "\(body)", sourceLocation: sourceLocation)
        #expect(body.hasSuffix("\n") && !body.dropLast().contains("\n"), "one line: \(body)", sourceLocation: sourceLocation)
        if let token, token.count > 8 {
            #expect(!body.contains(token), "the body never repeats the token", sourceLocation: sourceLocation)
        }
    }

    @Test func opaqueTokensAtTheHandshake() async throws {
        try await TestBroker.with { broker in
            try await expectRefused(broker, token: nil, reason: "missing")
            try await expectRefused(broker, token: "sb_" + String(repeating: "A", count: 43), reason: "unknown")
            try await expectRefused(broker, token: "sb_short", reason: "malformed")
            try await expectRefused(broker, token: "garbage", reason: "malformed")
            let expired = try broker.token(expiresAt: Date().addingTimeInterval(-10)).token
            try await expectRefused(broker, token: expired, reason: "expired")
            let (token, record) = try broker.token()
            let client = try await Client.connect(port: broker.port, token: token)
            try await client.subscribe("x")
            await client.close()
            try broker.tokens.revoke(id: record.id)
            try await expectRefused(broker, token: token, reason: "revoked")
            // A JWT where JWTs are not configured.
            try await expectRefused(broker, token: Self.jwt(), reason: "unsupported")
        }
    }

    @Test func tokenInTheQuery() async throws {
        try await TestBroker.with { broker in
            let token = try broker.token(subscribe: ["q.*"]).token
            let client = try await Client.connect(port: broker.port, token: nil, query: "?token=\(token)")
            try await client.subscribe("q.a")
            #expect(try await client.request(#"{"op":"sub","topic":"r"}"#)["code"] == "forbidden")
            await client.close()
            // Among other parameters, percent-encoded.
            let encoded = token.replacingOccurrences(of: "_", with: "%5F")
            let other = try await Client.connect(port: broker.port, token: nil, query: "?a=1&token=\(encoded)&b")
            try await other.subscribe("q.b")
            await other.close()
            try await expectRefused(broker, token: nil, query: "?token=sb_nope", reason: "malformed")
            // Empty names, bad escapes and bad UTF-8 are refused as tokens, never a crash.
            try await expectRefused(broker, token: nil, query: "?=&token=%zz", reason: "malformed")
            try await expectRefused(broker, token: nil, query: "?token=%FF%FE", reason: "malformed")
            try await expectRefused(broker, token: nil, query: "?=", reason: "missing")
            let afterEmpty = try await Client.connect(port: broker.port, token: nil, query: "?=x&&token=\(token)&token=junk")
            try await afterEmpty.subscribe("q.d")
            await afterEmpty.close()
            // The header wins when both are given.
            let both = try await Client.connect(port: broker.port, token: token, query: "?token=garbage")
            try await both.subscribe("q.c")
            await both.close()
        }
    }

    @Test func jwtTokens() async throws {
        try await TestBroker.with({ $0.jwtSecret = Self.secret }) { broker in
            let client = try await Client.connect(port: broker.port, token: Self.jwt())
            try await client.subscribe("chat.>")
            try await client.subscribe("chat.room1")
            #expect(try await client.request(#"{"op":"sub","topic":"user.1"}"#)["code"] == "forbidden")
            #expect(try await client.publish("chat.room1", #""hi""#) == 1)
            #expect(try await client.nextJSON()["topic"] == "chat.room1")
            #expect(try await client.request(#"{"op":"pub","topic":"chat.a.b","data":1}"#)["code"] == "forbidden")
            await client.close()

            // In the query too.
            let query = try await Client.connect(port: broker.port, token: nil, query: "?token=\(Self.jwt())")
            try await query.subscribe("chat.x")
            await query.close()

            try await expectRefused(broker, token: Self.jwt(exp: Date().timeIntervalSince1970 - 10), reason: "expired")
            try await expectRefused(
                broker, token: Self.jwt(secret: "another-secret-of-at-least-32-bytes!!"), reason: "bad_signature")
            // Same claims, signature swapped for another token's.
            let good = Self.jwt().split(separator: ".")
            let other = Self.jwt(sub: "someone-else").split(separator: ".")
            try await expectRefused(broker, token: "\(good[0]).\(good[1]).\(other[2])", reason: "bad_signature")
            // alg none, with and without a signature.
            let none = Base64URL.encode(Array(#"{"alg":"none","typ":"JWT"}"#.utf8))
            try await expectRefused(broker, token: "\(none).\(good[1]).", reason: "bad_signature")
            try await expectRefused(broker, token: "\(none).\(good[1]).\(good[2])", reason: "bad_signature")
            // No exp.
            let noExpiry = JWTVerifier.mint(.init(sub: "x", sub_patterns: [">"]), secret: Array(Self.secret.utf8))
            try await expectRefused(broker, token: noExpiry, reason: "malformed")
        }
    }

    @Test func anonymousAccessWhereConfigured() async throws {
        try await TestBroker.with({ $0.anonymous = .init(subscribe: ["public.>"]) }) { broker in
            let anonymous = try await Client.connect(port: broker.port, token: nil)
            try await anonymous.subscribe("public.x")
            #expect(try await anonymous.request(#"{"op":"sub","topic":"private.x","id":"1"}"#)["code"] == "forbidden")
            #expect(try await anonymous.request(#"{"op":"pub","topic":"public.x","data":1,"id":"2"}"#)["code"] == "forbidden")
            // A bad token is still refused: anonymous access is for clients with no token.
            try await expectRefused(broker, token: OpaqueToken.generate(), reason: "unknown")
            // Messages from a publisher with a token reach the anonymous subscriber.
            let publisher = try await broker.client()
            try await publisher.publish("public.x", "1")
            #expect(try await anonymous.nextJSON()["topic"] == "public.x")
            await anonymous.close()
            await publisher.close()
        }
    }

    // MARK: Revocation and expiry of live connections

    /// Revoking `record` with `revoke` closes the live connection with 4001 within ~1.5 s.
    func expectRevocationCloses(_ broker: TestBroker, revoke: (TokenRecord) throws -> Void) async throws {
        let (token, record) = try broker.token()
        let client = try await Client.connect(port: broker.port, token: token)
        let bystander = try await broker.client()
        try await client.subscribe("a")
        let start = ContinuousClock.now
        try revoke(record)
        let info = try await client.waitForClose(timeout: .seconds(5))
        let elapsed = ContinuousClock.now - start
        #expect(info.code == Broker.CloseCodes.tokenRevoked, "\(info)")
        #expect(elapsed < .milliseconds(1500), "closed after \(elapsed)")
        // Other connections are untouched.
        try await bystander.subscribe("b")
        await bystander.close()
    }

    @Test func revokingInProcessClosesLiveConnection() async throws {
        try await TestBroker.with { broker in
            try await expectRevocationCloses(broker) { record in
                let revoked = try broker.tokens.revoke(id: record.id)
                #expect(revoked?.isRevoked == true)
            }
        }
    }

    @Test func revokingThroughAnotherStoreClosesLiveConnection() async throws {
        try await TestBroker.with { broker in
            try await expectRevocationCloses(broker) { record in
                // As `switchboard token revoke` does: its own connection to the same file.
                let other = try TokenStore(store: Store(path: broker.databasePath))
                let revoked = try other.revoke(id: record.id)
                #expect(revoked?.isRevoked == true)
            }
        }
    }

    @Test func expiryClosesLiveConnections() async throws {
        try await TestBroker.with({ $0.jwtSecret = Self.secret }) { broker in
            let expiry = Date().addingTimeInterval(4)
            let opaque = try await broker.client(token: try broker.token(expiresAt: expiry).token)
            let jwt = try await Client.connect(port: broker.port, token: Self.jwt(exp: expiry.timeIntervalSince1970))
            for client in [opaque, jwt] {
                let info = try await client.waitForClose(timeout: .seconds(5))
                #expect(info.code == Broker.CloseCodes.tokenExpired, "\(info)")
                #expect(Date().timeIntervalSince(expiry) < 1.5)
            }
        }
    }
}
