import AsyncTestSupport
import BrokerProcess
import CSQLite
import Foundation
import NIOConcurrencyHelpers
import Testing
import WebSockets

@_spi(Fuzzing) @testable import Switchboard

/// `switchboard serve` and `switchboard token` as real processes, in a temporary working
/// directory, as an operator runs them.
@Suite struct ServeProcessTests {
    @Test func firstStartCreatesStoreAndAdminTokenAndSIGTERMClosesClients() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let serve = try SwitchboardProcess.start(["serve", "--port", "0", "--host", "127.0.0.1"], in: directory)
        defer { serve.kill() }
        let port = try await serve.listeningPort()
        let stdout = serve.stdout.text
        let tokenLines = stdout.split(separator: "\n").filter { $0.hasPrefix("sb_") }
        #expect(tokenLines.count == 1, "the admin token is printed once: \(stdout)")
        let token = String(try #require(tokenLines.first))
        #expect(stdout.contains("created admin token tok_"))

        let database = directory.appendingPathComponent("switchboard.db").path
        let tokenFile = database + ".admin-token"
        #expect(FileManager.default.fileExists(atPath: database))
        let attributes = try FileManager.default.attributesOfItem(atPath: tokenFile)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        #expect(try String(contentsOfFile: tokenFile, encoding: .utf8) == token + "\n")
        #expect(try Self.userVersion(database) == Migration.bundled.count)

        // The admin token can do everything.
        let admin = try await Client.connect(port: port, token: token)
        try await admin.subscribe(">")
        #expect(try await admin.publish("any.topic", "1") == 1)
        _ = try await admin.next()

        // SIGTERM: the client gets 1001, the process exits 0.
        serve.terminate()
        let info = try await admin.waitForClose()
        #expect(info.code == .goingAway, "\(info)")
        #expect(try await serve.exitStatus() == 0, "stderr: \(serve.stderr.text)")

        // A second start keeps the store and prints no new token.
        let again = try SwitchboardProcess.start(["serve", "--port", "0", "--host", "127.0.0.1"], in: directory)
        defer { again.kill() }
        let port2 = try await again.listeningPort()
        #expect(!again.stdout.text.contains("sb_"))
        let admin2 = try await Client.connect(port: port2, token: token)
        try await admin2.subscribe(">")
        again.terminate()
        #expect(try await admin2.waitForClose().code == .goingAway)
        #expect(try await again.exitStatus() == 0)
    }

    /// A supervisor may stop the broker as soon as it says it listens: SIGTERM is handled by
    /// then (a drain and exit 0, not death by the signal). Several starts, as the window was small.
    @Test func sigtermRightAfterTheListeningLineExits0() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        for _ in 0..<5 {
            let serve = try SwitchboardProcess.start(["serve", "--port", "0", "--host", "127.0.0.1"], in: directory)
            defer { serve.kill() }
            _ = try await serve.stdout.wait(for: "the listening line") { $0.contains("switchboard listening on") ? true : nil }
            serve.terminate()
            #expect(try await serve.exitStatus() == 0, "stderr: \(serve.stderr.text)")
        }
    }

    @Test func tokenCommandsAgainstARunningBroker() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let database = directory.appendingPathComponent("store.db").path
        let serve = try SwitchboardProcess.start(
            ["serve", "--port", "0", "--host", "127.0.0.1", "--database", database], in: directory)
        defer { serve.kill() }
        let port = try await serve.listeningPort()

        let create = try SwitchboardProcess.start(
            ["token", "create", "--database", database, "--name", "x", "--subscribe", "a.>"], in: directory)
        #expect(try await create.exitStatus() == 0, "\(create.stderr.text)")
        let token = create.stdout.text.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(token.hasPrefix("sb_") && !token.contains("\n"), "\(create.stdout.text)")
        let id = try #require(create.stderr.text.split(separator: " ").first { $0.hasPrefix("tok_") }.map(String.init))

        // Usable at once against the running broker (its own process, same file).
        let client = try await Client.connect(port: port, token: token)
        try await client.subscribe("a.b")
        #expect(try await client.request(#"{"op":"sub","topic":"b"}"#)["code"] == "forbidden")

        let list = try SwitchboardProcess.start(["token", "list", "--database", database], in: directory)
        #expect(try await list.exitStatus() == 0)
        let row = list.stdout.text.split(separator: "\n").first { $0.hasPrefix(id) }?.split(separator: " ")
        #expect(row == [Substring(id), "x", "active", "a.>", "no"], "\(list.stdout.text)")
        #expect(!list.stdout.text.contains("sb_"), "list never shows secrets")

        // Revoking from another process closes the live connection with 4001 within ~1.5 s
        // of the revocation (counted from the revoking process's exit: its start-up is not
        // the broker's business).
        let revoke = try SwitchboardProcess.start(["token", "revoke", "--database", database, id], in: directory)
        #expect(try await revoke.exitStatus() == 0, "\(revoke.stderr.text)")
        #expect(revoke.stdout.text == "revoked \(id)\n")
        let info = try await client.waitForClose(timeout: .seconds(5))
        #expect(info.code == Broker.CloseCodes.tokenRevoked, "\(info)")
        let revokedAt = try #require(revoke.exitedAt.withLockedValue { $0 })
        let closedAt = try #require(client.closedAt.withLockedValue { $0 })
        #expect(closedAt - revokedAt < .milliseconds(1500), "closed \(closedAt - revokedAt) after the revocation")
        let refused = try await Client.refusal(port: port, token: token)
        #expect(refused.status == 401 && refused.body.contains("revoked"), "\(refused)")

        let unknown = try SwitchboardProcess.start(["token", "revoke", "--database", database, "tok_nope"], in: directory)
        #expect(try await unknown.exitStatus() != 0)
        #expect(unknown.stderr.text.contains("tok_nope"))

        serve.terminate()
        #expect(try await serve.exitStatus() == 0)
    }

    @Test func badOptionsExit64NamingTheProblem() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = directory.appendingPathComponent("bad.json")
        try Data(#"{"port": 0, "colour": "blue"}"#.utf8).write(to: config)
        let cases: [(args: [String], environment: [String: String], mentions: [String])] = [
            (["serve", "--port", "abc"], [:], ["port", "abc"]),
            (["serve", "--config", config.path], [:], ["colour", config.path]),
            (["serve", "--port", "0"], ["SWITCHBOARD_MAX_PAYLOAD": "lots"], ["SWITCHBOARD_MAX_PAYLOAD", "max_payload"]),
            (["serve", "--port", "0", "--slow-consumer", "maybe"], [:], ["slow_consumer", "maybe"]),
            (["serve", "--port", "0", "--anonymous-subscribe", "a.>.b"], [:], ["anonymous_subscribe", "a.>.b"]),
            (["serve", "--port", "0", "--max-topics", "0"], [:], ["max_topics", "--max-topics"]),
            (["serve", "--port", "0", "--request-rate", "fast"], [:], ["request_rate", "fast"]),
            (["serve", "--port", "0", "--topic-idle-seconds", "0"], [:], ["topic_idle_seconds", "--topic-idle-seconds"]),
            (
                ["serve", "--port", "0"], ["SWITCHBOARD_MAX_CONNECTIONS_PER_TOKEN": "0"],
                ["SWITCHBOARD_MAX_CONNECTIONS_PER_TOKEN", "max_connections_per_token"]
            ),
            (["serve", "--bogus"], [:], ["bogus"]),
            (["token", "create", "--name", "x", "--subscribe", "a*"], [:], ["--subscribe", "a*"]),
        ]
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (args, environment, mentions) in cases {
                group.addTask {
                    let process = try SwitchboardProcess.start(args, in: directory, environment: environment)
                    defer { process.kill() }
                    let status = try await process.exitStatus()
                    #expect(status == 64, "\(args) \(environment): exit \(status), stderr: \(process.stderr.text)")
                    for mention in mentions {
                        #expect(process.stderr.text.contains(mention), "\(args): \(process.stderr.text)")
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(!FileManager.default.fileExists(atPath: directory.appendingPathComponent("switchboard.db").path))
    }

    @Test func unopenableStoreExits69() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let process = try SwitchboardProcess.start(
            ["serve", "--port", "0", "--database", directory.appendingPathComponent("missing/dir/x.db").path],
            in: directory)
        defer { process.kill() }
        #expect(try await process.exitStatus() == 69)
        #expect(process.stderr.text.contains("missing/dir/x.db"), "\(process.stderr.text)")
    }

    /// `PRAGMA user_version`, read without applying migrations.
    static func userVersion(_ path: String) throws -> Int {
        var db: OpaquePointer?
        guard sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, nil) == SQLITE_OK else {
            sqlite3_close(db)
            throw TestFailure("cannot open \(path)")
        }
        defer { sqlite3_close(db) }
        var statement: OpaquePointer?
        guard sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &statement, nil) == SQLITE_OK else {
            throw TestFailure("cannot prepare")
        }
        defer { sqlite3_finalize(statement) }
        guard sqlite3_step(statement) == SQLITE_ROW else { throw TestFailure("no row") }
        return Int(sqlite3_column_int64(statement, 0))
    }
}
