import NIOConcurrencyHelpers
import NIOCore
import RedisWire

/// A cluster node's history for resuming subscribers: the topics' Redis streams. The publish
/// script stores a message before any node hears it, so a read sent after a live message
/// arrived sees that message: nothing waits to settle, and a ticket only orders the passes
/// over the topics after the moment it was taken.
final class RedisHistory: TopicHistory {
    let log: RedisTopicLog
    private let rules: @Sendable () -> RetentionRules
    private let clock = NIOLockedValueBox<UInt64>(0)

    /// `rules`: the retention rules in force, the same on every node (they decide which
    /// topics the publish script keeps a stream of).
    init(log: RedisTopicLog, rules: @escaping @Sendable () -> RetentionRules) {
        self.log = log
        self.rules = rules
    }

    func retains(_ topic: Topic) -> Bool { rules().retains(topic) }

    /// The script's PUBLISH reaches a node on its subscriber connection, which may be behind
    /// a stream read made on the command connection.
    var liveMayTrailReads: Bool { true }

    func ticket() -> UInt64 {
        clock.withLockedValue {
            $0 += 1
            return $0
        }
    }

    func whenSettled(_ ticket: UInt64, _ callback: @escaping @Sendable () -> Void) {
        callback()
    }

    func lookUpSequences(
        of topics: Set<Topic>?, matching pattern: TopicPattern, except known: Set<Topic>,
        completion: @escaping @Sendable (Result<[Topic: UInt64], ReplayError>) -> Void
    ) {
        Self.run(completion) { [log] in
            let candidates = if let topics { Array(topics) } else { try await log.topics(matching: pattern, .sequence) }
            var sequences: [Topic: UInt64] = [:]
            for topic in candidates where !known.contains(topic) && pattern.matches(topic) {
                if let current = try await log.current(topic: topic) { sequences[topic] = current.sequence }
            }
            return sequences
        }
    }

    func cursor(pattern: TopicPattern, position: ReplayPosition) -> any HistoryCursor {
        RedisHistoryCursor(history: self, pattern: pattern, position: position)
    }

    /// A topic's epoch (made now if it has none). A pattern's topics each have their own, so
    /// none is named for a pattern.
    func epoch(of pattern: TopicPattern, on loop: any EventLoop) -> EventLoopFuture<String?> {
        guard pattern.isConcrete, let topic = try? Topic(pattern.name) else { return loop.makeSucceededFuture(nil) }
        let promise = loop.makePromise(of: String?.self)
        promise.completeWithTask { [log] in
            do {
                return try await log.epoch(topic: topic)
            } catch {
                throw ReplayError.unavailable("redis: \(error)")
            }
        }
        return promise.futureResult
    }

    /// Runs a Redis read in a task; its errors become `unavailable`.
    static func run<T: Sendable>(
        _ completion: @escaping @Sendable (Result<T, ReplayError>) -> Void,
        _ body: @escaping @Sendable () async throws -> T
    ) {
        Task {
            do {
                completion(.success(try await body()))
            } catch let error as ReplayError {
                completion(.failure(error))
            } catch {
                completion(.failure(.unavailable("redis: \(error)")))
            }
        }
    }
}

/// Pages through the streams of a topic or pattern from a replay position, like
/// `ReplayCursor` (per topic by name, seq order), reading `chunk` entries per `XRANGE`.
/// One `next` at a time, which the catch-up guarantees: its state is never touched by two.
final class RedisHistoryCursor: HistoryCursor, @unchecked Sendable {
    private let history: RedisHistory
    private let pattern: TopicPattern
    private let position: ReplayPosition
    private var topics: [Topic]?
    private var index = 0
    private var passStarted: UInt64 = 0
    /// After which seq each visited topic continues.
    private var after: [Topic: UInt64] = [:]
    static let chunk = 256

    init(history: RedisHistory, pattern: TopicPattern, position: ReplayPosition) {
        self.history = history
        self.pattern = pattern
        self.position = position
    }

    func next(limit: Int, maxBytes: Int, completion: @escaping @Sendable (Result<ReplayPage, ReplayError>) -> Void) {
        RedisHistory.run(completion) { [self] in try await page(limit: limit, maxBytes: maxBytes) }
    }

    func rewind() {
        topics = nil
        index = 0
    }

    private func page(limit: Int, maxBytes: Int) async throws -> ReplayPage {
        let log = history.log
        let topics: [Topic]
        if let known = self.topics {
            topics = known
        } else {
            passStarted = history.ticket()
            let matching = if pattern.isConcrete {
                [try Topic(pattern.name)]
            } else {
                try await log.topics(matching: pattern, .stream)
            }
            topics = matching.filter(history.retains)
            self.topics = topics
        }
        var page = ReplayPage(messages: [], starts: [:], exhausted: false, settledBefore: passStarted)
        var bytes = 0
        while index < topics.count, page.messages.count < limit, bytes < maxBytes {
            let topic = topics[index]
            let start: UInt64
            if let known = after[topic] {
                start = known
            } else {
                // Read before the stream: every seq up to it is stored, or was trimmed or purged.
                page.reached[topic] = try await log.current(topic: topic)?.sequence
                start = try await self.start(of: topic)
                after[topic] = start
                page.starts[topic] = start
            }
            let wanted = min(limit - page.messages.count, Self.chunk)
            let read = try await log.read(topic: topic, after: start, limit: wanted)
            for message in read {
                page.messages.append(message)
                bytes += message.payload.readableBytes
            }
            if let last = read.last { after[topic] = last.sequence }
            if read.count < wanted { index += 1 }  // this topic is done for now
        }
        page.exhausted = index >= topics.count
        return page
    }

    /// After which seq `topic`'s replay starts.
    private func start(of topic: Topic) async throws -> UInt64 {
        let log = history.log
        switch position {
        case .sequence, .perTopic:
            return position.explicitStart(of: topic) ?? 0
        case .last(let count):
            // The last `count` stored, or all of them: older ones are not asked for, so no gap.
            guard let newest = try await log.newest(topic: topic), let first = try await log.first(topic: topic, atOrAfter: 0)
            else { return try await log.current(topic: topic)?.sequence ?? 0 }
            return max(newest.sequence - min(count, newest.sequence), first.sequence - 1)
        case .time(let time):
            if let start = try await log.sequence(before: time, topic: topic) { return start }
            return try await log.current(topic: topic)?.sequence ?? 0
        }
    }
}
