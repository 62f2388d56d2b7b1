import ArgumentParser
import Foundation
import Logging
import NIOPosix
import RedisWire
import ServiceLifecycle
import Switchboard
import WebSockets

/// `switchboard serve`: runs the broker. With no options: port 8080, `./switchboard.db`,
/// no anonymous access, an admin token created on first start.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the broker.",
        discussion: """
            Settings come from defaults, then --config FILE (JSON; keys as in deploy/switchboard.json), \
            then SWITCHBOARD_* environment variables, then these flags.
            """
    )

    @Option(help: "JSON config file (also SWITCHBOARD_CONFIG).") var config: String?
    @Option(help: "Address to listen on (default 0.0.0.0).") var host: String?
    @Option(help: "Port to listen on (default 8080; 0 picks a free one).") var port: String?
    @Option(help: "SQLite store (default ./switchboard.db).") var database: String?
    @Option(help: "File holding the JWT HS256 secret (at least 32 bytes).") var jwtSecretFile: String?
    @Option(help: "Patterns anonymous clients may subscribe to, comma-separated.") var anonymousSubscribe: String?
    @Option(help: "Patterns anonymous clients may publish to, comma-separated.") var anonymousPublish: String?
    @Option(help: "Largest publish payload, in bytes (default 1048576); larger ones get too_large.") var maxPayload: String?
    @Option(help: "Bytes a subscriber may have queued before the slow-consumer policy (default 4194304).")
    var maxQueuedBytes: String?
    @Option(help: "close (1013) or drop (with gap notices) for slow consumers (default close).")
    var slowConsumer: String?
    @Option(help: "Open connections one token may hold (default 1000); more are refused with 429.")
    var maxConnectionsPerToken: String?
    @Option(help: "Requests per second one connection may send (default 10000; 0: no limit).") var requestRate: String?
    @Option(help: "Requests a connection may send at once above the rate (default 20000).") var requestBurst: String?
    @Option(help: "Topics held in memory (default 100000); a publish past it gets limit_exceeded.") var maxTopics: String?
    @Option(help: "Seconds after its last publish an unretained topic leaves memory (default 600).")
    var topicIdleSeconds: String?
    @Option(help: "trace, debug, info, notice, warning, error or critical (default info).") var logLevel: String?
    @Option(help: "Event-loop threads (default: one per CPU this process may use).") var threads: String?
    @Option(help: "PEM certificate chain: serve wss:// and https:// (with --tls-key); reread on SIGHUP.") var tlsCert: String?
    @Option(help: "PEM private key of --tls-cert.") var tlsKey: String?
    @Option(help: "redis://HOST[:PORT][/DB]: share topics with other nodes through this Redis.") var cluster: String?
    @Flag(help: "Serve the demo (/) and admin (/admin) pages; anonymous clients may then publish and subscribe on demo.>.")
    var demo = false
    @Option(help: "permessage-deflate: on or off (default off).") var deflate: String?
    @Option(help: "Messages smaller than this many bytes go uncompressed (default 1024).") var deflateThreshold: String?

    func run() async throws {
        let configuration: BrokerConfiguration
        do {
            configuration = try makeConfiguration()
        } catch {
            Terminal.exit(withError: "\(error)", status: 64)
        }
        // Before anything is created: a certificate that cannot be read is the operator's to fix.
        for case let file? in [configuration.tlsCertificate, configuration.tlsKey]
        where !FileManager.default.isReadableFile(atPath: file) {
            Terminal.exit(withError: "cannot read the TLS file \(file) (check the path and its permissions)", status: 66)
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = Logger.Level(rawValue: configuration.logLevel) ?? .info
            return handler
        }
        let logger = Logger(label: "switchboard")
        let tokens: TokenStore
        do {
            tokens = try TokenStore(store: Store(path: configuration.database))
        } catch where error.isCorruption {
            // The same words as the replay log's `.corrupt` (often the same file): an
            // operator who meets either knows which file and how to get going again.
            Terminal.exit(
                withError: "the store \(configuration.database) is corrupt (\(error.message)). Stop the broker, move "
                    + "\(configuration.database) and its -wal and -shm files aside or restore them from a backup, "
                    + "then start again (`sqlite3 \(configuration.database) .recover` may salvage tokens and "
                    + "retained messages from the damaged copy)",
                status: 69)
        } catch {
            Terminal.exit(
                withError: "cannot open the store \(configuration.database): \(error.message). "
                    + "Check the file, restore it from a backup, or start with another --database.",
                status: 69)
        }
        do {
            try ensureAdminToken(tokens, database: configuration.database)
        } catch {
            Terminal.exit(withError: "cannot create the admin token in \(configuration.database): \(error)", status: 73)
        }

        // Open even when no topic is retained: it keeps every topic's last seq, so seqs
        // continue across restarts and topics idle in memory can be evicted.
        let replayLog: ReplayLog
        let path = configuration.replay.database ?? configuration.database
        do {
            replayLog = try ReplayLog(
                path: path, configuration: configuration.replay, logger: Logger(label: "switchboard.replay"))
        } catch .corrupt(let path, let detail) {
            Terminal.exit(withError: ReplayError.corrupt(path: path, detail: detail).description, status: 69)
        } catch {
            Terminal.exit(
                withError: "cannot open the replay log \(path): \(error). Check that its directory exists and is "
                    + "writable, or set replay_database (SWITCHBOARD_REPLAY_DATABASE) to another file.",
                status: 69)
        }
        let rules = replayLog.rules
        let rulesSource = replayLog.rulesAreStored ? "set at run time, from the store" : "from replay_retain"
        logger.info("replay log open", metadata: ["database": "\(path)", "rules": "\(rules)", "source": "\(rulesSource)"])

        let group = MultiThreadedEventLoopGroup(numberOfThreads: configuration.threads ?? EventLoopThreads.available)
        var cluster: ClusterEngine?
        if let url = configuration.cluster {
            let endpoint = try RedisEndpoint(url: url)
            let engine = ClusterEngine(endpoint: endpoint, group: group, logger: logger)
            if !(await engine.start()) {
                logger.error("cluster: redis not reachable yet; publishes are answered unavailable until it is",
                    metadata: ["redis": "\(endpoint)"])
            }
            cluster = engine
        }
        defer { cluster?.close() }
        let broker: Broker
        do {
            broker = try Broker(
                configuration: configuration, tokens: tokens, replayLog: replayLog, group: group, logger: logger,
                cluster: cluster)
        } catch {
            Terminal.exit(withError: "\(error)", status: 64)
        }
        do {
            let address = try await broker.start()
            let host = address.ipAddress ?? "?"
            let port = address.port ?? 0
            let secure = configuration.tlsCertificate != nil
            // The address a local client reaches a wildcard listener at.
            let local = host == "0.0.0.0" ? "127.0.0.1" : host == "::" ? "[::1]" : host.contains(":") ? "[\(host)]" : host
            var lines = [
                "switchboard listening on \(host):\(port)",
                "switchboard: clients connect to \(secure ? "wss" : "ws")://\(host):\(port)/; admin API, /metrics and "
                    + "/readyz at \(secure ? "https" : "http")://\(host):\(port)/",
                "switchboard: database \(configuration.database)",
            ]
            if let cluster { lines.append("switchboard: cluster node on \(cluster.endpoint)") }
            if configuration.demo {
                lines.append(
                    "switchboard: demo on: open \(secure ? "https" : "http")://\(local):\(port)/ "
                        + "(anonymous clients may publish and subscribe on \(Demo.topics); /admin takes the admin token)")
            }
            lines += [
                rules.rules.isEmpty
                    ? "switchboard: replay log off (no rules \(rulesSource); topic seqs are still kept in \(path); "
                        + "`switchboard retention set RULE…` turns it on)"
                    : "switchboard: replay log on (\(path)), retaining \(rules.texts.joined(separator: "; ")) (\(rulesSource))",
                "switchboard: the admin token is in \(configuration.database).admin-token; "
                    + "`switchboard token create --admin --name NAME` makes another",
            ]
            // Names this broker's admin API to the token commands run beside the store
            // (`AdminOptions.tokenClient`); without the file they use the store directly.
            let serverFile = configuration.database + ".admin-url"
            try? "\(secure ? "https" : "http")://\(local):\(port)\n".write(toFile: serverFile, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(atPath: serverFile) }
            let sighup = secure ? reloadTLSOnSIGHUP(broker, logger: logger) : nil
            defer { sighup?.cancel() }
            // Runs the started broker until SIGTERM or SIGINT, then drains it.
            try await ServiceGroup(
                services: [broker, StartupLines(lines: lines)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger
            ).run()
        } catch {
            await broker.shutdown()
            Terminal.exit(withError: "\(error)", status: 70)
        }
        try? await group.shutdownGracefully()
    }

    /// Rereads the certificate and key on every SIGHUP (certificate renewal), logging the
    /// outcome; a failed reload keeps the current certificate.
    private func reloadTLSOnSIGHUP(_ broker: Broker, logger: Logger) -> (any DispatchSourceSignal)? {
        broker.reloadTLSOnSIGHUP { error in
            if let error {
                logger.error("TLS certificate not reloaded; the current one stays in use", metadata: ["error": "\(error)"])
            } else {
                logger.notice("TLS certificate reloaded")
            }
        }
    }

    private func makeConfiguration() throws -> BrokerConfiguration {
        var configuration = BrokerConfiguration()
        let environment = ProcessInfo.processInfo.environment
        if let file = config ?? environment["SWITCHBOARD_CONFIG"] {
            try configuration.apply(configFile: file)
        }
        try configuration.apply(environment: environment)
        let flags: [(String, String?, String)] = [
            ("host", host, "--host"), ("port", port, "--port"), ("database", database, "--database"),
            ("anonymous_subscribe", anonymousSubscribe, "--anonymous-subscribe"),
            ("anonymous_publish", anonymousPublish, "--anonymous-publish"),
            ("max_payload", maxPayload, "--max-payload"), ("max_queued_bytes", maxQueuedBytes, "--max-queued-bytes"),
            ("slow_consumer", slowConsumer, "--slow-consumer"),
            ("max_connections_per_token", maxConnectionsPerToken, "--max-connections-per-token"),
            ("request_rate", requestRate, "--request-rate"), ("request_burst", requestBurst, "--request-burst"),
            ("max_topics", maxTopics, "--max-topics"), ("topic_idle_seconds", topicIdleSeconds, "--topic-idle-seconds"),
            ("log_level", logLevel, "--log-level"),
            ("threads", threads, "--threads"), ("tls_cert", tlsCert, "--tls-cert"), ("tls_key", tlsKey, "--tls-key"),
            ("cluster", cluster, "--cluster"),
            ("deflate", deflate, "--deflate"), ("deflate_threshold", deflateThreshold, "--deflate-threshold"),
        ]
        for (key, value, flag) in flags {
            if let value { try configuration.set(key, value, source: flag) }
        }
        if demo { configuration.demo = true }
        if let jwtSecretFile {
            guard let secret = try? String(contentsOfFile: jwtSecretFile, encoding: .utf8) else {
                throw BrokerConfiguration.Error(source: "--jwt-secret-file", key: "jwt_secret", problem: "cannot read \(jwtSecretFile)")
            }
            try configuration.set("jwt_secret", secret.trimmingCharacters(in: .whitespacesAndNewlines), source: jwtSecretFile)
        }
        configuration.addDemoAccess()
        return configuration
    }

    /// On first start (no admin token in the store), creates one, prints it once and
    /// writes it to `<database>.admin-token`, readable by the owner only.
    private func ensureAdminToken(_ tokens: TokenStore, database: String) throws {
        guard !tokens.list(includeRevoked: false).contains(where: { $0.permissions.admin }) else { return }
        let (token, record) = try tokens.create(
            name: "admin", permissions: Permissions(
                subscribe: [try TopicPattern(">")], publish: [try TopicPattern(">")], admin: true))
        let path = database + ".admin-token"
        guard FileManager.default.createFile(
            atPath: path, contents: Data((token + "\n").utf8), attributes: [.posixPermissions: 0o600])
        else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path])
        }
        Terminal.printUnbuffered("switchboard: created admin token \(record.id); it is shown once and saved to \(path) (mode 0600):")
        Terminal.printUnbuffered(token)
    }
}

/// Prints the start-up lines from inside the service group, so that whoever waits for
/// "listening" (a supervisor, a test) finds SIGTERM already handled: a stop sent right after
/// them drains the broker and exits 0.
private struct StartupLines: Service {
    let lines: [String]

    func run() async throws {
        for line in lines { Terminal.printUnbuffered(line) }
        try? await gracefulShutdown()
    }
}
