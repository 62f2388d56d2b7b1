import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import WebSocketCore

/// A WebSocket server: listens on a host and port, or serves paths of an existing NIO
/// HTTP/1.1 server (`upgradeHandler(routes:)`), the way `ws`'s `WebSocketServer` does
/// with `port` or `noServer` + `handleUpgrade`.
///
/// Connections are handled in one of two ways, chosen by the initializer:
///
///     // An async handler per connection, run by `run()` as a child task of the server
///     // (cancelled and awaited at shutdown); the connection closes with 1000 when it returns.
///     let server = WebSocketServer(options: .init(port: 9001)) { (ws: WebSocket) async throws in
///         for try await message in ws.messages { try await ws.send(message) }
///     }
///     try await server.run()   // or in a ServiceGroup: WebSocketServer is a Service
///
///     // Callbacks on the connection's event loop: no task per connection, the fastest path.
///     let server = WebSocketServer(options: .init(port: 9001)) { ws in
///         ws.onMessage { message in ws.sendWithoutWaiting(message) }
///     }
///     try await server.run()   // or listen() … shutdown()
///
/// With a trailing closure Swift picks the initializer by the closure: one that awaits is the
/// async `handler:`, one that does not is `onConnection:`; spell the label to be explicit.
///
/// Every public method may be called from any thread or task.
public final class WebSocketServer: Sendable {
    /// Everything a server can be told, with documented defaults.
    public struct Options: Sendable {
        /// Address to listen on. Default 127.0.0.1; "0.0.0.0" or "::" for every interface.
        public var host: String = "127.0.0.1"
        /// Port, 0...65535; 0 picks a free one (see `localAddress`). Default 0.
        public var port: Int = 0
        /// Listen backlog, not negative. Default 511, as `ws`.
        public var backlog: Int32 = 511
        /// Only this path is served (others get 404); nil serves every path. Default nil.
        public var path: String? = nil
        /// Options of each accepted connection (limits, heartbeat, close timeout…).
        public var connection = ConnectionOptions()
        /// permessage-deflate; off by default on the server, as `ws`.
        public var perMessageDeflate: PerMessageDeflateOptions? = nil
        /// Subprotocols this server speaks, in its order of preference. Default none.
        public var protocols: [String] = []
        /// Picks the subprotocol from the client's offer (nil: none). Default nil: the first
        /// of the client's protocols that `protocols` lists (the client's preference wins).
        public var selectSubprotocol: (@Sendable ([String], UpgradeRequest) -> String?)? = nil
        /// Decides whether to accept an upgrade (authentication, origin checks): accept, with
        /// headers and `userInfo` for the connection, or reject with any status and a body.
        /// Bounded by `handshakeTimeout`: a hook still running then is cancelled and the client
        /// gets 408. Default nil: accept every valid request (without starting a task).
        public var verifyClient: (@Sendable (UpgradeRequest) async -> UpgradeDecision)? = nil
        /// Adds headers to every 101 response. Default nil.
        public var responseHeaders: (@Sendable (UpgradeRequest) -> HTTPFields)? = nil
        /// Protocol versions accepted. Default 13 and 8.
        public var versions: Set<WebSocketVersion> = [.v13, .v8]
        /// Time a client has from connecting to completing its handshake (positive), however
        /// slowly its bytes come; past it, 408 and close. Attached to an application's server
        /// (`upgradeHandler(routes:)`), it runs from the connection's start until its first
        /// request head, which is closed without an answer if it has not come by then (the
        /// application's own timeouts apply to the requests it serves), and from the head of
        /// an upgrade request routed here. Default 10 s.
        public var handshakeTimeout: Duration = .seconds(10)
        /// Bytes a client may send before its handshake completes (at least 1); past it, 431.
        /// Attached to an application's server, the bytes of an upgrade request's head
        /// (request line and headers) routed here; NIO's HTTP parser bounds what comes before
        /// (80 KiB). Default 16 KiB.
        public var maxHandshakeSize: Int = 16 * 1024
        /// Open connections (including those still handshaking), at least 1; upgrades past it
        /// get 503. Attached to an application's server, connections count from when an
        /// upgrade request is routed here. Default 100 000.
        public var maxConnections: Int = 100_000
        /// Handshakes started per second, server-wide: a token bucket, `burst` at once after a
        /// quiet spell, `perSecond` on average (both at least 1). Past it, and past
        /// `maxConcurrentHandshakes`, a connection is closed as soon as it is accepted, before
        /// anything is read: under a flood that is the cheapest answer (no parsing, no TLS
        /// handshake, no timer), and clients retry a dropped connection with their backoff.
        /// Attached to an application's server the request has been read by then, so it is
        /// answered 503 with `Retry-After`. Default 1000 per second, bursts of 10 000; nil: no
        /// limit.
        public var handshakeRate: HandshakeRateLimit? = HandshakeRateLimit(perSecond: 1_000, burst: 10_000)
        /// Connections accepted whose handshake has not finished (upgraded, or refused and
        /// closed), at least 1; past it, as past `handshakeRate`. Default 1000.
        public var maxConcurrentHandshakes: Int = 1_000
        /// Connections from one remote IP address, handshaking or open (at least 1); past it
        /// the upgrade request is answered 429 with a one-line reason. Behind a reverse proxy
        /// every connection comes from the proxy's address: raise it, or set nil, there.
        /// Default 10 000; nil: no limit.
        public var maxConnectionsPerAddress: Int? = 10_000
        /// IP addresses of reverse proxies whose `X-Forwarded-For` is believed: for a
        /// connection from one of them, `UpgradeRequest.clientAddress` is the last address in
        /// the header that is not a trusted proxy. Exact IPv4 or IPv6 addresses, as
        /// `SocketAddress.ipAddress` spells them. Default none: the header is ignored.
        public var trustedProxies: [String] = []
        /// The upgrade request's headers that `WebSocket.request` keeps for the connection's
        /// life, by name (any case); nil keeps them all. Kept headers cost every connection
        /// their size for as long as it is open; `verifyClient`, `selectSubprotocol` and
        /// `responseHeaders` always see every header. Default nil.
        public var keptRequestHeaders: [String]? = nil
        /// Answers the requests on the server's port that are not upgrades (no `Upgrade`
        /// header): a health check, an admin API. The request is read whole (its head within
        /// `maxHandshakeSize`, its body within `maxPlainHTTPBody`, else 431 or 413), the answer
        /// is written and the connection closed; the whole exchange is bounded by
        /// `handshakeTimeout` (408) and counts as a handshake for the admission limits.
        /// Upgrade requests are served as without it. Standalone servers only. Default nil:
        /// such a request is refused as a bad handshake.
        public var plainHTTP: (@Sendable (PlainHTTPRequest) async -> PlainHTTPResponse)? = nil
        /// Bytes of a `plainHTTP` request's body (at least 0); a larger one gets 413. Default 1 MiB.
        public var maxPlainHTTPBody: Int = 1 << 20
        /// Serve wss:// with this certificate and key (see `reloadTLS()`). Default nil: plain.
        public var tls: TLSConfiguration? = nil
        /// Listen on this unix socket instead of `host`/`port` (an existing socket file is
        /// replaced). Default nil.
        public var unixSocketPath: String? = nil
        /// Whether `run()` opens the listener (unless `listen()` already did). False for a
        /// server that only serves an application's HTTP server through
        /// `upgradeHandler(routes:)`: `run()` then runs its handlers and drains at shutdown.
        /// Default true.
        public var listens: Bool = true
        /// Where the server reports what clients cannot see from their side: handshakes it
        /// refused (`.info`; `.notice` for a 5xx such as the connection limit), protocol
        /// errors of its peers (`.info`), connections opened and closed (`.debug`), with
        /// `peer`, `path` and `code` or `status` as metadata, never a header or query value.
        /// Default: the label `websockets` with a handler that drops everything.
        public var logger: Logger = .silent

        /// Options listening on `host` and `port`, every other option at its default.
        public init(host: String = "127.0.0.1", port: Int = 0) {
            self.host = host
            self.port = port
        }

        /// Throws `InvalidOption` naming the first option out of its range (`listen()` and
        /// `upgradeHandler(routes:)` call it, before anything runs on the options).
        public func validate() throws(InvalidOption) {
            if unixSocketPath == nil { try InvalidOption.check("port", port, in: 0...65535) }
            try InvalidOption.check("backlog", backlog, atLeast: 0)
            try InvalidOption.checkPositive("handshakeTimeout", handshakeTimeout)
            try InvalidOption.check("maxHandshakeSize", maxHandshakeSize, atLeast: 1)
            try InvalidOption.check("maxPlainHTTPBody", maxPlainHTTPBody, atLeast: 0)
            try InvalidOption.check("maxConnections", maxConnections, atLeast: 1)
            if let handshakeRate {
                try InvalidOption.check("handshakeRate.perSecond", handshakeRate.perSecond, atLeast: 1)
                try InvalidOption.check("handshakeRate.burst", handshakeRate.burst, atLeast: 1)
            }
            try InvalidOption.check("maxConcurrentHandshakes", maxConcurrentHandshakes, atLeast: 1)
            if let maxConnectionsPerAddress {
                try InvalidOption.check("maxConnectionsPerAddress", maxConnectionsPerAddress, atLeast: 1)
            }
            do { try connection.validate() } catch { throw error.under("connection") }
            do { try perMessageDeflate?.validate() } catch { throw error.under("perMessageDeflate") }
        }

        /// The subprotocol to answer a client that offered `offered`.
        func subprotocol(offered: [String], request: UpgradeRequest) -> String? {
            if let selectSubprotocol { return selectSubprotocol(offered, request) }
            return offered.first { protocols.contains($0) }
        }
    }

    /// `run()` was called while another `run()` of the same server was running.
    public struct AlreadyRunning: Error, CustomStringConvertible {
        /// One line saying so.
        public var description: String { "the server's run() is already running" }
    }

    /// `listen()` was called on a server that is listening already (or is binding, or has
    /// shut down): a server has one listener; make another server for another address.
    public struct AlreadyListening: Error, CustomStringConvertible {
        /// One line saying so.
        public var description: String { "the server's listen() was already called" }
    }

    private struct State {
        var listener: (any Channel)?
        /// Set by the first `listen()`, before it binds, so that a second call throws
        /// `AlreadyListening` instead of opening a listener nothing would close.
        var listenCalled = false
        /// Every upgraded connection, keyed by its channel: what `clients` lists and what
        /// shutdown closes.
        var clients: [ObjectIdentifier: WebSocket] = [:]
        var shuttingDown = false
        var running = false
    }

    /// What the server does with each upgraded connection.
    private enum Handling: Sendable {
        /// Called on the connection's event loop.
        case callback(@Sendable (WebSocket) -> Void)
        /// Run by `run()` in a child task per connection.
        case task(@Sendable (WebSocket) async throws -> Void)
    }

    /// The options the server was made with.
    public let options: Options
    /// The event loops of the listener and the connections.
    public let group: any EventLoopGroup
    private let handling: Handling
    private let state = NIOLockedValueBox(State())
    let admission: Admission
    /// `options.connection`, referred to by every connection's handler.
    let connectionOptions: SharedConnectionOptions
    /// With a heartbeat: one schedule per event loop of `group`, so that the connections of a
    /// loop are pinged from one timer instead of a scheduled task each.
    private let heartbeatSchedules: [ObjectIdentifier: NIOLoopBoundBox<HeartbeatSchedule>]
    /// Upgraded connections on their way to `run()`'s task group (handler form only); finished
    /// when shutdown begins, which is what ends `run()`'s wait.
    private let accepted: (stream: AsyncStream<WebSocket>, continuation: AsyncStream<WebSocket>.Continuation)
    /// The TLS context new connections take; `reloadTLS()` swaps it.
    let tlsContext = NIOLockedValueBox<ReloadableTLSContext?>(nil)

    /// A server that calls `onConnection` for each connection.
    ///
    /// - Parameters:
    ///   - options: what the server listens on, accepts and limits (every field has a default).
    ///   - group: event loops for the listener and connections; default NIO's
    ///     `MultiThreadedEventLoopGroup.singleton`, shared with every NIO library in the
    ///     process (see `EventLoopThreads` for sizing it, or pass a group of your own).
    ///   - onConnection: called on the connection's event loop when a client is upgraded;
    ///     set the connection's callbacks here so they apply before its first message.
    public convenience init(
        options: Options = Options(),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        onConnection: @escaping @Sendable (WebSocket) -> Void
    ) {
        self.init(options: options, group: group, handling: .callback(onConnection))
    }

    /// A server that runs `handler` for each connection, in a child task of `run()` (only
    /// while `run()` runs: connections accepted before it starts wait for it). When the
    /// handler returns, the connection is closed with 1000 if still open; when it throws,
    /// with 1011. At shutdown every connection is sent 1001 first, then, once the connections
    /// have closed (or their close timeout passed), handlers still running are cancelled,
    /// and `run()` returns when they have returned.
    ///
    /// - Parameters:
    ///   - options: as for `init(options:group:onConnection:)`.
    ///   - group: as for `init(options:group:onConnection:)`.
    ///   - handler: run for each upgraded connection, in a child task of `run()`.
    public convenience init(
        options: Options = Options(),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        handler: @escaping @Sendable (WebSocket) async throws -> Void
    ) {
        self.init(options: options, group: group, handling: .task(handler))
    }

    private init(options: Options, group: any EventLoopGroup, handling: Handling) {
        self.options = options
        self.group = group
        self.handling = handling
        self.admission = Admission(options: options)
        self.connectionOptions = SharedConnectionOptions(options.connection)
        self.accepted = AsyncStream.makeStream(of: WebSocket.self)
        var schedules: [ObjectIdentifier: NIOLoopBoundBox<HeartbeatSchedule>] = [:]
        if let heartbeat = options.connection.heartbeat {
            for loop in group.makeIterator() {
                schedules[ObjectIdentifier(loop)] = NIOLoopBoundBox.makeBoxSendingValue(
                    HeartbeatSchedule(eventLoop: loop, interval: heartbeat.intervalAmount), eventLoop: loop)
            }
        }
        self.heartbeatSchedules = schedules
    }

    /// The heartbeat schedule of `loop`, on it; nil without a heartbeat or on a loop not of
    /// `group` (an application's pipeline), where a connection keeps a schedule of its own.
    func heartbeatSchedule(on loop: any EventLoop) -> HeartbeatSchedule? {
        heartbeatSchedules[ObjectIdentifier(loop)]?.value
    }

    /// Starts listening on `options.host` and `options.port`; returns the bound address.
    /// Throws `InvalidOption` first when an option is out of its range, and
    /// `AlreadyListening` when an earlier call has bound (or is binding): a server has one
    /// listener for its life. A call that failed to bind may be retried.
    @discardableResult
    public func listen() async throws -> SocketAddress {
        try options.validate()
        let first = state.withLockedValue { state in
            defer { state.listenCalled = true }
            return !state.listenCalled
        }
        guard first else { throw AlreadyListening() }
        do {
            return try await bindListener()
        } catch {
            state.withLockedValue { $0.listenCalled = false }
            throw error
        }
    }

    private func bindListener() async throws -> SocketAddress {
        if let tls = options.tls {
            let context = try ReloadableTLSContext(configuration: tls)
            tlsContext.withLockedValue { $0 = context }
        }
        var bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: options.backlog)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.recvAllocator, value: ReceiveSizes())
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try self.configureStandalonePipeline(channel)
                }
            }
        let channel: any Channel
        if let socketPath = options.unixSocketPath {
            channel = try await bootstrap.bind(unixDomainSocketPath: socketPath, cleanupExistingSocketFile: true).get()
        } else {
            bootstrap = bootstrap.childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            channel = try await bootstrap.bind(host: options.host, port: options.port).get()
        }
        let shuttingDown = state.withLockedValue { state in
            if !state.shuttingDown { state.listener = channel }
            return state.shuttingDown
        }
        guard !shuttingDown, let address = channel.localAddress else {
            // Shut down while binding; or a bound socket without an address, should the
            // kernel not report it.
            try? await channel.close()
            throw shuttingDown ? ChannelError.ioOnClosedChannel : ChannelError.unknownLocalAddress
        }
        options.logger.info("listening", metadata: ["address": "\(peerDescription(address))"])
        return address
    }

    /// Returns when the listener has closed (after `shutdown()`).
    public func waitUntilStopped() async throws {
        guard let listener = state.withLockedValue({ $0.listener }) else { return }
        try await listener.closeFuture.get()
    }

    /// The address the server listens on, once `listen()` returned.
    public var localAddress: SocketAddress? {
        state.withLockedValue { $0.listener?.localAddress }
    }

    /// The open WebSocket connections; from a connection's own callback or handler,
    /// `ws.server?.clients`. A connection is listed just before the connection callback or
    /// handler runs, once its 101 response is written: its client may see the handshake
    /// complete a moment earlier, so a client that must not miss a broadcast waits for word
    /// from that callback (a first message, say).
    public var clients: [WebSocket] {
        state.withLockedValue { Array($0.clients.values) }
    }

    /// TCP connections currently open, handshaking or upgraded (attached to an application's
    /// server: those whose upgrade request was routed here).
    public var connectionCount: Int {
        admission.openConnections
    }

    /// A handler that serves this server's WebSocket endpoint on an application's own
    /// HTTP/1.1 pipeline (`configureHTTPServerPipeline`): add it after the HTTP handlers,
    /// in the child channel initializer (before the channel reads). Upgrade requests whose
    /// path is a key of `routes` are taken; everything else, HTTP errors included, passes
    /// through to the handlers after it.
    ///
    ///     try channel.pipeline.syncOperations.configureHTTPServerPipeline()
    ///     try channel.pipeline.syncOperations.addHandler(WebSocketServer.upgradeHandler(routes: ["/ws": server]))
    ///     try channel.pipeline.syncOperations.addHandler(MyHTTPHandler())
    ///
    /// `configureHTTPServerPipeline` without an upgrader makes a request decoder that drops
    /// the bytes after an upgrade request; when added, this handler swaps it (and its
    /// encoder) for a pair that forwards them, so frames a client sends right behind its
    /// request are not lost. The servers' limits apply as their options describe for this
    /// case; before a connection's first request head, the shortest of their
    /// `handshakeTimeout`s. Throws `InvalidOption` when an option of a server in `routes` is
    /// out of its range.
    public static func upgradeHandler(routes: [String: WebSocketServer]) throws(InvalidOption) -> any ChannelHandler {
        for server in routes.values { try server.options.validate() }
        return ServerUpgradeHandler(mode: .attached(routes))
    }

    /// Thrown from the child channel initializer for a connection past the handshake limits:
    /// NIO then closes it without registering it, so nothing of it is read.
    struct Overloaded: Error {}

    private func configureStandalonePipeline(_ channel: any Channel) throws {
        let verdict = admission.arrive(from: channel.remoteAddress)
        switch verdict {
        case .overloaded: throw Overloaded()
        case .admitted(let address): track(channel, address: address)
        case .tooManyFromAddress: track(channel, address: nil)
        }
        let pipeline = channel.pipeline.syncOperations
        do {
            if let tls = tlsContext.withLockedValue({ $0 }) {
                try pipeline.addHandler(makeTLSHandler(tls))
            }
            // With `plainHTTP`, a request's body may follow its head before the head is parsed;
            // the upgrade handler lowers the limit again once the head says it is an upgrade.
            let sizeLimit = options.maxHandshakeSize + (options.plainHTTP == nil ? 0 : options.maxPlainHTTPBody)
            try pipeline.addHandler(HandshakeSizeLimit(limit: sizeLimit, logger: options.logger))
            try pipeline.addHandler(HTTPResponseEncoder())
            try pipeline.addHandler(ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes)))
            try pipeline.addHandler(ServerUpgradeHandler(mode: .standalone(self, verdict)))
        } catch {
            // The upgrade handler, which gives the handshake back when it goes, was not added.
            admission.handshakeEnded()
            throw error
        }
    }

    /// Counts a connection `admission` let in until it closes, and then drops it from
    /// `clients` too, so that a connection costs one close callback, not two (each is an
    /// allocation that an idle connection keeps).
    func track(_ channel: any Channel, address: String?) {
        let key = ObjectIdentifier(channel)
        channel.closeFuture.whenComplete { [self] _ in
            admission.closed(address: address)
            didClose(key)
        }
    }

    /// Called by the upgrade handler, on the connection's event loop, once it is a WebSocket
    /// (tracked since it arrived: its close callback drops it from `clients`).
    func didOpen(_ socket: WebSocket) {
        let key = ObjectIdentifier(socket.channel)
        let shuttingDown = state.withLockedValue { state in
            if !state.shuttingDown { state.clients[key] = socket }
            return state.shuttingDown
        }
        if shuttingDown {
            socket.handler.close(code: .goingAway, reason: Self.shutdownReason, promise: nil)
            return
        }
        options.logger.debug("connection opened", metadata: socket.logMetadata)
        switch handling {
        case .callback(let onConnection):
            onConnection(socket)
        case .task:
            if case .terminated = accepted.continuation.yield(socket) {
                // Shutdown began since the check above; it may not have seen this connection.
                socket.handler.close(code: .goingAway, reason: Self.shutdownReason, promise: nil)
            }
        }
    }

    /// On the connection's event loop, once its channel closed.
    private func didClose(_ key: ObjectIdentifier) {
        let socket = state.withLockedValue { $0.clients.removeValue(forKey: key) }
        socket?.logClose(to: options.logger)
    }

    static let shutdownReason = "server shutting down"

    /// Stops accepting, closes every client with 1001, waits up to the close timeout for
    /// their close handshakes, then drops whatever is left. A cancelled caller stops waiting;
    /// the closes go on. (`run()` returns once its handlers have returned as well.)
    public func shutdown() async {
        let clients = beginShutdown()
        await waitUntilNotListening()
        await waitUntilClosed(clients)
    }

    /// Returns once the listener is closed. Its close runs on its event loop: until then the
    /// port still accepts connections, which a caller of `shutdown()` must not meet.
    private func waitUntilNotListening() async {
        guard let listener = state.withLockedValue({ $0.listener }) else { return }
        _ = try? await listener.closeFuture.getUnlessCancelled()
    }

    /// Stops accepting, ends `run()`'s intake and sends every client a close with 1001;
    /// returns those clients. Idempotent.
    @discardableResult
    private func beginShutdown() -> [WebSocket] {
        let (listener, clients, first) = state.withLockedValue { state in
            defer { state.shuttingDown = true }
            return (state.listener, Array(state.clients.values), !state.shuttingDown)
        }
        if first { options.logger.info("shutting down", metadata: ["clients": "\(clients.count)"]) }
        listener?.close(promise: nil)
        accepted.continuation.finish()
        for client in clients {
            client.closeWithoutWaiting(code: .goingAway, reason: Self.shutdownReason)
        }
        return clients
    }

    /// Returns when every one of `clients` has closed (each within its close timeout of the
    /// close being sent), or when the calling task is cancelled.
    private func waitUntilClosed(_ clients: [WebSocket]) async {
        await withTaskGroup(of: Void.self) { group in
            for client in clients {
                group.addTask { _ = try? await client.channel.closeFuture.getUnlessCancelled() }
            }
        }
    }
}

extension WebSocketServer: Service {
    /// Listens (unless `listen()` already did, or `options.listens` is false) and serves
    /// until the task is cancelled or a graceful shutdown is triggered (in a `ServiceGroup`)
    /// or `shutdown()` is called; then drains: every client is sent 1001, and `run()` waits
    /// for the connections to close (each within its close timeout) and for the handlers it
    /// runs (handler form) to return, cancelling those still running once the connections are
    /// closed. A cancelled `run()` stops waiting for connections at once; a handler must
    /// return when it is cancelled. Throws when listening fails, or `AlreadyRunning`.
    public func run() async throws {
        let started = state.withLockedValue { state in
            if state.running { return false }
            state.running = true
            return true
        }
        guard started else { throw AlreadyRunning() }
        defer { state.withLockedValue { $0.running = false } }
        if options.listens, state.withLockedValue({ !$0.listenCalled }) {
            try await listen()
        }
        await withTaskCancellationOrGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                for await socket in accepted.stream {
                    if case .task(let handler) = handling {
                        group.addTask { await self.serve(socket, handler) }
                    }
                }
                // Shutdown began: the clients were sent 1001. Handlers that read `messages` see
                // them end as the connections close; the others are cancelled after that.
                await waitUntilNotListening()
                await waitUntilClosed(clients)
                group.cancelAll()
            }
        } onCancelOrGracefulShutdown: {
            self.beginShutdown()
        }
    }

    /// Runs the application's handler for one connection, then closes the connection if the
    /// handler left it open: 1000 after a return, 1011 after a throw, 1001 when cancelled
    /// (shutdown).
    private func serve(_ socket: WebSocket, _ handler: @Sendable (WebSocket) async throws -> Void) async {
        do {
            try await handler(socket)
        } catch where !Task.isCancelled {
            var metadata = socket.logMetadata
            metadata["error"] = "\(error)"
            options.logger.debug("connection handler threw", metadata: metadata)
            socket.closeWithoutWaiting(code: .internalError, reason: "")
            return
        } catch {
            // Cancelled: shutdown, which has sent 1001 already unless `run()` itself was cancelled.
        }
        if Task.isCancelled {
            socket.closeWithoutWaiting(code: .goingAway, reason: Self.shutdownReason)
        } else {
            socket.closeWithoutWaiting(code: .normalClosure, reason: "")
        }
    }
}
