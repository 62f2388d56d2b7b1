import NIOConcurrencyHelpers
import NIOCore
import WebSocketCore

/// One WebSocket connection, server or client side: the handle an application holds.
///
/// Every public method may be called from any thread or task; work hops to the connection's
/// event loop. Callbacks run on that event loop, in order, and must not block it.
/// Messages are delivered either to `onMessage` or through `messages`; until one of them
/// is set up, incoming messages wait (and the connection stops reading), so none is lost.
/// `onPing`, `onPong` and `onClose` start reading too, up to the first message, which then
/// waits for `onMessage` or `messages` as before: a connection that only pings hears its pongs.
public final class WebSocket: Sendable {
    // The two fields every send on the loop reads come first, so that they share the
    // object's first cache line with its header (properties are laid out in declaration
    // order): a fan-out reaches each connection's handle once per message, cold.
    /// The handler, for calls already on its event loop (checked by `eventLoop.inEventLoop`
    /// right before each use), so they skip `NIOLoopBound`'s second check.
    private nonisolated(unsafe) let handlerOnLoop: WebSocketHandler
    /// The event loop the connection lives on and its callbacks run on (`channel.eventLoop`,
    /// kept so a send does not go through the channel existential), for scheduling NIO work
    /// beside them.
    public let eventLoop: any EventLoop
    package let channel: any Channel
    /// `.server` for a connection a `WebSocketServer` accepted, `.client` for one `connect` opened.
    public let role: Role
    /// What the opening handshake settled.
    public let handshake: HandshakeInfo
    /// Server side: the client's upgrade request (headers, remote address, origin); its
    /// headers are those `WebSocketServer.Options.keptRequestHeaders` keeps.
    public var request: UpgradeRequest? {
        storedRequest?.expanded(
            target: handshake.target, remoteAddress: channel.remoteAddress, trustedProxies: server?.options.trustedProxies ?? [])
    }
    /// The request as kept for the connection's life: every header in one string, so an
    /// idle connection does not hold a few hundred bytes of small allocations.
    private let storedRequest: StoredRequest?
    /// Server side: the server that accepted the connection, to reach its other clients
    /// (`ws.server?.clients`, as `ws`'s `wss.clients`); nil on the client side. The
    /// connection is in `clients` before the server's connection callback or handler runs,
    /// and holds its server for as long as the handle lives.
    public let server: WebSocketServer?
    /// Server side: what `verifyClient` attached when it accepted (e.g. the principal);
    /// read a value with its key, `ws.userInfo[PrincipalKey.self]`.
    public let userInfo: ConnectionUserInfo
    /// The handler, on its event loop (checked on every use, as `NIOLoopBound.value` does).
    var handler: WebSocketHandler {
        eventLoop.preconditionInEventLoop()
        return handlerOnLoop
    }
    /// Made by the first use of `messages`, under `messageSequenceLock`: one lock shared by
    /// every connection (taken about once per connection), so that an idle connection does
    /// not carry a lock box of its own.
    private nonisolated(unsafe) var messageSequence: MessageSequence?
    private static let messageSequenceLock = NIOLock()

    init(
        channel: any Channel, role: Role, handshake: HandshakeInfo, request: UpgradeRequest? = nil,
        userInfo: ConnectionUserInfo = ConnectionUserInfo(), server: WebSocketServer? = nil,
        handler: WebSocketHandler
    ) {
        self.userInfo = userInfo
        self.server = server
        self.channel = channel
        self.role = role
        self.handshake = handshake
        self.storedRequest = request.map { StoredRequest($0, keeping: server?.options.keptRequestHeaders) }
        self.handlerOnLoop = handler
        self.eventLoop = channel.eventLoop
    }

    /// Where the connection stands (`ws`'s `readyState`); readable from any thread.
    public var readyState: ReadyState {
        // Only ever stored from a `ReadyState`'s raw value.
        ReadyState(rawValue: handlerOnLoop.readyState.load(ordering: .acquiring))!
    }

    /// The peer's address (for a server, the client's socket address; behind a proxy, the
    /// proxy's: see `UpgradeRequest.clientAddress`). Nil once the connection is closed.
    public var remoteAddress: SocketAddress? { channel.remoteAddress }

    // MARK: Sending

    /// Sends a message; returns once it is written to the socket.
    public func send(_ message: WebSocketMessage) async throws {
        try await send(message.kind, message.data, isFinal: true)
    }

    /// Sends a text message; returns once it is written to the socket. Throws `SendError`
    /// (not open, buffer full) or the write's error.
    public func send(text: String) async throws {
        try await send(.text, ByteBuffer(string: text), isFinal: true)
    }

    /// Sends a binary message; returns once it is written to the socket. Throws as `send(text:)`.
    public func send(binary: ByteBuffer) async throws {
        try await send(.binary, binary, isFinal: true)
    }

    /// Sends one piece of a message sent in fragments: every piece but the last has
    /// `isFinal: false`; the kind of the first piece is the kind of the message.
    public func send(_ kind: WebSocketMessage.Kind, _ data: ByteBuffer, isFinal: Bool) async throws {
        let promise = eventLoop.makePromise(of: Void.self)
        onLoop { $0.send(kind, data, isFinal: isFinal, promise: promise) }
        try await promise.futureResult.get()
    }

    /// Sends without waiting, as `ws`'s `send(data)` does: the message is queued for the
    /// socket at once, in order with every other send; `completion`, if given, hears when it
    /// was written, or why it was not (`SendError`: not open, buffer full…).
    public func sendWithoutWaiting(
        _ message: WebSocketMessage, completion: (@Sendable (Result<Void, any Error>) -> Void)? = nil
    ) {
        send(message, promise: completion.map { completion in
            let promise = eventLoop.makePromise(of: Void.self)
            promise.futureResult.whenComplete(completion)
            return promise
        })
    }

    /// `sendWithoutWaiting` for code that has a promise already (the broker).
    package func send(_ message: WebSocketMessage, promise: EventLoopPromise<Void>?) {
        // The hot path of an echo or a fan-out: called from a message callback, on the loop.
        // Calling directly avoids allocating the escaping closure `onLoop` takes.
        if eventLoop.inEventLoop {
            handlerOnLoop.send(message.kind, message.data, promise: promise)
        } else {
            eventLoop.execute { [self] in handler.send(message.kind, message.data, promise: promise) }
        }
    }

    /// Writes a frame encoded once for many connections (see `Sender`) without waiting;
    /// server side only, since client frames need a fresh mask each.
    public func sendEncoded(_ frame: ByteBuffer) {
        sendEncoded(frame, promise: nil)
    }

    /// `sendEncoded(_:)`, with a promise completed when the frame is written.
    package func sendEncoded(_ frame: ByteBuffer, promise: EventLoopPromise<Void>?) {
        // API misuse only: the role is fixed by how the connection was made, not by a peer.
        precondition(role == .server, "pre-encoded frames are unmasked: server side only")
        if eventLoop.inEventLoop {
            handlerOnLoop.sendEncoded(frame, promise: promise)
        } else {
            eventLoop.execute { [self] in handler.sendEncoded(frame, promise: promise) }
        }
    }

    /// Queues a message without flushing, so that many sends made apart (a client's publishes
    /// from many tasks) cost one flush (`flush()`). On the connection's event loop.
    package func queue(_ message: WebSocketMessage, promise: EventLoopPromise<Void>?) {
        eventLoop.assertInEventLoop()
        handlerOnLoop.send(message.kind, message.data, flush: false, promise: promise)
    }

    /// Why a `queue` made now would fail (not open, buffer full), or nil when it would be
    /// taken: lets code on the connection's event loop send without a promise per message.
    package var sendRefusalOnLoop: SendError? {
        eventLoop.assertInEventLoop()
        return handlerOnLoop.sendRefusal
    }

    /// The connection's send path for code on its event loop that writes to many connections
    /// in a row (a fan-out) and keeps this beside its own state: each write then reaches the
    /// handler without first bringing the `WebSocket` into cache only to find the handler.
    /// Every member must be used on the connection's event loop.
    package struct LoopWriter {
        fileprivate let handler: WebSocketHandler

        /// Queues a pre-encoded frame without flushing, so that a batch of messages costs one
        /// flush per connection. The frame is not copied while nothing else is queued.
        package func queueEncoded(_ frame: ByteBuffer) { handler.sendEncoded(frame, flush: false, promise: nil) }
        /// Writes and flushes what was queued.
        package func flush() { handler.flush() }
        /// Whether the socket takes more bytes without queueing past NIO's high watermark;
        /// when false, `bufferedAmount` tells how far behind it is.
        package var isWritable: Bool { handler.isWritable }
        package var bufferedAmount: Int { handler.bufferedAmount }
    }

    /// This connection's `LoopWriter`.
    package var loopWriter: LoopWriter { LoopWriter(handler: handlerOnLoop) }

    /// Writes and flushes frames queued with `queue`; on the connection's event loop.
    package func flush() {
        eventLoop.assertInEventLoop()
        handlerOnLoop.flush()
    }

    /// The permessage-deflate parameters agreed in the handshake (nil without it), for code on
    /// the connection's event loop that sends frames it compressed itself (`LoopWriter.queueEncoded` with
    /// RSV1 set: only with `serverNoContextTakeover`, as the peer then inflates each message alone).
    package var deflateParametersOnLoop: PerMessageDeflateParameters? {
        eventLoop.assertInEventLoop()
        return handlerOnLoop.deflateParameters
    }

    /// `bufferedAmount` without hopping, for code already on the connection's event loop.
    package var bufferedAmountOnLoop: Int {
        eventLoop.assertInEventLoop()
        return handlerOnLoop.bufferedAmount
    }

    /// Sends a ping (payload at most 125 bytes, else `SendError.invalid`); returns once it is
    /// written. Its pong comes to `onPong`.
    public func ping(_ payload: ByteBuffer = ByteBuffer()) async throws {
        let promise = eventLoop.makePromise(of: Void.self)
        onLoop { $0.sendControl(.ping, payload, promise: promise) }
        try await promise.futureResult.get()
    }

    /// Sends an unsolicited pong (payload at most 125 bytes, else `SendError.invalid`), a
    /// one-way heartbeat; returns once it is written.
    public func pong(_ payload: ByteBuffer = ByteBuffer()) async throws {
        let promise = eventLoop.makePromise(of: Void.self)
        onLoop { $0.sendControl(.pong, payload, promise: promise) }
        try await promise.futureResult.get()
    }

    /// Starts the close handshake and returns once the connection is closed (the peer
    /// answered, or `closeTimeout` passed and TCP was dropped). Throws `SendError.invalid` for
    /// a code that may not be sent or a reason over 123 bytes. A cancelled task stops waiting
    /// (`CancellationError`); the close goes on.
    public func close(code: CloseCode = .normalClosure, reason: String = "") async throws {
        let promise = eventLoop.makePromise(of: Void.self)
        onLoop { $0.close(code: code, reason: reason, promise: promise) }
        try await promise.futureResult.getUnlessCancelled()
        try await channel.closeFuture.getUnlessCancelled()
    }

    /// Starts the close handshake without waiting (`waitUntilClosed()` waits for its end).
    /// Does nothing once a close has started.
    public func closeWithoutWaiting(code: CloseCode = .normalClosure, reason: String = "") {
        close(code: code, reason: reason, promise: nil)
    }

    /// Starts the close handshake; `promise` completes when the close frame is written.
    package func close(code: CloseCode = .normalClosure, reason: String = "", promise: EventLoopPromise<Void>?) {
        onLoop { $0.close(code: code, reason: reason, promise: promise) }
    }

    /// Returns how the connection ended, once it has (at once if it already has). A
    /// cancelled task stops waiting (`CancellationError`).
    public func waitUntilClosed() async throws -> CloseInfo {
        try await channel.closeFuture.getUnlessCancelled()
        return try await eventLoop.submit { [self] in
            // Set when the channel went inactive, which comes before the close future completes.
            handler.closeInfo ?? CloseInfo(code: .abnormalClosure, reason: "", wasClean: false)
        }.get()
    }

    /// Drops the TCP connection at once, as `ws`'s `terminate()`.
    public func terminate() {
        onLoop { $0.terminate() }
    }

    /// Bytes waiting to be written to the socket.
    public var bufferedAmount: Int {
        get async {
            (try? await eventLoop.submit { [self] in handler.bufferedAmount }.get()) ?? 0
        }
    }

    // MARK: Receiving

    /// Stops reading from the socket until `resume()`; messages already read are still delivered.
    public func pause() {
        onLoop { $0.pause(.application) }
    }

    /// Starts reading from the socket again after `pause()`.
    public func resume() {
        onLoop { $0.resume(.application) }
    }

    /// The incoming messages as an async sequence (see `MessageSequence`).
    public var messages: MessageSequence {
        Self.messageSequenceLock.withLock {
            if let existing = messageSequence { return existing }
            let made = MessageSequence.Producer.makeSequence(
                backPressureStrategy: .init(
                    lowWatermark: MessageSequence.lowWatermark, highWatermark: MessageSequence.highWatermark
                ),
                finishOnDeinit: false,
                delegate: MessageSequence.Delegate(eventLoop: eventLoop, handler: handlerOnLoop)
            )
            let sequence = MessageSequence(producer: made.sequence)
            messageSequence = sequence
            let source = made.source
            onLoop { $0.setSink(.stream(source)) }
            return sequence
        }
    }

    /// Calls `callback` on the event loop for every message, instead of `messages`.
    public func onMessage(_ callback: @escaping @Sendable (WebSocketMessage) -> Void) {
        onLoop { $0.setSink(.callback(callback)) }
    }

    /// Hands every message and the close to `consumer`, in place of `onMessage` and `onClose`;
    /// on the connection's event loop only. The connection holds the consumer itself until it
    /// closes, where the two callbacks would each need a `Sendable` box around a loop-bound object.
    package func setConsumer(_ consumer: any LoopConsumer) {
        handler.setSink(.consumer(consumer))
    }

    /// Calls `callback` on the event loop with the payload of every ping received (after the
    /// automatic pong, when `autoPong` is on). Starts reading, as the class describes.
    public func onPing(_ callback: @escaping @Sendable (ByteBuffer) -> Void) {
        onLoop {
            $0.onPing = callback
            $0.readForControlCallbacks()
        }
    }

    /// Calls `callback` on the event loop with the payload of every pong received. Starts
    /// reading, as the class describes.
    public func onPong(_ callback: @escaping @Sendable (ByteBuffer) -> Void) {
        onLoop {
            $0.onPong = callback
            $0.readForControlCallbacks()
        }
    }

    /// Called once, when the TCP connection is gone (at once if it already is). Starts
    /// reading, as the class describes, so that the peer's close handshake is seen.
    public func onClose(_ callback: @escaping @Sendable (CloseInfo) -> Void) {
        onLoop {
            $0.setOnClose(callback)
            $0.readForControlCallbacks()
        }
    }

    /// Calls `callback` on the event loop with an error raised in the connection's channel (an
    /// I/O or TLS error) as it closes the connection. A peer's protocol violation does not come
    /// here: the connection is failed with its close code, which `onClose` reports.
    public func onError(_ callback: @escaping @Sendable (any Error) -> Void) {
        onLoop { $0.onError = callback }
    }

    /// Called on the event loop each time the socket becomes writable again after
    /// `LoopWriter.isWritable` was false (NIO's low watermark was reached): the moment to produce more.
    package func onWritable(_ callback: @escaping @Sendable () -> Void) {
        onLoop { $0.onWritable = callback }
    }

    /// Runs `body` on the event loop: at once when already there, so that callbacks set
    /// inside a connection callback apply before the next event.
    private func onLoop(_ body: @escaping @Sendable (WebSocketHandler) -> Void) {
        if eventLoop.inEventLoop {
            body(handlerOnLoop)
        } else {
            eventLoop.execute { [self] in body(handler) }
        }
    }
}

/// What the opening handshake settled, for either side.
public struct HandshakeInfo: Sendable {
    /// The request target (path and query) the client asked for.
    public var target: String
    /// The subprotocol both sides agreed on, if any.
    public var subprotocol: String?
    /// The extensions in force, as the server's `Sec-WebSocket-Extensions` named them.
    public var extensions: [ExtensionOffer]

    /// What a handshake settled: `target`, and the subprotocol and extensions agreed on.
    public init(target: String, subprotocol: String? = nil, extensions: [ExtensionOffer] = []) {
        self.target = target
        self.subprotocol = subprotocol
        self.extensions = extensions
    }

    /// The path part of `target`.
    public var path: String { String(target.prefix { $0 != "?" }) }

    /// The query parameters of `target`, decoded by the rules of `URLQuery` (the first of a
    /// repeated name wins; `URLQuery(target:)` has every item).
    public var query: [String: String] { URLQuery(target: target).dictionary }
}

/// An `UpgradeRequest` folded into a few strings (see `WebSocket.request`); its target is
/// the handshake's.
struct StoredRequest: Sendable {
    /// `name: value` lines joined by newlines (which no header value may contain).
    let headers: String
    let origin: String?
    let protocols: [String]
    let version: WebSocketVersion

    /// `kept`: the names of the headers to keep (`WebSocketServer.Options.keptRequestHeaders`).
    init(_ request: UpgradeRequest, keeping kept: [String]?) {
        headers = request.headers
            .filter { field in kept?.contains { HTTPFields.namesEqual($0, field.name) } ?? true }
            .map { "\($0.name): \($0.value)" }.joined(separator: "\n")
        origin = request.origin
        protocols = request.protocols
        version = request.version
    }

    func expanded(target: String, remoteAddress: SocketAddress?, trustedProxies: [String]) -> UpgradeRequest {
        var fields = HTTPFields()
        for line in headers.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            // Limited: a line is always "name: value", but a bound costs nothing here.
            let value = line.index(colon, offsetBy: 2, limitedBy: line.endIndex) ?? line.endIndex
            fields.add(name: String(line[..<colon]), value: String(line[value...]))
        }
        return UpgradeRequest(
            target: target, headers: fields, remoteAddress: remoteAddress, origin: origin, protocols: protocols,
            version: version, trustedProxies: trustedProxies)
    }
}
