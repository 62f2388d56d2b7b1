import Logging
import NIOConcurrencyHelpers
import NIOCore
import RedisWire

/// Several broker nodes sharing topics through one Redis (`serve --cluster URL`). Every
/// publish runs the topic log's script, which sequences, stores and PUBLISHes it; every node
/// (the publishing one too) hears it on the topic's channel and hands it to its hubs. So a
/// node delivers a message only from Redis: one order for all nodes, no echo, and a message
/// Redis did not take reaches nobody and is answered `unavailable`. What a node does not
/// hear while its subscription is down it catches up afterwards (`ClusterCatchUp`), and it
/// takes no publish meanwhile.
public final class ClusterEngine: Sendable {
    public let endpoint: RedisEndpoint
    /// Entries a stream keeps for a topic retained by age only. Default 1,000,000.
    static let ageOnlyLimit: UInt64 = 1_000_000
    private let commands: RedisClient
    private let subscriber: RedisSubscriber
    let log: RedisTopicLog
    private let catchUp: ClusterCatchUp
    private let logger: Logger
    /// Revocations, retention rules and heartbeats shared with the other nodes.
    let control: ClusterControl

    public init(endpoint: RedisEndpoint, group: any EventLoopGroup, logger: Logger) {
        self.endpoint = endpoint
        self.logger = logger
        self.control = ClusterControl(endpoint: endpoint, group: group, logger: logger)
        let commands = RedisClient(
            endpoint: endpoint, group: group,
            onEvent: { event in
                switch event {
                case .connected: logger.notice("cluster: connected to redis", metadata: ["redis": "\(endpoint)"])
                case .disconnected(let why):
                    logger.error("cluster: redis unreachable; publishes are answered unavailable", metadata: ["error": "\(why)"])
                }
            })
        self.commands = commands
        self.log = RedisTopicLog(redis: commands)
        let catchUp = ClusterCatchUp(log: log, logger: logger)
        self.catchUp = catchUp
        self.subscriber = RedisSubscriber(
            endpoint: endpoint, group: group,
            onMessage: { message in
                guard message.channel.hasPrefix(ClusterKeys.channelPrefix),
                    let topic = try? Topic(String(message.channel.dropFirst(ClusterKeys.channelPrefix.count))),
                    let parsed = ClusterMessage(channelPayload: message.payload)
                else { return }
                let frame = MessageEncoder.encodeFrame(
                    topic: topic, sequence: parsed.sequence, time: parsed.time, payload: parsed.payload,
                    format: parsed.format, allocator: ByteBufferAllocator())
                catchUp.heard(Delivery(topic: topic, sequence: parsed.sequence, frame: frame), epoch: parsed.epoch)
            },
            onEvent: { event in
                switch event {
                case .connected:
                    logger.notice("cluster: redis subscription restored")
                    catchUp.subscriptionRestored()
                case .disconnected(let why):
                    // Messages published meanwhile are not heard here: caught up once it is restored.
                    logger.error("cluster: redis subscription lost; publishes are answered unavailable", metadata: ["error": "\(why)"])
                    catchUp.subscriptionLost()
                }
            })
    }

    /// Connects in the background and waits up to `timeout` for the subscription to be up;
    /// false when Redis was not reached by then (the engine keeps trying).
    public func start(timeout: Duration = .seconds(5)) async -> Bool {
        commands.start()
        subscriber.start()
        await control.start()
        do {
            try await subscriber.subscribe(pattern: ClusterKeys.channelPrefix + "*")
        } catch {
            // Kept as wanted: made on the next connection.
        }
        let ready = NIOLockedValueBox(false)
        await withTaskGroup(of: Void.self) { tasks in
            tasks.addTask { [subscriber, commands, control] in
                try? await subscriber.waitUntilConnected()
                try? await commands.waitUntilConnected()
                try? await control.waitUntilConnected()
                ready.withLockedValue { $0 = true }
            }
            tasks.addTask { try? await Task.sleep(for: timeout) }
            await tasks.next()
            tasks.cancelAll()
        }
        return ready.withLockedValue { $0 }
    }

    /// Where heard messages go: every hub of the broker. `subscribed`: the patterns the
    /// broker's sessions subscribe to, whose topics are caught up after a lost subscription.
    func onDeliveries(
        _ body: @escaping @Sendable ([Delivery]) -> Void, subscribed: @escaping @Sendable () async -> Set<TopicPattern>
    ) {
        catchUp.start(deliver: body, subscribed: subscribed)
    }

    /// Sends the publish script at once, so one connection's publishes keep their order;
    /// `completion` gets the seq and time given, or `unavailable` when Redis did not take the message.
    /// Refused while the subscription is down: an acked message this node would not hear
    /// would never reach its own subscribers.
    func publish(
        _ publish: Publish, now: Int64, keep: Int,
        completion: @escaping @Sendable (Result<RedisTopicLog.Published, ReplayError>) -> Void
    ) {
        guard subscriber.isSubscribed else {
            return completion(.failure(.unavailable("redis: this node's subscription to the topics is down")))
        }
        let call = log.publishCall(topic: publish.topic, format: publish.format, payload: publish.payload, now: now, keep: keep)
        RedisTopicLog.publishScript.runPipelined(on: commands, keys: call.keys, arguments: call.arguments)
            .whenComplete { result in
                do {
                    completion(.success(try RedisTopicLog.published(result.get())))
                } catch {
                    completion(.failure(.unavailable("redis: \(error)")))
                }
            }
    }

    public func close() {
        catchUp.close()
        control.close()
        subscriber.close()
        commands.close()
    }
}
