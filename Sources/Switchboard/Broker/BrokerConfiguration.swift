import Foundation
import NIOCore
import RedisWire

/// Everything the broker can be told, with the embedded defaults `switchboard serve` runs
/// on when given nothing. Sources, later ones winning: defaults, the config file (JSON),
/// `SWITCHBOARD_*` environment variables, command-line flags.
public struct BrokerConfiguration: Sendable, Hashable {
    /// Address to listen on. Default "0.0.0.0" (every IPv4 interface).
    public var host = "0.0.0.0"
    /// Port for clients and the admin API. Default 8080.
    public var port = 8080
    /// The SQLite store (tokens, topics, replay log). Default `switchboard.db` in the working directory.
    public var database = "switchboard.db"
    /// Shared secret for JWT (HS256) tokens minted by app backends; nil turns JWTs off. Default nil.
    public var jwtSecret: String? = nil
    /// What a client without a token may do; nil (the default) refuses anonymous clients.
    public var anonymous: AnonymousAccess? = nil
    /// Largest publish payload (`data` bytes, or a binary publish's payload); a larger one is
    /// answered `too_large`. A frame larger than this plus `WireProtocol.requestOverhead`
    /// closes the connection with 1009. Default 1 MiB.
    public var maxPayload = 1 << 20
    /// Outbound bytes a subscriber may leave unwritten (handed to its socket, not yet taken by
    /// the kernel) before the slow-consumer policy applies. Default 4 MiB.
    public var maxQueuedBytes = 4 << 20
    /// What happens to a subscriber past `maxQueuedBytes`. Default `close` (1013).
    public var slowConsumer = SlowConsumerPolicy.close
    /// Open client connections; more get 503. Default 100 000.
    public var maxConnections = 100_000
    /// Subscriptions one connection may hold. Default 1000.
    public var maxSubscriptions = 1000
    /// Open connections one token may hold (an opaque token by id, a JWT by its `sub`;
    /// anonymous clients are not counted); the handshake past it is refused with 429.
    /// Default 1000.
    public var maxConnectionsPerToken = 1000
    /// Requests (frames) per second one connection may send, on average; past it requests
    /// are answered `rate_limited`. 0 turns the limit off. Default 10 000.
    public var requestRate = 10_000
    /// Requests a connection may send at once above `requestRate` before `rate_limited`;
    /// a connection whose refused requests come to as many again is closed with 1008.
    /// Default 20 000.
    public var requestBurst = 20_000
    /// Topics whose state (last seq and time) is held in memory. At the limit the least
    /// recently published topic the replay log does not retain is evicted to make room
    /// (once its seq is committed); when none can be, a publish to a new topic is answered
    /// `limit_exceeded`. Default 100 000.
    public var maxTopics = 100_000
    /// Seconds after its last publish a topic the replay log does not retain is evicted from
    /// memory (its last seq is in the store; its next publish reads it back). Default 600.
    public var topicIdleSeconds = 600
    /// `redis://HOST[:PORT][/DB]`: run as one node of a cluster sharing topics, seqs and
    /// history through that Redis (docs/cluster.md). Default nil: a single node.
    public var cluster: String?
    /// Connections from one IP address, handshaking or open; more get 429. Behind a reverse
    /// proxy every client has the proxy's address: raise it there, or 0 for no limit.
    /// Default 10 000.
    public var maxConnectionsPerIP = 10_000
    /// Handshakes started per second after a burst of `handshakeBurst`; past it, and past
    /// `maxHandshakes` in progress, a new connection is closed before anything is read.
    /// Default 1000; 0: no limit.
    public var handshakeRate = 1_000
    /// Handshakes that may start at once after a quiet spell. Default 10 000.
    public var handshakeBurst = 10_000
    /// Connections accepted and not yet upgraded. Default 1000.
    public var maxHandshakes = 1_000
    /// Seconds a frame may take to arrive whole once its first byte has; past it the
    /// connection is closed with 1008. Default 30 (a `max_payload` frame at 35 KB/s); 0: no limit.
    public var frameTimeoutSeconds = 30
    /// Seconds between pings to each client (a client that misses a pong for as long is dropped). Default 30; 0 turns it off.
    public var heartbeatSeconds = 30
    /// swift-log level: trace, debug, info, notice, warning, error, critical. Default info.
    public var logLevel = "info"
    /// Event-loop threads; nil uses one per CPU the process may run on. Default nil.
    public var threads: Int? = nil
    /// PEM certificate (chain, leaf first) and private key files: with both set the broker
    /// serves wss:// (and the admin API over https) on its port; `switchboard serve`
    /// rereads them on SIGHUP. Default nil: plain ws://.
    public var tlsCertificate: String? = nil
    public var tlsKey: String? = nil
    /// Addresses of reverse proxies whose `X-Forwarded-For` is believed: for a connection
    /// from one of them, the client is the last address in the header that is not a trusted
    /// proxy; from anywhere else the header is ignored (a client can send it itself).
    /// Exact IPv4 or IPv6 addresses. Default none.
    public var trustedProxies: [String] = []
    /// A bearer token `/metrics` requires (at least 16 bytes); nil serves it to anyone who
    /// can reach the port. Default nil.
    public var metricsToken: String? = nil
    /// Serve the demo and admin pages (`/`, `/admin`) and publish the broker's own figures to
    /// `demo.metrics` every second (docs/browser.md). `switchboard serve` then also lets
    /// anonymous clients publish and subscribe on `demo.>` and retains `demo.chat.>`
    /// (`addDemoAccess()`). Default false.
    public var demo = false
    /// The replay log: retention rules (`replay_retain`), size cap, queue limit, file.
    /// Default: no rules, so no topic is retained. See `ReplayConfiguration`.
    public var replay = ReplayConfiguration()
    /// permessage-deflate: on/off (default off), threshold, level, memLevel, window bits.
    /// See `DeflateConfiguration`.
    public var deflate = DeflateConfiguration()

    public struct AnonymousAccess: Sendable, Hashable {
        public var subscribe: [String]
        public var publish: [String]

        public init(subscribe: [String] = [], publish: [String] = []) {
            self.subscribe = subscribe
            self.publish = publish
        }
    }

    public enum SlowConsumerPolicy: String, Sendable, Hashable, CaseIterable {
        /// Close the connection with 1013 (try again later).
        case close
        /// Drop messages for it and send a `gap` notice naming what it missed.
        case drop
    }

    public init() {}

    /// A bad value, naming where it came from (file, variable or flag) and the key.
    public struct Error: Swift.Error, Sendable, Hashable, CustomStringConvertible {
        public var source: String
        public var key: String
        public var problem: String

        public init(source: String, key: String, problem: String) {
            self.source = source
            self.key = key
            self.problem = problem
        }

        /// One line: a key with a control character (an unknown key from a file) is quoted with escapes.
        public var description: String {
            let shownKey = key.unicodeScalars.contains { $0.properties.generalCategory == .control } ? key.debugDescription : key
            return "\(source): \(shownKey): \(problem)"
        }
    }

    /// Every key of the config file and its environment variable, for documentation and
    /// for naming unknown keys.
    public static let keys: [(key: String, environment: String)] = [
        ("host", "SWITCHBOARD_HOST"), ("port", "SWITCHBOARD_PORT"), ("database", "SWITCHBOARD_DATABASE"),
        ("jwt_secret", "SWITCHBOARD_JWT_SECRET"), ("anonymous_subscribe", "SWITCHBOARD_ANONYMOUS_SUBSCRIBE"),
        ("anonymous_publish", "SWITCHBOARD_ANONYMOUS_PUBLISH"), ("max_payload", "SWITCHBOARD_MAX_PAYLOAD"),
        ("max_queued_bytes", "SWITCHBOARD_MAX_QUEUED_BYTES"), ("slow_consumer", "SWITCHBOARD_SLOW_CONSUMER"),
        ("max_connections", "SWITCHBOARD_MAX_CONNECTIONS"), ("max_subscriptions", "SWITCHBOARD_MAX_SUBSCRIPTIONS"),
        ("max_connections_per_token", "SWITCHBOARD_MAX_CONNECTIONS_PER_TOKEN"),
        ("request_rate", "SWITCHBOARD_REQUEST_RATE"), ("request_burst", "SWITCHBOARD_REQUEST_BURST"),
        ("max_topics", "SWITCHBOARD_MAX_TOPICS"), ("topic_idle_seconds", "SWITCHBOARD_TOPIC_IDLE_SECONDS"),
        ("max_connections_per_ip", "SWITCHBOARD_MAX_CONNECTIONS_PER_IP"), ("handshake_rate", "SWITCHBOARD_HANDSHAKE_RATE"),
        ("handshake_burst", "SWITCHBOARD_HANDSHAKE_BURST"), ("max_handshakes", "SWITCHBOARD_MAX_HANDSHAKES"),
        ("frame_timeout_seconds", "SWITCHBOARD_FRAME_TIMEOUT_SECONDS"),
        ("heartbeat_seconds", "SWITCHBOARD_HEARTBEAT_SECONDS"), ("log_level", "SWITCHBOARD_LOG_LEVEL"),
        ("threads", "SWITCHBOARD_THREADS"), ("metrics_token", "SWITCHBOARD_METRICS_TOKEN"),
        ("tls_cert", "SWITCHBOARD_TLS_CERT"), ("tls_key", "SWITCHBOARD_TLS_KEY"),
        ("trusted_proxies", "SWITCHBOARD_TRUSTED_PROXIES"), ("demo", "SWITCHBOARD_DEMO"), ("cluster", "SWITCHBOARD_CLUSTER"),
    ] + ReplayConfiguration.keys + DeflateConfiguration.keys

    /// Applies a JSON config file: one object whose keys are those of `keys`.
    public mutating func apply(configFile path: String) throws(Error) {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw Error(source: path, key: "(file)", problem: "cannot be read: \(error.localizedDescription)")
        }
        try apply(configJSON: data, source: path)
    }

    /// Applies the contents of a JSON config file; `source` names it in errors.
    @_spi(Fuzzing) public mutating func apply(configJSON data: Data, source path: String) throws(Error) {
        let object: [String: Any]
        do {
            guard let parsed = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw Error(source: path, key: "(file)", problem: "must be a JSON object")
            }
            object = parsed
        } catch let error as Error {
            throw error
        } catch {
            throw Error(source: path, key: "(file)", problem: "is not valid JSON: \(error.localizedDescription)")
        }
        for (key, value) in object.sorted(by: { $0.key < $1.key }) {
            guard Self.keys.contains(where: { $0.key == key }) else {
                throw Error(source: path, key: key, problem: "unknown key (known: \(Self.keys.map(\.key).joined(separator: ", ")))")
            }
            let text: String
            switch value {
            case let string as String: text = string
            case let number as Int: text = String(number)
            case let strings as [String]: text = strings.joined(separator: ",")
            case is NSNull: continue
            default: throw Error(source: path, key: key, problem: "must be a string, an integer or a list of strings")
            }
            try set(key, text, source: path)
        }
    }

    /// Applies `SWITCHBOARD_*` variables.
    public mutating func apply(environment: [String: String]) throws(Error) {
        for (key, variable) in Self.keys {
            if let value = environment[variable] {
                try set(key, value, source: "environment variable \(variable)")
            }
        }
    }

    /// Sets one key from its text form, as a file, a variable or a flag gives it.
    public mutating func set(_ key: String, _ text: String, source: String) throws(Error) {
        func fail(_ problem: String) -> Error { Error(source: source, key: key, problem: problem) }
        func integer(in range: ClosedRange<Int>) throws(Error) -> Int {
            guard let value = Int(text.trimmingCharacters(in: .whitespaces)), range.contains(value) else {
                throw fail("must be an integer from \(range.lowerBound) to \(range.upperBound), not \(text.debugDescription)")
            }
            return value
        }
        func patterns() throws(Error) -> [String] {
            let names = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            for name in names {
                do {
                    _ = try TopicPattern(name)
                } catch {
                    throw fail("\(name.debugDescription): \(error.message)")
                }
            }
            return names
        }
        switch key {
        case "host":
            guard !text.isEmpty else { throw fail("must not be empty") }
            host = text
        case "port": port = try integer(in: 0...65535)
        case "database":
            guard !text.isEmpty else { throw fail("must not be empty") }
            database = text
        case "jwt_secret":
            guard text.utf8.count >= 32 else { throw fail("must be at least 32 bytes") }
            jwtSecret = text
        case "anonymous_subscribe":
            var access = anonymous ?? AnonymousAccess()
            access.subscribe = try patterns()
            anonymous = access
        case "anonymous_publish":
            var access = anonymous ?? AnonymousAccess()
            access.publish = try patterns()
            anonymous = access
        case "max_payload": maxPayload = try integer(in: 1...(1 << 30))
        case "max_queued_bytes": maxQueuedBytes = try integer(in: 1024...(1 << 34))
        case "slow_consumer":
            guard let policy = SlowConsumerPolicy(rawValue: text) else {
                throw fail("must be one of \(SlowConsumerPolicy.allCases.map(\.rawValue).joined(separator: ", ")), not \(text.debugDescription)")
            }
            slowConsumer = policy
        case "max_connections": maxConnections = try integer(in: 1...10_000_000)
        case "max_subscriptions": maxSubscriptions = try integer(in: 1...1_000_000)
        case "max_connections_per_token": maxConnectionsPerToken = try integer(in: 1...10_000_000)
        case "request_rate": requestRate = try integer(in: 0...100_000_000)
        case "request_burst": requestBurst = try integer(in: 1...100_000_000)
        case "max_topics": maxTopics = try integer(in: 1...100_000_000)
        case "topic_idle_seconds": topicIdleSeconds = try integer(in: 1...31_536_000)
        case "max_connections_per_ip": maxConnectionsPerIP = try integer(in: 0...10_000_000)
        case "handshake_rate": handshakeRate = try integer(in: 0...10_000_000)
        case "handshake_burst": handshakeBurst = try integer(in: 1...10_000_000)
        case "max_handshakes": maxHandshakes = try integer(in: 1...10_000_000)
        case "frame_timeout_seconds": frameTimeoutSeconds = try integer(in: 0...86_400)
        case "heartbeat_seconds": heartbeatSeconds = try integer(in: 0...86_400)
        case "log_level":
            let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
            guard levels.contains(text) else { throw fail("must be one of \(levels.joined(separator: ", ")), not \(text.debugDescription)") }
            logLevel = text
        case "threads": threads = try integer(in: 1...1024)
        case "trusted_proxies":
            let addresses = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            for address in addresses where (try? SocketAddress(ipAddress: address, port: 0)) == nil {
                throw fail("\(address.debugDescription) is not an IP address")
            }
            trustedProxies = addresses
        case "tls_cert":
            guard !text.isEmpty else { throw fail("must not be empty") }
            tlsCertificate = text
        case "tls_key":
            guard !text.isEmpty else { throw fail("must not be empty") }
            tlsKey = text
        case "cluster":
            do {
                _ = try RedisEndpoint(url: text)
            } catch {
                throw fail(error.description)
            }
            cluster = text
        case "metrics_token":
            guard text.utf8.count >= 16 else { throw fail("must be at least 16 bytes") }
            metricsToken = text
        case "demo":
            switch text.trimmingCharacters(in: .whitespaces) {
            case "true", "1": demo = true
            case "false", "0": demo = false
            default: throw fail("must be true or false, not \(text.debugDescription)")
            }
        case _ where key.hasPrefix("deflate"):
            if let problem = deflate.set(key, text) { throw fail(problem) }
        case _ where key.hasPrefix("replay_"):
            if let problem = replay.set(key, text) { throw fail(problem) }
        default:
            throw fail("unknown key")
        }
    }
}
