import Logging
import NIOConcurrencyHelpers
import NIOCore
import WebSocketCore
import WebSockets

/// One client connection of the broker: who it is, what it subscribed to, and how far
/// behind it is. Lives on its connection's event loop; every method runs there.
final class Session: Hashable, LoopConsumer {
    // What a delivery reads comes first: properties are laid out in declaration order, so
    // these share the object's first two cache lines (fetched as a pair) with its header,
    // and a fan-out, which reaches each session cold, does not stall on a third.
    /// `socket`'s send path, kept here so a delivery goes from the session to the handler.
    private let writer: WebSocket.LoopWriter
    private let counters: DeliveryCounters
    /// `broker.configuration.maxQueuedBytes`, kept here: `enqueue` reads it once per delivery,
    /// and reaching it through the unowned `broker` costs a strong retain and release each time.
    private let maxQueuedBytes: Int
    /// Bytes of the frames queued since the last flush: gathered for this batch, not yet
    /// handed to the kernel, so no measure of how far behind the reader is.
    private var unflushedBytes = 0
    /// A frame was queued since the hub last flushed this session (it is in the hub's batch).
    private var needsFlush = false
    private var closing = false
    /// The connection agreed to permessage-deflate in a way the hub's shared compressed
    /// frames suit (`FrameCompressor.accepts`); other connections get uncompressed frames.
    private let takesCompressedFrames: Bool
    /// Whether `watchWritability` installed its callback (set once, by a replay). Beside the
    /// other flags, where it fills padding.
    private var watchingWritability = false
    /// Messages dropped for this slow consumer, per topic: the first and last seq missed.
    private var missed: [Topic: ClosedRange<UInt64>] = [:]
    /// Subscriptions catching up from the replay log (`since`), by pattern; usually none.
    /// While one exists, live messages of the topics it matches go through it.
    private var catchUps: [TopicPattern: (id: Int, catchUp: ReplayCatchUp<Delivery>)] = [:]
    /// After a catch-up on a history whose live messages may trail its reads
    /// (`TopicHistory.liveMayTrailReads`): per topic, the last seq it delivered. A live
    /// message at or below it was replayed and is dropped; the first one past it ends the entry.
    private var replayedThrough: [Topic: UInt64] = [:]
    /// The connection's id in the admin API, unique in this process.
    let id: UInt64
    /// When the connection opened, unix milliseconds.
    let openedAt: Int64
    let socket: WebSocket
    private let sharedPrincipal: SharedPrincipal
    var principal: Principal { sharedPrincipal.principal }
    private unowned let broker: Broker
    let hub: Hub
    /// The names of the patterns subscribed to. Names, not `TopicPattern`s: a pattern's tokens
    /// are an allocation of their own (~130 bytes for a two-segment name, most of what a
    /// subscription costs), and only `Hub.remove` needs them again, once, at close.
    private(set) var subscriptions: Set<String> = []
    private var nextCatchUpID = 0
    /// Answers to publishes that waited for the replay log's commit, handed over by its writer
    /// thread (the one piece of the session touched off its loop): the writer appends and
    /// schedules one task per batch on the loop, not one per ack, and `writeCommitted` sends
    /// them all as one buffer with one flush. Made on the loop by the first publish that
    /// waits for a commit: most connections never publish, and a lock box is ~90 bytes.
    private var committedBox: NIOLockedValueBox<Committed>?
    private var committed: NIOLockedValueBox<Committed> {
        if let committedBox { return committedBox }
        let made = NIOLockedValueBox(Committed())
        committedBox = made
        return made
    }

    private struct Committed {
        var answers: [(id: RequestID, sequence: UInt64, result: Result<Void, ReplayError>)] = []
        /// A `writeCommitted` task is scheduled on the loop.
        var scheduled = false
    }
    /// Consecutive requests that failed to parse; past a limit the connection is closed.
    private var malformedInARow = 0
    private static let malformedLimit = 16
    private var rateLimit: RequestRateLimit
    /// What requests wait for, in a box made by the first request that waits: most
    /// connections never wait, and a publish's fields cost every session ~70 bytes.
    private var waitsBox: Waits?
    private var waits: Waits {
        if let waitsBox { return waitsBox }
        let made = Waits()
        waitsBox = made
        return made
    }

    private final class Waits {
        /// A publish of this connection waits for its topic's last seq (`Broker.Sequenced.deferred`):
        /// the requests that came after it wait too, so they are carried out in the order sent.
        var awaitingTopic: Publish?
        /// A subscription waits for its epoch (read from Redis on a cluster node): the requests
        /// that came after it wait too.
        var awaitingEpoch = false
        var held: [WebSocketMessage] = []
    }

    private var awaitingTopic: Publish? {
        get { waitsBox?.awaitingTopic }
        set { waits.awaitingTopic = newValue }
    }
    private var awaitingEpoch: Bool {
        get { waitsBox?.awaitingEpoch ?? false }
        set { waits.awaitingEpoch = newValue }
    }
    private var held: [WebSocketMessage] {
        get { waitsBox?.held ?? [] }
        set { waits.held = newValue }
    }
    /// Requests that may wait behind a topic lookup; past it the connection is closed (1013).
    static let heldLimit = 4096

    init(id: UInt64, openedAt: Int64, socket: WebSocket, principal: SharedPrincipal, broker: Broker, hub: Hub) {
        self.id = id
        self.openedAt = openedAt
        self.counters = hub.counters
        self.socket = socket
        self.writer = socket.loopWriter
        self.sharedPrincipal = principal
        self.broker = broker
        self.hub = hub
        self.peer = broker.clientAddress(socket.request, remote: socket.remoteAddress)
        // A limit under the channel's write watermark lowers the watermark to it: the socket
        // then turns unwritable once it holds more than the limit (when `enqueue` judges it)
        // and writable again at half (when a slow consumer hears of its gaps).
        let limit = broker.configuration.maxQueuedBytes
        self.maxQueuedBytes = limit
        if let options = socket.channel.syncOptions, let mark = try? options.getOption(.writeBufferWaterMark),
            limit < mark.high
        {
            try? options.setOption(.writeBufferWaterMark, value: .init(low: limit / 2, high: limit))
        }
        self.takesCompressedFrames = hub.deflate.map {
            FrameCompressor.accepts(socket.deflateParametersOnLoop, windowBits: $0.windowBits)
        } ?? false
        self.rateLimit = RequestRateLimit(
            rate: broker.configuration.requestRate, burst: broker.configuration.requestBurst, now: .now())
    }

    /// The client's address for logs and the admin API (see `Broker.clientAddress`), as it
    /// was when the connection opened (the socket's address is gone once it closes).
    let peer: String

    static func == (a: Session, b: Session) -> Bool { a === b }
    func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }

    // MARK: Requests

    func received(_ message: WebSocketMessage) {
        guard awaitingTopic == nil, !awaitingEpoch else {
            guard held.count < Self.heldLimit else {
                return close(.tryAgainLater, "\(Self.heldLimit) requests waiting for a topic lookup")
            }
            waits.held.append(message)
            return
        }
        let request: ClientRequest
        do {
            request = try message.kind == .text
                ? RequestDecoder.parse(text: message.data, limits: broker.limits)
                : RequestDecoder.parse(binary: message.data, limits: broker.limits)
            malformedInARow = 0
        } catch {
            guard admit(id: error.id) else { return }
            reply(.error(error))
            if error.code == .badJSON || error.code == .badRequest {
                malformedInARow += 1
                if malformedInARow >= Self.malformedLimit {
                    close(.policyViolation, "\(Self.malformedLimit) malformed requests in a row")
                }
            }
            return
        }
        guard admit(id: request.id) else { return }
        switch request {
        case .subscribe(let id, let pattern, let since, let epoch):
            subscribe(id: id, pattern, since: since, epoch: epoch)
        case .unsubscribe(let id, let pattern):
            unsubscribe(id: id, pattern)
        case .publish(let publish):
            self.publish(publish)
        }
    }

    /// Counts a request against the rate limit; false when it must not be carried out
    /// (answered `rate_limited`, or the connection is being closed for ignoring that).
    private func admit(id: RequestID?) -> Bool {
        switch rateLimit.admit(at: .now()) {
        case .admitted:
            return true
        case .refused:
            reply(.error(ProtocolError(
                .rateLimited, "more than \(broker.configuration.requestRate) requests per second", id: id)))
            return false
        case .exceeded:
            close(.policyViolation, "request rate limit exceeded")
            return false
        }
    }

    private func subscribe(id: RequestID?, _ pattern: TopicPattern, since: ReplayPosition?, epoch: String?) {
        guard principal.canSubscribe(pattern) else {
            return reply(.error(ProtocolError(.forbidden, "not allowed to subscribe to \(pattern.name)", id: id)))
        }
        if !subscriptions.contains(pattern.name), subscriptions.count >= broker.configuration.maxSubscriptions {
            return reply(.error(ProtocolError(
                .limitExceeded, "at most \(broker.configuration.maxSubscriptions) subscriptions per connection", id: id)))
        }
        guard let history = broker.history else {
            return subscribed(id: id, pattern, since: since, epoch: epoch, current: nil)
        }
        // The replay log knows its epoch at once; a cluster node asks Redis, holding the
        // requests that follow meanwhile, so they are still carried out in the order sent.
        var answered = false
        history.epoch(of: pattern, on: socket.eventLoop).assumeIsolated().whenComplete { [self] result in
            answered = true
            if !closing {
                switch result {
                case .success(let current):
                    subscribed(id: id, pattern, since: since, epoch: epoch, current: current)
                case .failure(let error):
                    reply(.error(ProtocolError(.unavailable, "not subscribed: \(error)", id: id)))
                }
            }
            if awaitingEpoch {
                awaitingEpoch = false
                handleHeld()
            }
        }
        if !answered { awaitingEpoch = true }
    }

    /// Registers the subscription and answers it with the epoch of its history (`current`);
    /// with `since`, the replay follows.
    private func subscribed(id: RequestID?, _ pattern: TopicPattern, since: ReplayPosition?, epoch: String?, current: String?) {
        if subscriptions.insert(pattern.name).inserted {
            _ = hub.subscribe(self, to: pattern)
        }
        reply(.subscribed(id: id, pattern: pattern, epoch: current))
        guard var since else { return }
        if let epoch, let current, epoch != current {
            // Seqs of another history (the database was replaced or recreated): they mean
            // nothing here, so the topic starts over, with a gap for what is not retained.
            if case .sequence = since { since = .sequence(0) }
            if case .perTopic = since { since = .sequence(0) }
        }
        catchUp(pattern, from: since, id: id)
    }

    private func unsubscribe(id: RequestID?, _ pattern: TopicPattern) {
        guard subscriptions.remove(pattern.name) != nil else {
            return reply(.error(ProtocolError(.notFound, "not subscribed to \(pattern.name)", id: id)))
        }
        _ = hub.unsubscribe(self, from: pattern)
        catchUps.removeValue(forKey: pattern)?.catchUp.cancel()
        replayedThrough = replayedThrough.filter { !pattern.matches($0.key) }
        reply(.unsubscribed(id: id, pattern: pattern))
    }

    private func publish(_ publish: Publish) {
        guard principal.canPublish(publish.topic) else {
            return reply(.error(ProtocolError(.forbidden, "not allowed to publish to \(publish.topic.name)", id: publish.id)))
        }
        var onCommit: (@Sendable (UInt64, Result<Void, ReplayError>) -> Void)?
        if let id = publish.id {
            let session = NIOLoopBound(self, eventLoop: socket.eventLoop)
            let committed = committed
            onCommit = { sequence, result in
                let schedule = committed.withLockedValue { committed in
                    committed.answers.append((id, sequence, result))
                    defer { committed.scheduled = true }
                    return !committed.scheduled
                }
                if schedule { session.eventLoop.execute { session.value.writeCommitted() } }
            }
        }
        switch broker.publish(publish, from: principal, committed: onCommit, loaded: topicLoaded) {
        case .published(let sequence):
            if let id = publish.id { reply(.ack(id: id, sequence: sequence)) }
        case .awaitingCommit:
            break
        case .deferred:
            awaitingTopic = publish
        case .rejected(let error):
            reply(.error(ProtocolError(.unavailable, "not published: \(error)", id: publish.id)))
        case .tooManyTopics:
            reply(.error(ProtocolError(
                .limitExceeded, "the broker holds its limit of \(broker.configuration.maxTopics) topics",
                id: publish.id)))
        }
    }

    /// Tells this session, on its loop, that the topic its publish waits for is in memory
    /// (made once: not a closure per publish). It holds the session until `connectionClosed`
    /// replaces it.
    private lazy var topicLoaded: @Sendable (Result<Void, ReplayError>) -> Void = {
        let session = NIOLoopBound(self, eventLoop: socket.eventLoop)
        return { result in session.eventLoop.execute { session.value.resume(result) } }
    }()

    /// Publishes again what waited for its topic (or answers that it cannot be), then carries
    /// out the requests that waited behind it, until one of them waits for a topic in turn.
    private func resume(_ result: Result<Void, ReplayError>) {
        guard let publish = awaitingTopic else { return }
        awaitingTopic = nil
        switch result {
        case .success:
            self.publish(publish)
        case .failure(let error):
            reply(.error(ProtocolError(.unavailable, "not published: \(error)", id: publish.id)))
        }
        handleHeld()
    }

    /// Carries out the requests that waited, until one of them waits in turn.
    private func handleHeld() {
        var waiting: [WebSocketMessage] = []
        swap(&waiting, &held)
        for (index, message) in waiting.enumerated() {
            guard awaitingTopic == nil, !awaitingEpoch else {
                held.insert(contentsOf: waiting[index...], at: 0)
                return
            }
            received(message)
        }
    }

    /// The answers to publishes whose message went to the replay log: an ack once it is
    /// durable, `unavailable` when its batch could not be written (it was delivered live).
    /// Everything the writer handed over since the last call goes out in one write.
    private func writeCommitted() {
        var answers: [(id: RequestID, sequence: UInt64, result: Result<Void, ReplayError>)] = []
        // Non-nil: this task was scheduled through it.
        committedBox!.withLockedValue { committed in
            swap(&answers, &committed.answers)
            committed.scheduled = false
        }
        guard !closing, answersFit() else { return }
        var frames = ByteBufferAllocator().buffer(capacity: answers.count * 40)
        for (id, sequence, result) in answers {
            switch result {
            case .success:
                ServerMessage.ack(id: id, sequence: sequence).writeFrame(into: &frames)
            case .failure(let error):
                ServerMessage.error(ProtocolError(
                    .unavailable, ReplayError.notDurable(sequence: sequence, error), id: id)
                ).writeFrame(into: &frames)
            }
        }
        writer.queueEncoded(frames)
        flush()
    }

    private func reply(_ message: ServerMessage) {
        guard answersFit() else { return }
        socket.send(WebSocketMessage(kind: .text, data: message.json()), promise: nil)
    }

    /// Whether the socket takes another answer. A client that stops reading its answers (a
    /// publisher that never reads its acks) would otherwise lose them once its backlog is at
    /// the connection's `maxBufferedAmount` (2 × `maxQueuedBytes`), where sends are refused:
    /// it is closed with 1013 instead, as a slow consumer is, and told nothing false.
    private func answersFit() -> Bool {
        guard case .bufferFull = socket.sendRefusalOnLoop else { return true }
        if !closing {
            counters.slowConsumerCloses += 1
            close(.tryAgainLater, "slow reader: \(writer.bufferedAmount) bytes queued, answers unread")
        }
        return false
    }

    // MARK: Fan-out

    /// Queues a run of messages (consecutive messages of one topic, one shared frame
    /// buffer; see `Hub`); returns true when the session needs a flush at the end of the
    /// batch.
    ///
    /// The limit applies to the socket's real backlog: bytes handed over at earlier flushes
    /// that the kernel has not taken yet. The frames gathered for the current batch are no
    /// backlog (a reader that keeps up takes them at the flush, however large a burst is),
    /// so they are left out; to keep them bounded all the same, they are flushed mid-batch
    /// once they would pass half the limit, and the backlog is judged after that flush. The
    /// check is made once per run (a run is bounded by `Hub.maxRunBytes`), and only when a
    /// backlog over the limit is possible: the socket is unwritable (its write watermark is
    /// at most the limit, see `init`) or messages are being dropped. Once messages are
    /// dropped for a slow consumer, every run is dropped until its backlog is down to half
    /// the limit; then the gap notice goes out (when the socket drains, or first thing
    /// before the next run), so each gap is one contiguous range reported before the
    /// messages that follow it.
    /// `compressed` makes (once per run, shared) the run's frames with the messages over
    /// the deflate threshold compressed, for a connection that takes them.
    func deliver(_ run: FanOut, compressed: () -> ByteBuffer) -> Bool {
        guard !closing else { return false }
        guard catchUps.isEmpty, replayedThrough.isEmpty else { return deliverAroundCatchUps(run) }
        let frame = takesCompressedFrames && run.isCompressible ? compressed() : run.frame
        return enqueue(frame, topic: run.topic, first: run.first, last: run.last)
    }

    /// One message's frame as this connection gets it: compressed when it takes compressed frames.
    private func frame(of delivery: Delivery) -> ByteBuffer {
        takesCompressedFrames ? hub.compressedFrame(of: delivery) : delivery.frame
    }

    /// `deliver` while a subscription catches up: each message of a topic being replayed
    /// goes to its catch-up (which holds it back, or drops it as already replayed), one
    /// already replayed by a finished catch-up is dropped; the others are queued one by one.
    private func deliverAroundCatchUps(_ run: FanOut) -> Bool {
        var needsFlush = false
        for delivery in run.deliveries {
            if let catchUp = catchUps.first(where: { $0.key.matches(delivery.topic) })?.value.catchUp,
                catchUp.live(delivery, topic: delivery.topic, sequence: delivery.sequence, size: delivery.frame.readableBytes)
            {
                continue
            }
            if let replayed = replayedThrough[delivery.topic] {
                if delivery.sequence <= replayed { continue }
                replayedThrough[delivery.topic] = nil
            }
            if enqueue(frame(of: delivery), topic: delivery.topic, first: delivery.sequence, last: delivery.sequence) {
                needsFlush = true
            }
        }
        return needsFlush
    }

    private func enqueue(_ frame: ByteBuffer, topic: Topic, first: UInt64, last: UInt64) -> Bool {
        let limit = maxQueuedBytes
        let gathered = unflushedBytes + frame.readableBytes
        if !writer.isWritable || !missed.isEmpty || gathered > limit / 2 {
            if gathered > limit / 2, unflushedBytes > 0 { writeGathered() }
            let backlog = self.backlog
            if !missed.isEmpty {
                if backlog > limit / 2 {
                    missed[topic] = (missed[topic]?.lowerBound ?? first)...last
                    counters.dropped &+= last - first + 1
                    return false
                }
                reportGaps()
            } else if backlog > limit {
                switch broker.configuration.slowConsumer {
                case .close:
                    counters.slowConsumerCloses += 1
                    close(.tryAgainLater, "slow consumer: \(backlog) bytes queued")
                    return false
                case .drop:
                    broker.logger.notice("slow consumer: dropping messages", metadata: [
                        "peer": "\(peer)", "principal": "\(principal.logLabel)", "queued": "\(backlog)",
                    ])
                    missed[topic] = first...last
                    counters.dropped &+= last - first + 1
                    watchWritability()
                    return false
                }
            }
        }
        writer.queueEncoded(frame)
        unflushedBytes += frame.readableBytes
        counters.messages &+= last - first + 1
        counters.bytes &+= UInt64(frame.readableBytes)
        defer { needsFlush = true }
        return !needsFlush
    }

    /// What earlier flushes handed to the socket and the kernel has not taken yet. Everything
    /// the connection writes outside a hub's batch is flushed at once (answers at the end of
    /// their read, catch-up pages, acks after a commit), so during a batch the bytes not yet
    /// flushed are exactly `unflushedBytes`.
    private var backlog: Int {
        max(0, writer.bufferedAmount - unflushedBytes)
    }

    /// Hands the frames gathered so far in this batch to the kernel; the hub still flushes
    /// the session at the end of the batch for what comes after.
    private func writeGathered() {
        unflushedBytes = 0
        writer.flush()
    }

    /// Tells a consumer that caught up which sequence ranges it missed, per topic.
    private func reportGaps() {
        var count: UInt64 = 0
        for (topic, range) in missed.sorted(by: { $0.key.name < $1.key.name }) {
            let frame = Self.gapFrame(topic, range)
            writer.queueEncoded(frame)
            unflushedBytes += frame.readableBytes
            count += range.upperBound - range.lowerBound + 1
        }
        counters.gaps &+= UInt64(missed.count)
        broker.logger.info("slow consumer caught up", metadata: [
            "peer": "\(peer)", "principal": "\(principal.logLabel)", "topics": "\(missed.count)", "missed": "\(count)",
        ])
        missed.removeAll()
    }

    /// `{"op":"gap",…}`: the messages of `topic` in `missing` will never come.
    static func gapFrame(_ topic: Topic, _ missing: ClosedRange<UInt64>) -> ByteBuffer {
        textFrame("{\"op\":\"gap\",\"topic\":\"\(topic.name)\",\"from\":\(missing.lowerBound),\"to\":\(missing.upperBound)}")
    }

    static func textFrame(_ text: String) -> ByteBuffer {
        var buffer = ByteBuffer()
        var sender = Sender(role: .server)
        sender.writeFrame(opcode: .text, payload: ByteBuffer(string: text), into: &buffer)
        return buffer
    }

    func flush() {
        needsFlush = false
        unflushedBytes = 0
        writer.flush()
    }

    // MARK: Catching up (`since`)

    /// Replays what `pattern` missed since `position`, then hands over to live delivery.
    /// The subscription is already registered on the hub, so every message sequenced from
    /// here on reaches `deliver`; the topics' current seqs tell the replay how far it must go.
    private func catchUp(_ pattern: TopicPattern, from position: ReplayPosition, id: RequestID?) {
        let highWater = broker.currentSequences(matching: pattern)
        guard let log = broker.history else {
            // Nothing is retained: only report what was missed.
            var merger = ResumeMerger<Delivery>(position: position, highWater: highWater, isReplayed: { _ in false })
            var out: [ResumeMerger<Delivery>.Output] = []
            merger.begin(into: &out)
            emit(out)
            return
        }
        catchUps.removeValue(forKey: pattern)?.catchUp.cancel()
        watchWritability()
        let queueLimit = maxQueuedBytes
        var limits = ReplayCatchUp<Delivery>.Limits()
        // A page and the held-back live messages both fit under the slow-consumer limit.
        limits.pageBytes = min(limits.pageBytes, max(queueLimit / 4, 4096))
        limits.bufferBytes = min(limits.bufferBytes, max(queueLimit / 2, 4096))
        let catchUpID = nextCatchUpID
        nextCatchUpID += 1
        let session = NIOLoopBound(self, eventLoop: socket.eventLoop)
        let catchUp = ReplayCatchUp<Delivery>(
            log: log, pattern: pattern, position: position, highWater: highWater, eventLoop: socket.eventLoop,
            limits: limits,
            emit: { session.value.emit($0) },
            emitFrames: { session.value.emitFrames($0, count: $1) },
            canContinue: { session.value.canTakeReplay },
            finished: { session.value.catchUpFinished(pattern, catchUpID, $0, id: id) })
        catchUps[pattern] = (catchUpID, catchUp)
        catchUp.start()
    }

    /// Writes a catch-up's output: replayed messages (their frames encoded by the reader),
    /// live messages it held back, gap notices.
    private func emit(_ output: [ResumeMerger<Delivery>.Output]) {
        guard !closing, !output.isEmpty else { return }
        var replayed = 0
        for item in output {
            switch item {
            case .replayed(let message):
                let encoded = message.frame ?? message.encodeFrame()
                let frame = takesCompressedFrames ? hub.compressedFrames(encoded) : encoded
                writer.queueEncoded(frame)
                replayed += 1
                counters.messages &+= 1
                counters.bytes &+= UInt64(frame.readableBytes)
            case .live(let delivery):
                let frame = frame(of: delivery)
                writer.queueEncoded(frame)
                counters.messages &+= 1
                counters.bytes &+= UInt64(frame.readableBytes)
            case .gap(let topic, let missing):
                writer.queueEncoded(Self.gapFrame(topic, missing))
                counters.gaps &+= 1
            }
        }
        // Counted before the flush: once a client has the messages, the count includes them.
        if replayed > 0 { broker.countReplayed(replayed) }
        flush()
    }

    /// A replayed page with nothing to skip or report: its frames go out in one write.
    private func emitFrames(_ encoded: ByteBuffer, count: Int) {
        guard !closing else { return }
        let frames = takesCompressedFrames ? hub.compressedFrames(encoded) : encoded
        // Counted before the flush, as in `emit`.
        broker.countReplayed(count)
        counters.messages &+= UInt64(count)
        counters.bytes &+= UInt64(frames.readableBytes)
        writer.queueEncoded(frames)
        flush()
    }

    /// A replay reads its next page only while the socket takes more without queueing.
    private var canTakeReplay: Bool { !closing && writer.isWritable }

    /// From now on `socketWritable()` runs each time the socket drains below NIO's low watermark.
    private func watchWritability() {
        guard !watchingWritability else { return }
        watchingWritability = true
        let session = NIOLoopBound(self, eventLoop: socket.eventLoop)
        socket.onWritable { session.value.socketWritable() }
    }

    /// The socket drained: paused replays read on, and a slow consumer that had messages
    /// dropped hears about its gaps now rather than with the next message.
    private func socketWritable() {
        for entry in catchUps.values { entry.catchUp.resume() }
        if !missed.isEmpty, !closing, backlog <= maxQueuedBytes / 2 {
            reportGaps()
            flush()
        }
    }

    private func catchUpFinished(_ pattern: TopicPattern, _ catchUpID: Int, _ result: Result<Void, ReplayError>, id: RequestID?) {
        guard catchUps[pattern]?.id == catchUpID, let catchUp = catchUps.removeValue(forKey: pattern)?.catchUp else { return }
        if broker.history?.liveMayTrailReads == true {
            replayedThrough.merge(catchUp.deliveredThrough, uniquingKeysWith: max)
        }
        if case .failure(let error) = result {
            broker.logger.error("replay failed", metadata: [
                "peer": "\(peer)", "principal": "\(principal.logLabel)", "topic": "\(pattern.name)", "error": "\(error)",
            ])
            reply(.error(ProtocolError(
                .unavailable, "replay of \(pattern.name) failed (\(error)); live messages continue", id: id)))
        }
    }

    /// The connection closed: stops what the session started and lets the broker forget it.
    func closed(_ info: CloseInfo) {
        connectionClosed()
        broker.closed(self, info)
    }

    /// The connection is gone: stop its replays (they hold the session).
    private func connectionClosed() {
        closing = true
        topicLoaded = { _ in }
        for entry in catchUps.values { entry.catchUp.cancel() }
        catchUps.removeAll()
    }

    func close(_ code: CloseCode, _ reason: String) {
        guard !closing else { return }
        closing = true
        broker.logger.info("closing connection", metadata: [
            "peer": "\(peer)", "principal": "\(principal.logLabel)",
            "code": "\(code.rawValue)", "reason": "\(reason)",
        ])
        socket.close(code: code, reason: reason, promise: nil)
    }
}
