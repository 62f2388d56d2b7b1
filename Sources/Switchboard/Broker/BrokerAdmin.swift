import NIOCore

/// A topic in memory as the admin API lists it.
struct TopicActivity: Sendable {
    var topic: Topic
    var last: LastPublish
    /// Publishes per second over the last minute.
    var perSecond: Double
}

/// One open connection as the admin API lists it.
struct ConnectionSummary: Sendable {
    var id: UInt64
    var peer: String
    var principal: String
    var subscriptions: [String]
    /// Bytes handed to the socket that the kernel has not taken yet.
    var queuedBytes: Int
    /// When it opened, unix milliseconds.
    var openedAt: Int64
}

/// The broker's counters summed over its hubs, read on each hub's loop.
struct BrokerCounters: Sendable {
    var connections = 0
    var subscriptions = 0
    var delivered: UInt64 = 0
    var deliveredBytes: UInt64 = 0
    var slowConsumerCloses: UInt64 = 0
    var dropped: UInt64 = 0
    var gaps: UInt64 = 0
}

/// What the admin API asks of the broker's hubs: each hub answers on its own loop, so
/// nothing here adds a lock or a shared counter to the fan-out path.
extension Broker {
    private var allHubs: [Hub] { Array(hubs.values) }

    /// Sessions on this node subscribed to each of `topics` (by any pattern).
    func subscriberCounts(_ topics: [Topic]) async -> [Int] {
        var counts = [Int](repeating: 0, count: topics.count)
        for hub in allHubs {
            let local = try? await hub.inspect { state in
                topics.map { topic in
                    var count = 0
                    state.index.forEachMatch(topic, scratch: &state.matches) { _ in count += 1 }
                    return count
                }
            }.get()
            for (index, count) in (local ?? []).enumerated() { counts[index] += count }
        }
        return counts
    }

    func counters() async -> BrokerCounters {
        var total = BrokerCounters()
        for hub in allHubs {
            guard let local = try? await hub.inspect({ state -> BrokerCounters in
                let c = state.counters
                return BrokerCounters(
                    connections: state.sessions.count,
                    subscriptions: state.sessions.values.reduce(0) { $0 + $1.subscriptions.count },
                    delivered: c.messages, deliveredBytes: c.bytes, slowConsumerCloses: c.slowConsumerCloses,
                    dropped: c.dropped, gaps: c.gaps)
            }).get() else { continue }
            total.connections += local.connections
            total.subscriptions += local.subscriptions
            total.delivered &+= local.delivered
            total.deliveredBytes &+= local.deliveredBytes
            total.slowConsumerCloses &+= local.slowConsumerCloses
            total.dropped &+= local.dropped
            total.gaps &+= local.gaps
        }
        return total
    }

    /// Open connections with an id above `after`, by id, at most `limit`.
    func connections(after: UInt64, limit: Int) async -> [ConnectionSummary] {
        var found: [ConnectionSummary] = []
        for hub in allHubs {
            let local = try? await hub.inspect { state in
                state.sessions.values.filter { $0.id > after }.sorted { $0.id < $1.id }.prefix(limit).map { session in
                    ConnectionSummary(
                        id: session.id, peer: session.peer, principal: session.principal.logLabel,
                        subscriptions: session.subscriptions.sorted(),
                        queuedBytes: session.socket.bufferedAmountOnLoop, openedAt: session.openedAt)
                }
            }.get()
            found += local ?? []
        }
        found.sort { $0.id < $1.id }
        return Array(found.prefix(limit))
    }

    /// Closes connection `id` with 4003; false when no such connection is open.
    func closeConnection(id: UInt64) async -> Bool {
        for hub in allHubs {
            let closed = try? await hub.inspect { state -> Bool in
                guard let session = state.sessions[id] else { return false }
                session.close(Self.CloseCodes.closedByAdmin, "closed by an operator")
                return true
            }.get()
            if closed == true { return true }
        }
        return false
    }
}

extension Broker {
    /// Why an admin publish was not published.
    enum AdminPublishFailure: Error {
        /// The replay log cannot take it, or its topic's last seq could not be read.
        case unavailable(String)
        /// `maxTopics` topics are in memory and none can be evicted.
        case tooManyTopics
    }

    /// Publishes as a client's acked publish does and returns its seq: at once for a topic
    /// that is not retained, once committed for one that is.
    func publishAwaitingCommit(_ publish: Publish, from principal: Principal) async -> Result<UInt64, AdminPublishFailure> {
        await withCheckedContinuation { continuation in
            publishOnce(publish, from: principal) { continuation.resume(returning: $0) }
        }
    }

    /// One try; `done` is called exactly once (again after a topic lookup).
    private func publishOnce(
        _ publish: Publish, from principal: Principal,
        done: @escaping @Sendable (Result<UInt64, AdminPublishFailure>) -> Void
    ) {
        let outcome = self.publish(
            publish, from: principal,
            committed: { sequence, result in
                done(result.map { sequence }.mapError { .unavailable(ReplayError.notDurable(sequence: sequence, $0)) })
            },
            loaded: { [self] result in
                switch result {
                case .success: publishOnce(publish, from: principal, done: done)
                case .failure(let error): done(.failure(.unavailable("not published: \(error)")))
                }
            })
        switch outcome {
        case .published(let sequence): done(.success(sequence))
        case .awaitingCommit, .deferred: break
        case .rejected(let error): done(.failure(.unavailable("not published: \(error)")))
        case .tooManyTopics: done(.failure(.tooManyTopics))
        }
    }
}
