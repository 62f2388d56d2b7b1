import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import WebSocketCore
import WebSockets

/// The pub/sub broker, embeddable in any NIO application: a WebSocket server speaking
/// `switchboard.v1`, with tokens checked at the handshake and on every request, a
/// sequence number per topic and fan-out encoded once per message.
///
/// Invariants:
/// - A topic's sequence numbers are assigned, and its message handed to every hub, under
///   one lock, so every subscriber sees a topic's messages in sequence order whatever
///   event loops the publishers are on.
/// - Each event loop has one `Hub`; a connection's `Session` lives on its loop's hub.
/// - With a replay log, a retained topic's message is appended to the log under the same
///   lock, so the log receives each topic in seq order; a topic's publish times never
///   decrease (the clock may step back), so `since_time` can bisect over seqs.
public final class Broker: Sendable {
    /// Close codes the broker sends on its own account (documented in docs/protocol.md).
    public enum CloseCodes {
        /// The connection's token was revoked.
        public static let tokenRevoked = CloseCode(4001)
        /// The connection's token expired.
        public static let tokenExpired = CloseCode(4002)
    }

    public let configuration: BrokerConfiguration
    public let tokens: TokenStore
    /// The replay log, when the configuration retains any topic. The broker appends to it and
    /// closes it in `shutdown()`.
    public let replayLog: ReplayLog?
    let logger: Logger
    let limits: WireProtocol.Limits
    private let authenticator: Authenticator
    private let hubs: [ObjectIdentifier: Hub]
    private let sequencing: NIOLockedValueBox<Sequencing>
    private let server = NIOLockedValueBox<WebSocketServer?>(nil)
    private let sweeper = NIOLockedValueBox<RepeatedTask?>(nil)
    /// Messages sent from the replay log to resuming subscribers (counted per page).
    private let replayedCount = NIOLockedValueBox<UInt64>(0)
    private let group: MultiThreadedEventLoopGroup

    /// How often revoked and expired tokens are looked for (also picks up revocations
    /// made by another process, such as `switchboard token revoke`).
    static let sweepInterval: Duration = .milliseconds(500)

    /// The last seq and publish time of every topic, and how many messages were published.
    private struct Sequencing {
        var topics: [Topic: (sequence: UInt64, time: Int64)] = [:]
        var published: UInt64 = 0
    }

    /// - Parameter replayLog: the log retaining the configured topics (open it with
    ///   `configuration.replay`); each topic's seqs continue after the last one it stored.
    public init(
        configuration: BrokerConfiguration, tokens: TokenStore, replayLog: ReplayLog? = nil,
        group: MultiThreadedEventLoopGroup, logger: Logger = Logger(label: "switchboard")
    ) throws(BrokerConfiguration.Error) {
        self.configuration = configuration
        self.tokens = tokens
        self.replayLog = replayLog
        var sequencing = Sequencing()
        for (topic, sequence) in replayLog?.lastSequences() ?? [:] {
            sequencing.topics[topic] = (sequence, 0)
        }
        self.sequencing = NIOLockedValueBox(sequencing)
        self.group = group
        self.logger = logger
        self.limits = WireProtocol.Limits(maxPayloadBytes: configuration.maxPayload)
        var anonymous: Permissions?
        if let access = configuration.anonymous {
            func patterns(_ names: [String], _ key: String) throws(BrokerConfiguration.Error) -> [TopicPattern] {
                var result: [TopicPattern] = []
                for name in names {
                    do {
                        result.append(try TopicPattern(name))
                    } catch {
                        throw BrokerConfiguration.Error(source: "configuration", key: key, problem: "\(name): \(error.message)")
                    }
                }
                return result
            }
            anonymous = Permissions(
                subscribe: try patterns(access.subscribe, "anonymous_subscribe"),
                publish: try patterns(access.publish, "anonymous_publish"))
        }
        let jwt = configuration.jwtSecret.map { JWTVerifier(secret: Array($0.utf8)) }
        self.authenticator = Authenticator(tokens: tokens, jwt: jwt, anonymous: anonymous)
        var hubs: [ObjectIdentifier: Hub] = [:]
        for loop in group.makeIterator() {
            hubs[ObjectIdentifier(loop)] = Hub(eventLoop: loop)
        }
        self.hubs = hubs
    }

    /// Starts listening on the configured host and port; returns the bound address.
    @discardableResult
    public func start() async throws -> SocketAddress {
        var options = WebSocketServer.Options(host: configuration.host, port: configuration.port)
        options.connection.maxPayload = configuration.maxPayload + WireProtocol.requestOverhead
        options.connection.maxBufferedAmount = configuration.maxQueuedBytes * 2
        options.connection.closeTimeout = .seconds(5)
        if configuration.heartbeatSeconds > 0 {
            options.connection.heartbeat = .init(
                interval: .seconds(Int64(configuration.heartbeatSeconds)),
                timeout: .seconds(Int64(configuration.heartbeatSeconds)))
        }
        options.maxConnections = configuration.maxConnections
        options.maxConnectionsPerAddress = configuration.maxConnectionsPerIP > 0 ? configuration.maxConnectionsPerIP : nil
        options.handshakeRate = configuration.handshakeRate > 0
            ? HandshakeRateLimit(perSecond: configuration.handshakeRate, burst: configuration.handshakeBurst) : nil
        options.maxConcurrentHandshakes = configuration.maxHandshakes
        options.connection.partialFrameTimeout = configuration.frameTimeoutSeconds > 0
            ? .seconds(Int64(configuration.frameTimeoutSeconds)) : nil
        options.selectSubprotocol = { offered, _ in
            offered.contains(WireProtocol.subprotocol) ? WireProtocol.subprotocol : nil
        }
        options.verifyClient = { [self] request in verify(request) }
        let server = WebSocketServer(options: options, group: group) { [self] socket in open(socket) }
        let address = try await server.listen()
        self.server.withLockedValue { $0 = server }
        startSweeping()
        logger.info("listening", metadata: ["address": "\(address)"])
        return address
    }

    /// Returns when the listener has closed.
    public func waitUntilStopped() async throws {
        try await server.withLockedValue { $0 }?.waitUntilStopped()
    }

    /// Stops accepting, closes every client with 1001 after what was already accepted for
    /// it, and waits for the close handshakes (bounded by the close timeout).
    public func shutdown() async {
        sweeper.withLockedValue { $0?.cancel(promise: nil) }
        await server.withLockedValue { $0 }?.shutdown()
        if let replayLog {
            // Commits what is queued; blocking, so off the event loops and the cooperative pool.
            try? await NIOThreadPool.singleton.runIfActive { replayLog.close() }
        }
        logger.info("stopped")
    }

    /// Counters for operators (the admin API and tests).
    public var statistics: BrokerStatistics {
        let (topics, published) = sequencing.withLockedValue { ($0.topics.count, $0.published) }
        return BrokerStatistics(
            connections: server.withLockedValue { $0 }?.connectionCount ?? 0, topics: topics, published: published,
            replayed: replayedCount.withLockedValue { $0 }, replay: replayLog?.statistics)
    }

    /// A session wrote `count` messages of a catch-up to its socket.
    func countReplayed(_ count: Int) {
        replayedCount.withLockedValue { $0 += UInt64(count) }
    }

    // MARK: Handshake

    /// Runs on the connection's event loop: the token cache answers without I/O; only a
    /// token the cache does not know is looked up in the database, on NIO's thread pool.
    private func verify(_ request: UpgradeRequest) -> UpgradeDecision {
        if case .unsupported = WireProtocol.chooseSubprotocol(offered: request.protocols) {
            return .reject(status: 400, body: "unsupported subprotocol: this broker speaks \(WireProtocol.subprotocol)")
        }
        let query = request.target.firstIndex(of: "?").map { String(request.target[request.target.index(after: $0)...]) }
        let presented: String?
        do throws(AuthError) {
            presented = try Authenticator.presentedToken(authorization: request.headers.first("Authorization"), query: query)
        } catch {
            return refuse(request, error)
        }
        do throws(AuthError) {
            return .accept(userInfo: try authenticator.authenticate(presented))
        } catch {
            // An unknown token was perhaps created by another process (`switchboard token
            // create`) since the last reload: look in the database itself.
            guard error.reason == .unknown, let presented else { return refuse(request, error) }
            return .later { [self] in
                _ = try? await NIOThreadPool.singleton.runIfActive { try self.tokens.fetch(token: presented) }
                do throws(AuthError) {
                    return .accept(userInfo: try authenticator.authenticate(presented))
                } catch {
                    return refuse(request, error)
                }
            }
        }
    }

    private func refuse(_ request: UpgradeRequest, _ error: AuthError) -> UpgradeDecision {
        logger.notice("authentication failed", metadata: [
            "peer": "\(request.forwardedFor ?? request.remoteAddress?.description ?? "?")",
            "reason": "\(error.reason.rawValue)",
        ])
        // The body names the reason code (docs/protocol.md: missing, malformed, …) first.
        return .reject(
            status: error.httpStatus, body: "unauthorized: \(error.reason.rawValue): \(error.message)",
            headers: ["WWW-Authenticate": "Bearer realm=\"switchboard\", error=\"invalid_token\""])
    }

    private func open(_ socket: WebSocket) {
        guard let principal = socket.userInfo as? Principal, let hub = hubs[ObjectIdentifier(socket.eventLoop)] else {
            socket.terminate()
            return
        }
        let session = Session(socket: socket, principal: principal, broker: self, hub: hub)
        hub.add(session)
        let peer = session.peer
        logger.info("connection opened", metadata: ["peer": "\(peer)", "principal": "\(principal.logLabel)"])
        let bound = NIOLoopBound(session, eventLoop: socket.eventLoop)
        socket.onMessage { message in bound.value.handle(message) }
        socket.onClose { [logger] info in
            bound.value.connectionClosed()
            hub.remove(bound.value)
            logger.info("connection closed", metadata: [
                "peer": "\(peer)", "principal": "\(principal.logLabel)", "code": "\(info.code.rawValue)",
                "reason": "\(info.reason)", "clean": "\(info.wasClean)",
            ])
        }
    }

    // MARK: Publishing

    /// What became of a publish.
    enum Sequenced {
        /// Sequenced and fanned out; ack it now.
        case published(UInt64)
        /// Sequenced, fanned out and queued for the replay log; `committed` will be called.
        case awaitingCommit(UInt64)
        /// Not published: the replay log cannot take it (its queue is full or it is closed).
        case rejected(ReplayError)
    }

    /// Sequences a message, appends it to the replay log when its topic is retained, and
    /// hands it to every hub. `committed` (when given) is called on the log's writer thread
    /// once the message is durable, or its batch failed; only for `.awaitingCommit`.
    /// Live fan-out never waits for the disk.
    func publish(
        _ publish: Publish, from publisher: Principal,
        committed: (@Sendable (UInt64, Result<Void, ReplayError>) -> Void)? = nil
    ) -> Sequenced {
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let retained = replayLog?.retains(publish.topic) ?? false
        // Made only for what is stored (one string per stored message), outside the lock.
        let publisherLabel = retained ? publisher.logLabel : nil
        return sequencing.withLockedValue { (state: inout Sequencing) -> Sequenced in
            let last = state.topics[publish.topic] ?? (0, 0)
            let sequence = last.sequence + 1
            let time = max(now, last.time)
            let frame = OutgoingMessage.encodeFrame(publish, sequence: sequence, time: time)
            let delivery = Delivery(topic: publish.topic, sequence: sequence, frame: frame)
            if let replayLog, retained {
                let message = StoredMessage(
                    topic: publish.topic, sequence: sequence, time: time, format: publish.format,
                    payload: publish.payload, publisher: publisherLabel)
                var completion: (@Sendable (Result<Void, ReplayError>) -> Void)?
                if let committed {
                    completion = { result in committed(sequence, result) }
                }
                do throws(ReplayError) {
                    // Fanned out once the log has taken it and before its writer can commit it.
                    try replayLog.append(message, completion: completion) {
                        for hub in hubs.values { hub.enqueue(delivery) }
                    }
                } catch {
                    return .rejected(error)
                }
            } else {
                replayLog?.recordSequence(topic: publish.topic, sequence: sequence)
                for hub in hubs.values { hub.enqueue(delivery) }
            }
            state.topics[publish.topic] = (sequence, time)
            state.published += 1
            return retained && committed != nil ? .awaitingCommit(sequence) : .published(sequence)
        }
    }

    /// The current seq of every known topic `pattern` matches. Taken after a subscription is
    /// registered on its hub: every later message of those topics reaches it live.
    func currentSequences(matching pattern: TopicPattern) -> [Topic: UInt64] {
        let concrete = pattern.isConcrete ? try? Topic(pattern.name) : nil
        return sequencing.withLockedValue { state in
            if let topic = concrete {
                return state.topics[topic].map { [topic: $0.sequence] } ?? [:]
            }
            var matching: [Topic: UInt64] = [:]
            for (topic, last) in state.topics where pattern.matches(topic) { matching[topic] = last.sequence }
            return matching
        }
    }

    // MARK: Revocation and expiry

    /// Every `sweepInterval`, on one event loop: reload the tokens on NIO's thread pool
    /// (blocking SQLite never runs on an event loop or the Swift cooperative pool), then
    /// have each hub close what was revoked or expired.
    private func startSweeping() {
        let loop = group.next()
        let interval = TimeAmount.nanoseconds(Int64(Self.sweepInterval.components.attoseconds / 1_000_000_000))
            + .seconds(Self.sweepInterval.components.seconds)
        let task = loop.scheduleRepeatedAsyncTask(initialDelay: interval, delay: interval) { [self] _ in
            NIOThreadPool.singleton.runIfActive(eventLoop: loop) { [self] in
                do {
                    try tokens.reload()
                } catch {
                    logger.error("cannot reload tokens", metadata: ["error": "\(error)"])
                }
            }.always { [self] _ in
                for hub in hubs.values {
                    hub.eventLoop.execute { [self] in sweep(hub) }
                }
            }
        }
        sweeper.withLockedValue { $0 = task }
    }

    /// Closes the sessions whose token was revoked (4001) or has expired (4002).
    private func sweep(_ hub: Hub) {
        let now = Date()
        for session in hub.sessions {
            if let id = session.principal.tokenID, tokens.record(id: id)?.isRevoked ?? true {
                session.close(Self.CloseCodes.tokenRevoked, "token revoked")
            } else if session.principal.isExpired(at: now) {
                session.close(Self.CloseCodes.tokenExpired, "token expired")
            }
        }
    }
}

/// A snapshot of the broker's counters.
public struct BrokerStatistics: Sendable, Hashable {
    /// Open WebSocket connections.
    public var connections: Int
    /// Topics that have had a message (since start, or stored in the replay log).
    public var topics: Int
    /// Messages published since start.
    public var published: UInt64
    /// Messages sent from the replay log to subscribers resuming with `since` / `since_time`,
    /// since start: written to their sockets (a subscriber that stops reading holds up its
    /// replay, so this stops growing for it).
    public var replayed: UInt64
    /// The replay log's state and counters (`status` is `degraded` while it cannot write);
    /// nil without a replay log.
    public var replay: ReplayStatistics?
}
