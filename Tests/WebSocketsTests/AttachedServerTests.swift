import AsyncTestSupport
import NIOCore
import NIOHTTP1
import NIOPosix
import TestPeers
import Testing
import WebSocketCore
import WebSockets

/// An application's own NIO HTTP/1.1 server that answers plain requests itself.
private final class PlainHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .end = unwrapInboundIn(data) else { return }
        let body = context.channel.allocator.buffer(string: "plain")
        var headers = HTTPHeaders()
        headers.add(name: "Content-Length", value: String(body.readableBytes))
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// Two WebSocket endpoints on one application HTTP server, by path.
@Suite(.timeLimit(.minutes(1))) struct AttachedServerTests {
    func withAppServer<T>(
        routes: [String: WebSocketServer], _ body: (Int) async throws -> T
    ) async throws -> T {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    try pipeline.configureHTTPServerPipeline()
                    try pipeline.addHandler(WebSocketServer.upgradeHandler(routes: routes))
                    try pipeline.addHandler(PlainHTTPHandler())
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        do {
            let result = try await body(channel.localAddress!.port!)
            try await channel.close()
            return result
        } catch {
            try? await channel.close()
            throw error
        }
    }

    @Test func twoEndpointsAndPlainHTTP() async throws {
        let connectedA = Inbox<String>()
        let connectedB = Inbox<String>()
        let serverA = WebSocketServer { ws in
            connectedA.put(ws.handshake.path)
            ws.onMessage { ws.send(.text("a:" + $0.text), promise: nil) }
        }
        let serverB = WebSocketServer { ws in
            connectedB.put(ws.handshake.path)
            ws.onMessage { ws.send(.text("b:" + $0.text), promise: nil) }
        }
        try await withAppServer(routes: ["/a": serverA, "/b": serverB]) { port in
            let a = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/a")
            let b = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/b?x=1")
            #expect(try await connectedA.next() == "/a")
            #expect(try await connectedB.next() == "/b")
            #expect(serverA.clients.count == 1)
            #expect(serverB.clients.count == 1)

            let inboxA = Inbox<WebSocketMessage>()
            let inboxB = Inbox<WebSocketMessage>()
            a.onMessage { inboxA.put($0) }
            b.onMessage { inboxB.put($0) }
            try await a.send(text: "1")
            try await b.send(text: "2")
            #expect(try await inboxA.next() == .text("a:1"))
            #expect(try await inboxB.next() == .text("b:2"))

            // Plain HTTP beside them, on a keep-alive connection, twice.
            let peer = try await RawPeer.connect(port: port)
            for _ in 0..<2 {
                try await peer.send(string: "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                let head = try await peer.readHead()
                #expect(head.hasPrefix("HTTP/1.1 200"))
                let body = try await peer.take("body") { bytes, _ -> String? in
                    guard bytes.count >= 5 else { return nil }
                    defer { bytes.removeFirst(5) }
                    return String(decoding: bytes.prefix(5), as: UTF8.self)
                }
                #expect(body == "plain")
            }
            // An upgrade request for a path nobody serves goes to the app too.
            try await peer.send(string: RawPeer.upgradeRequest(path: "/elsewhere"))
            #expect(try await peer.readHead().hasPrefix("HTTP/1.1 200"))
            peer.close()

            try await withTimeout("close a") { try await a.close() }
            try await withTimeout("close b") { try await b.close() }
        }
    }

    @Test func shutdownClosesAttachedClientsWith1001() async throws {
        let server = WebSocketServer { ws in ws.onMessage { _ in } }
        try await withAppServer(routes: ["/ws": server]) { port in
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/ws")
            let closed = Waiter<CloseInfo>("client onClose")
            ws.onClose { closed.fulfill($0) }
            ws.onMessage { _ in }
            try await withTimeout("shutdown") { await server.shutdown() }
            #expect(try await closed.value() == CloseInfo(code: .goingAway, reason: "server shutting down", wasClean: true))
            #expect(server.clients.isEmpty)
        }
    }

    @Test func malformedRequestGetsOneAnswer() async throws {
        let server = WebSocketServer { ws in ws.onMessage { _ in } }
        try await withAppServer(routes: ["/ws": server]) { port in
            let peer = try await RawPeer.connect(port: port)
            try await peer.send(string: "this is not http\r\n\r\n")
            let response = try await peer.readResponse()
            #expect(response.status == 400)
            #expect(!response.body.contains("HTTP/1.1"), "a second response: \(response.body)")
        }
    }

    @Test func attachedRejectsBadUpgradeAndKeepsPipelinedFrames() async throws {
        let server = WebSocketServer { ws in ws.onMessage { ws.send($0, promise: nil) } }
        try await withAppServer(routes: ["/ws": server]) { port in
            // A bad upgrade to a served path gets the WebSocket server's answer.
            let bad = try await RawPeer.connect(port: port)
            try await bad.send(string: RawPeer.upgradeRequest(path: "/ws").replacingVersion("7"))
            #expect(try await bad.readResponse().status == 426)

            // Frames that come in the same packet as the upgrade request are not lost.
            let peer = try await RawPeer.connect(port: port)
            try await peer.send(Array(RawPeer.upgradeRequest(path: "/ws").utf8) + clientFrame(opcode: 0x1, Array("early".utf8)))
            #expect(try await peer.readHead().hasPrefix("HTTP/1.1 101"))
            let echo = try await peer.readFrame()
            #expect(echo.opcode == 0x1 && echo.text == "early")
            try await peer.send(clientFrame(opcode: 0x8, closePayload(1000)))
            let close = try await peer.readFrame()
            #expect(close.opcode == 0x8 && close.closeCode == 1000)
            try await peer.expectClosed()
        }
    }

    // MARK: The servers' limits on an application's connections

    /// A server for `/ws` with `configure`d options, which keeps its connections open.
    private func limitedServer(_ configure: (inout WebSocketServer.Options) -> Void) -> WebSocketServer {
        var options = WebSocketServer.Options()
        configure(&options)
        return WebSocketServer(options: options) { ws in ws.onMessage { _ in } }
    }

    @Test func firstRequestHeadTrickledIsClosedAfterTheHandshakeTimeout() async throws {
        let server = limitedServer { $0.handshakeTimeout = .milliseconds(300) }
        try await withAppServer(routes: ["/ws": server]) { port in
            let start = ContinuousClock.now
            let peer = try await RawPeer.connect(port: port)
            // The whole head would take about 5 s at this pace.
            let trickle = Task { try await peer.trickle(RawPeer.upgradeRequest(path: "/ws"), every: .milliseconds(25)) }
            defer { trickle.cancel() }
            // No request was read whole, so there is none to answer.
            try await peer.expectClosed()
            let elapsed = ContinuousClock.now - start
            #expect(elapsed >= .milliseconds(290))
            #expect(elapsed < .seconds(3))
        }
    }

    @Test func routedUpgradeWhoseDecisionIsSlowGets408() async throws {
        let release = Waiter<Void>("release")
        let server = limitedServer {
            $0.handshakeTimeout = .milliseconds(300)
            $0.verifyClient = { _ in
                _ = try? await release.value()
                return .accept()
            }
        }
        defer { release.fulfill(()) }
        try await withAppServer(routes: ["/ws": server]) { port in
            let peer = try await RawPeer.connect(port: port)
            // A plain request first: the application's, untimed by us.
            try await peer.send(string: "GET /plain HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(try await peer.readHead().hasPrefix("HTTP/1.1 200"))
            _ = try await peer.take("the plain body") { bytes, _ -> Void? in
                guard bytes.starts(with: Array("plain".utf8)) else { return nil }
                bytes.removeFirst(5)
                return ()
            }
            let start = ContinuousClock.now
            try await peer.send(string: RawPeer.upgradeRequest(path: "/ws"))
            let response = try await peer.readResponse()
            #expect(response.status == 408, "\(response.head)")
            #expect(ContinuousClock.now - start >= .milliseconds(290))
        }
    }

    @Test func oversizedRoutedUpgradeHeadIs431() async throws {
        let server = limitedServer { $0.maxHandshakeSize = 1024 }
        try await withAppServer(routes: ["/ws": server]) { port in
            let peer = try await RawPeer.connect(port: port)
            let padding = "X-Padding: \(String(repeating: "p", count: 2000))\r\n"
            try await peer.send(string: RawPeer.upgradeRequest(path: "/ws", extraHeaders: padding))
            let response = try await peer.readResponse()
            #expect(response.status == 431)
            #expect(response.body == "request head exceeds 1024 bytes\n")
        }
    }

    @Test func routedUpgradesPastMaxConnectionsGet503AndPlainRequestsStillPass() async throws {
        let server = limitedServer { $0.maxConnections = 1 }
        try await withAppServer(routes: ["/ws": server]) { port in
            let first = try await RawPeer.upgraded(port: port, path: "/ws")
            #expect(server.connectionCount == 1)
            let second = try await RawPeer.connect(port: port)
            try await second.send(string: RawPeer.upgradeRequest(path: "/ws"))
            #expect(try await second.readResponse().status == 503)
            let plain = try await RawPeer.connect(port: port)
            try await plain.send(string: "GET /plain HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            #expect(try await plain.readHead().hasPrefix("HTTP/1.1 200"))
            first.close()
        }
    }

    @Test func routedUpgradesPastThePerAddressLimitGet429() async throws {
        let server = limitedServer { $0.maxConnectionsPerAddress = 1 }
        try await withAppServer(routes: ["/ws": server]) { port in
            let first = try await RawPeer.upgraded(port: port, path: "/ws")
            let second = try await RawPeer.connect(port: port)
            try await second.send(string: RawPeer.upgradeRequest(path: "/ws"))
            let response = try await second.readResponse()
            #expect(response.status == 429)
            #expect(response.body == "too many connections from 127.0.0.1 (limit 1)\n")
            first.close()
        }
    }

    @Test func routedUpgradesPastTheRateGet503WithRetryAfter() async throws {
        let server = limitedServer { $0.handshakeRate = HandshakeRateLimit(perSecond: 1, burst: 1) }
        try await withAppServer(routes: ["/ws": server]) { port in
            let first = try await RawPeer.upgraded(port: port, path: "/ws")
            let second = try await RawPeer.connect(port: port)
            try await second.send(string: RawPeer.upgradeRequest(path: "/ws"))
            let response = try await second.readResponse()
            #expect(response.status == 503)
            #expect(response.head.contains("Retry-After: 1\r\n"), "\(response.head)")
            #expect(response.body == "too many handshakes (limit 1 per second)\n")
            first.close()
        }
    }
}
