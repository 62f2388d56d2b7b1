import NIOCore

/// Where a subscription's catch-up reads the history it missed: the replay log (SQLite) on a
/// single node, the topics' Redis streams on a cluster node. `ReplayCatchUp` and the session
/// know only this, so resuming works the same on either.
///
/// Tickets order the catch-up against appends: a pass over the topics that began after
/// `ticket()` was taken sees every append accepted before it once `whenSettled` has called
/// back (see `ReplayPage.settledBefore`).
package protocol TopicHistory: AnyObject, Sendable {
    /// Whether the history keeps `topic`'s messages (a retention rule matches it).
    func retains(_ topic: Topic) -> Bool
    /// Whether a live message can reach the session after a read already returned it (a
    /// cluster node hears messages on another Redis connection than the one it reads the
    /// streams on). The session then drops, once the catch-up is over, live messages at or
    /// below what it replayed.
    var liveMayTrailReads: Bool { get }
    /// A ticket for the appends accepted so far.
    func ticket() -> UInt64
    /// Calls `callback` (on any thread) once every append up to `ticket` is readable or failed.
    func whenSettled(_ ticket: UInt64, _ callback: @escaping @Sendable () -> Void)
    /// The last seqs of `topics`, or when nil of every topic `pattern` matches, leaving out
    /// `known`; topics never seen are left out. `completion` runs on any thread.
    func lookUpSequences(
        of topics: Set<Topic>?, matching pattern: TopicPattern, except known: Set<Topic>,
        completion: @escaping @Sendable (Result<[Topic: UInt64], ReplayError>) -> Void)
    /// Pages through what `pattern` matches from `position`.
    func cursor(pattern: TopicPattern, position: ReplayPosition) -> any HistoryCursor
    /// The epoch `subscribed` names for `pattern` (the history its seqs count in), nil when
    /// there is none to name.
    func epoch(of pattern: TopicPattern, on loop: any EventLoop) -> EventLoopFuture<String?>
}

/// One replay's pages (see `ReplayCursor`). One `next` at a time.
package protocol HistoryCursor: AnyObject, Sendable {
    /// Reads the next page; `completion` runs on any thread.
    func next(limit: Int, maxBytes: Int, completion: @escaping @Sendable (Result<ReplayPage, ReplayError>) -> Void)
    /// After exhaustion: visit every topic again from where it stopped.
    func rewind()
}

extension ReplayLog: TopicHistory {
    /// The hub hands a message to the subscriber's loop before its append can be read.
    package var liveMayTrailReads: Bool { false }

    package func ticket() -> UInt64 { enqueuedCount }

    package func cursor(pattern: TopicPattern, position: ReplayPosition) -> any HistoryCursor {
        ReplayCursor(log: self, pattern: pattern, position: position, encodeFrames: true)
    }

    /// One epoch for the whole database.
    package func epoch(of pattern: TopicPattern, on loop: any EventLoop) -> EventLoopFuture<String?> {
        loop.makeSucceededFuture(epoch)
    }
}

extension ReplayCursor: HistoryCursor {}

extension ReplayPosition {
    /// After which seq `topic` resumes when the position says so explicitly (`since`, absent
    /// topics of a map from 0); nil for a time or last-N position, which the history resolves.
    func explicitStart(of topic: Topic) -> UInt64? {
        switch self {
        case .sequence(let n): n
        case .perTopic(let map): map[topic] ?? 0
        case .time, .last: nil
        }
    }
}
