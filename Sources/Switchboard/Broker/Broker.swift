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
/// - A topic's sequence numbers are assigned under one lock. A topic that is not retained
///   has its message handed to every hub under that lock; a retained one is appended to the
///   replay log under it and handed to every hub by the log's writer once committed, in
///   commit order. Either way every subscriber sees a topic's messages in sequence order
///   whatever event loops the publishers are on.
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
        /// An operator closed the connection (admin API, `switchboard connections --close`).
        public static let closedByAdmin = CloseCode(4003)
    }

    public let configuration: BrokerConfiguration
    public let tokens: TokenStore
    /// The replay log, when the configuration retains any topic. The broker appends to it and
    /// closes it in `shutdown()`.
    public let replayLog: ReplayLog?
    /// With `serve --cluster`: Redis sequences, stores and fans out every publish instead.
    let cluster: ClusterEngine?
    /// Where publishes are sequenced and stored, and what resumers read.
    let store: any TopicStore
    /// What resuming subscribers read (`store.history`).
    let history: (any TopicHistory)?
    let logger: Logger
    let limits: RequestDecoder.Limits
    private let authenticator: Authenticator
    let hubs: [ObjectIdentifier: Hub]
    private let sequencing: NIOLockedValueBox<Sequencing>
    private let lifecycle = NIOLockedValueBox(Lifecycle.idle)
    /// Finished by `shutdown()`, a graceful shutdown or the cancellation of `run()`: `run()`
    /// waits on it.
    let stopRequests = AsyncStream.makeStream(of: Never.self)
    private let tokenWatch = NIOLockedValueBox<RepeatedTask?>(nil)
    private let tokenConnections: TokenConnections
    /// Messages sent from the replay log to resuming subscribers (counted per page).
    private let replayedCount = NIOLockedValueBox<UInt64>(0)
    let group: any EventLoopGroup
    /// Now, in unix milliseconds: publish times and topic idleness are measured with it.
    let clock: @Sendable () -> Int64
    /// When the broker was made, unix milliseconds (the admin API's uptime).
    let startedAt: Int64
    /// The last connection id handed out (the admin API names connections by it).
    private let lastSessionID = NIOLockedValueBox<UInt64>(0)
    /// The principal anonymous connections share (see `shared`).
    private let anonymousPrincipal = NIOLockedValueBox<SharedPrincipal?>(nil)
    /// Admin API publishes by idempotency key.
    let idempotency = IdempotencyCache()
    /// What `/metrics` serves.
    let metrics = BrokerMetrics()
    /// The browser client, and the demo pages when `configuration.demo` is on.
    let web: WebAssets
    /// With the demo on: the 1 Hz publish of the broker's own figures (`DemoMetrics`).
    let demoMetrics = NIOLockedValueBox<RepeatedTask?>(nil)

    /// How often the store is asked whether any token changed (revocations made by another
    /// process, such as `switchboard token revoke`; this process's own are applied at once).
    static let tokenWatchInterval: TimeAmount = .milliseconds(250)

    private let topicEviction = NIOLockedValueBox<RepeatedTask?>(nil)

    /// Where the broker is in its life: `start()` moves it from `idle` to `listening`,
    /// `shutdown()` from anywhere to `stopping`, for good.
    private enum Lifecycle {
        case idle
        /// `start()` is binding the listener.
        case starting
        case listening(WebSocketServer)
        /// `shutdown()` is draining, or has drained when `drained` is complete.
        case stopping(WebSocketServer?, drained: EventLoopFuture<Void>)
    }

    /// Why `start()` refused.
    public enum LifecycleError: Error, Sendable, Hashable {
        /// `start()` was already called (or `run()` started the broker).
        case alreadyStarted
        /// `shutdown()` was called: a broker is not started again (make a new one).
        case stopped
    }

    /// The topics in memory (last seq and publish time), the topics whose publishes wait
    /// (their last seq is being read back from the replay log, or their retained messages
    /// are being committed) with whom to tell when they may go on, the retention rules
    /// publishes are decided by, and how many messages were published.
    struct Sequencing {
        var topics = TopicTable()
        var loading: [Topic: [@Sendable (Result<Void, ReplayError>) -> Void]] = [:]
        /// The replay log's rules (nil without one), replaced under this lock
        /// (`replaceRetention`): each publish is decided by one set.
        var retention: RetentionRules?
        var published: UInt64 = 0
        var publishedBytes: UInt64 = 0
    }

    /// - Parameters:
    ///   - replayLog: the log retaining the configured topics (open it with
    ///     `configuration.replay`); each topic's seqs continue after the last one it stored.
    ///     Without one, seqs start at 1 in each process and no topic leaves memory: past
    ///     `maxTopics` topics, publishes to new ones are refused.
    ///   - group: the event loops for the listener and the connections, any kind of
    ///     `EventLoopGroup`; the broker keeps one hub per loop of it.
    ///   - cluster: shares topics with other nodes through Redis (started by the caller).
    public convenience init(
        configuration: BrokerConfiguration, tokens: TokenStore, replayLog: ReplayLog? = nil,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, logger: Logger = Logger(label: "switchboard"),
        cluster: ClusterEngine? = nil
    ) throws(BrokerConfiguration.Error) {
        try self.init(
            configuration: configuration, tokens: tokens, replayLog: replayLog, group: group, logger: logger,
            clock: { Int64(Date().timeIntervalSince1970 * 1000) }, cluster: cluster)
    }

    /// `clock`: now, in unix milliseconds (tests set a clock that is ahead or behind).
    init(
        configuration: BrokerConfiguration, tokens: TokenStore, replayLog: ReplayLog?, group: any EventLoopGroup,
        logger: Logger, clock: @escaping @Sendable () -> Int64, cluster: ClusterEngine? = nil
    ) throws(BrokerConfiguration.Error) {
        self.clock = clock
        self.cluster = cluster
        self.startedAt = clock()
        self.configuration = configuration
        self.web = WebAssets(demo: configuration.demo)
        self.tokens = tokens
        self.replayLog = replayLog
        var sequencing = Sequencing()
        sequencing.retention = replayLog?.rules
        // A cluster node's seqs are Redis's: what a local log kept from a single-node life is not.
        for (topic, last) in cluster == nil ? replayLog?.retainedTopics() ?? [:] : [:] {
            sequencing.topics.update(topic, last, note: nil)
        }
        self.sequencing = NIOLockedValueBox(sequencing)
        self.group = group
        self.logger = logger
        self.limits = RequestDecoder.Limits(maxPayloadBytes: configuration.maxPayload)
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
        if (configuration.tlsCertificate == nil) != (configuration.tlsKey == nil) {
            throw BrokerConfiguration.Error(
                source: "configuration", key: configuration.tlsCertificate == nil ? "tls_cert" : "tls_key",
                problem: "tls_cert and tls_key go together: set both, or neither")
        }
        let jwt = configuration.jwtSecret.map { JWTVerifier(secret: Array($0.utf8)) }
        self.authenticator = Authenticator(tokens: tokens, jwt: jwt, anonymous: anonymous)
        var hubs: [ObjectIdentifier: Hub] = [:]
        for loop in group.makeIterator() {
            hubs[ObjectIdentifier(loop)] = Hub(
                eventLoop: loop, deliverLatency: metrics.deliverLatency,
                deflate: configuration.deflate.enabled ? configuration.deflate : nil)
        }
        self.hubs = hubs
        let sequencingBox = self.sequencing
        let replay = configuration.replay
        if let cluster {
            self.store = ClusterStore(engine: cluster, sequencing: sequencingBox, maxTopics: configuration.maxTopics) {
                Self.retention(sequencingBox, replay)
            }
        } else {
            self.store = LocalTopicStore(
                sequencing: sequencingBox, replayLog: replayLog, hubs: Array(hubs.values), configuration: configuration,
                logger: logger)
        }
        self.history = store.history
        // A retained message reaches subscribers only once committed, so a seq a subscriber
        // saw is never handed out again after a crash. The writer commits in seq order per
        // topic, so each hub still gets every topic in seq order.
        let everyHub = Array(hubs.values)
        let deflate = configuration.deflate
        replayLog?.deliverCommitted { batch in
            let deliveries = batch.map { pending in
                let frame = pending.message.frame ?? pending.message.encodeFrame()
                return Delivery(
                    topic: pending.message.topic, sequence: pending.message.sequence, frame: frame,
                    compressed: SharedCompression.make(for: frame, deflate))
            }
            for hub in everyHub { hub.enqueue(contentsOf: deliveries) }
        }
        cluster?.onDeliveries(
            { deliveries in
                for hub in everyHub { hub.enqueue(contentsOf: deliveries) }
            },
            subscribed: {
                var names: Set<String> = []
                for hub in everyHub {
                    names.formUnion(
                        (try? await hub.inspect { state in Set(state.sessions.values.flatMap(\.subscriptions)) }.get()) ?? [])
                }
                return Set(names.map(TopicPattern.init(checked:)))
            })
        self.tokenConnections = TokenConnections(limit: configuration.maxConnectionsPerToken)
        tokens.onRevoke { [weak self] record in self?.revoked([record.id]) }
        replayLog?.onCommit { [metrics] nanoseconds in metrics.commitLatency.recordNanoseconds(nanoseconds) }
    }

    /// Starts listening on the configured host and port; returns the bound address. Once
    /// only: throws `LifecycleError` when already started or shut down. `run()` calls it
    /// when it was not called before.
    @discardableResult
    public func start() async throws -> SocketAddress {
        let refusal = lifecycle.withLockedValue { state -> LifecycleError? in
            switch state {
            case .idle:
                state = .starting
                return nil
            case .starting, .listening: return .alreadyStarted
            case .stopping: return .stopped
            }
        }
        if let refusal { throw refusal }
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
        options.trustedProxies = configuration.trustedProxies
        // A session reads its request once, when it opens, for the client's address.
        options.keptRequestHeaders = ["X-Forwarded-For"]
        options.maxConnectionsPerAddress = configuration.maxConnectionsPerIP > 0 ? configuration.maxConnectionsPerIP : nil
        options.handshakeRate = configuration.handshakeRate > 0
            ? HandshakeRateLimit(perSecond: configuration.handshakeRate, burst: configuration.handshakeBurst) : nil
        options.maxConcurrentHandshakes = configuration.maxHandshakes
        options.connection.partialFrameTimeout = configuration.frameTimeoutSeconds > 0
            ? .seconds(Int64(configuration.frameTimeoutSeconds)) : nil
        options.selectSubprotocol = { offered, _ in
            offered.contains(WireProtocol.subprotocol) ? WireProtocol.subprotocol : nil
        }
        if let certificate = configuration.tlsCertificate, let key = configuration.tlsKey {
            options.tls = TLSConfiguration(certificateFile: certificate, privateKeyFile: key)
        }
        options.perMessageDeflate = configuration.deflate.serverOptions
        options.verifyClient = { [self] request in await verify(request) }
        options.plainHTTP = { [self] request in await AdminAPI(broker: self).handle(request) }
        options.maxPlainHTTPBody = AdminAPI.maxBody(maxPayload: configuration.maxPayload)
        let server = WebSocketServer(options: options, group: group) { [self] socket in open(socket) }
        // The cluster's revocations and rules first, so none of them is missed by a client.
        await cluster?.control.join(clusterMember)
        let address: SocketAddress
        do {
            address = try await server.listen()
        } catch {
            lifecycle.withLockedValue { state in
                if case .starting = state { state = .idle }
            }
            throw error
        }
        let stoppedMeanwhile = lifecycle.withLockedValue { state in
            guard case .starting = state else { return true }
            state = .listening(server)
            return false
        }
        if stoppedMeanwhile {
            await server.shutdown()
            throw LifecycleError.stopped
        }
        cluster?.control.listening(on: "\(address.ipAddress ?? "?"):\(address.port ?? 0)")
        watchTokens()
        evictIdleTopics()
        if configuration.demo { publishDemoMetrics() }
        logger.info("listening", metadata: ["address": "\(address)"])
        return address
    }

    /// Stops accepting, closes every client with 1001 after what was already accepted for
    /// it, waits for the close handshakes (bounded by the close timeout), then commits what
    /// the replay log holds and closes it. Calls after the first wait for the first to finish.
    public func shutdown() async {
        stopRequests.continuation.finish()
        enum Step {
            case drain(WebSocketServer?, EventLoopPromise<Void>)
            case wait(EventLoopFuture<Void>)
        }
        let step = lifecycle.withLockedValue { state -> Step in
            var server: WebSocketServer?
            switch state {
            case .idle, .starting: break
            case .listening(let listening): server = listening
            case .stopping(_, let drained): return .wait(drained)
            }
            let drained = group.next().makePromise(of: Void.self)
            state = .stopping(server, drained: drained.futureResult)
            return .drain(server, drained)
        }
        switch step {
        case .wait(let drained):
            try? await drained.get()
        case .drain(let server, let drained):
            tokenWatch.withLockedValue { $0?.cancel(promise: nil) }
            topicEviction.withLockedValue { $0?.cancel(promise: nil) }
            demoMetrics.withLockedValue { $0?.cancel(promise: nil) }
            await server?.shutdown()
            if let replayLog {
                // Commits what is queued; blocking, so off the event loops and the cooperative pool.
                try? await NIOThreadPool.singleton.runIfActive { replayLog.close() }
            }
            logger.info("stopped")
            drained.succeed()
        }
    }

    /// Rereads the TLS certificate and key files (`tlsCertificate`, `tlsKey`): connections
    /// accepted from now on use the new ones, open ones keep theirs. On error (a missing or
    /// bad file) the current certificate stays in use and the error is thrown.
    public func reloadTLS() throws {
        guard let server else { throw TLSError(.configuration, "the broker is not listening") }
        try server.reloadTLS()
    }

    /// Calls `reloadTLS()` on every SIGHUP until the returned source is cancelled; `onReload`
    /// hears the outcome (nil on success). Nil when the broker is not listening.
    public func reloadTLSOnSIGHUP(onReload: @escaping @Sendable ((any Error)?) -> Void) -> (any DispatchSourceSignal)? {
        server?.reloadTLSOnSIGHUP(onReload: onReload)
    }

    /// The client's address for logs and the admin API: `UpgradeRequest.clientAddress`
    /// (believing `X-Forwarded-For` only from `trustedProxies`), else the socket's peer.
    func clientAddress(_ request: UpgradeRequest?, remote: SocketAddress? = nil) -> String {
        request?.clientAddress ?? remote?.ipAddress ?? "?"
    }

    /// Whether the broker is listening (started, not shutting down).
    var isListening: Bool {
        lifecycle.withLockedValue { state in
            if case .listening = state { return true }
            return false
        }
    }

    /// Whether `start()` was called.
    var isStarted: Bool {
        lifecycle.withLockedValue { state in
            if case .idle = state { return false }
            return true
        }
    }

    private var server: WebSocketServer? {
        lifecycle.withLockedValue { state in
            switch state {
            case .idle, .starting: nil
            case .listening(let server): server
            case .stopping(let server, _): server
            }
        }
    }

    /// Counters for operators (the admin API and tests).
    public var statistics: BrokerStatistics {
        let (topics, published) = sequencing.withLockedValue { ($0.topics.count, $0.published) }
        return BrokerStatistics(
            connections: server?.connectionCount ?? 0, topics: topics, published: published,
            replayed: replayedCount.withLockedValue { $0 }, replay: replayLog?.statistics)
    }

    /// Messages and payload bytes published since start.
    var publishedTotals: (messages: UInt64, bytes: UInt64) {
        sequencing.withLockedValue { ($0.published, $0.publishedBytes) }
    }

    /// A session wrote `count` messages of a catch-up to its socket.
    func countReplayed(_ count: Int) {
        replayedCount.withLockedValue { $0 += UInt64(count) }
    }

    // MARK: Handshake

    /// The token cache answers without I/O; only a token the cache does not know is looked
    /// up in the database, on NIO's thread pool.
    private func verify(_ request: UpgradeRequest) async -> UpgradeDecision {
        if case .unsupported = WireProtocol.chooseSubprotocol(offered: request.protocols) {
            metrics.handshakeFailed("unsupported_subprotocol")
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
            return admit(request, try await authenticate(presented))
        } catch {
            return refuse(request, error)
        }
    }

    /// The principal of a presented token (nil: anonymous, if allowed). The token cache
    /// answers without I/O; a token it does not know was perhaps created by another process
    /// (`switchboard token create`) since the last reload, and is looked up in the database,
    /// or on a cluster node by another node, and is looked up in Redis.
    func authenticate(_ presented: String?) async throws(AuthError) -> Principal {
        do throws(AuthError) {
            return try authenticator.authenticate(presented)
        } catch {
            guard error.reason == .unknown, let presented else { throw error }
            _ = try? await NIOThreadPool.singleton.runIfActive { [tokens] in try tokens.fetch(token: presented) }
            if let cluster, tokens.lookup(token: presented) == nil { await cluster.control.fetch(token: presented) }
            return try authenticator.authenticate(presented)
        }
    }

    /// Accepts an authenticated client unless its token already holds its share of connections.
    private func admit(_ request: UpgradeRequest, _ principal: Principal) -> UpgradeDecision {
        guard let key = principal.connectionKey, tokenConnections.isFull(key) else {
            return .accept(userInfo: ConnectionUserInfo(PrincipalKey.self, shared(principal)))
        }
        metrics.handshakeFailed("too_many_for_token")
        logger.notice("connection refused", metadata: [
            "peer": "\(clientAddress(request))",
            "principal": "\(principal.logLabel)", "reason": "too many connections for this token",
        ])
        return .reject(
            status: 429,
            body: "too many connections: this token already has \(tokenConnections.limit) (max_connections_per_token)")
    }

    /// `principal` in a `SharedPrincipal`: the last anonymous one when it is equal.
    private func shared(_ principal: Principal) -> SharedPrincipal {
        guard case .anonymous = principal.kind else { return SharedPrincipal(principal) }
        return anonymousPrincipal.withLockedValue { last in
            if let last, last.principal == principal { return last }
            let made = SharedPrincipal(principal)
            last = made
            return made
        }
    }

    private func refuse(_ request: UpgradeRequest, _ error: AuthError) -> UpgradeDecision {
        metrics.handshakeFailed(error.reason.rawValue)
        logger.notice("authentication failed", metadata: [
            "peer": "\(clientAddress(request))",
            "reason": "\(error.reason.rawValue)",
        ])
        // The body names the reason code (docs/protocol.md: missing, malformed, …) first.
        return .reject(
            status: error.httpStatus, body: "unauthorized: \(error.reason.rawValue): \(error.message)",
            headers: ["WWW-Authenticate": "Bearer realm=\"switchboard\", error=\"invalid_token\""])
    }

    private func open(_ socket: WebSocket) {
        guard let shared = socket.userInfo[PrincipalKey.self], let hub = hubs[ObjectIdentifier(socket.eventLoop)] else {
            socket.terminate()
            return
        }
        let principal = shared.principal
        let key = principal.connectionKey
        if let key, !tokenConnections.open(key) {
            // Handshakes of one token that raced past `admit` together: the one over the limit goes.
            socket.close(code: .policyViolation, reason: "too many connections for this token", promise: nil)
            return
        }
        let id = lastSessionID.withLockedValue { last in
            last += 1
            return last
        }
        let session = Session(id: id, openedAt: clock(), socket: socket, principal: shared, broker: self, hub: hub)
        hub.add(session)
        metrics.connected()
        logger.info("connection opened", metadata: ["peer": "\(session.peer)", "principal": "\(principal.logLabel)"])
        socket.setConsumer(session)
    }

    /// The end of a session's connection, on its loop: `Session.closed` calls it.
    func closed(_ session: Session, _ info: CloseInfo) {
        metrics.disconnected(info.code)
        session.hub.remove(session)
        if let key = session.principal.connectionKey { tokenConnections.close(key) }
        logger.info("connection closed", metadata: [
            "peer": "\(session.peer)", "principal": "\(session.principal.logLabel)", "code": "\(info.code.rawValue)",
            "reason": "\(info.reason)", "clean": "\(info.wasClean)",
        ])
    }

    // MARK: Publishing

    /// What became of a publish.
    enum Sequenced {
        /// Sequenced and fanned out; ack it now.
        case published(UInt64)
        /// Sequenced and queued for the replay log (fanned out once committed); `committed`
        /// will be called.
        case awaitingCommit(UInt64)
        /// Not published: the replay log cannot take it (its queue is full or it is closed),
        /// or its topic's last seq could not be read.
        case rejected(ReplayError)
        /// Not published: `maxTopics` topics are in memory and none can be evicted.
        case tooManyTopics
        /// Not published yet: its topic's last seq is being read back from the replay log;
        /// `loaded` is called once it is in memory (publish again) or could not be read.
        case deferred
    }

    /// Hands a publish to the store (see `TopicStore.publish`).
    func publish(
        _ publish: Publish, from publisher: Principal,
        committed: (@Sendable (UInt64, Result<Void, ReplayError>) -> Void)? = nil,
        loaded: @escaping @Sendable (Result<Void, ReplayError>) -> Void = { _ in }
    ) -> Sequenced {
        store.publish(publish, from: publisher, now: clock(), committed: committed, loaded: loaded)
    }

    /// The retention rules in force: the replay log's (replaced at run time), else the configured ones.
    private static func retention(_ sequencing: NIOLockedValueBox<Sequencing>, _ replay: ReplayConfiguration) -> RetentionRules {
        sequencing.withLockedValue { $0.retention } ?? replay.retention
    }

    /// Makes `rules` the replay log's retention rules, stored so that they outlast a restart
    /// (they win over `configuration.replay.rules` from then on). Publishes sequenced after
    /// the swap are decided by them; the pruner applies them on its next pass. Throws
    /// `unavailable` without a replay log, or when the rules cannot be stored (the old ones
    /// stay). Blocks on SQLite: call it off the event loops.
    public func replaceRetention(_ rules: RetentionRules) throws(ReplayError) {
        guard let replayLog else { throw .unavailable("the replay log is off: this broker retains nothing") }
        try replayLog.replaceRules(rules) { [sequencing] rules in
            sequencing.withLockedValue { $0.retention = rules }
        }
        logger.notice("retention rules replaced", metadata: ["rules": "\(rules)"])
    }

    /// Every so often, evicts the topics not published for `topicIdleSeconds` whose last seq
    /// is committed (a few thousand per hold of the lock). Nothing to evict costs one look at
    /// the least recently published topic. Only with a replay log, where their seqs are kept.
    private func evictIdleTopics() {
        guard let replayLog else { return }
        let idle = Int64(configuration.topicIdleSeconds) * 1000
        let interval = TimeAmount.milliseconds(min(max(idle / 4, 250), 30_000))
        let task = group.next().scheduleRepeatedTask(initialDelay: interval, delay: interval) { [self] _ in
            let before = clock() - idle
            let durable = replayLog.durableSequenceNotes
            let chunk = 4096
            while sequencing.withLockedValue({ $0.topics.evict(publishedBefore: before, durable: durable, limit: chunk) })
                == chunk
            {}
        }
        topicEviction.withLockedValue { $0 = task }
    }

    /// The store's current seqs of the topics `pattern` matches (`TopicStore.currentSequences`).
    func currentSequences(matching pattern: TopicPattern) -> [Topic: UInt64] {
        store.currentSequences(matching: pattern)
    }

    // MARK: Revocation and expiry

    /// Every `tokenWatchInterval`, on NIO's thread pool (blocking SQLite never runs on an
    /// event loop or the Swift cooperative pool): apply what changed in the tokens table,
    /// and close the connections of the tokens revoked. Idle, that is one indexed read.
    /// Expiry needs no polling: each hub's `AccessIndex` has a timer for its earliest.
    private func watchTokens() {
        let loop = group.next()
        let interval = Self.tokenWatchInterval
        let task = loop.scheduleRepeatedAsyncTask(initialDelay: interval, delay: interval) { [self] _ in
            NIOThreadPool.singleton.runIfActive(eventLoop: loop) { [self] in
                do {
                    revoked(try tokens.applyChanges())
                } catch {
                    logger.error("cannot read token changes", metadata: ["error": "\(error)"])
                }
            }
        }
        tokenWatch.withLockedValue { $0 = task }
    }

    /// Closes with 4001 the connections of these tokens, each hub on its own loop, and
    /// tells the other nodes of a cluster.
    private func revoked(_ ids: [String]) {
        guard !ids.isEmpty else { return }
        cluster?.control.revoked(ids)
        for hub in hubs.values {
            hub.eventLoop.execute {
                for id in ids {
                    for session in hub.sessions(token: id) {
                        session.close(Self.CloseCodes.tokenRevoked, "token revoked")
                    }
                }
            }
        }
    }
}

/// A snapshot of the broker's counters.
public struct BrokerStatistics: Sendable, Hashable {
    /// Open WebSocket connections.
    public var connections: Int
    /// Topics held in memory: published since start and not evicted since, or retained by
    /// the replay log (at most `maxTopics`, but for retained topics loaded at start). On a
    /// cluster node: the topics published through this node, by the same rules.
    public var topics: Int
    /// Messages published since start (on a cluster node: through this node, acknowledged by Redis).
    public var published: UInt64
    /// Messages sent from the replay log to subscribers resuming with `since` / `since_time`,
    /// since start: written to their sockets (a subscriber that stops reading holds up its
    /// replay, so this stops growing for it).
    public var replayed: UInt64
    /// The replay log's state and counters (`status` is `degraded` while it cannot write);
    /// nil without a replay log.
    public var replay: ReplayStatistics?
}

/// The key of the principal the broker's handshake attaches to a connection.
enum PrincipalKey: ConnectionUserInfoKey {
    typealias Value = SharedPrincipal
}

/// A connection's principal in one object that its user info and its session share: a user
/// info value is an existential, which keeps a class reference inline but puts a `Principal`
/// in a box of its own, and the session would hold a second copy. Anonymous connections
/// all share one.
final class SharedPrincipal: Sendable {
    let principal: Principal

    init(_ principal: Principal) {
        self.principal = principal
    }
}
