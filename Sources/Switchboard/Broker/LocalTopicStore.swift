import Logging
import NIOConcurrencyHelpers
import NIOCore

/// A single node's topics: seqs assigned in memory under one lock, retained messages
/// appended to the SQLite replay log under it (fanned out by its writer once committed),
/// the others handed to every hub at once. See `Broker`'s invariants.
final class LocalTopicStore: TopicStore {
    /// Shared with the broker, which reads its counters and replaces its rules.
    let sequencing: NIOLockedValueBox<Broker.Sequencing>
    let replayLog: ReplayLog?
    private let hubs: [Hub]
    private let configuration: BrokerConfiguration
    private let logger: Logger

    init(
        sequencing: NIOLockedValueBox<Broker.Sequencing>, replayLog: ReplayLog?, hubs: [Hub],
        configuration: BrokerConfiguration, logger: Logger
    ) {
        self.sequencing = sequencing
        self.replayLog = replayLog
        self.hubs = hubs
        self.configuration = configuration
        self.logger = logger
    }

    var history: (any TopicHistory)? { replayLog }

    /// Sequences a message and hands it to every hub, or when its topic is retained appends it
    /// to the replay log, whose writer hands it to the hubs once committed. `committed` (when
    /// given) is called on the log's writer thread once the message is durable, or its batch
    /// failed; only for `.awaitingCommit`.
    ///
    /// A topic the broker does not hold in memory (not published since start, or evicted
    /// while idle) has its last seq read from the log first, off the caller's thread: the
    /// publish returns `.deferred`, and `loaded` is called (on a reader thread) once the
    /// topic is in memory or could not be read. The caller then publishes again from its own
    /// thread, so that its answer still comes before the message reaches its own
    /// subscriptions. So does a publish to a topic no longer retained whose last publish was:
    /// it waits (`loaded` is called on the log's writer thread) until the messages appended
    /// before it are committed and handed to the hubs, which its live copy must not overtake.
    func publish(
        _ publish: Publish, from publisher: Principal, now: Int64,
        committed: (@Sendable (UInt64, Result<Void, ReplayError>) -> Void)?,
        loaded: @escaping @Sendable (Result<Void, ReplayError>) -> Void
    ) -> Broker.Sequenced {
        // Decided outside the lock by the rules as they were; checked under it, decided again
        // in the rare case that they were replaced meanwhile.
        let rules = replayLog?.rules
        var retained = rules?.retains(publish.topic) ?? false
        // Made only for what is stored (one string per stored message), outside the lock.
        var publisherLabel = retained ? publisher.logLabel : nil
        var wait: Wait?
        let outcome = sequencing.withLockedValue { (state: inout Broker.Sequencing) -> Broker.Sequenced in
            if !state.loading.isEmpty, state.loading[publish.topic] != nil {
                state.loading[publish.topic]?.append(loaded)
                return .deferred
            }
            if let current = state.retention, current !== rules {
                retained = current.retains(publish.topic)
                publisherLabel = retained ? publisher.logLabel : nil
            }
            guard let entry = state.topics.entry(of: publish.topic) else {
                guard makeRoom(&state) else { return .tooManyTopics }
                guard replayLog == nil else {
                    // Its stored seq first, retained or not: it may have been either before.
                    state.loading[publish.topic] = [loaded]
                    wait = .lookUp
                    return .deferred
                }
                return sequence(publish, after: nil, retained: retained, publisher: publisherLabel, now: now, committed, &state)
            }
            // Pinned with a log: retained at its last publish (or at start).
            if let replayLog, entry.pinned, !retained {
                state.loading[publish.topic] = [loaded]
                wait = .commits(replayLog.enqueuedCount)
                return .deferred
            }
            return sequence(publish, after: entry.state, retained: retained, publisher: publisherLabel, now: now, committed, &state)
        }
        if let wait, let replayLog {
            let topic = publish.topic
            switch wait {
            case .lookUp:
                replayLog.lookUpSequence(topic) { [self] result in read(topic, result) }
            case .commits(let ticket):
                replayLog.whenSettled(ticket) { [self] in committedBefore(topic) }
            }
        }
        return outcome
    }

    /// What a deferred publish waits for.
    private enum Wait {
        /// Its topic's last seq, read from the replay log.
        case lookUp
        /// The settling of every append up to this ticket (`ReplayLog.whenSettled`).
        case commits(UInt64)
    }

    /// Gives `publish` its topic's next seq (after `last`, nil for a new topic) and hands it
    /// to the replay log and the hubs.
    private func sequence(
        _ publish: Publish, after last: LastPublish?, retained: Bool, publisher: String?, now: Int64,
        _ committed: (@Sendable (UInt64, Result<Void, ReplayError>) -> Void)?, _ state: inout Broker.Sequencing
    ) -> Broker.Sequenced {
        let last = last ?? .init(sequence: 0, time: 0)
        let sequence = last.sequence + 1
        let time = max(now, last.time)
        let frame = MessageEncoder.encodeFrame(publish, sequence: sequence, time: time)
        var note: UInt64?
        if let replayLog, retained {
            var message = StoredMessage(
                topic: publish.topic, sequence: sequence, time: time, format: publish.format,
                payload: publish.payload, publisher: publisher)
            var completion: (@Sendable (Result<Void, ReplayError>) -> Void)?
            if let committed {
                completion = { result in committed(sequence, result) }
            }
            message.frame = frame
            do throws(ReplayError) {
                // Fanned out once committed (see `init`).
                try replayLog.append(message, completion: completion)
            } catch {
                return .rejected(error)
            }
        } else {
            do throws(ReplayError) {
                note = try replayLog?.recordSequence(topic: publish.topic, LastPublish(sequence: sequence, time: time))
            } catch {
                return .rejected(error)
            }
            let delivery = Delivery(
                topic: publish.topic, sequence: sequence, frame: frame,
                compressed: SharedCompression.make(for: frame, configuration.deflate))
            for hub in hubs { hub.enqueue(delivery) }
        }
        state.topics.update(publish.topic, .init(sequence: sequence, time: time), note: note, published: now)
        state.published += 1
        state.publishedBytes &+= UInt64(publish.payload.readableBytes)
        return retained && committed != nil ? .awaitingCommit(sequence) : .published(sequence)
    }

    /// A topic's last seq was read back: the topic is in memory, and the publishers that
    /// waited for it are told.
    private func read(_ topic: Topic, _ result: Result<LastPublish, ReplayError>) {
        let waiting = sequencing.withLockedValue {
            (state: inout Broker.Sequencing) -> [@Sendable (Result<Void, ReplayError>) -> Void] in
            guard let waiting = state.loading.removeValue(forKey: topic) else { return [] }
            if case .success(let last) = result {
                // Read from the store, so already durable: note 0.
                state.topics.update(topic, last, note: 0)
            }
            return waiting
        }
        let outcome: Result<Void, ReplayError> = result.map { _ in }
        if case .failure(let error) = outcome {
            logger.error("cannot read a topic's last seq", metadata: ["topic": "\(topic)", "error": "\(error)"])
        }
        for loaded in waiting { loaded(outcome) }
    }

    /// The messages of a topic no longer retained that were appended before its first publish
    /// since are committed (or failed) and handed to the hubs: it is unpinned (its last seq is
    /// in `topic_sequences`, or was seen by nobody), and the publishers that waited are told.
    private func committedBefore(_ topic: Topic) {
        let waiting = sequencing.withLockedValue {
            (state: inout Broker.Sequencing) -> [@Sendable (Result<Void, ReplayError>) -> Void] in
            guard let waiting = state.loading.removeValue(forKey: topic) else { return [] }
            if let last = state.topics.state(of: topic) { state.topics.update(topic, last, note: 0) }
            return waiting
        }
        for loaded in waiting { loaded(.success(())) }
    }

    /// Whether a topic may be added: under `maxTopics`, or once the least recently published
    /// topic whose seq is committed has been evicted.
    private func makeRoom(_ state: inout Broker.Sequencing) -> Bool {
        guard state.topics.count + state.loading.count >= configuration.maxTopics else { return true }
        guard let replayLog else { return false }
        return state.topics.evict(publishedBefore: nil, durable: replayLog.durableSequenceNotes, limit: 1) == 1
    }

    /// The current seq of every topic in memory that `pattern` matches. Taken after a
    /// subscription is registered on its hub: every later message of those topics reaches it
    /// live. Topics not in memory have their last seq committed in the replay log.
    func currentSequences(matching pattern: TopicPattern) -> [Topic: UInt64] {
        let concrete = pattern.isConcrete ? try? Topic(pattern.name) : nil
        return sequencing.withLockedValue { state in
            if let topic = concrete {
                return state.topics.state(of: topic).map { [topic: $0.sequence] } ?? [:]
            }
            var matching: [Topic: UInt64] = [:]
            state.topics.forEach { topic, last in
                if pattern.matches(topic) { matching[topic] = last.sequence }
            }
            return matching
        }
    }
}

/// What operators see: the topics in memory, and what the replay log holds of them.
extension LocalTopicStore {
    func topics(matching pattern: TopicPattern, limit: Int, now: Int64) -> [TopicActivity] {
        var found: [TopicActivity] = []
        sequencing.withLockedValue { state in
            state.topics.forEach { topic, _ in
                if pattern.matches(topic), let activity = state.activity(of: topic, now: now) { found.append(activity) }
            }
        }
        found.sort { $0.topic.name < $1.topic.name }
        return Array(found.prefix(limit))
    }

    /// In memory, else as the replay log last stored it.
    func topic(_ topic: Topic, now: Int64) async throws(ReplayError) -> TopicActivity? {
        if let activity = sequencing.withLockedValue({ $0.activity(of: topic, now: now) }) { return activity }
        guard let replayLog else { return nil }
        let state = try await ReplayLog.offLoop { () throws(ReplayError) in try replayLog.topicState(topic) }
        return state.map { TopicActivity(topic: topic, last: LastPublish(sequence: $0.lastSequence, time: $0.lastTime), perSecond: 0) }
    }

    func retained(_ topic: Topic) async throws(ReplayError) -> (count: Int, bytes: Int64)? {
        guard let replayLog, replayLog.retains(topic) else { return nil }
        return try await ReplayLog.offLoop { () throws(ReplayError) in try replayLog.retainedSize(of: topic) }
    }

    func read(_ topic: Topic, after: UInt64, limit: Int) async throws(ReplayError)
        -> (messages: [StoredMessage], firstRetained: UInt64?)
    {
        guard let replayLog else { return ([], nil) }
        return try await ReplayLog.offLoop { () throws(ReplayError) in
            (try replayLog.read(topic: topic, after: after, limit: limit), try replayLog.firstRetained(topic: topic))
        }
    }

    func purge(_ topic: Topic) async throws(ReplayError) -> Int {
        guard let replayLog else { return 0 }
        return try await ReplayLog.offLoop { () throws(ReplayError) in try replayLog.purge(topic) }
    }
}
