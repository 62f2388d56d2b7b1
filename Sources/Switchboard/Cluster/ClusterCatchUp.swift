import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import RedisWire

/// What a node's live subscribers would miss while its subscriber connection is down, handed
/// out once it is subscribed again. Every heard message passes through here: per topic the
/// last seq heard is kept, and after a lost subscription the topics the local subscriptions
/// match are read from their streams from there, in seq order, before the live messages of
/// those topics heard meanwhile (held until then, duplicates dropped by seq). What a stream
/// no longer holds (trimmed, or the topic not retained) becomes the `gap` a resume gives.
final class ClusterCatchUp: Sendable {
    /// Topics whose last heard seq is kept. Default 100,000; past it an eighth of them is
    /// forgotten, and a forgotten topic is caught up by publish time like a new one.
    static let maxTrackedTopics = 100_000
    /// How far before the moment the subscription was lost a topic never heard here is caught
    /// up from, by publish time: the loss is noticed a little late, and nodes' clocks differ.
    static let clockAllowance: Int64 = 1000
    /// Messages of one topic a catch-up hands out at most (the newest). Default 10,000; the
    /// older missed ones are a gap, as for a slow consumer.
    static let maxMessagesPerTopic: UInt64 = 10_000

    private enum Phase {
        case live
        /// The subscription was lost; topics never heard are caught up from publish time `since`.
        case interrupted(since: Int64)
        case catchingUp(since: Int64)
    }

    private struct State {
        var phase = Phase.live
        /// Counts losses (and the close), so a catch-up overtaken by another one is dropped.
        var losses: UInt64 = 0
        var lastHeard: [Topic: Heard] = [:]
        /// Heard while not live, in the order heard.
        var held: [(delivery: Delivery, epoch: Int)] = []
        var deliver: (@Sendable ([Delivery]) -> Void)?
        var subscribed: (@Sendable () async -> Set<TopicPattern>)?
    }

    /// The last message heard of a topic: its seq, and its epoch's hash (a flushed Redis
    /// starts a topic again at 1 under a new epoch).
    private struct Heard {
        var sequence: UInt64
        var epoch: Int
    }

    /// What a catch-up found of one topic.
    private struct Missed {
        var epoch: Int
        var after: UInt64
        var through: UInt64
        var messages: [StoredMessage]
    }

    private let state = NIOLockedValueBox(State())
    private let log: RedisTopicLog
    private let logger: Logger

    init(log: RedisTopicLog, logger: Logger) {
        self.log = log
        self.logger = logger
    }

    /// `deliver`: every hub. `subscribed`: the patterns the node's sessions subscribe to.
    func start(deliver: @escaping @Sendable ([Delivery]) -> Void, subscribed: @escaping @Sendable () async -> Set<TopicPattern>) {
        state.withLockedValue {
            $0.deliver = deliver
            $0.subscribed = subscribed
        }
    }

    /// Ends a catch-up that is running (it may be waiting for Redis); nothing is handed out after.
    func close() {
        state.withLockedValue { state in
            state.losses += 1
            state.deliver = nil
        }
    }

    /// A message heard on the subscription, in Redis's order.
    func heard(_ delivery: Delivery, epoch: String) {
        let epoch = epoch.hashValue
        state.withLockedValue { state in
            guard case .live = state.phase else { return state.held.append((delivery, epoch)) }
            Self.track(delivery.topic, Heard(sequence: delivery.sequence, epoch: epoch), in: &state)
            state.deliver?([delivery])
        }
    }

    func subscriptionLost() {
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        state.withLockedValue { state in
            state.losses += 1
            switch state.phase {
            case .live: state.phase = .interrupted(since: now - Self.clockAllowance)
            case .catchingUp(let since): state.phase = .interrupted(since: since)
            case .interrupted: break
            }
        }
    }

    func subscriptionRestored() {
        let started: (since: Int64, losses: UInt64, tracked: [Topic: Heard])? = state.withLockedValue { state in
            guard case .interrupted(let since) = state.phase else { return nil }
            state.phase = .catchingUp(since: since)
            return (since, state.losses, state.lastHeard)
        }
        guard let started else { return }
        Task { await catchUp(since: started.since, losses: started.losses, tracked: started.tracked) }
    }

    /// The latest message heard, not the highest seq: after Redis lost its data a topic counts from 1 again.
    private static func track(_ topic: Topic, _ heard: Heard, in state: inout State) {
        if state.lastHeard.updateValue(heard, forKey: topic) == nil, state.lastHeard.count > maxTrackedTopics {
            for forgotten in Array(state.lastHeard.keys.prefix(maxTrackedTopics / 8)) where forgotten != topic {
                state.lastHeard[forgotten] = nil
            }
        }
    }

    /// Reads what was missed until it succeeds or the subscription is lost again.
    private func catchUp(since: Int64, losses: UInt64, tracked: [Topic: Heard]) async {
        let backoff = RedisBackoff()
        var attempt = 0
        while state.withLockedValue({ $0.losses }) == losses {
            do {
                let missed = try await read(since: since, tracked: tracked)
                finish(missed, losses: losses)
                return
            } catch {
                attempt += 1
                logger.error("cluster: cannot catch up after the subscription was lost", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: backoff.delay(attempt: attempt))
            }
        }
    }

    private func read(since: Int64, tracked: [Topic: Heard]) async throws -> [Topic: Missed] {
        guard let subscribed = state.withLockedValue({ $0.subscribed }) else { return [:] }
        let patterns = await subscribed()
        var topics = tracked.filter { topic, _ in patterns.contains { $0.matches(topic) } }.mapValues { Optional($0) }
        for pattern in patterns {
            let matching = if pattern.isConcrete { [try Topic(pattern.name)] } else { try await log.topics(matching: pattern, .sequence) }
            for topic in matching where topics[topic] == nil { topics[topic] = .some(nil) }
        }
        var missed: [Topic: Missed] = [:]
        for (topic, lastHeard) in topics {
            guard let current = try await log.current(topic: topic) else { continue }
            let epoch = current.epoch.hashValue
            let after: UInt64
            if let lastHeard {
                // Another epoch: Redis lost its data since, and the topic started again at 1.
                after = lastHeard.epoch == epoch ? lastHeard.sequence : 0
            } else {
                // Never heard here: what was published since the loss, or (not retained) the latest.
                guard current.time >= since else { continue }
                after = try await log.sequence(before: since, topic: topic) ?? current.sequence - 1
            }
            guard current.sequence > after else { continue }
            var found = Missed(epoch: epoch, after: after, through: current.sequence, messages: [])
            let first = max(after, current.sequence - min(current.sequence, Self.maxMessagesPerTopic))
            while true {
                let page = try await log.read(topic: topic, after: found.messages.last?.sequence ?? first, limit: RedisHistoryCursor.chunk)
                found.messages += page.prefix { $0.sequence <= current.sequence }
                if page.count < RedisHistoryCursor.chunk || (found.messages.last?.sequence ?? 0) >= current.sequence { break }
            }
            missed[topic] = found
        }
        return missed
    }

    /// Hands out what was missed, then what was held, and goes live: under the lock, so no
    /// live message overtakes them.
    private func finish(_ missed: [Topic: Missed], losses: UInt64) {
        state.withLockedValue { state in
            guard state.losses == losses, case .catchingUp = state.phase else { return }
            var out: [Delivery] = []
            var heldOf: [Topic: [UInt64: Delivery]] = [:]
            var rest: [(delivery: Delivery, epoch: Int)] = []
            for (delivery, epoch) in state.held {
                if let found = missed[delivery.topic], found.epoch == epoch {
                    heldOf[delivery.topic, default: [:]][delivery.sequence] = delivery
                } else {
                    rest.append((delivery, epoch))
                }
            }
            for (topic, found) in missed.sorted(by: { $0.key.name < $1.key.name }) {
                var bySequence = heldOf[topic] ?? [:]
                for message in found.messages {
                    bySequence[message.sequence] = Delivery(topic: topic, sequence: message.sequence, frame: message.encodeFrame())
                }
                var expected = found.after + 1
                for sequence in bySequence.keys.sorted() where sequence >= expected {
                    if sequence > expected { out.append(Self.gap(topic, expected...(sequence - 1))) }
                    out.append(bySequence[sequence]!)
                    expected = sequence + 1
                }
                if found.through >= expected {
                    out.append(Self.gap(topic, expected...found.through))
                    expected = found.through + 1
                }
                Self.track(topic, Heard(sequence: expected - 1, epoch: found.epoch), in: &state)
            }
            for (delivery, epoch) in rest {
                Self.track(delivery.topic, Heard(sequence: delivery.sequence, epoch: epoch), in: &state)
                out.append(delivery)
            }
            state.held = []
            state.phase = .live
            logger.notice("cluster: caught up after the subscription was lost", metadata: [
                "topics": "\(missed.count)", "messages": "\(missed.values.reduce(0) { $0 + $1.messages.count })",
            ])
            if !out.isEmpty { state.deliver?(out) }
        }
    }

    /// A `gap` notice for the sessions subscribed to `topic`, as a resume gives.
    private static func gap(_ topic: Topic, _ missing: ClosedRange<UInt64>) -> Delivery {
        Delivery(topic: topic, sequence: missing.upperBound, frame: Session.gapFrame(topic, missing))
    }
}
