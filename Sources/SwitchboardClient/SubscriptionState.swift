#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import NIOConcurrencyHelpers
import NIOCore

/// One subscription as the engine keeps it, on the client's event loop: where each topic
/// stands (the last seq handed to the subscription's buffer) and how to resubscribe.
final class SubscriptionState {
    let id: Int
    let pattern: TopicPattern
    let start: StartPosition
    /// When the application subscribed (unix ms): a `.latest` subscription that has seen no
    /// message yet resumes from here.
    let startedAt: Int64
    let source: Subscription.Producer.Source
    let level: BufferLevel
    /// Per topic, the last seq put into the buffer; resumes ask for what follows.
    var positions: [String: UInt64]
    /// Where a topic not in `positions` starts (`.beginning`: before seq 1); nil: anywhere.
    let baseline: UInt64?
    /// Topics that have had a message since the last (re)subscribe: a gap for any other
    /// topic answers the resume, one for these was a slow-consumer drop.
    private var liveTopics: Set<String> = []
    /// The topic of the last message, known to be in `liveTopics`: a run of one topic's
    /// messages skips the set.
    private var lastLiveTopic: String?
    /// Whether the broker has ever confirmed this subscription.
    var confirmed = false
    /// The broker's epoch of the topic's history, from the last `subscribed`.
    var epoch: String?
    /// `subscribe()` waiting for the first confirmation.
    var opened: EventLoopPromise<Void>?
    /// Events made by the frames of this read, handed to `source` together once it is done:
    /// one wake-up of the consumer per read, not one per message.
    var pending: [Delivery] = []

    init(
        id: Int, pattern: TopicPattern, start: StartPosition, startedAt: Int64,
        source: Subscription.Producer.Source, level: BufferLevel, opened: EventLoopPromise<Void>
    ) {
        self.id = id
        self.pattern = pattern
        self.start = start
        self.startedAt = startedAt
        self.source = source
        self.level = level
        self.opened = opened
        switch start {
        case .seq(let seq): positions = [pattern.text: seq]
        case .positions(let saved): positions = saved.seqs
        default: positions = [:]
        }
        if case .positions(let saved) = start { epoch = saved.epoch }
        switch start {
        case .beginning, .positions: baseline = 0
        default: baseline = nil
        }
    }

    /// Hands the pending events to the consumer's buffer, as one batch; true when it is full.
    func flush() -> Bool {
        guard !pending.isEmpty else { return false }
        let batch = pending
        pending = []
        let full = level.added(batch.count)
        _ = source.yield(batch)
        return full
    }

    /// Ends the sequence after the pending events.
    func finish(_ error: (any Error)?) {
        _ = flush()
        if let error { source.finish(error) } else { source.finish() }
    }

    /// What the `sub` request asks to replay: from the positions once anything was seen,
    /// else from where the application asked to start.
    var replay: Request.Replay {
        if pattern.isPattern, !positions.isEmpty { return .sinceMap(positions) }
        if let seq = positions[pattern.text] { return .since(seq) }
        switch start {
        case .latest: return confirmed ? .sinceTime(startedAt) : .none
        case .seq(let seq): return .since(seq)
        case .time(let date): return .sinceTime(Int64((date.timeIntervalSince1970 * 1000).rounded(.down)))
        case .beginning, .positions: return pattern.isPattern ? .sinceMap(positions) : .since(0)
        case .last(let count): return .last(count)
        }
    }

    /// The events a message makes, or none when it was already delivered. `shared`: another
    /// subscription of the client covers the topic too, so a jump may be the other one's
    /// replay rather than a hole.
    func accept(_ message: Message, shared: Bool) -> (gap: Gap?, deliver: Bool) {
        let topic = message.topic
        if topic != lastLiveTopic {
            liveTopics.insert(topic)
            lastLiveTopic = topic
        }
        // One lookup for the usual case, a message that moves the position on; the rare
        // ones that do not put the previous position back.
        let previous = positions.updateValue(message.seq, forKey: topic)
        guard let last = previous ?? baseline else { return (nil, true) }
        guard message.seq > last else {
            positions[topic] = previous
            return (nil, false)
        }
        guard message.seq > last + 1 else { return (nil, true) }
        if shared {
            positions[topic] = previous
            return (nil, false)
        }
        return (Gap(topic: topic, from: last + 1, to: message.seq - 1, reason: .unannounced), true)
    }

    /// The subscription is sent again (a new connection): no topic has had a message since.
    func resubscribing() {
        liveTopics = []
        lastLiveTopic = nil
    }

    /// The broker lost the history the positions count in: a `.historyLost` gap per topic
    /// over what was delivered of it, and every topic starts over.
    func historyLost() -> [Gap] {
        let gaps = positions.filter { $0.value > 0 }.sorted { $0.key < $1.key }.map { topic, seq in
            Gap(topic: topic, from: 1, to: seq, reason: .historyLost)
        }
        positions = [:]
        return gaps
    }

    /// The gap to deliver for a broker's `gap`, trimmed to what was not delivered yet.
    func accept(gapOf topic: String, from: UInt64, to: UInt64) -> Gap? {
        let last = positions[topic] ?? baseline
        if let last, to <= last { return nil }
        positions[topic] = to
        let reason: Gap.Reason = liveTopics.contains(topic) ? .dropped : .notRetained
        return Gap(topic: topic, from: last.map { $0 + 1 } ?? from, to: to, reason: reason)
    }
}
