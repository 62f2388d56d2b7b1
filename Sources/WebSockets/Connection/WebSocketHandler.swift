import NIOCore
import Synchronization
import WebSocketCore

/// One open WebSocket connection on its event loop: decodes what the peer sends, answers
/// control frames, runs the close handshake, the heartbeat and both directions of
/// backpressure, and hands messages to the application.
///
/// Invariants:
/// - Everything here runs on the channel's event loop; the `WebSocket` handle hops to it.
/// - Frames are parsed and answered inside this one handler: nothing travels down the
///   pipeline as a per-frame `NIOAny`; outgoing frames written during a read are gathered
///   in `outbound` and written and flushed once per read cycle.
/// - Messages that arrive before the application installs a sink are queued, and reading
///   is paused until it does, so none is lost and the queue holds at most one read's worth.
///   A protocol error behind them fails the connection once they are delivered.
///   A ping, pong or close callback lifts that pause while the queue is empty (control
///   frames and the close need reading to arrive); the first queued message sets it again.
/// - Bytes that came with the handshake (`leftover`) are decoded before any read after it.
/// - Once our close frame is out, reading goes on whatever the pause reasons: the peer's
///   close frame must be read for the handshake to finish, and `closeTimeout` bounds what
///   can pile up meanwhile.
/// - `bufferedAmount` (our gathered frames plus the channel's unwritten bytes) never exceeds
///   `maxBufferedAmount` by more than the one send that found it below the limit.
/// - The close handshake and the heartbeat are decided by `stateMachine` and the writes by
///   `outbound`; this type only carries out what they return, after each has returned, as
///   a channel call can run callbacks that come back into the handler.
final class WebSocketHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum MessageSink {
        case queue(CircularBuffer<WebSocketMessage>)
        case callback(@Sendable (WebSocketMessage) -> Void)
        case stream(WebSocket.MessageSequence.Source)
        case consumer(any LoopConsumer)
    }

    /// Why reading from the socket is paused; reading resumes when the set is empty.
    struct PauseReasons: OptionSet {
        let rawValue: UInt8
        static let application = PauseReasons(rawValue: 1)
        static let noSink = PauseReasons(rawValue: 2)
        static let consumerBehind = PauseReasons(rawValue: 4)
    }

    // The send path's state comes first. Swift lays a class's stored properties out in
    // declaration order, so these share a cache line or two with the object's header: a
    // fan-out touches them once per connection and message, after the other connections'
    // writes have pushed them out of cache, so every further line touched is another miss
    // (spread over the ~500-byte object, a fan-out send would stall on four lines).
    private var context: ChannelHandlerContext!  // set in `handlerAdded`, before any event reads it
    private var outbound: OutboundGatherer
    private var stateMachine: ConnectionStateMachine
    private var isReading = false
    /// The socket's descriptor when a lone frame may be written straight to it (see
    /// `writeDirect`): only a server connection whose pipeline holds no other outbound
    /// handler; -1 otherwise, and from the moment the channel goes inactive.
    private var directSocket: CInt = -1
    /// NIO may still hold bytes of an earlier write (false only once it said it holds none,
    /// and nothing went through it since): until then writes go through NIO, to keep their order.
    private var channelMayHoldBytes = true

    /// Also in `stateMachine`; kept here as a constant because `writeFrame` reads it on
    /// every send, and a read of a `let` needs no runtime exclusivity check.
    private let role: Role
    /// `ReadyState`'s raw value, for `WebSocket.readyState` on any thread. Here, beside the
    /// other one-byte fields, it fills padding (before `sharedOptions` it would cost 8 bytes).
    let readyState = Atomic<UInt8>(ReadyState.connecting.rawValue)
    /// Shared by the connections of a server: each would hold about 90 bytes of it.
    private let sharedOptions: SharedConnectionOptions
    var options: ConnectionOptions { sharedOptions.options }
    /// permessage-deflate, when negotiated; shared with `receiver`, which inflates.
    private let compression: PerMessageDeflate?
    /// Nil only while `process` decodes: it moves the receiver out, so that decoding a read's
    /// frames costs one runtime exclusivity check instead of one per frame (nothing that
    /// `process` calls reads it).
    private var receiver: Receiver?

    /// The kind of a message being sent in fragments, between its first and last piece.
    private var streamingKind: WebSocketMessage.Kind?
    /// Whether that message is being compressed (decided by its first piece).
    private var streamingCompressed = false

    /// Whether to look up `directSocket` when added: the creator knows the pipeline.
    private let writesDirectly: Bool

    private var pauseReasons: PauseReasons = [.noSink]
    private var readPending = false

    private var sink = MessageSink.queue(CircularBuffer())

    /// What an idle connection with a heartbeat and a close callback (every broker client)
    /// uses, kept inline: the other callbacks, timers and the outcome are out of line.
    var onClose: (@Sendable (CloseInfo) -> Void)?
    /// Where the next heartbeat ping waits: the server's schedule for this loop, or one of
    /// the connection's own; `heartbeatLink` is this connection's place in its queue.
    private var heartbeatSchedule: HeartbeatSchedule?
    var heartbeatLink = HeartbeatLink()
    private var pongDeadline: Scheduled<Void>?
    /// `receiver.completedFrames` when the pong deadline started, and whether reading was
    /// paused since: either excuses a missing pong.
    private var framesAtPongDeadline = 0
    private var pausedSincePongDeadline = false

    /// The callbacks besides messages and close, the other timers, how the connection ended,
    /// bytes that came with the handshake and a client's masking keys: state that most
    /// server connections never set, kept out of line. Made by the first non-nil write (a
    /// client's by its first frame), so an idle connection carries one pointer instead of
    /// about 250 bytes of empty fields.
    private final class Rare {
        var onPing: (@Sendable (ByteBuffer) -> Void)?
        var onPong: (@Sendable (ByteBuffer) -> Void)?
        var onError: (@Sendable (any Error) -> Void)?
        var onWritable: (@Sendable () -> Void)?
        var receivedClose: (code: CloseCode, reason: String)?
        var failure: (any Error)?
        var heldFailure: (any Error)?
        var closeTimer: Scheduled<Void>?
        var closeInfo: CloseInfo?
        var partialFrame: (frame: Int, deadline: NIODeadline)?
        var partialFrameTimer: Scheduled<Void>?
        var leftover: ByteBuffer?
        /// Keys for masking our frames: used by a client only (a server never masks).
        var maskingKeys = MaskingKeySource()
    }
    private var rareStorage: Rare?

    /// `rareStorage` for a write of `isSet` (whether the value written is not nil): nil when
    /// there is none and the write would only store nil. Each property writes its own field
    /// (no key path: storing a closure through a generic key path boxes it in a thunk that
    /// the connection would keep).
    private func rare(forWriting isSet: Bool) -> Rare? {
        if let rareStorage { return rareStorage }
        guard isSet else { return nil }
        let made = Rare()
        rareStorage = made
        return made
    }

    // Set once the connection is closed, a callback is not kept (see `releaseCallbacks`).
    var onPing: (@Sendable (ByteBuffer) -> Void)? {
        get { rareStorage?.onPing }
        set { if !stateMachine.isClosed { rare(forWriting: newValue != nil)?.onPing = newValue } }
    }
    var onPong: (@Sendable (ByteBuffer) -> Void)? {
        get { rareStorage?.onPong }
        set { if !stateMachine.isClosed { rare(forWriting: newValue != nil)?.onPong = newValue } }
    }
    var onError: (@Sendable (any Error) -> Void)? {
        get { rareStorage?.onError }
        set { if !stateMachine.isClosed { rare(forWriting: newValue != nil)?.onError = newValue } }
    }
    var onWritable: (@Sendable () -> Void)? {
        get { rareStorage?.onWritable }
        set { if !stateMachine.isClosed { rare(forWriting: newValue != nil)?.onWritable = newValue } }
    }
    private var receivedClose: (code: CloseCode, reason: String)? {
        get { rareStorage?.receivedClose }
        set { rare(forWriting: newValue != nil)?.receivedClose = newValue }
    }
    private(set) var failure: (any Error)? {
        get { rareStorage?.failure }
        set { rare(forWriting: newValue != nil)?.failure = newValue }
    }
    /// A protocol violation found behind messages the application has not taken yet (no
    /// sink): the connection fails once they are delivered, so that it can answer them first.
    private var heldFailure: (any Error)? {
        get { rareStorage?.heldFailure }
        set { rare(forWriting: newValue != nil)?.heldFailure = newValue }
    }
    private var closeTimer: Scheduled<Void>? {
        get { rareStorage?.closeTimer }
        set { rare(forWriting: newValue != nil)?.closeTimer = newValue }
    }
    /// How the connection ended, once it has.
    private(set) var closeInfo: CloseInfo? {
        get { rareStorage?.closeInfo }
        set { rare(forWriting: newValue != nil)?.closeInfo = newValue }
    }
    /// The frame the last read ended inside (as `receiver.completedFrames` numbers it) and
    /// when it must be whole.
    private var partialFrame: (frame: Int, deadline: NIODeadline)? {
        get { rareStorage?.partialFrame }
        set { rare(forWriting: newValue != nil)?.partialFrame = newValue }
    }
    private var partialFrameTimer: Scheduled<Void>? {
        get { rareStorage?.partialFrameTimer }
        set { rare(forWriting: newValue != nil)?.partialFrameTimer = newValue }
    }
    /// Bytes handed over with the handler (frames that came in with the handshake).
    private var leftover: ByteBuffer? {
        get { rareStorage?.leftover }
        set { rare(forWriting: newValue != nil)?.leftover = newValue }
    }
    init(
        role: Role, options sharedOptions: SharedConnectionOptions, compression: PerMessageDeflate? = nil,
        leftover: ByteBuffer? = nil, heartbeatSchedule: HeartbeatSchedule? = nil, writesDirectly: Bool = false
    ) {
        self.writesDirectly = writesDirectly
        let options = sharedOptions.options
        self.heartbeatSchedule = heartbeatSchedule
        self.outbound = OutboundGatherer(maxBufferedAmount: options.maxBufferedAmount)
        self.stateMachine = ConnectionStateMachine(role: role)
        self.role = role
        self.sharedOptions = sharedOptions
        self.compression = compression
        self.receiver = Receiver(
            configuration: .init(role: role, maxPayload: options.maxPayload, validateUTF8: options.validateUTF8),
            compression: compression
        )
        if let leftover, leftover.readableBytes > 0 { self.leftover = leftover }
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if let watermark = try? context.channel.syncOptions?.getOption(.writeBufferWaterMark) {
            outbound.setWriteHighWatermark(watermark.high, maxBufferedAmount: options.maxBufferedAmount)
        }
        outbound.channelIsWritable = context.channel.isWritable
        if writesDirectly, role == .server, let descriptor = SocketDescriptor.of(context.channel) {
            directSocket = descriptor
        }
        readyState.store(ReadyState.open.rawValue, ordering: .releasing)
        scheduleHeartbeat()
        if let leftover, leftover.readableBytes > 0 {
            context.eventLoop.assumeIsolated().execute { [self] in
                guard !stateMachine.isClosed, self.leftover != nil else { return }
                isReading = true
                processLeftover()
                isReading = false
                watchPartialFrame()
                flushOutbound()
            }
        } else {
            leftover = nil
        }
        if !context.channel.isActive {
            // The peer left while the handshake was being answered.
            handleInactive()
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        directSocket = -1
        cancelTimers()
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        isReading = true
        // NIO may go on reading the socket before the task that processes the leftover
        // runs (it reads until a read leaves the buffer short): those bytes come after it.
        processLeftover()
        process(unwrapInboundIn(data))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        isReading = false
        watchPartialFrame()
        flushOutbound()
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        directSocket = -1
        handleInactive()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if failure == nil { failure = error }
        onError?(error)
        closeChannel(context)
    }

    /// A close from further up the pipeline, on its way to NIO.
    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        closeChannel(context, mode: mode, promise: promise)
    }

    /// Closes the channel; direct writes stop first: NIO closes the descriptor before
    /// `channelInactive`, and code it calls in between (a close promise's callbacks) must
    /// not write to a number another thread may have been given meanwhile.
    private func closeChannel(_ context: ChannelHandlerContext, mode: CloseMode = .all, promise: EventLoopPromise<Void>? = nil) {
        directSocket = -1
        context.close(mode: mode, promise: promise)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        outbound.channelIsWritable = context.channel.isWritable
        if outbound.channelIsWritable { onWritable?() }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if pauseReasons.isEmpty || stateMachine.readsThroughPause {
            context.read()
        } else {
            readPending = true
        }
    }

    // MARK: Receiving

    private func processLeftover() {
        guard let leftover else { return }
        self.leftover = nil
        process(leftover)
    }

    private func process(_ buffer: ByteBuffer) {
        guard stateMachine.acceptsFrames, var receiver = receiver.take() else { return }
        defer { self.receiver = receiver }
        receiver.append(buffer)
        do {
            while let event = try receiver.next() {
                handle(consume event)
                if stateMachine.isClosed { return }
            }
        } catch {
            if case .queue(let queued) = sink, !queued.isEmpty {
                // A peer that sends valid messages and then a bad frame expects the messages
                // answered before the connection fails (as when they come in separate reads).
                failure = error
                heldFailure = error
            } else {
                fail(error)
            }
        }
    }

    /// Takes `event` consumed: a message's bytes go on to the application without a retain.
    private func handle(_ event: consuming ReceivedEvent) {
        switch consume event {
        case .text(let data):
            deliver(WebSocketMessage(kind: .text, data: consume data))
        case .binary(let data):
            deliver(WebSocketMessage(kind: .binary, data: consume data))
        case .ping(let payload):
            if options.autoPong, stateMachine.isOpen {
                writeFrame(.pong, payload: payload)
            }
            onPing?(payload)
        case .pong(let payload):
            if transition({ $0.pongReceived() }) {
                pongDeadline?.cancel()
                pongDeadline = nil
            }
            onPong?(payload)
        case .close(let code, let reason):
            receivedClose = (code, reason)
            perform(transition { $0.closeFrameReceived(code: code) })
        }
    }

    private func deliver(_ message: consuming WebSocketMessage) {
        switch sink {
        case .callback(let callback):
            callback(message)
        case .consumer(let consumer):
            consumer.received(message)
        case .stream(let source):
            if case .stopProducing = source.yield(message) {
                pause(.consumerBehind)
            }
        case .queue(var queue):
            sink = .queue(CircularBuffer())  // drop the reference so the append does not copy
            queue.append(message)
            sink = .queue(queue)
            pause(.noSink)
        }
    }

    /// Fails the connection (RFC 6455 §7.1.7): a close frame with the error's code, then TCP closes.
    private func fail(_ error: any Error) {
        if failure == nil { failure = error }
        perform(transition { $0.failed(error) })
    }

    /// Carries out what `stateMachine` decided for a close.
    private func perform(_ steps: ConnectionStateMachine.CloseSteps, promise: EventLoopPromise<Void>? = nil) {
        if let frame = steps.closeFrame { writeFrame(.close, payload: frame, promise: promise) }
        readyState.store(stateMachine.readyState.rawValue, ordering: .releasing)
        if steps.closeWhenFlushed {
            closeAfterFlush()
        } else {
            flushUnlessReading()
        }
        if steps.startCloseTimer { armCloseTimer() }
        if steps.readThroughPause, readPending, let context {
            readPending = false
            context.read()
        }
    }

    private func closeAfterFlush() {
        guard let context else { return }
        let written = context.eventLoop.makePromise(of: Void.self)
        flushOutbound(promise: written)
        written.futureResult.assumeIsolated().whenComplete { [self] _ in closeChannel(context) }
    }

    private func handleInactive() {
        let receivedClose = receivedClose
        let failed = failure != nil
        guard let info = transition({ $0.channelInactive(receivedClose: receivedClose, failed: failed) }) else {
            return
        }
        readyState.store(ReadyState.closed.rawValue, ordering: .releasing)
        cancelTimers()
        closeInfo = info
        onClose?(info)
        reportClose(info)
        releaseCallbacks()
    }

    /// Tells the message sink that the connection closed; a callback hears it through `onClose`.
    private func reportClose(_ info: CloseInfo) {
        switch sink {
        case .stream(let source): finish(source, info)
        case .consumer(let consumer): consumer.closed(info)
        case .queue, .callback: break
        }
    }

    /// The application's callbacks usually capture its `WebSocket`, which holds this handler
    /// (and the channel): once the connection is closed none of them can run again, so they
    /// are let go, or the two would keep each other alive for good.
    private func releaseCallbacks() {
        if case .queue = sink {} else { sink = .queue(CircularBuffer()) }
        onClose = nil
        guard let rareStorage else { return }
        rareStorage.onPing = nil
        rareStorage.onPong = nil
        rareStorage.onError = nil
        rareStorage.onWritable = nil
    }

    /// Ends the message sequence: cleanly after a close handshake, else with the error.
    private func finish(_ source: WebSocket.MessageSequence.Source, _ info: CloseInfo) {
        if let failure {
            source.finish(failure)
        } else if info.code == .abnormalClosure {
            source.finish(info)
        } else {
            source.finish()
        }
    }

    private func cancelTimers() {
        closeTimer?.cancel()
        closeTimer = nil
        heartbeatSchedule?.remove(self)
        pongDeadline?.cancel()
        pongDeadline = nil
        partialFrameTimer?.cancel()
        partialFrameTimer = nil
    }

    private func armCloseTimer() {
        guard closeTimer == nil, let context else { return }
        closeTimer = context.eventLoop.assumeIsolated().scheduleTask(in: options.closeTimeoutAmount) { [self] in
            if case .dropConnection = transition({ $0.closeTimeoutPassed() }) { closeChannel(context) }
        }
    }

    /// Pings every `interval`; a pong must come within `timeout` of the first unanswered ping.
    private func scheduleHeartbeat() {
        guard let heartbeat = options.heartbeat, let context else { return }
        if heartbeatSchedule == nil {
            heartbeatSchedule = HeartbeatSchedule(eventLoop: context.eventLoop, interval: heartbeat.intervalAmount)
        }
        heartbeatSchedule!.add(self)  // non-nil: set just above
    }

    /// The heartbeat's interval passed (`heartbeatSchedule` calls it).
    func heartbeatIsDue() {
        guard context != nil, let heartbeat = options.heartbeat else { return }
        guard case .sendPing(let startPongDeadline) = transition({ $0.heartbeatDue() }) else { return }
        if startPongDeadline { armPongDeadline(heartbeat.timeoutAmount) }
        writeFrame(.ping, payload: ByteBuffer())
        flushUnlessReading()
        scheduleHeartbeat()
    }

    private func armPongDeadline(_ timeout: TimeAmount) {
        guard let context else { return }
        pongDeadline = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [weak self] in
            self?.pongDeadlinePassed(timeout)
        }
        framesAtPongDeadline = completedFrames
        pausedSincePongDeadline = isPaused
    }

    private func pongDeadlinePassed(_ timeout: TimeAmount) {
        pongDeadline = nil
        let excused = pausedSincePongDeadline || isPaused || completedFrames != framesAtPongDeadline
        switch transition({ $0.pongDeadlinePassed(excused: excused) }) {
        case .none: break
        case .dropConnection: terminate()
        case .extendDeadline: armPongDeadline(timeout)
        }
    }

    /// `receiver.completedFrames` (read outside `process` only).
    private var completedFrames: Int { receiver?.completedFrames ?? 0 }

    /// Reading is held back by a pause of ours (not reading through it for a close).
    private var isPaused: Bool { !pauseReasons.isEmpty && !stateMachine.readsThroughPause }

    /// Runs an event through `stateMachine` on a copy and stores the copy back. The machine
    /// builds close frames (calls into NIO): run on the field itself, such a call would sit
    /// inside an access to it, and the compiler would then check every access to the field at
    /// run time, the `isOpen` each send reads among them. The copy is three bytes.
    @inline(__always)
    private func transition<Result>(_ event: (inout ConnectionStateMachine) -> Result) -> Result {
        var machine = stateMachine
        let result = event(&machine)
        stateMachine = machine
        return result
    }

    // MARK: Partial frames

    /// At the end of a read: starts the clock for a frame the read ended inside, unless an
    /// earlier read ended inside the same one. One timer at most, armed only when none is,
    /// which checks the deadline when it fires: reads that end between frames, or inside a
    /// frame already timed, cost a comparison or two.
    private func watchPartialFrame() {
        guard let timeout = options.partialFrameTimeoutAmount, stateMachine.isOpen else { return }
        guard receiver?.isMidFrame ?? false else {
            if rareStorage?.partialFrame != nil { partialFrame = nil }
            return
        }
        let frame = completedFrames
        if let partialFrame, partialFrame.frame == frame { return }
        let deadline = NIODeadline.now() + timeout
        partialFrame = (frame, deadline)
        if partialFrameTimer == nil { armPartialFrameTimer(deadline) }
    }

    private func armPartialFrameTimer(_ deadline: NIODeadline) {
        guard let context else { return }
        partialFrameTimer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [weak self] in
            self?.partialFrameTimerFired()
        }
    }

    private func partialFrameTimerFired() {
        partialFrameTimer = nil
        guard let partialFrame, stateMachine.isOpen, let timeout = options.partialFrameTimeoutAmount else { return }
        guard NIODeadline.now() >= partialFrame.deadline else {
            // The frame it was armed for came whole; a later one is under way.
            armPartialFrameTimer(partialFrame.deadline)
            return
        }
        fail(WebSocketError(.policyViolation, "frame not received whole within \(timeout.nanoseconds / 1_000_000) ms"))
    }

    // MARK: Reading backpressure

    func pause(_ reason: PauseReasons) {
        pauseReasons.insert(reason)
        if pongDeadline != nil { pausedSincePongDeadline = true }
    }

    func resume(_ reason: PauseReasons) {
        pauseReasons.remove(reason)
        if pauseReasons.isEmpty, readPending, let context {
            readPending = false
            context.read()
        }
    }

    /// Called when a ping, pong or close callback is installed: without a message sink,
    /// reading goes on until a message is queued (`deliver` pauses it again), so that the
    /// callback hears what comes before the application takes messages.
    func readForControlCallbacks() {
        if case .queue(let queued) = sink, queued.isEmpty { resume(.noSink) }
    }

    /// Installs the close callback; a connection that is already closed reports at once,
    /// so a callback set just after `connect` or `onConnection` never misses the close.
    func setOnClose(_ callback: @escaping @Sendable (CloseInfo) -> Void) {
        if let closeInfo {
            callback(closeInfo)
        } else {
            onClose = callback
        }
    }

    /// Installs where messages go; queued messages are delivered first, in order.
    func setSink(_ newSink: MessageSink) {
        guard case .queue(let queued) = sink else {
            sink = newSink
            return
        }
        sink = newSink
        for message in queued { deliver(message) }
        // To `sink`, not `newSink`: a callback those messages reached may have installed another.
        // A close that came during the delivery was reported and the sink let go already.
        if let closeInfo {
            reportClose(closeInfo)
            releaseCallbacks()
        }
        if let heldFailure {
            self.heldFailure = nil
            if !stateMachine.isClosed { fail(heldFailure) }
        }
        resume(.noSink)
    }

    // MARK: Sending

    /// Sends a whole message, or a piece of one when `isFinal` is false.
    func send(
        _ kind: WebSocketMessage.Kind, _ data: ByteBuffer, isFinal: Bool = true, flush: Bool = true,
        promise: EventLoopPromise<Void>?
    ) {
        guard stateMachine.isOpen else {
            promise?.fail(SendError.notOpen)
            return
        }
        if let error = bufferFullError() {
            promise?.fail(error)
            return
        }
        let starting = streamingKind == nil
        let opcode: Opcode = starting ? (kind == .text ? .text : .binary) : .continuation
        streamingKind = isFinal ? nil : kind
        guard let compression else {
            writeMessage(opcode, isFinal: isFinal, starting: starting, reservedBits: [], payload: data, promise: promise)
            if flush { flushUnlessReading() }
            return
        }
        var reservedBits: ReservedBits = []
        if starting {
            // A streamed message's size is unknown, so it is compressed whatever its first piece.
            streamingCompressed = !isFinal || compression.shouldCompress(byteCount: data.readableBytes)
            if streamingCompressed { reservedBits = .rsv1 }
        }
        if streamingCompressed {
            var compressed = context.channel.allocator.buffer(capacity: data.readableBytes / 2 + 64)
            do {
                try compression.compress(data, isFinal: isFinal, into: &compressed)
            } catch {
                promise?.fail(error)
                fail(error)
                return
            }
            writeMessage(
                opcode, isFinal: isFinal, starting: starting, reservedBits: reservedBits, payload: compressed,
                promise: promise)
        } else {
            writeMessage(
                opcode, isFinal: isFinal, starting: starting, reservedBits: reservedBits, payload: data, promise: promise)
        }
        if flush { flushUnlessReading() }
    }

    /// Writes a message or a piece of one as a frame, or as fragments of `fragmentSize`.
    /// Takes `payload` borrowed: the uncompressed path passes the caller's buffer on without
    /// a copy of the reference (a retain and a release per message).
    @inline(__always)
    private func writeMessage(
        _ opcode: Opcode, isFinal: Bool, starting: Bool, reservedBits: ReservedBits, payload: borrowing ByteBuffer,
        promise: EventLoopPromise<Void>?
    ) {
        if isFinal, starting, let fragmentSize = options.fragmentSize, payload.readableBytes > fragmentSize {
            var rest = copy payload
            var pieceOpcode = opcode
            var pieceBits = reservedBits
            while rest.readableBytes > fragmentSize {
                // The loop condition leaves more than `fragmentSize` bytes to slice (>= 1: validated).
                writeFrame(pieceOpcode, fin: false, reservedBits: pieceBits, payload: rest.readSlice(length: fragmentSize)!)
                pieceOpcode = .continuation
                pieceBits = []
            }
            writeFrame(.continuation, payload: rest, promise: promise)
        } else {
            writeFrame(opcode, fin: isFinal, reservedBits: reservedBits, payload: payload, promise: promise)
        }
    }

    /// Sends a frame encoded elsewhere (the same bytes for many connections).
    func sendEncoded(_ frame: ByteBuffer, flush: Bool = true, promise: EventLoopPromise<Void>?) {
        guard stateMachine.isOpen else {
            promise?.fail(SendError.notOpen)
            return
        }
        if let error = bufferFullError() {
            promise?.fail(error)
            return
        }
        appendOutbound(frame, promise: promise)
        if flush { flushUnlessReading() }
    }

    /// Writes and flushes what `send(…, flush: false)` and `sendEncoded(_:flush: false)` gathered.
    func flush() {
        flushUnlessReading()
    }

    var isWritable: Bool { context != nil && outbound.channelIsWritable }

    /// What permessage-deflate was agreed on; nil without it.
    var deflateParameters: PerMessageDeflateParameters? { compression?.parameters }

    func sendControl(_ opcode: Opcode, _ payload: ByteBuffer, promise: EventLoopPromise<Void>?) {
        guard stateMachine.isOpen else {
            promise?.fail(SendError.notOpen)
            return
        }
        guard payload.readableBytes <= 125 else {
            promise?.fail(SendError.invalid("\(opcode) payload is \(payload.readableBytes) bytes; at most 125 allowed"))
            return
        }
        writeFrame(opcode, payload: payload, promise: promise)
        flushUnlessReading()
    }

    /// Starts the close handshake; the peer has `closeTimeout` to answer.
    func close(code: CloseCode, reason: String, promise: EventLoopPromise<Void>?) {
        let protocolErrorPending = heldFailure != nil
        let action = transition {
            $0.closeRequested(code: code, reason: reason, protocolErrorPending: protocolErrorPending)
        }
        switch action {
        case .alreadyClosing:
            promise?.succeed()
        case .failWithPendingError:
            if let heldFailure {
                self.heldFailure = nil
                fail(heldFailure)
            }
            promise?.succeed()
        case .invalid(let message):
            promise?.fail(SendError.invalid(message))
        case .close(let steps):
            perform(steps, promise: promise)
        }
    }

    /// The upgrade handler handed over the bytes that came after the request (as reads with
    /// no `channelReadComplete` after them): end that read cycle.
    func handoverComplete() {
        guard isReading else { return }
        isReading = false
        watchPartialFrame()
        flushOutbound()
    }

    /// Drops the connection at once, without a close handshake.
    func terminate() {
        if let context { closeChannel(context) }
    }

    var bufferedAmount: Int {
        let queued = (try? context?.channel.syncOptions?.getOption(.bufferedWritableBytes)) ?? 0
        return outbound.bufferedAmount(channelBytes: queued)
    }

    /// Why a send made now would fail, without making one.
    var sendRefusal: SendError? {
        stateMachine.isOpen ? bufferFullError() : .notOpen
    }

    private func bufferFullError() -> SendError? {
        guard context != nil, !outbound.hasRoom else { return nil }
        let buffered = bufferedAmount
        return buffered >= options.maxBufferedAmount
            ? .bufferFull(buffered: buffered, limit: options.maxBufferedAmount) : nil
    }

    // Inlined: left to itself the compiler calls it from `send`, one call more per message.
    @inline(__always)
    private func writeFrame(
        _ opcode: Opcode, fin: Bool = true, reservedBits: ReservedBits = [], payload: borrowing ByteBuffer,
        promise: EventLoopPromise<Void>? = nil
    ) {
        let count = payload.readableBytes
        if role == .server, !OutboundGatherer.gathers(byteCount: count) {
            let header = FrameHeader(
                fin: fin, reservedBits: reservedBits, opcode: opcode, maskingKey: nil, payloadLength: count)
            withOutbound { outbound in
                outbound.gather(capacity: header.encodedLength, allocator: context.channel.allocator) {
                    header.write(to: &$0)
                }
            }
            writeOwnBuffer(copy payload, promise: promise)
            return
        }
        let header = FrameHeader(
            fin: fin, reservedBits: reservedBits, opcode: opcode,
            maskingKey: role == .client ? rare(forWriting: true)?.maskingKeys.next() : nil, payloadLength: count)
        withOutbound { outbound in
            outbound.gather(capacity: header.encodedLength + count, allocator: context.channel.allocator) { buffer in
                payload.withUnsafeReadableBytes { Sender.write(header, payload: $0, into: &buffer) }
            }
        }
        if let promise { writeGathered(promise: promise) }
    }

    /// Runs `body` on `outbound` moved out of the handler and back. Gathering calls into NIO
    /// (allocating, growing the buffer): inside an access to the field, such a call would make
    /// the compiler check every access to it at run time, the per-send `hasRoom` among them.
    /// Nothing `body` reaches reads `outbound`.
    @inline(__always)
    private func withOutbound<Result>(_ body: (inout OutboundGatherer) -> Result) -> Result {
        var moved = OutboundGatherer(maxBufferedAmount: 0)
        swap(&moved, &outbound)
        defer { swap(&moved, &outbound) }
        return body(&moved)
    }

    private func appendOutbound(_ bytes: ByteBuffer, promise: EventLoopPromise<Void>?) {
        if OutboundGatherer.gathers(byteCount: bytes.readableBytes) {
            withOutbound { $0.gather(bytes) }
            if let promise { writeGathered(promise: promise) }
        } else {
            writeOwnBuffer(bytes, promise: promise)
        }
    }

    /// Writes (unflushed) the gathered frames, then `buffer` on its own.
    private func writeOwnBuffer(_ buffer: ByteBuffer, promise: EventLoopPromise<Void>?) {
        channelMayHoldBytes = true
        if let gathered = outbound.takeBeforeOwnWrite() {
            context.write(wrapOutboundOut(gathered), promise: nil)
        }
        context.write(wrapOutboundOut(buffer), promise: promise)
    }

    /// Writes (unflushed) the gathered frames, carrying `promise`.
    private func writeGathered(promise: EventLoopPromise<Void>) {
        if let buffer = withOutbound({ $0.takeForWrite(forPromise: true) }) {
            channelMayHoldBytes = true
            context.write(wrapOutboundOut(buffer), promise: promise)
        }
    }

    private func flushOutbound(promise: EventLoopPromise<Void>? = nil) {
        // `context` is read where it is used, not bound here: binding it retains it, and a
        // direct write (a fan-out delivery) would touch that object, cold by then, for nothing.
        guard context != nil else {
            promise?.succeed()
            return
        }
        let forPromise = promise != nil
        switch withOutbound({ $0.takeForFlush(forPromise: forPromise) }) {
        case .nothing:
            break
        case .writeAndFlush(let buffer):
            if promise == nil, directSocket >= 0 {
                guard let rest = writeDirect(buffer) else { return }
                context.writeAndFlush(wrapOutboundOut(rest), promise: nil)
                return
            }
            channelMayHoldBytes = true
            context.writeAndFlush(wrapOutboundOut(buffer), promise: promise)
        case .writeThenFlush(let buffer):
            channelMayHoldBytes = true
            context.write(wrapOutboundOut(buffer), promise: promise)
            context.flush()
        case .flush:
            context.flush()
        }
    }

    /// Writes `buffer` straight to the socket when NIO holds nothing for it, so that a lone
    /// buffer (a fan-out delivery, a read cycle's answers) costs one `send` and no trip down
    /// the pipeline and through NIO's write queue, whose objects are cold by the time a
    /// fan-out reaches this connection. Returns what the kernel did not take (all of it on
    /// an error or a full socket buffer), for NIO to write next, in order: NIO then meets
    /// the same error or waits for the socket to drain, as it would have.
    ///
    /// The descriptor is still this connection's: it is dropped at `channelInactive`, and
    /// NIO closes it only inside its own `close0`, which calls out to other code before
    /// `channelInactive` only to fail writes it held, and while it holds any, this path is
    /// not taken (`channelMayHoldBytes`).
    @inline(__always)
    private func writeDirect(_ buffer: ByteBuffer) -> ByteBuffer? {
        if channelMayHoldBytes {
            guard (try? context.channel.syncOptions?.getOption(.bufferedWritableBytes)) == 0 else {
                return buffer
            }
            channelMayHoldBytes = false
        }
        let count = buffer.readableBytes
        let sent = buffer.withUnsafeReadableBytes { SocketDescriptor.sendNow(directSocket, $0) }
        if sent == count { return nil }
        channelMayHoldBytes = true
        guard sent > 0 else { return buffer }
        var rest = buffer
        rest.moveReaderIndex(forwardBy: sent)
        return rest
    }

    private func flushUnlessReading() {
        if !isReading { flushOutbound() }
    }
}
