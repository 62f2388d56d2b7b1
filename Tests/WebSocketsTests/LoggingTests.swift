import AsyncTestSupport
import Logging
import NIOCore
import TestPeers
import Testing
import WebSocketCore
import WebSockets

/// What servers and clients tell their `Logger`: refused handshakes, protocol errors and
/// closes, at their levels, with peer, path and code, and never a secret.
@Suite(.timeLimit(.minutes(1))) struct LoggingTests {
    static let secrets = ["s3cret-header", "q-secret", "pa55word"]

    static func expectNoSecrets(_ logs: LogCapture, sourceLocation: SourceLocation = #_sourceLocation) {
        for entry in logs.all {
            let text = "\(entry.message) \(entry.metadata)"
            for secret in secrets {
                #expect(!text.contains(secret), "logged a secret: \(text)", sourceLocation: sourceLocation)
            }
        }
    }

    @Test func serverLogsRefusalsProtocolErrorsAndCloses() async throws {
        let logs = LogCapture()
        try await withServer({
            $0.logger = Logger(label: "test") { _ in logs }
            $0.verifyClient = { request in
                request.path == "/private" ? .reject(status: 401, body: "token required") : .accept()
            }
        }, onConnection: { ws in ws.onMessage { _ in } }) { _, port in
            // Refused by the hook, with a token in a header and in the query.
            var options = ClientOptions()
            options.headers.add(name: "Authorization", value: "Bearer s3cret-header")
            await #expect(throws: ConnectError.self) {
                _ = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/private?token=q-secret", options: options)
            }
            let refused = try await logs.waitFor("refusal") { $0.message == "handshake refused" }
            #expect(refused.level == .info)
            #expect(refused.metadata["status"] == "401")
            #expect(refused.metadata["path"] == "/private")
            #expect(refused.metadata["peer"]?.hasPrefix("127.0.0.1:") == true)

            // A clean close.
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/chat?token=q-secret")
            try await withTimeout("close") { try await ws.close() }
            let closed = try await logs.waitFor("close") { $0.message == "connection closed" }
            #expect(closed.level == .debug)
            #expect(closed.metadata["code"] == "1000")
            #expect(closed.metadata["path"] == "/chat")
            #expect(closed.metadata["clean"] == "true")
            #expect(logs.all.contains { $0.message == "connection opened" && $0.level == .debug })

            // The peer breaks the protocol: an unmasked frame.
            let peer = try await RawPeer.upgraded(port: port, path: "/raw")
            try await peer.send(clientFrame(opcode: 0x1, Array("x".utf8), masked: false))
            try await peer.expectCloseFrame(1002)
            let error = try await logs.waitFor("protocol error") { $0.message == "protocol error" }
            #expect(error.level == .info)
            #expect(error.metadata["code"] == "1002")
            #expect(error.metadata["path"] == "/raw")
        }
        Self.expectNoSecrets(logs)
    }

    @Test func refusalAtTheConnectionLimitIsANotice() async throws {
        let logs = LogCapture()
        try await withServer({
            $0.logger = Logger(label: "test") { _ in logs }
            $0.maxConnections = 1
        }) { _, port in
            let first = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
            await #expect(throws: ConnectError.self) { _ = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/") }
            // The server's own condition, not the client's doing: one level up.
            let full = try await logs.waitFor("503") { $0.metadata["status"] == "503" }
            #expect(full.level == .notice)
            first.terminate()
        }
    }

    @Test func clientLogsFailedHandshakesAndCloses() async throws {
        let logs = LogCapture()
        var options = ClientOptions()
        options.logger = Logger(label: "test") { _ in logs }
        try await withServer({
            $0.verifyClient = { request in request.path == "/no" ? .reject(status: 403, body: "no") : .accept() }
        }) { _, port in
            await #expect(throws: ConnectError.self) {
                _ = try await WebSocket.connect(to: "ws://user:pa55word@127.0.0.1:\(port)/no?token=q-secret", options: options)
            }
            let failed = try await logs.waitFor("handshake failure") { $0.message == "handshake failed" }
            #expect(failed.level == .info)
            #expect(failed.metadata["peer"] == "127.0.0.1:\(port)")
            #expect(failed.metadata["path"] == "/no")

            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/yes", options: options)
            try await withTimeout("close") { try await ws.close(code: .normalClosure, reason: "done") }
            let closed = try await logs.waitFor("close") { $0.message == "connection closed" }
            #expect(closed.level == .debug)
            #expect(closed.metadata["code"] == "1000")
            #expect(closed.metadata["path"] == "/yes")
        }
        Self.expectNoSecrets(logs)
    }
}
