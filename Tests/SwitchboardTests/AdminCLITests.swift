import AsyncTestSupport
import BrokerProcess
import Foundation
import Testing
import WebSockets

@_spi(Fuzzing) @testable import Switchboard

/// The admin commands as subprocesses against `switchboard serve` running as a process, as
/// an operator uses them: through the admin API, with the token file beside the store.
@Suite struct AdminCLITests {
    /// A running `serve` in a temporary directory, its port and admin token.
    struct Server {
        let process: SwitchboardProcess
        let directory: URL
        let port: Int
        let token: String
        var url: String { "http://127.0.0.1:\(port)" }

        /// `directory`: the files of an earlier server (a restart), else a new temporary one.
        static func start(environment: [String: String] = [:], in directory: URL? = nil) async throws -> Server {
            let directory = try directory ?? makeTemporaryDirectory()
            let process = try SwitchboardProcess.start(
                ["serve", "--port", "0", "--host", "127.0.0.1"], in: directory, environment: environment)
            let port = try await process.listeningPort()
            let token = try String(contentsOf: directory.appendingPathComponent("switchboard.db.admin-token"), encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            return Server(process: process, directory: directory, port: port, token: token)
        }

        /// Runs `switchboard ARGS` in the server's directory (so the token file is found),
        /// with SWITCHBOARD_URL set; returns its exit status, stdout and stderr.
        func run(_ arguments: [String], environment: [String: String] = [:]) async throws -> (Int32, String, String) {
            var env = ["SWITCHBOARD_URL": url]
            env.merge(environment) { _, new in new }
            let child = try SwitchboardProcess.start(arguments, in: directory, environment: env)
            let status = try await child.exitStatus()
            return (status, child.stdout.text, child.stderr.text)
        }

        func stop() {
            process.kill()
            try? FileManager.default.removeItem(at: directory)
        }
    }

    @Test func tokenCreatedThroughTheCLIWorksAndItsRevocationCloses4001() async throws {
        let server = try await Server.start()
        defer { server.stop() }
        let (status, stdout, stderr) = try await server.run(["token", "create", "--name", "app", "--subscribe", "app.>"])
        #expect(status == 0, "\(stderr)")
        let token = stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(token.hasPrefix("sb_"))
        let id = try #require(stderr.split(separator: " ").first { $0.hasPrefix("tok_") }.map(String.init))

        let client = try await Client.connect(port: server.port, token: token)
        try await client.subscribe("app.x")
        let (listed, table, _) = try await server.run(["token", "list"])
        #expect(listed == 0 && table.contains(id) && !table.contains(token), "\(table)")
        let (shown, json, _) = try await server.run(["token", "show", id, "--json"])
        let record = try JSON(json)
        #expect(shown == 0 && record["state"] == "active", "\(json)")

        let (revoked, _, revokeErr) = try await server.run(["token", "revoke", id])
        #expect(revoked == 0, "\(revokeErr)")
        #expect(try await client.waitForClose(timeout: .seconds(1)).code.rawValue == 4001)
        let (missing, _, missingErr) = try await server.run(["token", "revoke", "tok_nope"])
        #expect(missing == 65 && missingErr.hasPrefix("switchboard: ") && missingErr.split(separator: "\n").count == 1, "\(missingErr)")
    }

    /// Without --server, the token commands use the API of the broker serving the store,
    /// found through `<database>.admin-url`; once no broker answers there they open the store.
    @Test func tokenCommandsGoThroughTheBrokerServingTheStoreElseTheFile() async throws {
        let server = try await Server.start()
        defer { server.stop() }
        let files = { (directory: URL, suffix: String) in directory.appendingPathComponent("switchboard.db" + suffix) }
        // The broker's address and admin token files but no store: a token created here
        // reaches the broker only through its API (opening the store would make a new one).
        let elsewhere = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: elsewhere) }
        for suffix in [".admin-url", ".admin-token"] {
            try FileManager.default.copyItem(at: files(server.directory, suffix), to: files(elsewhere, suffix))
        }
        let create = try SwitchboardProcess.start(["token", "create", "--name", "via-api", "--subscribe", "x.>"], in: elsewhere)
        #expect(try await create.exitStatus() == 0, "\(create.stderr.text)")
        #expect(!FileManager.default.fileExists(atPath: files(elsewhere, "").path), "no store opened")
        let client = try await Client.connect(port: server.port, token: create.stdout.text.trimmingCharacters(in: .whitespacesAndNewlines))
        try await client.subscribe("x.y")

        // Killed, the broker leaves its address file behind; nothing answers there any more.
        server.process.kill()
        _ = try await server.process.exitStatus()
        #expect(FileManager.default.fileExists(atPath: files(server.directory, ".admin-url").path))
        let list = try SwitchboardProcess.start(["token", "list"], in: server.directory)
        #expect(try await list.exitStatus() == 0, "\(list.stderr.text)")
        #expect(list.stdout.text.contains("via-api"), "\(list.stdout.text)")

        // A broker that stops cleanly removes its address file.
        let again = try await Server.start(in: server.directory)
        #expect(FileManager.default.fileExists(atPath: files(server.directory, ".admin-url").path))
        again.process.terminate()
        #expect(try await again.process.exitStatus() == 0)
        #expect(!FileManager.default.fileExists(atPath: files(server.directory, ".admin-url").path))
    }

    /// Without --server or SWITCHBOARD_URL, the other admin commands too reach the broker
    /// serving the store (here on a free port, not 8080) through `<database>.admin-url`.
    @Test func adminCommandsWithoutAServerReachTheBrokerServingTheStore() async throws {
        let server = try await Server.start()
        defer { server.stop() }
        let client = try await Client.connect(port: server.port, token: server.token)
        #expect(try await client.publish("found.here", "1") == 1)

        let stats = try SwitchboardProcess.start(["stats", "--json"], in: server.directory)
        try #require(try await stats.exitStatus() == 0, "\(stats.stderr.text)")
        #expect(try JSON(stats.stdout.text).int("messages_in") == 1, "\(stats.stdout.text)")

        let elsewhere = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: elsewhere) }
        let database = server.directory.appendingPathComponent("switchboard.db").path
        let topics = try SwitchboardProcess.start(["topic", "list", "--database", database], in: elsewhere)
        #expect(try await topics.exitStatus() == 0, "\(topics.stderr.text)")
        #expect(topics.stdout.text.contains("found.here"), "\(topics.stdout.text)")
    }

    @Test func publishThroughTheAPIIsReceivedOnceWithAnIdempotencyKey() async throws {
        let server = try await Server.start()
        defer { server.stop() }
        let client = try await Client.connect(port: server.port, token: server.token)
        try await client.subscribe("orders.*")
        let body = #"{"topic":"orders.1","data":{"id":1},"idempotency_key":"order-1"}"#
        let first = try await httpExchange(port: server.port, "POST", "/admin/v1/publish", token: server.token, body: body)
        let second = try await httpExchange(port: server.port, "POST", "/admin/v1/publish", token: server.token, body: body)
        #expect(first.status == 200 && first.json.int("seq") == 1 && second.json.int("seq") == 1, "\(first) \(second)")
        let message = try await client.nextJSON()
        #expect(message["topic"] == "orders.1" && message.int("seq") == 1)
        try await client.expectNothingPending()

        let (status, stats, _) = try await server.run(["stats", "--json"])
        let info = try JSON(stats)
        #expect(status == 0 && info.int("messages_in") == 1 && info.int("messages_out") == 1, "\(stats)")
        let (listed, topics, _) = try await server.run(["topic", "list", "orders.>"])
        #expect(listed == 0 && topics.contains("orders.1"), "\(topics)")
        let (connections, table, _) = try await server.run(["connections"])
        #expect(connections == 0 && table.contains("orders.*"), "\(table)")
    }

    /// `stats --watch` refreshes (here twice, bounded by `--count`), the later views with
    /// rates; `connections --close ID` closes that client with 4003.
    @Test func statsWatchRefreshesAndConnectionsCloseClosesOne() async throws {
        let server = try await Server.start()
        defer { server.stop() }
        let client = try await Client.connect(port: server.port, token: server.token)
        try await client.subscribe("watched.*")

        let (watched, frames, watchErr) = try await server.run(["stats", "--watch", "--interval", "0.1", "--count", "2"])
        #expect(watched == 0, "\(watchErr)")
        let views = frames.components(separatedBy: "status ").dropFirst()
        #expect(views.count == 2, "\(frames)")
        #expect(views.first.map { !$0.contains("/s") } == true && views.last?.contains("messages in") == true, "\(frames)")
        #expect(views.last?.contains("/s") == true, "the second view has rates: \(frames)")
        let (samples, json, _) = try await server.run(["stats", "--watch", "--interval", "0.1", "--count", "3", "--json"])
        #expect(samples == 0 && json.components(separatedBy: "\"uptime_seconds\"").count == 4, "\(json)")
        let (refused, _, refusedErr) = try await server.run(["stats", "--count", "2"])
        #expect(refused == 64 && refusedErr.contains("--watch"), "\(refusedErr)")

        /// The ids `connections --json` lists.
        func connectionIDs() async throws -> [String] {
            let (status, list, stderr) = try await server.run(["connections", "--json"])
            let object = try JSONSerialization.jsonObject(with: Data(list.utf8)) as? [String: Any]
            let connections = try #require(object?["connections"] as? [[String: Any]], "\(status) \(list) \(stderr)")
            return connections.compactMap { $0["id"].map { "\($0)" } }
        }
        let ids = try await connectionIDs()
        #expect(ids.count == 1, "\(ids)")
        let id = try #require(ids.first)
        let (closed, closeOut, closeErr) = try await server.run(["connections", "--close", id])
        #expect(closed == 0 && closeOut == "closed connection \(id)\n", "\(closeOut) \(closeErr)")
        #expect(try await client.waitForClose(timeout: .seconds(2)).code.rawValue == 4003)
        try await eventually("no connection left") { try await connectionIDs().isEmpty }
    }

    @Test func purgeThroughTheCLIThenAResumeShowsTheGap() async throws {
        let server = try await Server.start(environment: ["SWITCHBOARD_REPLAY_RETAIN": "chat.> count=100"])
        defer { server.stop() }
        let publisher = try await Client.connect(port: server.port, token: server.token)
        for n in 1...3 { try await publisher.publish("chat.a", "\(n)") }
        let (history, lines, _) = try await server.run(["topic", "history", "chat.a", "--last", "2"])
        #expect(history == 0 && lines.split(separator: "\n").map { $0.prefix(1) } == ["2", "3"], "\(lines)")
        let (purged, out, err) = try await server.run(["topic", "purge", "chat.a"])
        #expect(purged == 0 && out.contains("purged 3"), "\(out) \(err)")
        try await publisher.publish("chat.a", "4")
        let resumer = try await Client.connect(port: server.port, token: server.token)
        _ = try await resumer.request(#"{"op":"sub","topic":"chat.a","since":1}"#)
        let gap = try await resumer.nextJSON()
        #expect(gap["op"] == "gap" && gap.int("from") == 2 && gap.int("to") == 3, "\(gap)")
        #expect(try await resumer.nextJSON().int("seq") == 4)
        let (rules, text, _) = try await server.run(["retention", "show"])
        #expect(rules == 0 && text.contains("chat.> count=100"), "\(text)")
    }

    @Test func retentionSetThroughTheCLIOutlastsARestartAndABadRuleExits64() async throws {
        let environment = ["SWITCHBOARD_REPLAY_RETAIN": "other.>"]
        let server = try await Server.start(environment: environment)
        var restarted: Server?
        defer {
            server.stop()
            restarted?.stop()
        }
        let (set, out, err) = try await server.run(["retention", "set", "chat.> count=3", "audit.>"])
        #expect(set == 0 && out.contains("chat.> count=3\naudit.>\n") && out.contains("set at run time"), "\(out) \(err)")
        let publisher = try await Client.connect(port: server.port, token: server.token)
        for n in 1...4 { #expect(try await publisher.publish("chat.a", "\(n)") == n) }
        let (bad, badOut, badErr) = try await server.run(["retention", "set", "chat.> count=3, orders* age=1h"])
        #expect(bad == 64 && badOut.isEmpty && badErr.split(separator: "\n").count == 1 && badErr.contains("orders*"), "\(badErr)")
        let (empty, _, emptyErr) = try await server.run(["retention", "set"])
        #expect(empty == 64 && emptyErr.contains("--none"), "\(emptyErr)")

        server.process.terminate()
        #expect(try await server.process.exitStatus() == 0)
        restarted = try await Server.start(environment: environment, in: server.directory)
        let again = try #require(restarted)
        let (shown, json, _) = try await again.run(["retention", "show", "--json"])
        let answer = try JSON(json)
        #expect(shown == 0 && answer["source"] == "store" && json.contains("chat.> count=3") && !json.contains("other.>"), "\(json)")
        let (history, lines, _) = try await again.run(["topic", "history", "chat.a"])
        #expect(history == 0 && lines.split(separator: "\n").map { $0.prefix(1) } == ["2", "3", "4"], "\(lines)")
        let (cleared, clearedOut, _) = try await again.run(["retention", "set", "--none", "--json"])
        let clearedAnswer = try JSON(clearedOut)
        #expect(cleared == 0 && clearedAnswer["source"] == "store" && clearedOut.contains(#""rules" : ["#), "\(clearedOut)")
    }

    @Test func failuresPrintOneLineAndADocumentedExitStatus() async throws {
        let server = try await Server.start()
        defer { server.stop() }
        let cases: [([String], [String: String], Int32)] = [
            (["topic", "show", "never.published"], [:], 65),
            (["stats", "--server", "http://127.0.0.1:1"], [:], 69),
            (["stats", "--token", "sb_" + String(repeating: "A", count: 43)], [:], 77),
            (["stats"], ["SWITCHBOARD_ADMIN_TOKEN": "nonsense"], 77),
            (["topic", "list", "a..b"], [:], 64),
            (["topic", "history", "x", "--last", "0"], [:], 64),
            (["connections", "--close", "999999"], [:], 65),
            (["stats", "--server", "ftp://x"], [:], 64),
        ]
        for (arguments, environment, expected) in cases {
            let (status, _, stderr) = try await server.run(arguments, environment: environment)
            #expect(status == expected, "\(arguments): \(status) \(stderr)")
            #expect(!stderr.contains("Fatal") && !stderr.contains("Stack"), "\(arguments): \(stderr)")
        }
        let (status, _, stderr) = try await server.run(["topic", "show", "never.published"])
        #expect(status == 65 && stderr.split(separator: "\n").count == 1, "\(stderr)")
    }
}
