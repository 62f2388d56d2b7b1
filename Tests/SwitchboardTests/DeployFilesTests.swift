import AsyncTestSupport
import BrokerProcess
import CSQLite
import Foundation
import NIOConcurrencyHelpers
import TestPeers
import Testing
import WebSockets

@_spi(Fuzzing) @testable import Switchboard

/// deploy/: the systemd unit and the Dockerfile checked with the tools where the machine has
/// them; `switchboard backup` under load; X-Forwarded-For only from trusted proxies.
@Suite struct DeployFilesTests {
    static let deploy = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("deploy")

    /// Runs `executable arguments`; its exit status and combined output.
    static func run(_ executable: String, _ arguments: [String]) throws -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: output, as: UTF8.self))
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze"), "needs systemd-analyze"))
    func systemdUnitVerifies() throws {
        let unit = try String(contentsOf: Self.deploy.appendingPathComponent("switchboard.service"), encoding: .utf8)
        for setting in ["User=switchboard", "StateDirectory=switchboard", "LimitNOFILE=", "ProtectSystem=strict", "KillSignal=SIGTERM"] {
            #expect(unit.contains(setting), "\(setting)")
        }
        // verify checks that ExecStart's program exists: point it at the built one.
        let binary = try #require(switchboardExecutable).path
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let copy = directory.appendingPathComponent("switchboard.service")
        try unit.replacingOccurrences(of: "/usr/local/bin/switchboard", with: binary).write(to: copy, atomically: true, encoding: .utf8)
        let (status, output) = try Self.run("/usr/bin/systemd-analyze", ["verify", "--man=no", copy.path])
        #expect(status == 0, "\(output)")
        #expect(!output.contains("switchboard.service:"), "warnings about the unit: \(output)")
    }

    @Test func dockerfileIsMultiStageNonRootWithAVolumeAndAHealthCheck() throws {
        let dockerfile = try String(contentsOf: Self.deploy.appendingPathComponent("Dockerfile"), encoding: .utf8)
        let instructions = dockerfile.split(separator: "\n").filter { !$0.hasPrefix("#") && !$0.hasPrefix(" ") }
        #expect(instructions.filter { $0.hasPrefix("FROM ") }.count == 2)
        let user = try #require(instructions.last { $0.hasPrefix("USER ") })
        #expect(!user.contains("root") && !user.hasSuffix(" 0"))
        #expect(instructions.contains { $0.hasPrefix("VOLUME ") && $0.contains("/var/lib/switchboard") })
        #expect(dockerfile.contains("HEALTHCHECK") && dockerfile.contains(#""switchboard", "ready""#))
        #expect(instructions.contains("STOPSIGNAL SIGTERM"))
        // `docker build` only where a Docker daemon answers (not on this project's CI machine).
        guard FileManager.default.isExecutableFile(atPath: "/usr/local/bin/docker") || FileManager.default.isExecutableFile(atPath: "/usr/bin/docker"),
            let (status, _) = try? Self.run("/usr/bin/env", ["docker", "info"]), status == 0
        else { return }
        let root = Self.deploy.deletingLastPathComponent().path
        let (built, output) = try Self.run("/usr/bin/env", ["docker", "build", "-f", "\(root)/deploy/Dockerfile", root])
        #expect(built == 0, "\(output.suffix(2000))")
    }

    @Test func nginxExampleUpgradesAndSetsTheForwardedAddress() throws {
        let conf = try String(contentsOf: Self.deploy.appendingPathComponent("nginx.conf"), encoding: .utf8)
        #expect(conf.contains("proxy_set_header Upgrade $http_upgrade") && conf.contains("proxy_set_header Connection $connection_upgrade"))
        #expect(conf.contains("proxy_http_version 1.1") && conf.contains("X-Forwarded-For"))
        #expect(conf.split(separator: "{").count == conf.split(separator: "}").count, "balanced braces")
    }

    @Test func backupUnderPublishingLoadHoldsEveryMessageAckedBeforeIt() async throws {
        try await TestBroker.with({ $0.replay.rules = [try! ReplayRule.parse("load.>").get()] }) { broker in
            let publisher = try await broker.client()
            let acked = ManagedCount()
            let stop = ManagedCount()
            let warmedUp = Waiter<Void>("200 acked publishes")
            // Publishes acked messages one after another until the backup is done (bounded).
            let load = Task {
                for n in 1...20_000 where stop.value == 0 {
                    let seq = try await publisher.publish("load.a", "\(n)")
                    acked.set(seq)
                    if seq == 200 { warmedUp.fulfill(()) }
                }
            }
            try await warmedUp.value()
            let ackedBefore = acked.value
            let copy = broker.directory.appendingPathComponent("backup.db").path
            let backup = try SwitchboardProcess.start(
                ["backup", "--database", broker.databasePath, copy], in: broker.directory)
            #expect(try await backup.exitStatus() == 0, "\(backup.stderr.text)")
            stop.set(1)
            try await load.value
            #expect(acked.value > ackedBefore, "publishing went on during the backup")

            #expect(try Self.count(in: copy, through: ackedBefore) == ackedBefore, "every message acked before the backup")
            let tokens = try TokenStore(store: Store(path: copy))
            #expect(tokens.list().count == broker.tokens.list().count)

            let again = try SwitchboardProcess.start(["backup", "--database", broker.databasePath, copy], in: broker.directory)
            #expect(try await again.exitStatus() == 73)
        }
    }

    /// Messages of `load.a` with seq ≤ `sequence` in the database at `path`.
    static func count(in path: String, through sequence: Int) throws -> Int {
        var db: OpaquePointer?
        guard sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, nil) == SQLITE_OK else { throw TestFailure("cannot open \(path)") }
        defer { sqlite3_close_v2(db) }
        var statement: OpaquePointer?
        sqlite3_prepare_v2(db, "SELECT count(*) FROM replay_messages WHERE topic = 'load.a' AND seq <= ?", -1, &statement, nil)
        defer { sqlite3_finalize(statement) }
        sqlite3_bind_int64(statement, 1, Int64(sequence))
        guard sqlite3_step(statement) == SQLITE_ROW else { throw TestFailure("cannot read \(path)") }
        return Int(sqlite3_column_int64(statement, 0))
    }

    @Test func forwardedForIsBelievedOnlyFromTrustedProxies() async throws {
        for (trusted, expected) in [([String](), "127.0.0.1"), (["127.0.0.1"], "203.0.113.9")] {
            try await TestBroker.with({ $0.trustedProxies = trusted }) { broker in
                let token = try broker.token().token
                let peer = try await RawPeer.upgraded(
                    port: broker.port,
                    extraHeaders: "Authorization: Bearer \(token)\r\nX-Forwarded-For: 198.51.100.1, 203.0.113.9\r\n",
                    group: testGroup)
                defer { peer.close() }
                let listed = try await broker.http("GET", "/admin/v1/connections", token: try broker.adminToken())
                let connections = listed.json.object["connections"] as? [[String: Any]] ?? []
                #expect(connections.map { $0["peer"] as? String } == [expected], "\(listed)")
            }
        }
    }
}

/// A counter shared between a load task and the test.
final class ManagedCount: Sendable {
    private let box = NIOLockedValueBox(0)
    var value: Int { box.withLockedValue { $0 } }
    func set(_ value: Int) { box.withLockedValue { $0 = value } }
}
