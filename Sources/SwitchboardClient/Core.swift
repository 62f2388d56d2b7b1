import Logging
import NIOCore
import WebSockets

/// The client's state and everything that changes it, on the client's one event loop:
/// the connection, the subscriptions, the publishes waiting for an ack or a connection,
/// the state watchers. Frames from the broker arrive on this loop too, so nothing here
/// is locked.
final class Core {
    enum Phase {
        /// Between connections: the engine's run loop is connecting or waiting to.
        case idle
        case connected(WebSocket)
        case closed(CloseReason)
    }

    /// Resumed with a publish's seq once the broker acked it: resumed once, when its
    /// entry leaves `acks` or the queue, or at once when refused.
    typealias Ack = UnsafeContinuation<UInt64, any Error>

    struct QueuedPublish: Sendable {
        var topic: String
        var payload: Payload
        var ack: Ack?
    }

    private unowned let engine: Engine
    private let loop: any EventLoop
    private let options: SwitchboardClient.Options
    private var logger: Logger { options.logger }

    private(set) var phase = Phase.idle
    private var subscriptions: [Int: SubscriptionState] = [:]
    private var nextSubscription = 0
    private var nextRequest: UInt64 = 0
    /// Sub request ids of the current connection → subscription.
    private var subscribeRequests: [String: Int] = [:]
    /// Acked publishes sent on the current connection, by id.
    private var acks: [UInt64: Ack] = [:]
    private var queued: [QueuedPublish] = []
    /// Subscriptions whose buffer is full: while any is, the socket is not read.
    private var behind: Set<Int> = []
    /// The connection with publishes queued but not flushed: a task flushes them once the
    /// loop has run every publish made meanwhile, so a burst costs one write to the socket.
    private var unflushedSocket: WebSocket?
    /// Subscriptions with pending events, flushed by a task that runs once the loop is done
    /// with the frames of this read.
    private var unflushed: [SubscriptionState] = []
    private var watchers: [Int: AsyncStream<ConnectionState>.Continuation] = [:]
    private var nextWatcher = 0
    private(set) var state = ConnectionState.connecting
    private var retryWait: (continuation: CheckedContinuation<Bool, Never>, timer: Scheduled<Void>)?

    init(engine: Engine, loop: any EventLoop, options: SwitchboardClient.Options) {
        self.engine = engine
        self.loop = loop
        self.options = options
    }

    var isClosed: Bool {
        if case .closed = phase { return true }
        return false
    }

    // MARK: Connection

    /// A new attempt starts; false when the client is closed.
    func beginAttempt() -> Bool {
        guard !isClosed else { return false }
        publish(.connecting)
        return true
    }

    /// The handshake succeeded: resubscribe everything, send what waited. False when the
    /// client closed meanwhile.
    func connected(_ ws: WebSocket) -> Bool {
        guard !isClosed else { return false }
        phase = .connected(ws)
        let engine = engine
        ws.onMessage { message in engine.onLoop { $0.received(message, on: ws) } }
        if !behind.isEmpty { ws.pause() }
        logger.info("connected to the broker")
        for subscription in subscriptions.values.sorted(by: { $0.id < $1.id }) {
            sendSubscribe(subscription, on: ws)
        }
        let waiting = queued
        queued = []
        for queuedPublish in waiting { publish(queuedPublish) }
        publish(.connected)
        return true
    }

    /// The connection ended; false when the client is closed (the run loop stops).
    func disconnected(_ ws: WebSocket, _ info: CloseInfo) -> Bool {
        if case .connected(let current) = phase, current === ws { phase = .idle }
        subscribeRequests = [:]
        let lost = acks
        acks = [:]
        for ack in lost.values { ack.resume(throwing: SwitchboardClientError.connectionLost) }
        logger.info("disconnected from the broker", metadata: ["code": "\(info.code.rawValue)", "reason": "\(info.reason)"])
        return !isClosed
    }

    /// Parks the run loop for `delay`, or until `reconnectNow()` or `close()`; the
    /// continuation gets false when the client closed.
    func waitToRetry(
        _ delay: Duration, code: UInt16?, reason: String, _ continuation: CheckedContinuation<Bool, Never>
    ) {
        guard !isClosed else { return continuation.resume(returning: false) }
        let timer = loop.scheduleTask(in: TimeAmount(delay)) { [engine] in engine.onLoop { $0.wake(true) } }
        retryWait = (continuation, timer)
        publish(.disconnected(code: code, reason: reason, retryIn: delay))
    }

    func wake(_ proceed: Bool) {
        guard let wait = retryWait else { return }
        retryWait = nil
        wait.timer.cancel()
        wait.continuation.resume(returning: proceed)
    }

    func reconnectNow() {
        if case .connected(let ws) = phase {
            ws.closeWithoutWaiting(code: .normalClosure, reason: "reconnecting")
        } else {
            wake(true)
        }
    }

    /// Closes for good: the application's `close()` or a refusal a retry cannot fix.
    func finish(_ reason: CloseReason) {
        guard !isClosed else { return }
        if case .connected(let ws) = phase { ws.closeWithoutWaiting(code: .normalClosure) }
        phase = .closed(reason)
        let error = SwitchboardClientError.closed(reason)
        for ack in acks.values { ack.resume(throwing: error) }
        for publish in queued { publish.ack?.resume(throwing: error) }
        acks = [:]
        queued = []
        let ending = subscriptions.values
        subscriptions = [:]
        for subscription in ending {
            subscription.opened?.fail(error)
            subscription.finish(reason == .closedByApplication ? nil : error)
        }
        if reason != .closedByApplication { logger.warning("client closed", metadata: ["reason": "\(reason)"]) }
        publish(.closed(reason))
        wake(false)
    }

    // MARK: State watchers

    func watch(_ continuation: AsyncStream<ConnectionState>.Continuation) {
        continuation.yield(state)
        if isClosed { return continuation.finish() }
        let id = nextWatcher
        nextWatcher += 1
        watchers[id] = continuation
        let engine = engine
        continuation.onTermination = { _ in engine.onLoop { $0.watchers[id] = nil } }
    }

    private func publish(_ new: ConnectionState) {
        guard new != state else { return }
        state = new
        for watcher in watchers.values { watcher.yield(new) }
        if case .closed = new {
            let ending = watchers.values
            watchers = [:]
            for watcher in ending { watcher.finish() }
        }
    }

    // MARK: Subscriptions

    func subscribe(
        _ pattern: TopicPattern, from start: StartPosition, startedAt: Int64, opened: EventLoopPromise<Void>
    ) -> Subscription? {
        if case .closed(let reason) = phase {
            opened.fail(SwitchboardClientError.closed(reason))
            return nil
        }
        let id = nextSubscription
        nextSubscription += 1
        let delegate = SubscriptionDelegate(engine: engine, id: id)
        let level = BufferLevel(high: options.subscriptionBuffer, caughtUp: delegate)
        let made = Subscription.Producer.makeSequence(
            backPressureStrategy: Unbounded(), finishOnDeinit: true, delegate: delegate)
        let state = SubscriptionState(
            id: id, pattern: pattern, start: start, startedAt: startedAt, source: made.source, level: level,
            opened: opened)
        subscriptions[id] = state
        if case .connected(let ws) = phase { sendSubscribe(state, on: ws) }
        return Subscription(
            pattern: pattern.text, producer: made.sequence,
            delivered: .init(Delivered(Positions(seqs: state.positions, epoch: state.epoch))), level: level)
    }

    private func sendSubscribe(_ subscription: SubscriptionState, on ws: WebSocket) {
        let id = "s\(nextID())"
        subscribeRequests[id] = subscription.id
        subscription.resubscribing()
        ws.sendWithoutWaiting(
            Request.subscribe(subscription.pattern.text, id: id, replay: subscription.replay, epoch: subscription.epoch))
    }

    func consumerCaughtUp(_ id: Int) {
        guard behind.remove(id) != nil, behind.isEmpty, case .connected(let ws) = phase else { return }
        ws.resume()
    }

    /// The consumer stopped iterating (cancelled, or dropped the subscription): unsubscribe
    /// on the broker unless another subscription of this client has the same pattern.
    func consumerEnded(_ id: Int) {
        guard let subscription = subscriptions.removeValue(forKey: id) else { return }
        subscription.opened?.fail(CancellationError())
        consumerCaughtUp(id)
        guard !subscriptions.values.contains(where: { $0.pattern == subscription.pattern }),
            case .connected(let ws) = phase
        else { return }
        ws.sendWithoutWaiting(Request.unsubscribe(subscription.pattern.text, id: "u\(nextID())"))
    }

    // MARK: Publishing

    func publish(_ publish: QueuedPublish) {
        switch phase {
        case .connected(let ws):
            switch ws.sendRefusalOnLoop {
            case nil: return send(publish, on: ws)
            // The broker has begun to close the connection (a close frame came: it is
            // shutting down); it takes no more frames, though it ends only once the close
            // handshake is done: the publish waits for the next one.
            case .notOpen?: break
            case let refusal?: return refuse(publish, refusal)
            }
        case .closed(let reason): return refuse(publish, SwitchboardClientError.closed(reason))
        case .idle: break
        }
        switch options.publishQueue {
        case .failFast: refuse(publish, SwitchboardClientError.notConnected)
        case .wait(let limit) where queued.count >= limit: refuse(publish, SwitchboardClientError.queueFull(limit: limit))
        case .wait: queued.append(publish)
        }
    }

    private func refuse(_ publish: QueuedPublish, _ error: any Error) {
        if let ack = publish.ack {
            ack.resume(throwing: error)
        } else {
            logger.notice("publish dropped", metadata: ["topic": "\(publish.topic)", "error": "\(error)"])
        }
    }

    /// Queues the frame unflushed (a task flushes what a burst queued, in one write); a
    /// write that fails later ends the connection, which fails the acks still awaited.
    private func send(_ publish: QueuedPublish, on ws: WebSocket) {
        if unflushedSocket !== ws {
            if unflushedSocket == nil { loop.execute { [engine] in engine.onLoop { $0.flushPublishes() } } }
            unflushedSocket?.flush()
            unflushedSocket = ws
        }
        guard let ack = publish.ack else {
            return ws.queue(Request.publish(publish.topic, publish.payload, id: nil), promise: nil)
        }
        let id = nextID()
        acks[id] = ack
        ws.queue(Request.publish(publish.topic, publish.payload, id: id), promise: nil)
    }

    private func flushPublishes() {
        unflushedSocket?.flush()
        unflushedSocket = nil
    }

    private func nextID() -> UInt64 {
        nextRequest += 1
        return nextRequest
    }

    // MARK: From the broker

    private func received(_ frame: WebSocketMessage, on ws: WebSocket) {
        guard case .connected(let current) = phase, current === ws else { return }
        let message: BrokerMessage
        do {
            message = try BrokerMessage.decode(frame)
        } catch {
            logger.error("\(error)")
            return
        }
        switch message {
        case .message(let message): deliver(message)
        case .gap(let topic, let from, let to): deliverGap(topic, from: from, to: to)
        case .ack(let id, let seq): acks.removeValue(forKey: id)?.resume(returning: seq)
        case .subscribed(let id, _, let epoch):
            guard let id, let subscription = subscribeRequests[id].flatMap({ subscriptions[$0] }) else { return }
            subscription.confirmed = true
            if let epoch {
                if let known = subscription.epoch, known != epoch {
                    // The broker's history is another one now (database replaced or recreated):
                    // it replays from its seq 1, which must not be taken for duplicates.
                    for gap in subscription.historyLost() { yield(.event(.gap(gap)), to: subscription) }
                }
                // After the gaps: the positions they end at (0) count in the new history.
                if subscription.epoch != epoch { yield(.epoch(epoch), to: subscription) }
                subscription.epoch = epoch
            }
            subscription.opened?.succeed()
            subscription.opened = nil
        case .unsubscribed: break
        case .error(let id, let code, let text):
            let error = SwitchboardClientError.broker(code: code, message: text)
            if let id, let publishID = UInt64(id), let ack = acks.removeValue(forKey: publishID) {
                ack.resume(throwing: error)
            } else if let id, let subscription = subscribeRequests[id].flatMap({ subscriptions[$0] }) {
                subscriptions[subscription.id] = nil
                subscription.opened?.fail(error)
                subscription.finish(error)
                consumerCaughtUp(subscription.id)
            } else {
                logger.notice("broker error", metadata: ["code": "\(code)", "message": "\(text)"])
            }
        case .unknown: break
        }
    }

    private func deliver(_ message: Message) {
        // Most messages match one subscription: found without building a list.
        var only: SubscriptionState?
        var shared = false
        for subscription in subscriptions.values where subscription.pattern.matches(message.topic) {
            if only == nil {
                only = subscription
            } else {
                shared = true
                break
            }
        }
        guard let first = only else { return }
        guard shared else { return deliver(message, to: first, shared: false) }
        for subscription in subscriptions.values where subscription.pattern.matches(message.topic) {
            deliver(message, to: subscription, shared: true)
        }
    }

    private func deliver(_ message: Message, to subscription: SubscriptionState, shared: Bool) {
        let (gap, deliver) = subscription.accept(message, shared: shared)
        if let gap { yield(.event(.gap(gap)), to: subscription) }
        if deliver { yield(.event(.message(message)), to: subscription) }
    }

    private func deliverGap(_ topic: String, from: UInt64, to: UInt64) {
        for subscription in subscriptions.values where subscription.pattern.matches(topic) {
            if let gap = subscription.accept(gapOf: topic, from: from, to: to) { yield(.event(.gap(gap)), to: subscription) }
        }
    }

    private func yield(_ event: Delivery, to subscription: SubscriptionState) {
        if subscription.pending.isEmpty {
            if unflushed.isEmpty { loop.execute { [engine] in engine.onLoop { $0.flush() } } }
            unflushed.append(subscription)
        }
        subscription.pending.append(event)
    }

    private func flush() {
        let due = unflushed
        unflushed = []
        for subscription in due where subscriptions[subscription.id] === subscription {
            guard subscription.flush() else { continue }
            if behind.insert(subscription.id).inserted, behind.count == 1, case .connected(let ws) = phase { ws.pause() }
        }
    }
}
