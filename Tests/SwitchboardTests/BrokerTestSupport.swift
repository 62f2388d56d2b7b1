import AsyncTestSupport
import BrokerProcess
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import TestPeers
import Testing
import WebSocketCore
import WebSockets

@_spi(Fuzzing) @testable import Switchboard

// Helpers for the broker's integration tests: a real broker on 127.0.0.1 with an
// ephemeral port and a real SQLite store in a temporary directory, real WebSocket clients,
// and a raw TCP peer for what our client will not do (stop reading, send bad frames).
// Every wait is bounded by `testTimeout`.

/// Event loops for brokers and clients in these tests: two threads, so that connections
/// (and publishers) really are spread over several loops.
let testGroup = MultiThreadedEventLoopGroup(numberOfThreads: 2)

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

    /// A broker not started yet, with its own store (and replay log) in `directory`, or in a
    /// new temporary directory; `configure` adjusts the configuration (host and port are set
    /// here). As `switchboard serve` does, it opens the replay log (in the store's file) even
    /// when no topic is retained: it keeps the topics' seqs.
    static func prepare(
        _ configure: (inout BrokerConfiguration) -> Void = { _ in }, group: any EventLoopGroup = testGroup,
        directory: URL? = nil, replayOptions: ReplayLog.Options = ReplayLog.Options(),
        clock: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970 * 1000) }
    ) throws -> (broker: Broker, tokens: TokenStore, directory: URL, logs: LogCapture) {
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
        let replayLog = try ReplayLog(
            path: configuration.database, configuration: configuration.replay, options: replayOptions, logger: logger)
        let broker = try Broker(
            configuration: configuration, tokens: tokens, replayLog: replayLog, group: group, logger: logger,
            clock: clock)
        return (broker, tokens, directory, logs)
    }

    /// Starts a broker (see `prepare`); `directory` reuses the store of an earlier broker (a restart).
    static func start(
        _ configure: (inout BrokerConfiguration) -> Void = { _ in }, group: any EventLoopGroup = testGroup,
        directory: URL? = nil, replayOptions: ReplayLog.Options = ReplayLog.Options(),
        clock: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970 * 1000) }
    ) async throws -> TestBroker {
        let prepared = try prepare(
            configure, group: group, directory: directory, replayOptions: replayOptions, clock: clock)
        let address = try await prepared.broker.start()
        return TestBroker(
            broker: prepared.broker, tokens: prepared.tokens, port: address.port!, directory: prepared.directory,
            logs: prepared.logs)
    }

    /// Starts a broker, runs `body`, shuts the broker down (also when `body` throws).
    static func with<T>(
        _ configure: (inout BrokerConfiguration) -> Void = { _ in }, group: any EventLoopGroup = testGroup,
        directory: URL? = nil, replayOptions: ReplayLog.Options = ReplayLog.Options(), _ body: (TestBroker) async throws -> T
    ) async throws -> T {
        let broker = try await start(configure, group: group, directory: directory, replayOptions: replayOptions)
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

    /// A client of the broker on `port`, or of whatever serves `url` (a proxy in front of it).
    static func connect(
        port: Int, token: String? = nil, query: String = "", protocols: [String] = ["switchboard.v1"],
        url: String? = nil, tls: TLSConfiguration = TLSConfiguration(), headers: HTTPFields = HTTPFields()
    ) async throws -> Client {
        var options = ClientOptions()
        options.perMessageDeflate = nil
        options.protocols = protocols
        options.handshakeTimeout = .seconds(10)
        options.tls = tls
        options.headers = headers
        if let token { options.headers.add(name: "Authorization", value: "Bearer \(token)") }
        let ws = try await WebSocket.connect(
            to: url ?? "ws://127.0.0.1:\(port)/\(query)", options: options, group: testGroup)
        let client = Client(ws: ws)
        ws.onMessage { [inbox = client.inbox] in inbox.put($0) }
        ws.onClose { [closed = client.closed, closedAt = client.closedAt] info in
            closedAt.withLockedValue { $0 = .now }
            closed.fulfill(info)
        }
        return client
    }

    /// Hands every later message to `callback` instead of the inbox, once the connection's
    /// loop has taken it: a loop handles the reads it is woken for before its queued tasks,
    /// so messages read before the new callback is in place would still go to the inbox.
    func onMessage(_ callback: @escaping @Sendable (WebSocketMessage) -> Void) async throws {
        ws.onMessage(callback)
        try await ws.eventLoop.submit {}.get()
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

extension RawPeer {
    /// Connects on the broker tests' loops and completes a version-13 handshake, with a
    /// bearer token if given.
    static func upgraded(port: Int, token: String?, receiveBuffer: Int? = nil) async throws -> RawPeer {
        try await upgraded(
            port: port, extraHeaders: token.map { "Authorization: Bearer \($0)\r\n" } ?? "", group: testGroup,
            receiveBuffer: receiveBuffer)
    }
}

extension [UInt8] {
    /// Big-endian integer at `offset` of `count` bytes.
    func bigEndian(at offset: Int, count: Int) -> UInt64 {
        self[offset..<offset + count].reduce(0) { $0 << 8 | UInt64($1) }
    }
}

extension TestBroker {
    /// Every seq noted so far is committed to the store: the topics may leave memory.
    func waitUntilSeqsAreStored() async throws {
        let log = try #require(broker.replayLog)
        let notes = try log.recordSequence(topic: try Topic("probe.notes"), LastPublish(sequence: 0, time: 0))
        try await eventually("the seqs to be committed") { log.durableSequenceNotes >= notes }
    }
}
