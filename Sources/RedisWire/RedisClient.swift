import NIOConcurrencyHelpers
import NIOCore

/// What a client reports about its connection.
public enum RedisClientEvent: Sendable, Equatable {
    case connected
    /// The connection was lost or could not be made; commands fail `unavailable` until the
    /// next `connected`.
    case disconnected(String)
}

/// Keeps one connection to Redis, reconnecting with `RedisBackoff` whenever it is lost.
/// While there is no connection, commands fail at once with `RedisError.unavailable`: a
/// caller learns that Redis is away instead of waiting on it or losing the command.
public final class RedisClient: RedisCommandSending {
    private enum Phase {
        case idle
        case connecting
        case connected(RedisConnection)
        case closed
    }

    private struct State {
        var phase: Phase = .idle
        var task: Task<Void, Never>?
        var connectedWaiters: [CheckedContinuation<Void, any Error>] = []
    }

    public let endpoint: RedisEndpoint
    private let group: any EventLoopGroup
    private let backoff: RedisBackoff
    private let limits: RESPLimits
    private let onPush: @Sendable ([RESPValue]) -> Void
    private let onConnect: @Sendable (RedisConnection) async throws -> Void
    private let onEvent: @Sendable (RedisClientEvent) -> Void
    private let state = NIOLockedValueBox(State())

    /// `onConnect` runs on every new connection before commands may use it (a subscriber
    /// subscribes again there); if it throws, the connection is dropped and retried.
    public init(
        endpoint: RedisEndpoint,
        group: any EventLoopGroup,
        backoff: RedisBackoff = RedisBackoff(),
        limits: RESPLimits = RESPLimits(),
        onPush: @escaping @Sendable ([RESPValue]) -> Void = { _ in },
        onConnect: @escaping @Sendable (RedisConnection) async throws -> Void = { _ in },
        onEvent: @escaping @Sendable (RedisClientEvent) -> Void = { _ in }
    ) {
        self.endpoint = endpoint
        self.group = group
        self.backoff = backoff
        self.limits = limits
        self.onPush = onPush
        self.onConnect = onConnect
        self.onEvent = onEvent
    }

    /// Starts connecting in the background; returns at once.
    public func start() {
        state.withLockedValue { state in
            guard case .idle = state.phase else { return }
            state.phase = .connecting
            state.task = Task { await self.keepConnected() }
        }
    }

    /// Waits until a connection is up (after `start`), or throws once the client is closed.
    public func waitUntilConnected() async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let outcome: Result<Void, any Error>? = state.withLockedValue { state in
                switch state.phase {
                case .connected: return .success(())
                case .closed: return .failure(RedisError.unavailable("client closed"))
                case .idle, .connecting:
                    state.connectedWaiters.append(continuation)
                    return nil
                }
            }
            if let outcome { continuation.resume(with: outcome) }
        }
    }

    public var isConnected: Bool {
        state.withLockedValue { if case .connected = $0.phase { true } else { false } }
    }

    public func send(_ command: [RESPArgument]) async throws -> RESPValue {
        try await currentConnection().send(command)
    }

    /// Pipelined form of `send`: see `RedisConnection.sendRaw`.
    public func sendRaw(_ command: [RESPArgument]) throws -> EventLoopFuture<RESPValue> {
        try currentConnection().sendRaw(command)
    }

    /// `sendRaw`, with `unavailable` as a failed future when there is no connection.
    public func sendRawOrFail(_ command: [RESPArgument]) -> EventLoopFuture<RESPValue> {
        do {
            return try sendRaw(command)
        } catch {
            return eventLoop.makeFailedFuture(error)
        }
    }

    /// An event loop of the client's group, for futures made without a connection.
    public var eventLoop: any EventLoop { group.any() }

    /// Stops reconnecting and closes the connection.
    public func close() {
        let (connection, task, waiters) = state.withLockedValue { state in
            var connection: RedisConnection?
            if case .connected(let current) = state.phase { connection = current }
            state.phase = .closed
            defer { state.connectedWaiters = [] }
            return (connection, state.task, state.connectedWaiters)
        }
        task?.cancel()
        connection?.close()
        for waiter in waiters { waiter.resume(throwing: RedisError.unavailable("client closed")) }
    }

    private func currentConnection() throws -> RedisConnection {
        try state.withLockedValue { state in
            switch state.phase {
            case .connected(let connection): return connection
            case .closed: throw RedisError.unavailable("client closed")
            case .idle, .connecting: throw RedisError.unavailable("not connected to \(endpoint)")
            }
        }
    }

    private func keepConnected() async {
        var attempt = 0
        while !Task.isCancelled {
            if attempt > 0 {
                do { try await Task.sleep(for: backoff.delay(attempt: attempt)) } catch { return }
            }
            let connection: RedisConnection
            do {
                connection = try await RedisConnection.connect(
                    to: endpoint, on: group, limits: limits, onPush: onPush)
                do {
                    try await onConnect(connection)
                } catch {
                    connection.close()
                    throw error
                }
            } catch {
                attempt += 1
                if attempt == 1 { onEvent(.disconnected("\(error)")) }
                continue
            }
            let waiters: [CheckedContinuation<Void, any Error>]? = state.withLockedValue { state in
                guard case .connecting = state.phase else { return nil }
                state.phase = .connected(connection)
                defer { state.connectedWaiters = [] }
                return state.connectedWaiters
            }
            guard let waiters else {
                connection.close()
                return
            }
            onEvent(.connected)
            for waiter in waiters { waiter.resume() }
            try? await connection.closeFuture.get()
            let stillOpen = state.withLockedValue { state in
                guard case .connected = state.phase else { return false }
                state.phase = .connecting
                return true
            }
            guard stillOpen else { return }
            onEvent(.disconnected("connection to \(endpoint) lost"))
            // A connection that drops right after it was made should not be retried in a
            // tight loop: the first retry already waits up to `initial`.
            attempt = 1
        }
    }
}
