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
/// continues after it. Pinned topics (retained by the replay log, or any topic of a broker
/// without one) are never evicted.
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

    /// Sets `topic`'s state (adding it if new) and makes it the most recently published.
    /// `note`: its `recordSequence` ticket; nil pins it.
    mutating func update(_ topic: Topic, _ state: LastPublish, note: UInt64?) {
        if let slot = slots[topic] {
            entries[slot]?.state = state
            guard entries[slot]?.note != nil, let note else { return }
            entries[slot]?.note = note
            if slot != newest {
                unlink(slot)
                link(slot)
            }
            return
        }
        let entry = Entry(topic: topic, state: state, note: note)
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
