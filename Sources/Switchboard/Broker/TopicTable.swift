/// A topic's last seq and the publish time given to it (unix milliseconds): where the
/// topic's next message continues from, in memory and in `topic_sequences`.
package struct LastPublish: Sendable, Hashable {
    package var sequence: UInt64
    package var time: Int64

    package init(sequence: UInt64, time: Int64) {
        self.sequence = sequence
        self.time = time
    }

    /// The later of two (times never decrease along seqs).
    static func latest(_ a: LastPublish, _ b: LastPublish) -> LastPublish {
        a.sequence >= b.sequence ? LastPublish(sequence: a.sequence, time: max(a.time, b.time)) : latest(b, a)
    }
}

/// The topics the broker holds in memory: each one's last seq and publish time, with the
/// topics that may leave memory kept in least-recently-published order, so that finding
/// what to evict costs nothing more than the topics evicted.
///
/// A topic may be evicted once its last seq is committed to the store (its `note`, a
/// `ReplayLog.recordSequence` ticket, is durable): published again, it is read back and
/// continues after it. Pinned topics (retained by the replay log at their last publish or
/// at start, or any topic of a broker without one) are not evicted while pinned.
///
/// Invariants:
/// - `slots[topic]` is the index in `entries` of a non-nil entry for `topic`; a nil entry's
///   index is in `freeSlots`.
/// - The unpinned entries form one list from `oldest` to `newest` through `newer`/`older`,
///   in order of their last publish; pinned entries are in no list.
struct TopicTable {
    private struct Entry {
        var topic: Topic
        var state: LastPublish
        /// A `ReplayLog.recordSequence` ticket; nil for a pinned entry.
        var note: UInt64?
        var older = -1
        var newer = -1
        /// Publishes in the minute `minute` (unix ms / 60 000) and in the one before, for
        /// `messagesPerSecond`: two counters per topic instead of a series.
        var minute: Int64 = 0
        var thisMinute: UInt32 = 0
        var lastMinute: UInt32 = 0

        mutating func countPublish(at time: Int64) {
            let now = time / 60_000
            if now != minute {
                lastMinute = now == minute + 1 ? thisMinute : 0
                thisMinute = 0
                minute = now
            }
            thisMinute &+= 1
        }
    }

    private var slots: [Topic: Int] = [:]
    private var entries: [Entry?] = []
    private var freeSlots: [Int] = []
    private var oldest = -1
    private var newest = -1

    var count: Int { slots.count }

    func state(of topic: Topic) -> LastPublish? {
        guard let slot = slots[topic] else { return nil }
        return entries[slot]?.state
    }

    /// `topic`'s state and whether it is pinned; nil when it is not in memory.
    func entry(of topic: Topic) -> (state: LastPublish, pinned: Bool)? {
        guard let slot = slots[topic], let entry = entries[slot] else { return nil }
        return (entry.state, entry.note == nil)
    }

    /// Sets `topic`'s state (adding it if new). `note`: its `recordSequence` ticket, which
    /// makes it the most recently published (and unpins it); nil pins it. `published`: a
    /// publish at this time (unix ms) is counted for `messagesPerSecond`; nil for a state
    /// read back.
    mutating func update(_ topic: Topic, _ state: LastPublish, note: UInt64?, published: Int64? = nil) {
        if let slot = slots[topic] {
            entries[slot]?.state = state
            if let published { entries[slot]?.countPublish(at: published) }
            let pinned = entries[slot]?.note == nil
            entries[slot]?.note = note
            switch (pinned, note) {
            case (true, nil): break
            case (true, .some): link(slot)
            case (false, nil): unlink(slot)
            case (false, .some):
                if slot != newest {
                    unlink(slot)
                    link(slot)
                }
            }
            return
        }
        var entry = Entry(topic: topic, state: state, note: note)
        if let published { entry.countPublish(at: published) }
        let slot: Int
        if let free = freeSlots.popLast() {
            slot = free
            entries[slot] = entry
        } else {
            slot = entries.count
            entries.append(entry)
        }
        slots[topic] = slot
        if note != nil { link(slot) }
    }

    /// Evicts, oldest first, up to `limit` topics last published before `before` (unix ms;
    /// nil: any time) whose seq is committed (note at most `durable`). Stops at the first
    /// topic that is too recent or not committed yet. Returns how many it evicted.
    mutating func evict(publishedBefore before: Int64?, durable: UInt64, limit: Int) -> Int {
        var evicted = 0
        while evicted < limit, oldest >= 0, let entry = entries[oldest], let note = entry.note, note <= durable {
            if let before, entry.state.time >= before { break }
            let slot = oldest
            unlink(slot)
            slots[entry.topic] = nil
            entries[slot] = nil
            freeSlots.append(slot)
            evicted += 1
        }
        return evicted
    }

    /// Publishes per second of `topic` over the minute before `now` (unix ms): the current
    /// minute's count plus the share of the previous minute's that the window still covers.
    func messagesPerSecond(_ topic: Topic, now: Int64) -> Double {
        guard let slot = slots[topic], let entry = entries[slot] else { return 0 }
        let minute = now / 60_000
        let elapsed = Double(now % 60_000) / 60_000
        switch minute - entry.minute {
        case 0: return (Double(entry.lastMinute) * (1 - elapsed) + Double(entry.thisMinute)) / 60
        case 1: return Double(entry.thisMinute) * (1 - elapsed) / 60
        default: return 0
        }
    }

    /// Calls `body` with every topic and its state.
    func forEach(_ body: (Topic, LastPublish) -> Void) {
        for entry in entries {
            if let entry { body(entry.topic, entry.state) }
        }
    }

    private mutating func link(_ slot: Int) {
        entries[slot]?.older = newest
        entries[slot]?.newer = -1
        if newest >= 0 { entries[newest]?.newer = slot } else { oldest = slot }
        newest = slot
    }

    private mutating func unlink(_ slot: Int) {
        guard let entry = entries[slot] else { return }
        if entry.older >= 0 { entries[entry.older]?.newer = entry.newer } else { oldest = entry.newer }
        if entry.newer >= 0 { entries[entry.newer]?.older = entry.older } else { newest = entry.older }
    }
}
