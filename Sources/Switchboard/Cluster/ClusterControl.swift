import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import RedisWire

/// The cluster's control channel (docs/cluster.md): token revocations, retention rules and
/// node heartbeats, on the Redis channel `sb:ctl`, with its own two Redis connections so a
/// burst of messages on the topic channels never holds it up.
///
/// What must outlast a message is also stored in Redis: revoked token ids in the hash
/// `sb:revoked`, the rules set at run time in `sb:retention`, the tokens made at run time in
/// `sb:tokens` (`ClusterTokens`, read when a node meets a token it does not know). A message
/// only says "look again"; a node that was down or cut off from Redis reads the revocations
/// and the rules when it (re)connects, and pushes the revocations it made meanwhile.
/// Heartbeats are not stored: a node is live while it is heard.
public final class ClusterControl: Sendable {
    /// A node as its heartbeat describes it.
    struct Node: Sendable, Equatable {
        var id: String
        /// The address it listens on (`HOST:PORT`, as bound).
        var address: String
        /// When it started, unix milliseconds.
        var startedAt: Int64
        var connections: Int
    }

    /// What the channel does to its own node; given by the broker (`Broker.clusterMember`).
    struct Member: Sendable {
        /// Revokes these tokens in the node's store, closing their connections. Blocks on SQLite.
        var revoke: @Sendable ([String]) -> Void
        /// The ids of the tokens revoked in the node's store.
        var revokedTokens: @Sendable () -> [String]
        /// Stores a token another node made (`TokenStore.adopt`). Blocks on SQLite.
        var adopt: @Sendable (TokenRecord) throws -> Void
        /// The retention rules in force on the node.
        var retention: @Sendable () -> RetentionRules
        /// Makes `rules` the node's retention rules. Blocks on SQLite.
        var replaceRetention: @Sendable (RetentionRules) throws -> Void
        var connections: @Sendable () -> Int
        var now: @Sendable () -> Int64
    }

    static let channel = "sb:ctl"
    static let revokedKey = "sb:revoked"
    static let retentionKey = "sb:retention"
    /// How often a node announces itself. Default 1 s.
    static let heartbeatInterval: TimeAmount = .seconds(1)
    /// Heartbeats a node may miss before the others drop it. Default 3.
    static let missedHeartbeats: Int64 = 3

    /// This node's id, random per start.
    let id: String
    private let commands: RedisClient
    private let subscriber: RedisSubscriber
    private let logger: Logger
    private let group: any EventLoopGroup
    /// Work that talks to Redis or the store, done one item at a time in order, so a later
    /// retention change is never overtaken by an earlier one.
    private let work: AsyncStream<Work>.Continuation
    private let state: NIOLockedValueBox<State>

    private enum Work: Sendable {
        /// Push this node's revocations, read the cluster's, and its retention rules.
        case synchronize
        /// Revoked on this node: to store and announce.
        case share([String])
        /// Revoked on another node: to apply here.
        case apply([String])
        /// `sb:retention` changed; `done` (when given) hears whether it is in force here.
        case retentionChanged(done: CheckedContinuation<Void, any Error>?)
        case trim
        /// Everything queued before is done.
        case settled(CheckedContinuation<Void, Never>)
    }

    private struct State {
        var member: Member?
        var address: String?
        var startedAt: Int64 = 0
        /// Other nodes by id, with when they were last heard.
        var peers: [String: (node: Node, heard: NIODeadline)] = [:]
        /// Revocations known to be in `sb:revoked`.
        var shared: Set<String> = []
        /// Set when the subscription was (re)made: what was said meanwhile is read from the keys.
        var needsSync = true
        /// A `.synchronize` is queued: the heartbeat does not queue another.
        var syncQueued = false
        var heartbeat: RepeatedTask?
        var lastTrim: NIODeadline = .uptimeNanoseconds(0)
    }

    init(endpoint: RedisEndpoint, group: any EventLoopGroup, logger: Logger) {
        self.id = "node_" + String(UInt64.random(in: 1...UInt64.max), radix: 16)
        self.group = group
        self.logger = logger
        self.commands = RedisClient(endpoint: endpoint, group: group)
        let state = NIOLockedValueBox(State())
        self.state = state
        let (stream, continuation) = AsyncStream.makeStream(of: Work.self)
        self.work = continuation
        let ownID = id
        self.subscriber = RedisSubscriber(
            endpoint: endpoint, group: group,
            onMessage: { message in
                Self.heard(message.payload, own: ownID, state: state, work: continuation)
            },
            onEvent: { event in
                if case .connected = event {
                    state.withLockedValue { $0.needsSync = true }
                    continuation.yield(.synchronize)
                }
            })
        // Ends when `close` finishes the stream, after the work queued before: so every
        // `share` waiting on it is answered.
        Task { [commands, logger] in
            for await item in stream {
                await Self.run(item, commands: commands, state: state, logger: logger)
            }
        }
    }

    func start() async {
        commands.start()
        subscriber.start()
        // Kept as wanted when it fails: made on the next connection.
        try? await subscriber.subscribe(channel: Self.channel)
    }

    /// Waits until both connections are up (the caller bounds the wait).
    func waitUntilConnected() async throws {
        try await subscriber.waitUntilConnected()
        try await commands.waitUntilConnected()
    }

    /// Gives the channel its node. Its revocations and rules are synchronised with the
    /// cluster's at once, before it listens (when Redis is reachable).
    func join(_ member: Member) async {
        state.withLockedValue {
            $0.member = member
            $0.startedAt = member.now()
        }
        await Self.synchronize(commands: commands, state: state, logger: logger)
    }

    /// The node listens on `address`: from now on it sends heartbeats.
    func listening(on address: String) {
        let task = group.next().scheduleRepeatedTask(initialDelay: .zero, delay: Self.heartbeatInterval) {
            [self] _ in tick()
        }
        state.withLockedValue {
            $0.address = address
            $0.heartbeat?.cancel()
            $0.heartbeat = task
        }
    }

    func close() {
        state.withLockedValue { $0.heartbeat }?.cancel()
        work.finish()
        subscriber.close()
        commands.close()
    }

    // MARK: Revocation

    /// Tokens revoked on this node: stored in `sb:revoked` and announced to every node. When
    /// Redis is unreachable they are pushed on the next connection.
    func revoked(_ ids: [String]) {
        let fresh = state.withLockedValue { state in ids.filter { !state.shared.contains($0) } }
        if !fresh.isEmpty { work.yield(.share(fresh)) }
    }

    /// Returns once the work queued so far is done: a revocation made before is in Redis
    /// (or Redis failed and it waits for the next connection).
    func settled() async {
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            if case .terminated = work.yield(.settled(done)) { done.resume() }
        }
    }

    // MARK: Tokens

    /// Makes a token created on this node known to every node: stored in `sb:tokens`.
    func share(token record: TokenRecord) async throws {
        _ = try await commands.send([
            "HSET", RESPArgument(ClusterTokens.key), RESPArgument(ClusterTokens.field(hash: record.hash)),
            RESPArgument(try ClusterTokens.encode(record)),
        ])
    }

    /// Looks a token this node does not know up in `sb:tokens` and, when there, adopts it
    /// into the node's store, revoked when `sb:revoked` has it. Nothing when Redis is away.
    func fetch(token: String) async {
        guard let member = state.withLockedValue({ $0.member }) else { return }
        let hash = OpaqueToken.hash(token)
        do {
            let reply = try await commands.send(["HGET", RESPArgument(ClusterTokens.key), RESPArgument(ClusterTokens.field(hash: hash))])
            guard let text = reply.string, let record = ClusterTokens.decode(text, hash: hash, revokedAt: nil) else { return }
            let revoked = try await commands.send(["HEXISTS", RESPArgument(Self.revokedKey), RESPArgument(record.id)]).int == 1
            let adopted = ClusterTokens.decode(text, hash: hash, revokedAt: revoked ? Date() : nil) ?? record
            try await NIOThreadPool.singleton.runIfActive { try member.adopt(adopted) }
        } catch {
            logger.warning("cluster: cannot look a token up in redis", metadata: ["error": "\(error)"])
        }
    }

    // MARK: Retention

    /// Stores `rules` as the cluster's, tells every node, and returns once the rules in
    /// Redis are in force on this node. They are applied by the one worker that applies
    /// every change heard, always reading Redis, so the last rules stored win on every node.
    /// Throws when Redis does not take them, or they cannot be stored here.
    func share(_ rules: RetentionRules) async throws {
        let texts = String(decoding: try JSONSerialization.data(withJSONObject: rules.texts), as: UTF8.self)
        _ = try await commands.send(["SET", RESPArgument(Self.retentionKey), RESPArgument(texts)])
        _ = try await commands.send(["PUBLISH", RESPArgument(Self.channel), RESPArgument(Self.message(["type": "retention"]))])
        try await withCheckedThrowingContinuation { (done: CheckedContinuation<Void, any Error>) in
            if case .terminated = work.yield(.retentionChanged(done: done)) {
                done.resume(throwing: RedisError.unavailable("the control channel is closed"))
            }
        }
    }

    // MARK: Nodes

    /// The live nodes, this one first, then by id: the others heard within the last
    /// `missedHeartbeats` heartbeat intervals.
    var nodes: [Node] {
        let now = NIODeadline.now()
        let horizon = Self.heartbeatInterval * Self.missedHeartbeats
        return state.withLockedValue { state in
            var nodes: [Node] = []
            if let member = state.member, let address = state.address {
                nodes.append(Node(id: id, address: address, startedAt: state.startedAt, connections: member.connections()))
            }
            return nodes + state.peers.values.filter { now - $0.heard <= horizon }.map { $0.node }.sorted { $0.id < $1.id }
        }
    }

    /// Every heartbeat: announce this node, forget the silent ones, catch up after a lost
    /// subscription, and on the live node with the smallest id trim streams by age when due.
    private func tick() {
        let now = NIODeadline.now()
        let horizon = Self.heartbeatInterval * Self.missedHeartbeats
        let (beat, needsSync, trim) = state.withLockedValue { state -> (String?, Bool, Bool) in
            state.peers = state.peers.filter { now - $0.value.heard <= horizon }
            guard let member = state.member, let address = state.address else { return (nil, false, false) }
            let beat = Self.message([
                "type": "heartbeat", "node": id, "address": address, "started_at": state.startedAt,
                "connections": member.connections(),
            ])
            var trim = false
            if state.peers.keys.allSatisfy({ id < $0 }),
                let interval = ClusterStreamTrim.interval(member.retention()), now - state.lastTrim >= interval
            {
                state.lastTrim = now
                trim = true
            }
            let sync = state.needsSync && !state.syncQueued
            if sync { state.syncQueued = true }
            return (beat, sync, trim)
        }
        if let beat {
            _ = commands.sendRawOrFail(["PUBLISH", RESPArgument(Self.channel), RESPArgument(beat)])
        }
        if needsSync { work.yield(.synchronize) }
        if trim { work.yield(.trim) }
    }

    // MARK: Messages

    private static func message(_ object: [String: Any]) -> String {
        (try? JSONSerialization.data(withJSONObject: object)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    /// A message on `sb:ctl`. Heartbeats are recorded at once; the rest is queued as work.
    /// Anything unreadable is ignored: the channel is ours, but Redis is shared.
    private static func heard(
        _ payload: ByteBuffer, own: String, state: NIOLockedValueBox<State>, work: AsyncStream<Work>.Continuation
    ) {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(payload.readableBytesView))) as? [String: Any],
            let type = object["type"] as? String
        else { return }
        switch type {
        case "heartbeat":
            guard let id = object["node"] as? String, id != own, let address = object["address"] as? String,
                let startedAt = (object["started_at"] as? NSNumber)?.int64Value,
                let connections = (object["connections"] as? NSNumber)?.intValue
            else { return }
            let node = Node(id: id, address: address, startedAt: startedAt, connections: connections)
            state.withLockedValue { $0.peers[id] = (node, .now()) }
        case "revoke":
            guard let ids = object["ids"] as? [String] else { return }
            // Shared already: applying them here must not announce them again.
            state.withLockedValue { $0.shared.formUnion(ids) }
            work.yield(.apply(ids))
        case "retention":
            work.yield(.retentionChanged(done: nil))
        default:
            return
        }
    }

    private static func run(_ item: Work, commands: RedisClient, state: NIOLockedValueBox<State>, logger: Logger) async {
        switch item {
        case .synchronize:
            state.withLockedValue { $0.syncQueued = false }
            await synchronize(commands: commands, state: state, logger: logger)
        case .share(let ids):
            await share(ids, commands: commands, state: state, logger: logger)
        case .apply(let ids):
            guard let member = state.withLockedValue({ $0.member }) else { return }
            let local = Set(member.revokedTokens())
            let apply = ids.filter { !local.contains($0) }
            if !apply.isEmpty { await blocking { member.revoke(apply) } }
        case .retentionChanged(let done):
            do {
                try await adoptRetention(commands: commands, state: state)
                done?.resume()
            } catch {
                logger.error("cluster: cannot adopt the cluster's retention rules", metadata: ["error": "\(error)"])
                done?.resume(throwing: error)
            }
        case .settled(let done):
            done.resume()
        case .trim:
            guard let member = state.withLockedValue({ $0.member }) else { return }
            do {
                let trimmed = try await ClusterStreamTrim.trim(commands, rules: member.retention(), now: member.now())
                if trimmed > 0 { logger.debug("cluster: streams trimmed by age", metadata: ["entries": "\(trimmed)"]) }
            } catch {
                logger.warning("cluster: cannot trim streams by age", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Revocations made here, stored in `sb:revoked` and announced.
    private static func share(_ ids: [String], commands: RedisClient, state: NIOLockedValueBox<State>, logger: Logger) async {
        guard let member = state.withLockedValue({ $0.member }) else { return }
        let unshared = state.withLockedValue { state in ids.filter { !state.shared.contains($0) } }
        guard !unshared.isEmpty else { return }
        do {
            try await store(unshared, commands: commands, now: member.now())
            try await announce(unshared, commands: commands)
            state.withLockedValue { $0.shared.formUnion(unshared) }
        } catch {
            // Pushed with the rest on the next connection.
            state.withLockedValue { $0.needsSync = true }
            logger.error("cluster: a revocation could not reach redis; other nodes learn it once redis is back",
                metadata: ["error": "\(error)"])
        }
    }

    /// SQLite work off the event loops and the cooperative pool.
    private static func blocking(_ body: @escaping @Sendable () -> Void) async {
        try? await NIOThreadPool.singleton.runIfActive(body)
    }

    private static func store(_ ids: [String], commands: RedisClient, now: Int64) async throws {
        var command: [RESPArgument] = ["HSET", RESPArgument(revokedKey)]
        for id in ids { command += [RESPArgument(id), RESPArgument(now)] }
        _ = try await commands.send(command)
    }

    private static func announce(_ ids: [String], commands: RedisClient) async throws {
        _ = try await commands.send(["PUBLISH", RESPArgument(channel), RESPArgument(message(["type": "revoke", "ids": ids]))])
    }

    /// Makes this node and Redis agree: its revocations go to `sb:revoked`, the others are
    /// applied here, and the cluster's rules (when set) become its own.
    private static func synchronize(commands: RedisClient, state: NIOLockedValueBox<State>, logger: Logger) async {
        guard let member = state.withLockedValue({ $0.member }) else { return }
        do {
            let local = Set(member.revokedTokens())
            let reply = try await commands.send(["HKEYS", RESPArgument(revokedKey)])
            guard let elements = reply.elements else { throw RedisError.unexpectedReply("HKEYS gave \(reply)") }
            let shared = Set(elements.compactMap(\.string))
            let push = Array(local.subtracting(shared))
            if !push.isEmpty {
                // Announced too: the other nodes may have synchronised before this push.
                try await store(push, commands: commands, now: member.now())
                try await announce(push, commands: commands)
            }
            state.withLockedValue {
                $0.shared.formUnion(shared.union(push))
                $0.needsSync = false
            }
            let apply = Array(shared.subtracting(local))
            if !apply.isEmpty { await blocking { member.revoke(apply) } }
        } catch {
            logger.warning("cluster: cannot read the cluster's revocations yet", metadata: ["error": "\(error)"])
            return
        }
        do {
            try await adoptRetention(commands: commands, state: state)
        } catch {
            logger.error("cluster: cannot adopt the cluster's retention rules", metadata: ["error": "\(error)"])
        }
    }

    /// The rules in `sb:retention` made this node's, when set and not already in force.
    private static func adoptRetention(commands: RedisClient, state: NIOLockedValueBox<State>) async throws {
        guard let member = state.withLockedValue({ $0.member }) else { return }
        let reply = try await commands.send(["GET", RESPArgument(retentionKey)])
        guard let text = reply.string else { return }
        guard let texts = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String],
            case .success(let rules) = RetentionRules.parse(texts)
        else { throw RedisError.unexpectedReply("\(retentionKey) does not hold retention rules: \(text)") }
        if rules != member.retention() {
            try await NIOThreadPool.singleton.runIfActive { try member.replaceRetention(rules) }
        }
    }
}
