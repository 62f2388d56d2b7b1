import AsyncTestSupport
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing
import WebSocketCore
import WebSockets

@testable import Switchboard

// Helpers for the broker's integration tests: a real broker on 127.0.0.1 with an
// ephemeral port and a real SQLite store in a temporary directory, real WebSocket clients,
// and a raw TCP peer for what our client will not do (stop reading, send bad frames).
// Every wait is bounded by `testTimeout`.

/// Event loops for brokers and clients in these tests: two threads, so that connections
/// (and publishers) really are spread over several loops.
let testGroup = MultiThreadedEventLoopGroup(numberOfThreads: 2)

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

// MARK: Broker

/// A broker on an ephemeral port with its own SQLite store in a temporary directory.
final class TestBroker: Sendable {
    let broker: Broker
    let tokens: TokenStore
    let port: Int
    let directory: URL
    let logs: LogCapture

    var databasePath: String { directory.appendingPathComponent("switchboard.db").path }
    var url: String { "ws://127.0.0.1:\(port)/" }

    private init(broker: Broker, tokens: TokenStore, port: Int, directory: URL, logs: LogCapture) {
        self.broker = broker
        self.tokens = tokens
        self.port = port
        self.directory = directory
        self.logs = logs
    }

    /// Starts a broker; `configure` adjusts the configuration (host and port are set here).
    /// With `replay` rules, the replay log lives in the store's file. `directory` reuses the
    /// store of an earlier broker (a restart).
    static func start(
        _ configure: (inout BrokerConfiguration) -> Void = { _ in }, group: MultiThreadedEventLoopGroup = testGroup,
        directory: URL? = nil, replayOptions: ReplayLog.Options = ReplayLog.Options()
    ) async throws -> TestBroker {
        let directory = try directory ?? makeTemporaryDirectory()
        var configuration = BrokerConfiguration()
        configuration.host = "127.0.0.1"
        configuration.port = 0
        configuration.heartbeatSeconds = 0
        configuration.database = directory.appendingPathComponent("switchboard.db").path
        configure(&configuration)
        let tokens = try TokenStore(store: Store(path: configuration.database))
        let logs = LogCapture()
        var logger = Logger(label: "switchboard-test") { _ in logs }
        logger.logLevel = .info
        let replayLog = configuration.replay.isEnabled
            ? try ReplayLog(
                path: configuration.database, configuration: configuration.replay, options: replayOptions, logger: logger)
            : nil
        let broker = try Broker(
            configuration: configuration, tokens: tokens, replayLog: replayLog, group: group, logger: logger)
        let address = try await broker.start()
        return TestBroker(broker: broker, tokens: tokens, port: address.port!, directory: directory, logs: logs)
    }

    /// Starts a broker, runs `body`, shuts the broker down (also when `body` throws).
    static func with<T>(
        _ configure: (inout BrokerConfiguration) -> Void = { _ in }, group: MultiThreadedEventLoopGroup = testGroup,
        directory: URL? = nil, _ body: (TestBroker) async throws -> T
    ) async throws -> T {
        let broker = try await start(configure, group: group, directory: directory)
        do {
            let result = try await body(broker)
            try await broker.stop()
            return result
        } catch {
            try? await broker.stop()
            throw error
        }
    }

    func stop() async throws {
        try await shutdown()
        try? FileManager.default.removeItem(at: directory)
    }

    /// Stops the broker and keeps its files (for a restart on the same `directory`).
    func shutdown() async throws {
        try await withTimeout("broker shutdown") { [broker] in await broker.shutdown() }
    }

    /// Creates an opaque token with these patterns.
    func token(subscribe: [String] = [">"], publish: [String] = [">"], expiresAt: Date? = nil) throws -> (
        token: String, record: TokenRecord
    ) {
        try tokens.create(
            name: "test", permissions: Permissions(
                subscribe: subscribe.map { try TopicPattern($0) }, publish: publish.map { try TopicPattern($0) },
                expiresAt: expiresAt))
    }

    /// A client connected with a new all-rights token (or the one given).
    func client(token: String? = nil, subscribe: [String] = [">"], publish: [String] = [">"]) async throws -> Client {
        let token = try token ?? self.token(subscribe: subscribe, publish: publish).token
        return try await Client.connect(port: port, token: token)
    }
}

func makeTemporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("switchboard-test-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// A swift-log handler that keeps every message, so tests can wait for the broker to say
/// it did something (close a slow consumer, say).
final class LogCapture: LogHandler, Sendable {
    struct Entry: Sendable {
        var level: Logger.Level
        var message: String
        var metadata: [String: String]
    }

    private let entries = NIOLockedValueBox<[Entry]>([])
    private let waiters = NIOLockedValueBox<[(@Sendable (Entry) -> Bool, Waiter<Entry>)]>([])

    var logLevel: Logger.Level {
        get { .trace }
        set {}
    }
    var metadata: Logger.Metadata {
        get { [:] }
        set {}
    }
    subscript(metadataKey _: String) -> Logger.Metadata.Value? {
        get { nil }
        set {}
    }

    func log(event: LogEvent) {
        let entry = Entry(
            level: event.level, message: "\(event.message)",
            metadata: (event.metadata ?? [:]).mapValues { "\($0)" })
        let ready = NIOLockedValueBox<[Waiter<Entry>]>([])
        entries.withLockedValue { entries in
            entries.append(entry)
            waiters.withLockedValue { waiters in
                waiters.removeAll { match, waiter in
                    guard match(entry) else { return false }
                    ready.withLockedValue { $0.append(waiter) }
                    return true
                }
            }
        }
        for waiter in ready.withLockedValue({ $0 }) { waiter.fulfill(entry) }
    }

    var all: [Entry] { entries.withLockedValue { $0 } }

    /// The first entry (past or future) that `match` accepts.
    func waitFor(
        _ what: String, timeout: Duration = testTimeout, _ match: @escaping @Sendable (Entry) -> Bool
    ) async throws -> Entry {
        let waiter = Waiter<Entry>(what)
        entries.withLockedValue { entries in
            if let found = entries.first(where: match) {
                waiter.fulfill(found)
            } else {
                waiters.withLockedValue { $0.append((match, waiter)) }
            }
        }
        return try await waiter.value(timeout: timeout)
    }
}

// MARK: Clients

/// A `switchboard.v1` client on our WebSocket library: messages go to an inbox, the close
/// to a waiter.
final class Client: Sendable {
    let ws: WebSocket
    let inbox = Inbox<WebSocketMessage>()
    let closed = Waiter<CloseInfo>("the connection to close")
    /// When the close was reported.
    let closedAt = NIOLockedValueBox<ContinuousClock.Instant?>(nil)

    private init(ws: WebSocket) {
        self.ws = ws
    }

    static func connect(
        port: Int, token: String? = nil, query: String = "", protocols: [String] = ["switchboard.v1"]
    ) async throws -> Client {
        var options = ClientOptions()
        options.perMessageDeflate = nil
        options.protocols = protocols
        options.handshakeTimeout = .seconds(10)
        if let token { options.headers.add(name: "Authorization", value: "Bearer \(token)") }
        let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/\(query)", options: options, group: testGroup)
        let client = Client(ws: ws)
        ws.onMessage { [inbox = client.inbox] in inbox.put($0) }
        ws.onClose { [closed = client.closed, closedAt = client.closedAt] info in
            closedAt.withLockedValue { $0 = .now }
            closed.fulfill(info)
        }
        return client
    }

    /// The status and body of a refused handshake (fails if it was accepted).
    static func refusal(port: Int, token: String? = nil, query: String = "") async throws -> (status: Int, body: String) {
        do {
            let client = try await connect(port: port, token: token, query: query)
            client.ws.terminate()
            throw TestFailure("the handshake was accepted")
        } catch ConnectError.unexpectedResponse(let status, _, let body) {
            return (status, body)
        }
    }

    func send(_ text: String) async throws {
        try await ws.send(text: text)
    }

    func send(binary bytes: [UInt8]) async throws {
        try await ws.send(binary: ByteBuffer(bytes: bytes))
    }

    func next(timeout: Duration = testTimeout) async throws -> WebSocketMessage {
        try await inbox.next(timeout: timeout)
    }

    /// The next message, which must be a text frame.
    func nextText(timeout: Duration = testTimeout) async throws -> String {
        let message = try await next(timeout: timeout)
        guard message.kind == .text else { throw TestFailure("expected a text frame, got \(message)") }
        return message.text
    }

    /// The next message as a JSON object.
    func nextJSON(timeout: Duration = testTimeout) async throws -> JSON {
        try JSON(try await nextText(timeout: timeout))
    }

    /// Sends a request and returns the next message (its answer, when nothing else is expected).
    func request(_ text: String) async throws -> JSON {
        try await send(text)
        return try await nextJSON()
    }

    /// Subscribes and checks the `subscribed` answer.
    func subscribe(_ pattern: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let answer = try await request(#"{"op":"sub","topic":"\#(pattern)","id":"s"}"#)
        #expect(answer["op"] == "subscribed", "\(answer)", sourceLocation: sourceLocation)
    }

    /// Publishes with an id and returns the acked sequence number.
    @discardableResult
    func publish(_ topic: String, _ data: String, sourceLocation: SourceLocation = #_sourceLocation) async throws -> Int {
        let answer = try await request(#"{"op":"pub","topic":"\#(topic)","data":\#(data),"id":"p"}"#)
        #expect(answer["op"] == "ack", "\(answer)", sourceLocation: sourceLocation)
        return answer.int("seq") ?? -1
    }

    /// No message arrives before a round trip through the broker (a request answered) completes.
    func expectNothingPending(sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let answer = try await request(#"{"op":"unsub","topic":"nothing.pending","id":"probe"}"#)
        #expect(answer["code"] == "not_found" && answer["id"] == "probe", "\(answer)", sourceLocation: sourceLocation)
    }

    /// Waits for the close; returns its info.
    func waitForClose(timeout: Duration = testTimeout) async throws -> CloseInfo {
        try await closed.value(timeout: timeout)
    }

    func close() async {
        _ = try? await withTimeout("client close") { [ws] in try await ws.close() }
    }
}

/// A parsed JSON object, with string-typed accessors for short expectations.
struct JSON: @unchecked Sendable, CustomStringConvertible {
    let object: [String: Any]
    let text: String

    init(_ text: String) throws {
        guard let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            throw TestFailure("not a JSON object: \(text)")
        }
        self.object = object
        self.text = text
    }

    /// A member as text: strings as they are, numbers in decimal; nil when absent.
    subscript(key: String) -> String? {
        switch object[key] {
        case let string as String: string
        case let number as NSNumber: number.stringValue
        case nil: nil
        case let other?: "\(other)"
        }
    }

    func int(_ key: String) -> Int? { (object[key] as? NSNumber)?.intValue }

    var description: String { text }
}

// MARK: Raw TCP peer

/// A TCP peer that sends exact bytes and reads what comes back: for requests our client
/// would not send, and for a subscriber that stops reading.
final class RawPeer: Sendable {
    struct State {
        var bytes: [UInt8] = []
        var eof = false
        var version = 0
        var waiter: CheckedContinuation<Void, Never>?
    }

    let channel: any Channel
    let state: NIOLockedValueBox<State>

    private init(channel: any Channel, state: NIOLockedValueBox<State>) {
        self.channel = channel
        self.state = state
    }

    static func connect(port: Int, receiveBuffer: Int? = nil) async throws -> RawPeer {
        let state = NIOLockedValueBox(State())
        var bootstrap = ClientBootstrap(group: testGroup)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Collector(state: state))
                }
            }
        if let receiveBuffer {
            bootstrap = bootstrap.channelOption(.socketOption(.so_rcvbuf), value: SocketOptionValue(receiveBuffer))
        }
        let channel = try await bootstrap.connect(host: "127.0.0.1", port: port).get()
        return RawPeer(channel: channel, state: state)
    }

    /// Connects and completes a version-13 handshake, with a bearer token if given.
    static func upgraded(port: Int, token: String?, receiveBuffer: Int? = nil) async throws -> RawPeer {
        let peer = try await connect(port: port, receiveBuffer: receiveBuffer)
        let authorization = token.map { "Authorization: Bearer \($0)\r\n" } ?? ""
        try await peer.send(string: upgradeRequest(extraHeaders: authorization))
        let head = try await peer.readHead()
        guard head.hasPrefix("HTTP/1.1 101") else { throw TestFailure("handshake refused: \(head)") }
        return peer
    }

    static func upgradeRequest(path: String = "/", extraHeaders: String = "") -> String {
        "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\(extraHeaders)\r\n"
    }

    func send(_ bytes: [UInt8]) async throws {
        try await channel.writeAndFlush(ByteBuffer(bytes: bytes)).get()
    }

    func send(string: String) async throws {
        try await send(Array(string.utf8))
    }

    /// Sends a masked text frame.
    func send(text: String) async throws {
        try await send(clientFrame(opcode: 0x1, Array(text.utf8)))
    }

    /// Stops reading from the socket (the kernel buffers fill, then the broker's writes stall).
    func stopReading() async throws {
        try await channel.setOption(.autoRead, value: false).get()
    }

    func resumeReading() async throws {
        try await channel.setOption(.autoRead, value: true).get()
        channel.read()
    }

    /// Waits until `extract` returns a value from the bytes received so far (it may consume them).
    func take<R>(_ what: String, timeout: Duration = testTimeout, _ extract: (inout [UInt8], Bool) throws -> R?)
        async throws -> R
    {
        let deadline = ContinuousClock.now + timeout
        while true {
            let (result, version, eof) = try state.withLockedValue { state in
                (try extract(&state.bytes, state.eof), state.version, state.eof)
            }
            if let result { return result }
            if eof { throw TimedOut(what: "\(what) (connection closed first)") }
            guard ContinuousClock.now < deadline else { throw TimedOut(what: what) }
            await waitForChange(after: version, until: deadline)
        }
    }

    private func waitForChange(after version: Int, until deadline: ContinuousClock.Instant) async {
        let timer = Task {
            try await Task.sleep(until: deadline)
            let waiter = self.state.withLockedValue { state in
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume()
        }
        defer { timer.cancel() }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let changed = state.withLockedValue { state in
                if state.version != version || ContinuousClock.now >= deadline { return true }
                state.waiter = continuation
                return false
            }
            if changed { continuation.resume() }
        }
    }

    /// An HTTP response head (through the blank line), consumed.
    func readHead() async throws -> String {
        try await take("an HTTP response head") { bytes, _ in
            guard let end = bytes.firstRange(of: [13, 10, 13, 10]) else { return nil }
            let head = String(decoding: bytes[..<end.upperBound], as: UTF8.self)
            bytes.removeSubrange(..<end.upperBound)
            return head
        }
    }

    /// The next server frame, consumed.
    func readFrame(timeout: Duration = testTimeout) async throws -> RawFrame {
        try await take("a frame", timeout: timeout) { bytes, _ in
            guard let (frame, length) = RawFrame.parse(bytes) else { return nil }
            bytes.removeFirst(length)
            return frame
        }
    }

    /// Every complete frame received so far (at least one: waits for it), consumed in one
    /// pass: for a peer with a large backlog, where `readFrame` would move the rest of the
    /// bytes once per frame.
    func readFrames(timeout: Duration = testTimeout) async throws -> [RawFrame] {
        try await take("frames", timeout: timeout) { bytes, _ in
            var frames: [RawFrame] = []
            var offset = 0
            while let (frame, length) = RawFrame.parse(bytes, at: offset) {
                frames.append(frame)
                offset += length
            }
            guard !frames.isEmpty else { return nil }
            bytes.removeFirst(offset)
            return frames
        }
    }

    /// Reads frames until a close frame (returned); `each` sees the frames before it.
    func readUntilClose(timeout: Duration = testTimeout, _ each: (RawFrame) -> Void = { _ in }) async throws -> RawFrame {
        while true {
            let frame = try await readFrame(timeout: timeout)
            if frame.opcode == 0x8 { return frame }
            each(frame)
        }
    }

    /// Waits for the connection to be closed by the broker.
    func waitForEOF(timeout: Duration = testTimeout) async throws {
        _ = try await take("the connection to close", timeout: timeout) { bytes, eof in eof ? true : nil }
    }

    func close() {
        channel.close(promise: nil)
    }

    private final class Collector: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let state: NIOLockedValueBox<State>
        init(state: NIOLockedValueBox<State>) { self.state = state }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let buffer = unwrapInboundIn(data)
            update { $0.bytes += buffer.readableBytesView }
        }

        func channelInactive(context: ChannelHandlerContext) {
            update { $0.eof = true }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }

        private func update(_ change: (inout State) -> Void) {
            let waiter = state.withLockedValue { state in
                change(&state)
                state.version += 1
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume()
        }
    }
}

/// One frame as it appears on the wire.
struct RawFrame: CustomStringConvertible {
    var fin: Bool
    var opcode: UInt8
    var payload: [UInt8]

    var closeCode: UInt16? {
        payload.count >= 2 ? UInt16(payload[0]) << 8 | UInt16(payload[1]) : nil
    }
    var text: String { String(decoding: payload, as: UTF8.self) }

    var description: String {
        "frame(opcode: \(opcode), \(payload.count) bytes\(closeCode.map { ", code \($0) \(String(decoding: payload.dropFirst(2), as: UTF8.self))" } ?? ""))"
    }

    /// Parses one (unmasked) server frame starting at `start` of `bytes`; returns it and its
    /// length on the wire, nil if incomplete.
    static func parse(_ bytes: [UInt8], at start: Int = 0) -> (RawFrame, Int)? {
        let available = bytes.count - start
        guard available >= 2 else { return nil }
        var offset = 2
        var length = Int(bytes[start + 1] & 0x7F)
        if length == 126 {
            guard available >= 4 else { return nil }
            length = Int(bytes[start + 2]) << 8 | Int(bytes[start + 3])
            offset = 4
        } else if length == 127 {
            guard available >= 10 else { return nil }
            length = bytes[start + 2..<start + 10].reduce(0) { $0 << 8 | Int($1) }
            offset = 10
        }
        guard available >= offset + length else { return nil }
        let frame = RawFrame(
            fin: bytes[start] & 0x80 != 0, opcode: bytes[start] & 0xF,
            payload: Array(bytes[start + offset..<start + offset + length]))
        return (frame, offset + length)
    }
}

/// Encodes a masked client frame.
func clientFrame(opcode: UInt8, fin: Bool = true, _ payload: [UInt8] = [], mask: [UInt8] = [0x37, 0xFA, 0x21, 0x3D]) -> [UInt8] {
    var bytes: [UInt8] = [(fin ? 0x80 : 0) | opcode & 0xF]
    if payload.count < 126 {
        bytes.append(0x80 | UInt8(payload.count))
    } else if payload.count <= 0xFFFF {
        bytes.append(0x80 | 126)
        bytes += [UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
    } else {
        bytes.append(0x80 | 127)
        bytes += (0..<8).reversed().map { UInt8(truncatingIfNeeded: payload.count >> ($0 * 8)) }
    }
    bytes += mask
    bytes += payload.enumerated().map { $0.element ^ mask[$0.offset % 4] }
    return bytes
}

extension [UInt8] {
    /// Big-endian integer at `offset` of `count` bytes.
    func bigEndian(at offset: Int, count: Int) -> UInt64 {
        self[offset..<offset + count].reduce(0) { $0 << 8 | UInt64($1) }
    }
}
