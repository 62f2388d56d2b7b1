import Foundation
import NIOCore

/// One hub's index of its sessions by what can end their access: the opaque token they
/// presented (so a revocation finds that token's connections without looking at any other)
/// and their expiry (a min-heap, with one timer for the earliest), so that while nothing is
/// revoked or expiring the broker does no work at all for them.
///
/// Lives on its hub's event loop; every method runs there.
final class AccessIndex {
    private let eventLoop: any EventLoop
    private var byToken: [String: Set<Session>] = [:]
    /// Sessions that expire, with their deadline; the heap holds (deadline, session id) and
    /// may keep entries of sessions removed since (skipped when popped, dropped on rebuild).
    private var expiring: [ObjectIdentifier: (deadline: Date, session: Session)] = [:]
    private var heap = DeadlineHeap()
    private var timer: (deadline: Date, task: Scheduled<Void>)?

    /// The longest the timer waits: deadlines are wall-clock times and the timer runs on the
    /// monotonic clock, so a clock that jumps is caught up with at least this often.
    static let longestWait: TimeInterval = 60

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    func add(_ session: Session) {
        if let id = session.principal.tokenID {
            byToken[id, default: []].insert(session)
        }
        if let deadline = session.principal.permissions.expiresAt {
            let id = ObjectIdentifier(session)
            expiring[id] = (deadline, session)
            heap.push(deadline, id)
            schedule()
        }
    }

    func remove(_ session: Session) {
        if let id = session.principal.tokenID, var sessions = byToken[id] {
            sessions.remove(session)
            byToken[id] = sessions.isEmpty ? nil : sessions
        }
        if expiring.removeValue(forKey: ObjectIdentifier(session)) != nil, heap.count > 2 * expiring.count + 64 {
            heap = DeadlineHeap(expiring.map { ($0.value.deadline, $0.key) })
        }
    }

    /// The live sessions of opaque token `id`.
    func sessions(token id: String) -> Set<Session> {
        byToken[id] ?? []
    }

    /// Arms the timer for the earliest deadline, unless it is armed for that already.
    private func schedule() {
        guard let next = heap.first?.deadline else {
            timer?.task.cancel()
            timer = nil
            return
        }
        if let timer, timer.deadline <= next { return }
        timer?.task.cancel()
        let wait = min(max(next.timeIntervalSinceNow, 0), Self.longestWait)
        let task = eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(Int64(wait * 1e9))) { [self] in
            timer = nil
            expire()
        }
        timer = (next, task)
    }

    /// Closes every session whose deadline has passed (4002), then waits for the next.
    private func expire() {
        let now = Date()
        while let first = heap.first, first.deadline <= now {
            heap.pop()
            guard let entry = expiring[first.id], entry.deadline == first.deadline else { continue }
            expiring[first.id] = nil
            entry.session.close(Broker.CloseCodes.tokenExpired, "token expired")
        }
        schedule()
    }
}

/// A binary min-heap of (deadline, session id).
struct DeadlineHeap {
    private var entries: [(deadline: Date, id: ObjectIdentifier)] = []

    init() {}

    init(_ entries: [(Date, ObjectIdentifier)]) {
        self.entries = entries.map { (deadline: $0.0, id: $0.1) }
        for index in stride(from: self.entries.count / 2 - 1, through: 0, by: -1) { siftDown(index) }
    }

    var count: Int { entries.count }
    var first: (deadline: Date, id: ObjectIdentifier)? { entries.first }

    mutating func push(_ deadline: Date, _ id: ObjectIdentifier) {
        entries.append((deadline, id))
        var child = entries.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard entries[child].deadline < entries[parent].deadline else { break }
            entries.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() {
        guard !entries.isEmpty else { return }
        entries.swapAt(0, entries.count - 1)
        entries.removeLast()
        siftDown(0)
    }

    private mutating func siftDown(_ start: Int) {
        var parent = start
        while true {
            var smallest = parent
            let left = 2 * parent + 1
            let right = left + 1
            if left < entries.count, entries[left].deadline < entries[smallest].deadline { smallest = left }
            if right < entries.count, entries[right].deadline < entries[smallest].deadline { smallest = right }
            guard smallest != parent else { return }
            entries.swapAt(parent, smallest)
            parent = smallest
        }
    }
}
