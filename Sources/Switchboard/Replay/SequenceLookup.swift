/// Reading topics' last committed seqs back from `topic_sequences`: for topics the broker
/// does not hold in memory (not published since start, or evicted while idle).
extension ReplayLog {
    /// The last committed seq of every topic. Blocks on SQLite: not on an event loop.
    public func lastSequences() throws(ReplayError) -> [Topic: UInt64] {
        try withReader { (c) throws(ReplayError) in
            do throws(StoreError) {
                let all = try SQLiteStatement(c.db, "SELECT topic, last_seq FROM topic_sequences", persistent: false)
                defer { all.finalize() }
                var sequences = retainedTopics().mapValues(\.sequence)
                while try all.step() {
                    guard let topic = try? Topic(all.text(0)) else { continue }
                    sequences[topic] = max(sequences[topic] ?? 0, UInt64(clamping: all.int(1)))
                }
                return sequences
            } catch {
                throw Self.classify(error, path: path)
            }
        }
    }

    /// Reads `topic`'s last committed seq and its time on a reader's queue, where `completion`
    /// runs. A topic the log has no seq for continues after `newTopicFloor` (0 unless a
    /// process stopped uncleanly: it may have handed out seqs of topics it never noted).
    func lookUpSequence(_ topic: Topic, completion: @escaping @Sendable (Result<LastPublish, ReplayError>) -> Void) {
        let reader = reader()
        let floor = newTopicFloor
        reader.queue.async {
            do throws(ReplayError) {
                let state = try reader.connection().topicState(topic)
                completion(.success(LastPublish(sequence: state?.lastSequence ?? floor, time: state?.lastTime ?? 0)))
            } catch {
                completion(.failure(error))
            }
        }
    }

    /// Reads the last committed seqs of `topics`, or when nil of every topic `pattern`
    /// matches, leaving out `known`, on a reader's queue, where `completion` runs. Topics
    /// the log has never seen are left out.
    package func lookUpSequences(
        of topics: Set<Topic>?, matching pattern: TopicPattern, except known: Set<Topic>,
        completion: @escaping @Sendable (Result<[Topic: UInt64], ReplayError>) -> Void
    ) {
        let reader = reader()
        reader.queue.async {
            do throws(ReplayError) {
                let c = try reader.connection()
                var sequences: [Topic: UInt64] = [:]
                let candidates: [Topic]
                if let topics {
                    candidates = Array(topics)
                } else {
                    candidates = try c.topics(matching: pattern)
                }
                for topic in candidates where !known.contains(topic) && pattern.matches(topic) {
                    if let state = try c.topicState(topic) { sequences[topic] = state.lastSequence }
                }
                completion(.success(sequences))
            } catch {
                completion(.failure(error))
            }
        }
    }
}
