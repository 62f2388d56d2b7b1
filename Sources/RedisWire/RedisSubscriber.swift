import NIOConcurrencyHelpers
import NIOCore

/// A message received on a subscribed channel, or on a channel matching a subscribed pattern.
public struct RedisPubSubMessage: Sendable {
    public var channel: String
    /// The pattern that matched, for messages received through `psubscribe`.
    public var pattern: String?
    public var payload: ByteBuffer
}

/// Pub/sub on its own connection (a subscribed RESP connection cannot be shared with
/// ordinary commands in order). Subscriptions are kept and made again after every
/// reconnect; messages published while disconnected are lost, which `onEvent` announces with
/// `.disconnected` so the caller can treat what follows as a possible gap.
public final class RedisSubscriber: Sendable {
    private enum Kind: Hashable {
        case channel, pattern

        var subscribe: RESPArgument { self == .channel ? "SUBSCRIBE" : "PSUBSCRIBE" }
        var unsubscribe: RESPArgument { self == .channel ? "UNSUBSCRIBE" : "PUNSUBSCRIBE" }
    }

    private struct Key: Hashable {
        var kind: Kind
        var name: String
    }

    private struct State {
        var wanted: Set<Key> = []
        var connection: RedisConnection?
        /// What Redis confirmed on `connection`.
        var confirmed: Set<Key> = []
        var confirmations: [Key: [CheckedContinuation<Void, any Error>]] = [:]
    }

    private let state = NIOLockedValueBox(State())
    private let client = NIOLockedValueBox<RedisClient?>(nil)

    /// `onMessage` runs on the subscriber connection's event loop, in the order Redis sent.
    public init(
        endpoint: RedisEndpoint,
        group: any EventLoopGroup,
        backoff: RedisBackoff = RedisBackoff(),
        onMessage: @escaping @Sendable (RedisPubSubMessage) -> Void,
        onEvent: @escaping @Sendable (RedisClientEvent) -> Void = { _ in }
    ) {
        let client = RedisClient(
            endpoint: endpoint, group: group, backoff: backoff,
            onPush: { [state] elements in Self.handle(push: elements, state: state, onMessage: onMessage) },
            onConnect: { [state] connection in
                let wanted = state.withLockedValue { state in
                    state.connection = connection
                    state.confirmed = []
                    return state.wanted
                }
                connection.closeFuture.whenComplete { _ in
                    let waiting = state.withLockedValue { state in
                        if state.connection === connection {
                            state.connection = nil
                            state.confirmed = []
                        }
                        defer { state.confirmations = [:] }
                        return state.confirmations.values.flatMap { $0 }
                    }
                    for waiter in waiting { waiter.resume(throwing: RedisError.unavailable("connection closed")) }
                }
                // Connected means subscribed: nothing published after `.connected` is missed.
                for key in wanted { try await Self.confirm(key, on: connection, state: state) }
            },
            onEvent: onEvent)
        self.client.withLockedValue { $0 = client }
    }

    public func start() { client.withLockedValue { $0 }?.start() }
    public func waitUntilConnected() async throws { try await client.withLockedValue { $0 }!.waitUntilConnected() }
    public func close() { client.withLockedValue { $0 }?.close() }

    /// Connected, and Redis confirmed every subscription wanted on this connection: nothing
    /// published from now on is missed. False from the moment the connection is lost (on its
    /// event loop, before `.disconnected` is reported) until every one is confirmed again.
    public var isSubscribed: Bool {
        state.withLockedValue { $0.connection != nil && $0.wanted.isSubset(of: $0.confirmed) }
    }

    /// Subscribes to `channel` and waits for Redis to confirm it when connected; when not
    /// connected the subscription is kept and made on the next connection.
    public func subscribe(channel: String) async throws {
        try await add(Key(kind: .channel, name: channel))
    }

    /// Subscribes to the glob `pattern` (PSUBSCRIBE), as `subscribe(channel:)` does.
    public func subscribe(pattern: String) async throws {
        try await add(Key(kind: .pattern, name: pattern))
    }

    public func unsubscribe(channel: String) async throws {
        try await remove(Key(kind: .channel, name: channel))
    }

    public func unsubscribe(pattern: String) async throws {
        try await remove(Key(kind: .pattern, name: pattern))
    }

    private func add(_ key: Key) async throws {
        let connection = state.withLockedValue { state in
            state.wanted.insert(key)
            return state.connection
        }
        guard let connection else { return }
        try await Self.confirm(key, on: connection, state: state)
    }

    /// Subscribes and waits for Redis's confirmation push.
    private static func confirm(_ key: Key, on connection: RedisConnection, state: NIOLockedValueBox<State>) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            state.withLockedValue { $0.confirmations[key, default: []].append(continuation) }
            connection.sendExpectingPush([key.kind.subscribe, RESPArgument(key.name)]).whenFailure { error in
                let waiting = state.withLockedValue { $0.confirmations.removeValue(forKey: key) } ?? []
                for waiter in waiting { waiter.resume(throwing: error) }
            }
        }
    }

    private func remove(_ key: Key) async throws {
        let connection = state.withLockedValue { state in
            state.wanted.remove(key)
            state.confirmed.remove(key)
            return state.connection
        }
        try await connection?.sendExpectingPush([key.kind.unsubscribe, RESPArgument(key.name)]).get()
    }

    private static func handle(
        push elements: [RESPValue], state: NIOLockedValueBox<State>,
        onMessage: @Sendable (RedisPubSubMessage) -> Void
    ) {
        guard let kind = elements.first?.string else { return }
        switch kind {
        case "message" where elements.count == 3:
            guard let channel = elements[1].string, case .bulkString(let payload) = elements[2] else { return }
            onMessage(RedisPubSubMessage(channel: channel, pattern: nil, payload: payload))
        case "pmessage" where elements.count == 4:
            guard let pattern = elements[1].string, let channel = elements[2].string,
                case .bulkString(let payload) = elements[3]
            else { return }
            onMessage(RedisPubSubMessage(channel: channel, pattern: pattern, payload: payload))
        case "subscribe", "psubscribe":
            guard elements.count >= 2, let name = elements[1].string else { return }
            let key = Key(kind: kind == "subscribe" ? .channel : .pattern, name: name)
            let waiting = state.withLockedValue { state in
                state.confirmed.insert(key)
                return state.confirmations.removeValue(forKey: key) ?? []
            }
            for waiter in waiting { waiter.resume() }
        default:
            return
        }
    }
}
