import NIOCore
import WebSocketCore

/// Options every connection has, server or client side. Defaults follow `ws` where it has one.
public struct ConnectionOptions: Sendable {
    /// Largest message or frame accepted (after decompression); past it the connection is
    /// closed with 1009. Default 100 MiB, as `ws`; at most 2 GiB (`maxPayloadLimit`).
    public var maxPayload: Int = 100 * 1024 * 1024
    /// Validate that text messages are UTF-8 (1007 at the first bad byte). Default on.
    public var validateUTF8: Bool = true
    /// Answer pings with pongs automatically. Default on.
    public var autoPong: Bool = true
    /// How long to wait for the peer's close frame (or, for a client, for the server to
    /// drop TCP) after a close was sent, before dropping the connection; not negative.
    /// Default 30 s, as `ws`.
    public var closeTimeout: Duration {
        get { Duration(closeTimeoutAmount) }
        set { closeTimeoutAmount = TimeAmount(newValue) }
    }
    /// Send a ping every `interval`; terminate the peer if `timeout` passes after an
    /// unanswered ping with no frame at all from it while reading (both positive). Frames
    /// count as well as the pong (which may queue behind a backlog), and a timeout during
    /// which reading was paused (`pause()`, a consumer behind) does not count. Off by default.
    public var heartbeat: Heartbeat? = nil
    /// Outbound bytes that may wait in memory for a slow peer; a send that finds this much
    /// already queued fails with `SendError.bufferFull` and queues nothing; not negative.
    /// Default 16 MiB.
    public var maxBufferedAmount: Int = 16 * 1024 * 1024
    /// Split outgoing messages longer than this (at least 1) into fragments. Default nil (never).
    public var fragmentSize: Int? = nil
    /// Time a frame may take to arrive whole once its first byte has; past it the connection
    /// is failed with 1008 (policy violation: the bytes were valid, the pace was not), so a
    /// peer cannot hold a partly received frame, and the memory set aside for it, by
    /// trickling it. A peer whose frames are larger than its bandwidth carries in this time
    /// must fragment them, or this must be raised. Positive. Default 60 s; nil: no limit.
    public var partialFrameTimeout: Duration? {
        get { partialFrameTimeoutAmount.map(Duration.init) }
        set { partialFrameTimeoutAmount = newValue.map(TimeAmount.init) }
    }

    // Times are stored as the `TimeAmount`s NIO's timers take: every connection's handler
    // keeps these options, and a `Duration` takes twice the bytes.
    var closeTimeoutAmount: TimeAmount = .seconds(30)
    var partialFrameTimeoutAmount: TimeAmount? = .seconds(60)

    /// The interval and timeout of `heartbeat`.
    public struct Heartbeat: Sendable, Hashable {
        /// Time between pings (positive).
        public var interval: Duration {
            get { Duration(intervalAmount) }
            set { intervalAmount = TimeAmount(newValue) }
        }
        /// Time a pong has to arrive after its ping (positive) before the connection is terminated.
        public var timeout: Duration {
            get { Duration(timeoutAmount) }
            set { timeoutAmount = TimeAmount(newValue) }
        }
        var intervalAmount: TimeAmount
        var timeoutAmount: TimeAmount

        /// A heartbeat pinging every `interval`, terminating after `timeout` without a pong.
        public init(interval: Duration, timeout: Duration) {
            intervalAmount = TimeAmount(interval)
            timeoutAmount = TimeAmount(timeout)
        }
    }

    /// The defaults listed with each option.
    public init() {}

    /// The largest `maxPayload`: a message is held in one NIO `ByteBuffer`, whose capacity
    /// cannot reach 4 GiB, and an inflating buffer grows by doubling.
    public static let maxPayloadLimit = 1 << 31

    /// Throws `InvalidOption` naming the first option out of its range.
    public func validate() throws(InvalidOption) {
        try InvalidOption.check("maxPayload", maxPayload, in: 0...Self.maxPayloadLimit)
        try InvalidOption.checkNotNegative("closeTimeout", closeTimeout)
        if let heartbeat {
            try InvalidOption.checkPositive("heartbeat.interval", heartbeat.interval)
            try InvalidOption.checkPositive("heartbeat.timeout", heartbeat.timeout)
        }
        try InvalidOption.check("maxBufferedAmount", maxBufferedAmount, atLeast: 0)
        if let fragmentSize { try InvalidOption.check("fragmentSize", fragmentSize, atLeast: 1) }
        if let partialFrameTimeout {
            try InvalidOption.checkPositive("partialFrameTimeout", partialFrameTimeout)
        }
    }
}

/// One `ConnectionOptions` for many connections' handlers to refer to.
final class SharedConnectionOptions: Sendable {
    let options: ConnectionOptions

    init(_ options: ConnectionOptions) {
        self.options = options
    }
}

/// Why a send did not go out: the error a `send` throws and a write's future fails with.
public enum SendError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The connection is closing or closed.
    case notOpen
    /// More than `maxBufferedAmount` bytes are already waiting for the peer.
    case bufferFull(buffered: Int, limit: Int)
    /// A control payload over 125 bytes, an unsendable close code or a reason too long.
    case invalid(String)

    /// One line naming why the send failed.
    public var description: String {
        switch self {
        case .notOpen: return "the WebSocket is not open"
        case .bufferFull(let buffered, let limit): return "send buffer full: \(buffered) bytes queued, limit \(limit)"
        case .invalid(let message): return message
        }
    }
}

/// How a connection ended, given to `onClose` and thrown by `messages` when it was not clean.
public struct CloseInfo: Sendable, Hashable, CustomStringConvertible, Error {
    /// The code from the peer's close frame; `.noStatusReceived` if it had none,
    /// `.abnormalClosure` (1006) if TCP dropped without a close frame.
    public var code: CloseCode
    /// The reason from the peer's close frame; empty when it had none.
    public var reason: String
    /// True when close frames were exchanged both ways before TCP closed.
    public var wasClean: Bool

    /// A close with `code` and `reason`, clean or not.
    public init(code: CloseCode, reason: String, wasClean: Bool) {
        self.code = code
        self.reason = reason
        self.wasClean = wasClean
    }

    /// One line: clean or not, the code and the reason.
    public var description: String {
        "closed \(wasClean ? "cleanly" : "uncleanly") with \(code)\(reason.isEmpty ? "" : ": \(reason)")"
    }
}

extension InvalidOption {
    /// Throws unless `value` is above zero.
    static func checkPositive(_ option: String, _ value: Duration) throws(InvalidOption) {
        guard value > .zero else { throw InvalidOption(option: option, allowed: "> 0", value: "\(value)") }
    }

    /// Throws if `value` is below zero.
    static func checkNotNegative(_ option: String, _ value: Duration) throws(InvalidOption) {
        guard value >= .zero else { throw InvalidOption(option: option, allowed: ">= 0", value: "\(value)") }
    }
}
