import AsyncTestSupport
import Foundation
import NIOCore
import Synchronization
import Testing
import WebSocketCore
import WebSockets

/// Interop with real implementations, both directions, with and without permessage-deflate:
/// our client against Node `ws` and Python `websockets` servers, and their clients against
/// our server. The peers are `Tests/Peers/*` (CLI and command protocol in its README).
/// A peer's tests are skipped only when its runtime or package is missing (and never when
/// `CI` or `SWITCHBOARD_REQUIRE_PEERS` is set: then they fail instead).
@Suite struct InteropTests {
    // MARK: Our client → their server

    @Test(.enabled(if: Peer.node.shouldRun, "needs node + ws (scripts/setup.sh)"), arguments: [false, true])
    func clientToNodeServer(deflate: Bool) async throws {
        try await clientScript(against: .node, deflate: deflate)
    }

    @Test(.enabled(if: Peer.python.shouldRun, "needs python3 + websockets (scripts/setup.sh)"), arguments: [false, true])
    func clientToPythonServer(deflate: Bool) async throws {
        try await clientScript(against: .python, deflate: deflate)
    }

    @Test(.enabled(if: Peer.node.shouldRun, "needs node + ws (scripts/setup.sh)"))
    func clientClosesNodeServerWithoutSubprotocol() async throws {
        try await clientCloses(against: .node)
    }

    @Test(.enabled(if: Peer.python.shouldRun, "needs python3 + websockets (scripts/setup.sh)"))
    func clientClosesPythonServerWithoutSubprotocol() async throws {
        try await clientCloses(against: .python)
    }

    /// permessage-deflate parameters beyond the defaults, offered by our client.
    enum ClientDeflateVariant: String, CaseIterable, Sendable, CustomStringConvertible {
        /// Both no_context_takeover parameters: every message compressed on its own.
        case noContextTakeover
        /// server_max_window_bits=9 (python accepts 9...15 only) and client_max_window_bits=8
        /// (we compress with a 9-bit window that never reaches back past 250 bytes).
        case smallWindows
        /// Default parameters, compressed messages split into 1000-byte frames (`fragmentSize`).
        case fragmentSize

        var description: String { rawValue }

        var options: PerMessageDeflateOptions {
            var options = PerMessageDeflateOptions()
            switch self {
            case .noContextTakeover:
                options.serverNoContextTakeover = true
                options.clientNoContextTakeover = true
            case .smallWindows:
                options.serverMaxWindowBits = 9
                options.clientMaxWindowBits = 8
            case .fragmentSize:
                break
            }
            return options
        }

        /// Parameters the server's answer must have.
        var expectedParameters: Set<String> {
            switch self {
            case .noContextTakeover: return ["server_no_context_takeover", "client_no_context_takeover"]
            case .smallWindows: return ["server_max_window_bits=9", "client_max_window_bits=8"]
            case .fragmentSize: return []
            }
        }
    }

    @Test(.enabled(if: Peer.node.shouldRun, "needs node + ws (scripts/setup.sh)"), arguments: ClientDeflateVariant.allCases)
    func clientDeflateOptionsToNodeServer(variant: ClientDeflateVariant) async throws {
        try await clientDeflateScript(against: .node, variant: variant)
    }

    @Test(.enabled(if: Peer.python.shouldRun, "needs python3 + websockets (scripts/setup.sh)"), arguments: ClientDeflateVariant.allCases)
    func clientDeflateOptionsToPythonServer(variant: ClientDeflateVariant) async throws {
        try await clientDeflateScript(against: .python, variant: variant)
    }

    @Test(.enabled(if: Peer.node.shouldRun, "needs node + ws (scripts/setup.sh)"))
    func clientExceedsNodeServerMaxPayload() async throws {
        try await clientExceedsMaxPayload(of: .node)
    }

    @Test(.enabled(if: Peer.python.shouldRun, "needs python3 + websockets (scripts/setup.sh)"))
    func clientExceedsPythonServerMaxPayload() async throws {
        try await clientExceedsMaxPayload(of: .python)
    }

    // MARK: Their client → our server

    /// (client offers deflate, server enables deflate)
    static let deflateMatrix: [(Bool, Bool)] = [(false, false), (true, true), (true, false), (false, true)]

    @Test(.enabled(if: Peer.node.shouldRun, "needs node + ws (scripts/setup.sh)"), arguments: deflateMatrix)
    func nodeClientToOurServer(clientDeflate: Bool, serverDeflate: Bool) async throws {
        try await peerClient(.node, clientDeflate: clientDeflate, serverDeflate: serverDeflate)
    }

    @Test(.enabled(if: Peer.python.shouldRun, "needs python3 + websockets (scripts/setup.sh)"), arguments: deflateMatrix)
    func pythonClientToOurServer(clientDeflate: Bool, serverDeflate: Bool) async throws {
        try await peerClient(.python, clientDeflate: clientDeflate, serverDeflate: serverDeflate)
    }

    /// permessage-deflate options of our server beyond the defaults.
    enum ServerDeflateVariant: String, CaseIterable, Sendable, CustomStringConvertible {
        /// Both no_context_takeover parameters required by the server.
        case noContextTakeover
        /// server_max_window_bits=8 and client_max_window_bits=9 (both peers offer
        /// client_max_window_bits without a value, so the server may pick it).
        case smallWindows
        /// Every message compressed (threshold 0), fastest level, smallest memLevel.
        case everyMessageLowMemory
        /// Default options, our echoes (compressed) split into 1000-byte frames (`fragmentSize`).
        case fragmentSize

        var description: String { rawValue }

        var options: PerMessageDeflateOptions {
            var options = PerMessageDeflateOptions()
            switch self {
            case .noContextTakeover:
                options.serverNoContextTakeover = true
                options.clientNoContextTakeover = true
            case .smallWindows:
                options.serverMaxWindowBits = 8
                options.clientMaxWindowBits = 9
            case .everyMessageLowMemory:
                options.threshold = 0
                options.level = 1
                options.memLevel = 1
            case .fragmentSize:
                break
            }
            return options
        }

        /// Our server's `Sec-WebSocket-Extensions` answer, as the peer client reports it.
        var expectedAnswer: String {
            switch self {
            case .noContextTakeover: return "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
            case .smallWindows: return "permessage-deflate; server_max_window_bits=8; client_max_window_bits=9"
            case .everyMessageLowMemory, .fragmentSize: return "permessage-deflate"
            }
        }
    }

    @Test(.enabled(if: Peer.node.shouldRun, "needs node + ws (scripts/setup.sh)"), arguments: ServerDeflateVariant.allCases)
    func nodeClientToOurServerDeflateOptions(variant: ServerDeflateVariant) async throws {
        try await peerClient(.node, clientDeflate: true, serverDeflate: true, variant: variant)
    }

    @Test(.enabled(if: Peer.python.shouldRun, "needs python3 + websockets (scripts/setup.sh)"), arguments: ServerDeflateVariant.allCases)
    func pythonClientToOurServerDeflateOptions(variant: ServerDeflateVariant) async throws {
        try await peerClient(.python, clientDeflate: true, serverDeflate: true, variant: variant)
    }

    // MARK: Scripts

    /// The full exchange of our client with a peer server started with `--protocol chat`.
    private func clientScript(against peer: Peer, deflate: Bool) async throws {
        try peer.requireAvailable("our client → its server, deflate \(deflate ? "on" : "off")")
        let serverArguments = ["--protocol", "chat"] + (deflate ? ["--deflate"] : [])
        try await peer.withServer(serverArguments) { port in
            var options = ClientOptions()
            options.protocols = ["other", "chat"]
            options.connection.closeTimeout = .seconds(15)
            if !deflate { options.perMessageDeflate = nil }
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/interop?x=1", options: options)
            let inbox = EventInbox(ws)
            defer { ws.terminate() }

            // The handshake: subprotocol and permessage-deflate as both sides see them.
            #expect(ws.handshake.subprotocol == "chat")
            let ourDeflate = ws.handshake.extensions.first { $0.name == PerMessageDeflate.extensionName }
            #expect((ourDeflate != nil) == deflate, "handshake.extensions: \(ws.handshake.extensions)")
            if peer == .python, deflate {
                // python answers server_max_window_bits=12 (and client_max_window_bits to our offer).
                #expect(ourDeflate?.parameters.contains(.init("server_max_window_bits", "12")) == true)
            }
            try await ws.send(text: "info")
            let info = try JSONDecoder().decode(ServerInfo.self, from: Data(try await inbox.nextText("info").utf8))
            #expect(info.protocol == "chat")
            if deflate {
                let theirs = try #require(info.extensions, "the server did not negotiate permessage-deflate")
                #expect(Self.extensionNames(theirs) == ["permessage-deflate"])
                // Our parsed view of the header matches what the server says it answered.
                #expect(Self.parameters(theirs) == Set(ourDeflate?.parameters.map(Self.render) ?? []))
            } else {
                #expect(info.extensions == nil)
            }
            try await ws.send(text: "headers")
            let headers = try JSONSerialization.jsonObject(with: Data(try await inbox.nextText("headers").utf8))
                as? [String: String] ?? [:]
            #expect(headers["host"] == "127.0.0.1:\(port)")
            #expect(headers["sec-websocket-protocol"] == "other, chat")
            #expect((headers["sec-websocket-extensions"]?.hasPrefix("permessage-deflate") == true) == deflate)

            // Text, Unicode and empty text, sent back to back, echoed in order.
            let texts = [
                "hello", "κόσμε", "Hello, 世界", "😀🎉🚀", "مرحبا بالعالم", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "a\u{0}b", "",
                "mixed ascii + é + 🙂 + 中",
            ]
            for text in texts { try await ws.send(text: text) }
            for text in texts { #expect(try await inbox.nextText("echo of \(text.debugDescription)") == text) }

            // 1 MiB binary (incompressible-ish pattern) and a long compressible text.
            let big = ByteBuffer(bytes: (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
            try await ws.send(binary: big)
            #expect(try await inbox.nextMessage("1 MiB binary echo") == .binary(big))
            var random: UInt64 = 0x9E37_79B9_7F4A_7C15  // incompressible: deflate's stored blocks
            let noise = ByteBuffer(bytes: (0..<65_537).map { _ in
                random = random &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return UInt8(truncatingIfNeeded: random >> 56)
            })
            try await ws.send(binary: noise)
            #expect(try await inbox.nextMessage("64 KiB random binary echo") == .binary(noise))
            let long = String(repeating: "switchboard κόσμε 😀 ", count: 20_000)
            try await ws.send(text: long)
            #expect(try await inbox.nextText("long text echo") == long)

            // A message we send in fragments comes back whole; then a fragmented binary one.
            try await ws.send(.text, ByteBuffer(string: "frag"), isFinal: false)
            try await ws.send(.text, ByteBuffer(string: ""), isFinal: false)
            try await ws.send(.text, ByteBuffer(string: "mented κό"), isFinal: false)
            try await ws.send(.text, ByteBuffer(string: "σμε 😀"), isFinal: true)
            #expect(try await inbox.nextText("fragmented text echo") == "fragmented κόσμε 😀")
            // A code point split across frames, a ping between two frames, an empty last frame.
            let kappa = Array("κόσμε".utf8)
            try await ws.send(.text, ByteBuffer(bytes: kappa[0..<1]), isFinal: false)
            try await ws.ping(ByteBuffer(string: "mid-message"))
            try await ws.send(.text, ByteBuffer(bytes: kappa[1...]), isFinal: false)
            try await ws.send(.text, ByteBuffer(), isFinal: true)
            #expect(try await inbox.next("pong during a fragmented send") == .pong(ByteBuffer(string: "mid-message")))
            #expect(try await inbox.nextText("split code point echo") == "κόσμε")
            try await ws.send(.binary, ByteBuffer(bytes: [1, 2, 3]), isFinal: false)
            try await ws.send(.binary, ByteBuffer(bytes: [4, 5]), isFinal: true)
            #expect(try await inbox.nextMessage("fragmented binary echo") == .binary([1, 2, 3, 4, 5]))

            // Messages queued without waiting, from several tasks' worth of sends: echoed in order.
            let burst = (0..<200).map { "burst \($0) " + String(repeating: "é", count: $0) }
            for text in burst { ws.send(.text(text), promise: nil) }
            for text in burst { #expect(try await inbox.nextText("burst echo") == text) }

            // Our ping with a payload: the pong carries it.
            try await ws.ping(ByteBuffer(string: "probe-42"))
            #expect(try await inbox.next("pong to probe-42") == .pong(ByteBuffer(string: "probe-42")))

            // The server pings us: we see the ping, answer it (auto-pong), and it reports the pong.
            try await ws.send(text: "ping:abc")
            #expect(try await inbox.next("server ping") == .ping(ByteBuffer(string: "abc")))
            #expect(try await inbox.nextText("pong report") == "pong:abc")

            // The server sends one message in 5 frames (some empty): we get it whole.
            let fragmented = "fragmented κόσμε 😀 text"
            try await ws.send(text: "fragments:5:\(fragmented)")
            #expect(try await inbox.nextText("server-fragmented message") == fragmented)
            try await ws.send(text: "fragments:3:ab")
            #expect(try await inbox.nextText("server-fragmented short message") == "ab")

            // The server closes with a code and a reason containing ':'.
            try await ws.send(text: "close:4001:bye: now")
            let closed = try await inbox.next("server close")
            #expect(closed == .close(CloseInfo(code: CloseCode(rawValue: 4001), reason: "bye: now", wasClean: true)))
            #expect(ws.readyState == .closed)
            #expect(inbox.isEmpty)
        }
    }

    /// No subprotocol offered to a server that has one: none is agreed; we close with 1000.
    private func clientCloses(against peer: Peer) async throws {
        try peer.requireAvailable("our client closes, no subprotocol")
        try await peer.withServer(["--protocol", "chat", "--deflate"]) { port in
            var options = ClientOptions()
            options.connection.closeTimeout = .seconds(15)  // bounds `close()` below
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/", options: options)
            let inbox = EventInbox(ws)
            defer { ws.terminate() }
            #expect(ws.handshake.subprotocol == nil)
            try await ws.send(text: "info")
            let info = try JSONDecoder().decode(ServerInfo.self, from: Data(try await inbox.nextText("info").utf8))
            #expect(info.protocol == nil)
            #expect(info.extensions != nil)  // deflate is on by default in ClientOptions
            try await ws.close(code: .normalClosure, reason: "done")
            let closed = try await inbox.next("close")
            guard case .close(let closeInfo) = closed else {
                Issue.record("expected the close, got \(closed)")
                return
            }
            #expect(closeInfo.code == .normalClosure)
            #expect(closeInfo.wasClean)
            #expect(ws.readyState == .closed)
        }
    }

    /// Several compressed messages each way (context takeover or not), with the parameters of `variant`.
    private func clientDeflateScript(against peer: Peer, variant: ClientDeflateVariant) async throws {
        try peer.requireAvailable("our client → its server, deflate \(variant)")
        try await peer.withServer(["--deflate"]) { port in
            var options = ClientOptions()
            options.perMessageDeflate = variant.options
            options.connection.closeTimeout = .seconds(15)
            if variant == .fragmentSize { options.connection.fragmentSize = 1000 }
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/deflate", options: options)
            let inbox = EventInbox(ws)
            defer { ws.terminate() }

            let ours = try #require(ws.handshake.extensions.first { $0.name == PerMessageDeflate.extensionName })
            let oursRendered = Set(ours.parameters.map(Self.render))
            #expect(variant.expectedParameters.isSubset(of: oursRendered), "answer: \(oursRendered)")
            try await ws.send(text: "info")
            let info = try JSONDecoder().decode(ServerInfo.self, from: Data(try await inbox.nextText("info").utf8))
            #expect(info.extensions.map(Self.parameters) == oursRendered)

            // Similar messages back to back, so that each can refer to the previous ones.
            let texts = (0..<4).map { String(repeating: "message \($0): switchboard κόσμε 😀 ", count: 3_000 + $0) }
            for text in texts { try await ws.send(text: text) }
            for (index, text) in texts.enumerated() {
                #expect(try await inbox.nextText("compressed text #\(index)") == text)
            }
            let binary = ByteBuffer(bytes: (0..<300_000).map { UInt8(truncatingIfNeeded: ($0 / 7) &* 13) })
            try await ws.send(binary: binary)
            #expect(try await inbox.nextMessage("compressed binary") == .binary(binary))
            for _ in 0..<3 {
                try await ws.send(text: "short")
                #expect(try await inbox.nextText("short text") == "short")
            }
            try await ws.send(.text, ByteBuffer(string: String(repeating: "ab", count: 2_000)), isFinal: false)
            try await ws.send(.text, ByteBuffer(string: String(repeating: "cd", count: 2_000)), isFinal: true)
            let streamed = String(repeating: "ab", count: 2_000) + String(repeating: "cd", count: 2_000)
            #expect(try await inbox.nextText("streamed compressed text") == streamed)
            let fragmented = String(repeating: "fragments κόσμε ", count: 500)
            try await ws.send(text: "fragments:7:\(fragmented)")
            #expect(try await inbox.nextText("server-fragmented compressed message") == fragmented)

            try await ws.close(code: .normalClosure, reason: "done")
            let closed = try await inbox.next("close")
            // Both peers echo the code and the reason.
            #expect(closed == .close(CloseInfo(code: .normalClosure, reason: "done", wasClean: true)))
        }
    }

    /// A message over the peer server's `--max-payload` gets close 1009 from it.
    private func clientExceedsMaxPayload(of peer: Peer) async throws {
        try peer.requireAvailable("our client → its server, message over --max-payload")
        try await peer.withServer(["--max-payload", "1000", "--deflate"]) { port in
            var options = ClientOptions()
            options.connection.closeTimeout = .seconds(15)
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/", options: options)
            let inbox = EventInbox(ws)
            defer { ws.terminate() }
            try await ws.send(text: String(repeating: "x", count: 1000))
            #expect(try await inbox.nextText("message at the limit").count == 1000)
            try? await ws.send(binary: ByteBuffer(repeating: 7, count: 1001))
            let closed = try await inbox.next("close for the message over the limit")
            guard case .close(let info) = closed else {
                Issue.record("expected a close, got \(closed)")
                return
            }
            #expect(info.code == .messageTooBig)
            #expect(info.wasClean)
        }
    }

    /// A peer's scripted client (with `--check-commands` off: our server is a plain echo).
    private func peerClient(
        _ peer: Peer, clientDeflate: Bool, serverDeflate: Bool, variant: ServerDeflateVariant? = nil
    ) async throws {
        try peer.requireAvailable(
            "its client → our server, client deflate \(clientDeflate ? "on" : "off"), server deflate "
                + (serverDeflate ? variant.map { "on (\($0))" } ?? "on" : "off"))
        var options = WebSocketServer.Options()
        if serverDeflate { options.perMessageDeflate = variant?.options ?? PerMessageDeflateOptions() }
        options.protocols = ["chat"]
        if variant == .fragmentSize { options.connection.fragmentSize = 1000 }
        let server = WebSocketServer(options: options) { ws in
            ws.onMessage { message in ws.send(message, promise: nil) }
        }
        let address = try await server.listen()
        let url = "ws://127.0.0.1:\(address.port!)/interop"
        do {
            let arguments = ["--protocol", "chat"] + (clientDeflate ? ["--deflate"] : [])
            let result = try await peer.runClient(url: url, arguments)
            #expect(result.ok, "\(peer) client failed: \(result.error ?? "?") after \(result.steps) steps")
            #expect(result.peer == peer.rawValue)
            #expect(result.steps == 14)
            #expect(result.protocol == "chat")
            let answer = variant?.expectedAnswer ?? "permessage-deflate"
            #expect(result.extensions == (clientDeflate && serverDeflate ? answer : nil))
            #expect(result.closeCode == 1000)
            await server.shutdown()
        } catch {
            await server.shutdown()
            throw error
        }
    }

    // MARK: Helpers

    struct ServerInfo: Decodable {
        var `protocol`: String?
        var extensions: String?
    }

    /// Extension names of a `Sec-WebSocket-Extensions` value.
    static func extensionNames(_ header: String) -> [String] {
        header.split(separator: ",").map {
            $0.split(separator: ";")[0].trimmingCharacters(in: .whitespaces).lowercased()
        }
    }

    /// Parameters (`name` or `name=value`) of the first element of a `Sec-WebSocket-Extensions` value.
    static func parameters(_ header: String) -> Set<String> {
        let element = header.split(separator: ",")[0]
        return Set(element.split(separator: ";").dropFirst().map { $0.trimmingCharacters(in: .whitespaces) })
    }

    static func render(_ parameter: ExtensionOffer.Parameter) -> String {
        parameter.value.map { "\(parameter.name)=\($0)" } ?? parameter.name
    }
}

/// What our client observed, in the order its event loop saw it.
enum InteropEvent: Sendable, Equatable, CustomStringConvertible {
    case message(WebSocketMessage)
    case ping(ByteBuffer)
    case pong(ByteBuffer)
    case close(CloseInfo)

    var description: String {
        switch self {
        case .message(let message):
            let text = message.kind == .text ? message.text.prefix(80).debugDescription : "\(message.data.readableBytes) bytes"
            return "\(message.kind) message \(text)"
        case .ping(let payload): return "ping \(String(buffer: payload).debugDescription)"
        case .pong(let payload): return "pong \(String(buffer: payload).debugDescription)"
        case .close(let info): return info.description
        }
    }
}

/// Collects a connection's messages, pings, pongs and close; `next` waits a bounded time.
final class EventInbox: Sendable {
    private let events = Mutex<[InteropEvent]>([])

    init(_ ws: WebSocket) {
        ws.onMessage { [self] in push(.message($0)) }
        ws.onPing { [self] in push(.ping($0)) }
        ws.onPong { [self] in push(.pong($0)) }
        ws.onClose { [self] in push(.close($0)) }
    }

    private func push(_ event: InteropEvent) {
        events.withLock { $0.append(event) }
    }

    var isEmpty: Bool { events.withLock { $0.isEmpty } }

    func next(_ what: String, timeout: Duration = .seconds(30)) async throws -> InteropEvent {
        let deadline = ContinuousClock.now + timeout
        while true {
            let event = events.withLock { $0.isEmpty ? nil : $0.removeFirst() }
            if let event { return event }
            if ContinuousClock.now >= deadline { throw PeerError("\(what): nothing received within \(timeout)") }
            try await Task.sleep(for: .milliseconds(2))
        }
    }

    func nextMessage(_ what: String) async throws -> WebSocketMessage {
        let event = try await next(what)
        guard case .message(let message) = event else { throw PeerError("\(what): expected a message, got \(event)") }
        return message
    }

    func nextText(_ what: String) async throws -> String {
        let message = try await nextMessage(what)
        guard message.kind == .text else { throw PeerError("\(what): expected text, got \(message.kind)") }
        return message.text
    }
}
