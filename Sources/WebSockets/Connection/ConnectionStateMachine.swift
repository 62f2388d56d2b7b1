import NIOCore
import WebSocketCore

/// The close handshake and the heartbeat of one connection, without I/O: `WebSocketHandler`
/// reports each event and carries out the steps it gets back, so every transition can be
/// driven and checked without a channel.
///
/// Invariants:
/// - The state only moves forward, `open` → `closeSent` → `closeExchanged` → `closed`, and
///   may skip states; `closed` (the channel went inactive) is final.
/// - We write at most one close frame: only a transition out of `open` writes one.
/// - The close timer starts exactly once, on the transition out of `open`: whoever began the
///   close, TCP is dropped `closeTimeout` later if it is still up by then.
/// - Once both close frames went, the server closes TCP as soon as its frames are flushed
///   (RFC 6455 §7.1.1); the client leaves that to the server, bounded by the close timer.
///   A failure closes TCP once our close frame is flushed, in either role.
/// - Messages are sent only while `open`; frames are read until both close frames went.
/// - At most one pong deadline runs, counted from the first unanswered ping; any pong stops
///   it. Pings go only while `open`: the heartbeat stops for good when the state leaves it.
/// - The deadline drops the connection only for a timeout without any frame from the peer
///   while we were reading: frames prove the path alive (a pong may queue behind a backlog),
///   and while our own backpressure pauses reading, an unread pong is not the peer's fault.
/// - The application hears how the connection ended exactly once, when the channel goes
///   inactive, whatever the state was.
struct ConnectionStateMachine {
    enum State: UInt8 {
        case open
        /// We sent a close frame and wait for the peer's.
        case closeSent
        /// Both close frames went (or ours went after a failure); TCP is closing.
        case closeExchanged
        /// The channel is inactive.
        case closed
    }

    /// What the handler does, in this order, to move a close along.
    struct CloseSteps: Equatable {
        /// Write this close frame.
        var closeFrame: ByteBuffer?
        /// Close TCP once everything written so far is flushed; otherwise flush unless in a
        /// read, whose end flushes.
        var closeWhenFlushed = false
        /// Start the close timer: when it fires, TCP is dropped.
        var startCloseTimer = false
        /// Read the peer's close frame even while the application has reading paused.
        var readThroughPause = false
    }

    enum CloseRequestAction: Equatable {
        /// The close is under way or done already: nothing to send.
        case alreadyClosing
        /// A protocol error waits behind messages the application has not taken: the peer's
        /// close would never be read, so fail the connection with that error instead.
        case failWithPendingError
        /// The code may not be sent or the reason does not fit: nothing changed.
        case invalid(String)
        case close(CloseSteps)
    }

    enum HeartbeatAction: Equatable {
        /// Not open: schedule no further ping.
        case stop
        /// Send a ping and schedule the next one; start the pong deadline when asked.
        case sendPing(startPongDeadline: Bool)
    }

    enum TimerAction: Equatable {
        case none
        /// Drop TCP at once, without a close handshake.
        case dropConnection
        /// Run the pong deadline again, from now.
        case extendDeadline
    }

    let role: Role
    private(set) var state = State.open
    /// A ping went unanswered and its deadline runs.
    private(set) var awaitingPong = false

    init(role: Role) {
        self.role = role
    }

    /// Messages may be sent.
    var isOpen: Bool { state == .open }
    var isClosed: Bool { state == .closed }
    /// Frames from the peer are still read and handled.
    var acceptsFrames: Bool { state == .open || state == .closeSent }
    /// Reading goes on whatever pauses it, for the peer's close frame or the end of TCP.
    var readsThroughPause: Bool { state != .open }

    var readyState: ReadyState {
        switch state {
        case .open: .open
        case .closeSent, .closeExchanged: .closing
        case .closed: .closed
        }
    }

    // MARK: Events

    /// The application asked to close with `code` and `reason`.
    mutating func closeRequested(code: CloseCode, reason: String, protocolErrorPending: Bool) -> CloseRequestAction {
        guard state == .open else { return .alreadyClosing }
        if protocolErrorPending { return .failWithPendingError }
        let frame: ByteBuffer
        do {
            frame = try ClosePayload.make(code: code, reason: reason)
        } catch {
            return .invalid(error.message)
        }
        state = .closeSent
        return .close(CloseSteps(closeFrame: frame, startCloseTimer: true, readThroughPause: true))
    }

    /// The peer's close frame arrived, carrying `code`.
    mutating func closeFrameReceived(code: CloseCode) -> CloseSteps {
        switch state {
        case .open:
            state = .closeExchanged
            // Echo the peer's code (RFC 6455 §5.5.1); a close without one is answered without one.
            let reply = code == .noStatusReceived
                ? ByteBuffer() : (try? ClosePayload.make(code: code, reason: "")) ?? ByteBuffer()
            return CloseSteps(closeFrame: reply, closeWhenFlushed: role == .server, startCloseTimer: true)
        case .closeSent:
            state = .closeExchanged
            return CloseSteps(closeWhenFlushed: role == .server)
        case .closeExchanged, .closed:
            return CloseSteps()
        }
    }

    /// The connection must fail (RFC 6455 §7.1.7): a protocol error from the peer, a limit,
    /// a frame not received whole in time, or an error of our own while sending.
    mutating func failed(_ error: any Error) -> CloseSteps {
        switch state {
        case .open:
            state = .closeExchanged
            let (code, reason): (CloseCode, String) =
                if let error = error as? WebSocketError { (error.closeCode, error.reason) } else { (.internalError, "") }
            let frame = (try? ClosePayload.make(code: code, reason: Self.truncated(reason))) ?? ByteBuffer()
            return CloseSteps(closeFrame: frame, closeWhenFlushed: true, startCloseTimer: true)
        case .closeSent, .closeExchanged:
            state = .closeExchanged
            return CloseSteps(closeWhenFlushed: true)
        case .closed:
            return CloseSteps()
        }
    }

    /// The channel went inactive. Returns how the connection ended, to give the application,
    /// or nil when that was given already. The handler cancels every timer.
    mutating func channelInactive(receivedClose: (code: CloseCode, reason: String)?, failed: Bool) -> CloseInfo? {
        guard state != .closed else { return nil }
        state = .closed
        awaitingPong = false
        guard let receivedClose else { return CloseInfo(code: .abnormalClosure, reason: "", wasClean: false) }
        return CloseInfo(code: receivedClose.code, reason: receivedClose.reason, wasClean: !failed)
    }

    /// The heartbeat's interval passed.
    mutating func heartbeatDue() -> HeartbeatAction {
        guard state == .open else { return .stop }
        if awaitingPong { return .sendPing(startPongDeadline: false) }
        awaitingPong = true
        return .sendPing(startPongDeadline: true)
    }

    /// A pong arrived. Returns true when the pong deadline is to be cancelled.
    mutating func pongReceived() -> Bool {
        defer { awaitingPong = false }
        return awaitingPong
    }

    /// No pong came within the heartbeat's timeout of the first unanswered ping (or of the
    /// last extension). `excused`: frames came meanwhile, or reading was paused by us at some
    /// point, so the missing pong says nothing about the path.
    func pongDeadlinePassed(excused: Bool) -> TimerAction {
        if state == .closed { return .none }
        return excused ? .extendDeadline : .dropConnection
    }

    /// The peer did not finish the close handshake (or, for a client, the server did not
    /// close TCP) within `closeTimeout`.
    func closeTimeoutPassed() -> TimerAction {
        state == .closed ? .none : .dropConnection
    }

    private static func truncated(_ reason: String) -> String {
        var reason = reason
        while reason.utf8.count > ClosePayload.maxReasonBytes { reason.removeLast() }
        return reason
    }
}
