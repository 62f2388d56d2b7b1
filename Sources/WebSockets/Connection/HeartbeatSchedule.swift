import NIOCore

/// The heartbeat pings of the connections of one event loop, all with the same interval,
/// from one timer: a connection waits in a queue instead of holding a scheduled task of its
/// own (NIO's scheduled task, its promise and closure and its slot in the loop's timer heap
/// came to about 300 bytes per idle connection).
///
/// Invariants:
/// - Used only on `eventLoop`.
/// - The queue is in order of due time: every connection is added `interval` after now, so
///   a connection added later is never due earlier; adding and removing cost O(1) (the links
///   are in the handlers).
/// - `timer` is armed exactly when the queue is not empty, for its first connection's due
///   time (connections due within `tolerance` of it are pinged by the same firing).
/// - A connection in the queue is held by it until it is pinged or removed; the handler
///   removes itself when its connection closes or leaves the pipeline.
final class HeartbeatSchedule {
    let interval: TimeAmount
    private let eventLoop: any EventLoop
    private var first: WebSocketHandler?
    private unowned(unsafe) var last: WebSocketHandler?
    private var timer: Scheduled<Void>?
    private var count = 0
    private var isFiring = false

    /// Connections due this close to the one the timer fired for are pinged with it.
    static let tolerance = TimeAmount.milliseconds(10)

    init(eventLoop: any EventLoop, interval: TimeAmount) {
        self.eventLoop = eventLoop
        self.interval = interval
    }

    /// Queues `handler` for a ping `interval` from now.
    func add(_ handler: WebSocketHandler) {
        eventLoop.assertInEventLoop()
        remove(handler)
        handler.heartbeatLink.due = .now() + interval
        handler.heartbeatLink.isQueued = true
        handler.heartbeatLink.previous = last
        if let last {
            last.heartbeatLink.next = handler
        } else {
            first = handler
        }
        last = handler
        count += 1
        if timer == nil, !isFiring { arm(at: handler.heartbeatLink.due) }
    }

    /// Takes `handler` out of the queue, if it is in it.
    func remove(_ handler: WebSocketHandler) {
        guard handler.heartbeatLink.isQueued else { return }
        let next = handler.heartbeatLink.next
        let previous = handler.heartbeatLink.previous
        if let previous { previous.heartbeatLink.next = next } else { first = next }
        if let next { next.heartbeatLink.previous = previous } else { last = previous }
        handler.heartbeatLink = HeartbeatLink()
        count -= 1
        if first == nil {
            timer?.cancel()
            timer = nil
        }
    }

    private func arm(at due: NIODeadline) {
        timer = eventLoop.assumeIsolated().scheduleTask(deadline: due) { [self] in fire() }
    }

    /// Pings the connections that are due. Those queued again by their ping wait for a later
    /// firing, even with an interval under `tolerance`: at most the connections queued when
    /// it started are pinged.
    private func fire() {
        timer = nil
        isFiring = true
        let limit = NIODeadline.now() + Self.tolerance
        var budget = count
        while budget > 0, let handler = first, handler.heartbeatLink.due <= limit {
            budget -= 1
            remove(handler)
            handler.heartbeatIsDue()
        }
        isFiring = false
        if let first { arm(at: first.heartbeatLink.due) }
    }
}

/// A handler's place in its `HeartbeatSchedule`'s queue.
struct HeartbeatLink {
    var next: WebSocketHandler?
    unowned(unsafe) var previous: WebSocketHandler?
    var due = NIODeadline.uptimeNanoseconds(0)
    var isQueued = false
}
