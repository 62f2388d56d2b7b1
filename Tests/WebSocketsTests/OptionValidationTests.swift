import AsyncTestSupport
import NIOCore
import NIOPosix
import Testing
import WebSocketCore
import WebSockets

/// Options out of range are refused where they are given, naming the option and its range,
/// instead of trapping on an event loop at the first connection that uses them.
@Suite(.timeLimit(.minutes(1))) struct OptionValidationTests {
    func expectInvalid(
        _ option: String, _ allowed: String, sourceLocation: SourceLocation = #_sourceLocation,
        _ body: () async throws -> Void
    ) async {
        do {
            try await body()
            Issue.record("\(option): accepted", sourceLocation: sourceLocation)
        } catch let error as InvalidOption {
            #expect(error.option == option, sourceLocation: sourceLocation)
            #expect(error.allowed == allowed, sourceLocation: sourceLocation)
            #expect(error.description.hasPrefix("\(option) must be \(allowed), got "), sourceLocation: sourceLocation)
        } catch {
            Issue.record("\(option): \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test func listenRefusesBadServerOptions() async throws {
        let cases: [(String, String, (inout WebSocketServer.Options) -> Void)] = [
            ("perMessageDeflate.memLevel", "1...9", { $0.perMessageDeflate = PerMessageDeflateOptions(memLevel: 0) }),
            ("perMessageDeflate.serverMaxWindowBits", "8...15", { $0.perMessageDeflate = PerMessageDeflateOptions(serverMaxWindowBits: 16) }),
            ("port", "0...65535", { $0.port = 70_000 }),
            ("handshakeTimeout", "> 0", { $0.handshakeTimeout = .zero }),
            ("maxConnections", ">= 1", { $0.maxConnections = 0 }),
            ("connection.fragmentSize", ">= 1", { $0.connection.fragmentSize = 0 }),
            ("connection.maxPayload", "0...\(ConnectionOptions.maxPayloadLimit)", { $0.connection.maxPayload = -1 }),
            ("connection.maxBufferedAmount", ">= 0", { $0.connection.maxBufferedAmount = .min }),
            ("connection.heartbeat.interval", "> 0", {
                $0.connection.heartbeat = .init(interval: .zero, timeout: .seconds(1))
            }),
            ("connection.partialFrameTimeout", "> 0", {
                $0.connection.partialFrameTimeout = .seconds(-1)
            }),
            ("handshakeRate.perSecond", ">= 1", { $0.handshakeRate = HandshakeRateLimit(perSecond: 0, burst: 10) }),
            ("handshakeRate.burst", ">= 1", { $0.handshakeRate = HandshakeRateLimit(perSecond: 10, burst: 0) }),
            ("maxConcurrentHandshakes", ">= 1", { $0.maxConcurrentHandshakes = 0 }),
            ("maxConnectionsPerAddress", ">= 1", { $0.maxConnectionsPerAddress = -3 }),
        ]
        for (option, allowed, configure) in cases {
            var options = WebSocketServer.Options()
            configure(&options)
            let server = WebSocketServer(options: options) { _ in }
            await expectInvalid(option, allowed) { try await server.listen() }
            #expect(server.localAddress == nil, "\(option): nothing was bound")
        }
    }

    @Test func upgradeHandlerRefusesBadServerOptions() async throws {
        var options = WebSocketServer.Options()
        options.perMessageDeflate = PerMessageDeflateOptions(level: 10)
        let server = WebSocketServer(options: options) { _ in }
        await expectInvalid("perMessageDeflate.level", "-1...9") {
            _ = try WebSocketServer.upgradeHandler(routes: ["/ws": server])
        }
    }

    @Test func connectRefusesBadClientOptionsBeforeConnecting() async throws {
        let cases: [(String, String, (inout ClientOptions) -> Void)] = [
            ("perMessageDeflate.level", "-1...9", { $0.perMessageDeflate = PerMessageDeflateOptions(level: 12) }),
            ("perMessageDeflate.clientMaxWindowBits", "8...15", { $0.perMessageDeflate = PerMessageDeflateOptions(clientMaxWindowBits: 7) }),
            ("connection.fragmentSize", ">= 1", { $0.connection.fragmentSize = -5 }),
            ("protocols[1]", "a token (RFC 7230)", { $0.protocols = ["chat", "a b"] }),
            ("maxRedirects", ">= 0", { $0.maxRedirects = -1 }),
        ]
        // Nothing listens there: an option error must come before any connection attempt.
        for (option, allowed, configure) in cases {
            var options = ClientOptions()
            configure(&options)
            await expectInvalid(option, allowed) { _ = try await WebSocket.connect(to: "ws://127.0.0.1:1/", options: options) }
        }
    }

    /// What the checks protect: the same options, valid, serve a deflate connection.
    @Test func validDeflateOptionsServe() async throws {
        try await withServer({
            $0.perMessageDeflate = PerMessageDeflateOptions(serverMaxWindowBits: 9, level: 9, memLevel: 9, threshold: 0)
        }) { _, port in
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
            try await ws.send(text: "hello")
            for try await message in ws.messages {
                #expect(message.text == "hello")
                break
            }
            try await withTimeout("close") { try await ws.close() }
        }
    }
}
