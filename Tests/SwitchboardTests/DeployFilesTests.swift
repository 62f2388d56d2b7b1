import AsyncTestSupport
import BrokerProcess
import CSQLite
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import TestPeers
import WebSocketCore
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

    static let nginx = "/usr/sbin/nginx"

    /// deploy/nginx.conf as it is, with only the machine's specifics replaced (ports, the
    /// certificate), inside the smallest `nginx.conf` that runs as this user in `directory`.
    static func nginxConfiguration(brokerPort: Int, port: Int, plainPort: Int, directory: URL) throws -> URL {
        var site = try String(contentsOf: deploy.appendingPathComponent("nginx.conf"), encoding: .utf8)
        for (from, to) in [
            ("listen 443 ssl;", "listen 127.0.0.1:\(port) ssl;"), ("listen [::]:443 ssl;", ""),
            ("listen 80;", "listen 127.0.0.1:\(plainPort);"), ("listen [::]:80;", ""),
            ("server 127.0.0.1:8080;", "server 127.0.0.1:\(brokerPort);"),
            ("/etc/letsencrypt/live/broker.example.com/fullchain.pem", TestCertificates.pem("server")),
            ("/etc/letsencrypt/live/broker.example.com/privkey.pem", TestCertificates.key("server")),
        ] {
            #expect(site.contains(from), "deploy/nginx.conf has no \(from)")
            site = site.replacingOccurrences(of: from, with: to)
        }
        let temp = directory.path
        let main = """
            daemon off;
            master_process off;
            pid \(temp)/nginx.pid;
            error_log \(temp)/error.log warn;
            events { worker_connections 64; }
            http {
                access_log off;
                client_body_temp_path \(temp)/body;
                proxy_temp_path \(temp)/proxy;
                fastcgi_temp_path \(temp)/fastcgi;
                uwsgi_temp_path \(temp)/uwsgi;
                scgi_temp_path \(temp)/scgi;
                \(site)
            }
            """
        let file = directory.appendingPathComponent("nginx.conf")
        try main.write(to: file, atomically: true, encoding: .utf8)
        return file
    }

    /// A port nothing listens on now (nginx binds it a moment later).
    static func freePort() async throws -> Int {
        let channel = try await ServerBootstrap(group: testGroup).bind(host: "127.0.0.1", port: 0).get()
        let port = channel.localAddress?.port ?? 0
        try await channel.close()
        return port
    }

    /// deploy/nginx.conf in front of a real broker: `nginx -t` accepts it, a wss:// client
    /// publishes and receives through it, the address the broker sees is the one nginx set
    /// (a client's own X-Forwarded-For is replaced, not believed), and the admin API is
    /// refused to a client outside the operators' network.
    @Test(
        .enabled(if: FileManager.default.isExecutableFile(atPath: nginx), "needs nginx (scripts/setup.sh installs it)"),
        .enabled(if: TestCertificates.available, "needs the openssl CLI"))
    func nginxExampleProxiesWebSocketsOverTLS() async throws {
        try await TestBroker.with({ $0.trustedProxies = ["127.0.0.1"] }) { broker in
            let directory = try makeTemporaryDirectory()
            defer { try? FileManager.default.removeItem(at: directory) }
            let port = try await Self.freePort()
            let plainPort = try await Self.freePort()
            let conf = try Self.nginxConfiguration(
                brokerPort: broker.port, port: port, plainPort: plainPort, directory: directory)
            let (checked, output) = try Self.run(Self.nginx, ["-t", "-q", "-p", directory.path, "-c", conf.path])
            #expect(checked == 0, "nginx -t: \(output)")

            let nginx = Process()
            nginx.executableURL = URL(fileURLWithPath: Self.nginx)
            nginx.arguments = ["-p", directory.path, "-c", conf.path]
            try nginx.run()
            // SIGKILL: the test process may hand its children SIGTERM blocked (signal handling
            // of the service groups that other tests run), and nginx keeps nothing worth a clean stop.
            defer {
                kill(nginx.processIdentifier, SIGKILL)
                nginx.waitUntilExit()
            }

            let tls = TLSConfiguration(caFile: TestCertificates.pem("ca"))
            let url = "wss://localhost:\(port)/"
            let token = try broker.token().token
            let spoofed: HTTPFields = ["X-Forwarded-For": "198.51.100.1"]
            // nginx has no readiness signal but its listening socket: connect until it answers (bounded).
            var subscriber: Client?
            for _ in 0..<200 where subscriber == nil {
                do {
                    subscriber = try await Client.connect(port: port, token: token, url: url, tls: tls, headers: spoofed)
                } catch let error as NIOConnectionError
                    where error.connectionErrors.allSatisfy({ ($0.error as? IOError)?.errnoCode == ECONNREFUSED })
                {
                    #expect(nginx.isRunning, "nginx exited: \(String(describing: try? String(contentsOf: directory.appendingPathComponent("error.log"), encoding: .utf8)))")
                    try await Task.sleep(for: .milliseconds(25))
                }
            }
            let through = try #require(subscriber, "nginx never accepted a connection on port \(port)")
            try await through.subscribe("news")
            let publisher = try await Client.connect(port: port, token: token, url: url, tls: tls)
            let seq = try await publisher.publish("news", #""through nginx""#)
            let message = try await through.nextJSON()
            #expect(message.int("seq") == seq && message["topic"] == "news", "\(message)")

            let listed = try await broker.http("GET", "/admin/v1/connections", token: try broker.adminToken())
            let peers = (listed.json.object["connections"] as? [[String: Any]] ?? []).compactMap { $0["peer"] as? String }
            #expect(peers == ["127.0.0.1", "127.0.0.1"], "\(listed)")

            do {
                _ = try await Client.connect(port: port, url: "wss://localhost:\(port)/admin/v1/info", tls: tls)
                Issue.record("nginx let the admin API through")
            } catch ConnectError.unexpectedResponse(let status, _, _) {
                #expect(status == 403)
            }
            // Plain HTTP is sent to https.
            let redirect = try await httpExchange(port: plainPort, "GET", "/any", headers: "Connection: close\r\n")
            #expect(redirect.status == 301 && redirect.header("Location") == "https://127.0.0.1/any", "\(redirect)")
            await through.close()
            await publisher.close()
        }
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
