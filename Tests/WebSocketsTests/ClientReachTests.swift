import AsyncTestSupport
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing
import WebSocketCore
import WebSockets

/// Echo through `ws`: one text message there and back, then a clean close.
private func roundTrip(_ ws: WebSocket, _ text: String = "through") async throws {
    try await ws.send(text: text)
    var iterator = ws.messages.makeAsyncIterator()
    #expect(try await iterator.next() == .text(text))
    try await ws.close()
}

// MARK: Unix sockets

@Suite struct UnixSocketTests {
    @Test func parsesWsUnixURLs() throws {
        let url = try WebSocketURL("ws+unix:///run/app.sock:/chat?room=1")
        #expect(url.socketPath == "/run/app.sock")
        #expect(url.target == "/chat?room=1")
        #expect(url.scheme == .ws)
        #expect(url.description == "ws+unix:///run/app.sock:/chat?room=1")
        let bare = try WebSocketURL("ws+unix:/tmp/x.sock")
        #expect(bare.socketPath == "/tmp/x.sock")
        #expect(bare.target == "/")
        #expect(try WebSocketURL("wss+unix:///tmp/y.sock:/p").scheme == .wss)
        #expect(throws: WebSocketURL.ParseError.self) { try WebSocketURL("ws+unix://") }
    }

    private func socketPath() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("sb-\(UInt32.random(in: 0...UInt32.max)).sock").path
    }

    @Test func plainOverUnixSocket() async throws {
        let path = socketPath()
        var options = WebSocketServer.Options()
        options.unixSocketPath = path
        let server = WebSocketServer(options: options) { ws in
            #expect(ws.handshake.target == "/echo?x=1")
            ws.onMessage { ws.send($0, promise: nil) }
        }
        try await server.listen()
        try await roundTrip(try await WebSocket.connect(to: "ws+unix://\(path):/echo?x=1"))
        await server.shutdown()
        try? FileManager.default.removeItem(atPath: path)
    }

    @Test(.enabled(if: TestCertificates.available)) func tlsOverUnixSocket() async throws {
        let path = socketPath()
        try await withTLSEchoServer({ $0.unixSocketPath = path }) { _, _ in
            try await roundTrip(try await WebSocket.connect(to: "wss+unix://\(path):/echo", options: trustingTestCA()))
        }
        try? FileManager.default.removeItem(atPath: path)
    }
}

// MARK: CONNECT proxy

/// An HTTP CONNECT proxy for the tests: optional basic auth, or refusing every tunnel.
final class TestProxy: Sendable {
    enum Mode: Sendable { case open, auth(user: String, password: String), refuse }
    let mode: Mode
    private let channel: any Channel
    private let targets = NIOLockedValueBox<[String]>([])
    var port: Int { channel.localAddress!.port! }
    /// The CONNECT targets of the tunnels opened.
    var tunnels: [String] { targets.withLockedValue { $0 } }

    init(mode: Mode) async throws {
        self.mode = mode
        let targets = self.targets
        channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ProxyFrontHandler(mode: mode, targets: targets))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
    }

    func close() async { try? await channel.close() }

    /// Reads the CONNECT head, then relays bytes both ways.
    final class ProxyFrontHandler: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let mode: Mode
        let targets: NIOLockedValueBox<[String]>
        var head: [UInt8] = []
        var backend: (any Channel)?
        var connecting = false
        var early: [ByteBuffer] = []

        init(mode: Mode, targets: NIOLockedValueBox<[String]>) {
            self.mode = mode
            self.targets = targets
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var buffer = unwrapInboundIn(data)
            if let backend {
                backend.writeAndFlush(buffer, promise: nil)
                return
            }
            if connecting {
                early.append(buffer)
                return
            }
            head += buffer.readBytes(length: buffer.readableBytes)!
            guard let end = Self.find(head) else { return }
            let text = String(decoding: head[..<end], as: UTF8.self)
            let leftover = Array(head[(end + 4)...])
            let lines = text.components(separatedBy: "\r\n")
            let parts = lines[0].split(separator: " ")
            func answer(_ status: String) {
                context.writeAndFlush(
                    wrapOutboundOut(ByteBuffer(string: "HTTP/1.1 \(status)\r\nContent-Length: 0\r\n\r\n")),
                    promise: nil)
                context.close(promise: nil)
            }
            guard parts.count == 3, parts[0] == "CONNECT" else { return answer("400 Bad Request") }
            switch mode {
            case .refuse: return answer("403 Forbidden")
            case .auth(let user, let password):
                let expected = "Proxy-Authorization: Basic " + Data("\(user):\(password)".utf8).base64EncodedString()
                guard lines.contains(expected) else { return answer("407 Proxy Authentication Required") }
            case .open: break
            }
            let target = String(parts[1])
            targets.withLockedValue { $0.append(target) }
            let colon = target.lastIndex(of: ":")!
            let host = String(target[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
            let port = Int(target[target.index(after: colon)...])!
            connecting = true
            if !leftover.isEmpty { early.append(ByteBuffer(bytes: leftover)) }
            let front = context.channel
            let loopContext = NIOLoopBound(context, eventLoop: context.eventLoop)
            let selfBound = NIOLoopBound(self, eventLoop: context.eventLoop)
            ClientBootstrap(group: context.eventLoop)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(RelayHandler(to: front))
                    }
                }
                .connect(host: host, port: port)
                .hop(to: context.eventLoop)
                .whenComplete { result in
                    let context = loopContext.value
                    let handler = selfBound.value
                    switch result {
                    case .success(let backend):
                        handler.backend = backend
                        backend.closeFuture.whenComplete { _ in front.close(promise: nil) }
                        context.writeAndFlush(
                            handler.wrapOutboundOut(ByteBuffer(string: "HTTP/1.1 200 Connection established\r\n\r\n")),
                            promise: nil)
                        for buffer in handler.early { backend.writeAndFlush(buffer, promise: nil) }
                        handler.early = []
                    case .failure:
                        context.writeAndFlush(
                            handler.wrapOutboundOut(ByteBuffer(string: "HTTP/1.1 502 Bad Gateway\r\n\r\n")), promise: nil)
                        context.close(promise: nil)
                    }
                }
        }

        func channelInactive(context: ChannelHandlerContext) {
            backend?.close(promise: nil)
            context.fireChannelInactive()
        }

        static func find(_ bytes: [UInt8]) -> Int? {
            guard bytes.count >= 4 else { return nil }
            for index in 0...(bytes.count - 4)
            where bytes[index] == 13 && bytes[index + 1] == 10 && bytes[index + 2] == 13 && bytes[index + 3] == 10 {
                return index
            }
            return nil
        }
    }

    final class RelayHandler: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let peer: any Channel
        init(to peer: any Channel) { self.peer = peer }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            peer.writeAndFlush(unwrapInboundIn(data), promise: nil)
        }
    }
}

@Suite struct ProxyTests {
    @discardableResult
    private func withProxy<T>(_ mode: TestProxy.Mode, _ body: (TestProxy) async throws -> T) async throws -> T {
        let proxy = try await TestProxy(mode: mode)
        do {
            let result = try await body(proxy)
            await proxy.close()
            return result
        } catch {
            await proxy.close()
            throw error
        }
    }

    @Test func plainThroughProxy() async throws {
        try await withEchoServer { url in
            try await withProxy(.open) { proxy in
                var options = ClientOptions()
                options.proxy = .http(ProxyOptions(host: "127.0.0.1", port: proxy.port))
                try await roundTrip(try await WebSocket.connect(to: url + "/p", options: options))
                #expect(proxy.tunnels == [String(url.dropFirst("ws://".count))])
            }
        }
    }

    @Test(.enabled(if: TestCertificates.available)) func tlsThroughProxyWithAuth() async throws {
        try await withTLSEchoServer { _, port in
            try await withProxy(.auth(user: "alice", password: "s3cret:x")) { proxy in
                var options = trustingTestCA()
                options.proxy = .http(try ProxyOptions(url: "http://alice:s3cret%3Ax@127.0.0.1:\(proxy.port)"))
                try await roundTrip(try await WebSocket.connect(to: "wss://localhost:\(port)/p", options: options))
                #expect(proxy.tunnels == ["localhost:\(port)"])
            }
        }
    }

    @Test func proxyAuthRequired() async throws {
        try await withEchoServer { url in
            try await withProxy(.auth(user: "alice", password: "pw")) { proxy in
                var options = ClientOptions()
                options.proxy = .http(ProxyOptions(host: "127.0.0.1", port: proxy.port, user: "alice", password: "wrong"))
                await #expect {
                    _ = try await WebSocket.connect(to: url, options: options)
                } throws: { error in
                    guard case ConnectError.proxyRefused(407, _) = error else { return false }
                    return true
                }
            }
        }
    }

    @Test func proxyRefuses() async throws {
        try await withEchoServer { url in
            try await withProxy(.refuse) { proxy in
                var options = trustingTestCA()
                options.proxy = .http(ProxyOptions(host: "127.0.0.1", port: proxy.port))
                for target in [url, url.replacingOccurrences(of: "ws://", with: "wss://")] {
                    do {
                        _ = try await WebSocket.connect(to: target, options: options)
                        Issue.record("connected through a refusing proxy")
                    } catch {
                        #expect("\(error)" == "proxy refused the tunnel: 403 Forbidden")
                    }
                }
            }
        }
    }

    @Test func environmentConvention() throws {
        let wss = try WebSocketURL("wss://api.example.com/x")
        let ws = try WebSocketURL("ws://api.example.com/x")
        let environment = ["https_proxy": "http://u:p@proxy.local:3128", "HTTP_PROXY": "proxy2.local:8080"]
        #expect(ProxySetting.fromEnvironment(environment, for: wss) == ProxyOptions(host: "proxy.local", port: 3128, user: "u", password: "p"))
        #expect(ProxySetting.fromEnvironment(environment, for: ws) == ProxyOptions(host: "proxy2.local", port: 8080))
        for noProxy in ["example.com", ".example.com", "*.example.com", "other, api.example.com", "*"] {
            var withNoProxy = environment
            withNoProxy["no_proxy"] = noProxy
            #expect(ProxySetting.fromEnvironment(withNoProxy, for: wss) == nil, "no_proxy=\(noProxy)")
        }
        var unrelated = environment
        unrelated["NO_PROXY"] = "example.org,ample.com"
        #expect(ProxySetting.fromEnvironment(unrelated, for: wss) != nil)
        #expect(ProxySetting.fromEnvironment(environment, for: try WebSocketURL("wss://127.0.0.1/")) == nil)
        #expect(ProxySetting.fromEnvironment([:], for: wss) == nil)
    }
}

// MARK: Redirects

@Suite struct RedirectTests {
    /// One server: `/to/<code>/<final path>` redirects with that code, `/loop` to itself,
    /// `/cross` to the same server by another host name, `/relative` to `final`;
    /// everything else is an echo that records the request's `Authorization` header.
    @discardableResult
    private func withRedirectServer<T>(_ body: (Int, NIOLockedValueBox<[String: String?]>) async throws -> T) async throws -> T {
        let seen = NIOLockedValueBox<[String: String?]>([:])
        let port = NIOLockedValueBox(0)
        var options = WebSocketServer.Options()
        options.verifyClient = { request in
            let parts = request.path.split(separator: "/").map(String.init)
            let here = "127.0.0.1:\(port.withLockedValue { $0 })"
            func redirect(_ code: Int, _ location: String) -> UpgradeDecision {
                .reject(status: code, body: "moved", headers: ["Location": location])
            }
            switch parts.first {
            case "to":
                let scheme = parts.count > 3 ? parts[3] : "ws"
                return redirect(Int(parts[1])!, "\(scheme)://\(here)/\(parts[2])")
            case "loop": return redirect(302, "/loop")
            case "cross": return redirect(307, "ws://localhost:\(port.withLockedValue { $0 })/landed")
            case "same": return redirect(308, "/landed")
            case "relative": return redirect(303, "final?from=relative")
            default:
                seen.withLockedValue { $0[request.path] = request.headers.first("Authorization") }
                return .accept()
            }
        }
        let server = WebSocketServer(options: options) { ws in ws.onMessage { ws.send($0, promise: nil) } }
        let bound = try await server.listen().port!
        port.withLockedValue { $0 = bound }
        do {
            let result = try await body(bound, seen)
            await server.shutdown()
            return result
        } catch {
            await server.shutdown()
            throw error
        }
    }

    private var following: ClientOptions {
        var options = ClientOptions()
        options.followRedirects = true
        options.handshakeTimeout = .seconds(30)  // the whole suite runs in parallel on a busy machine
        return options
    }

    @Test(arguments: [301, 302, 303, 307, 308])
    func followsEachCode(code: Int) async throws {
        try await withRedirectServer { port, _ in
            for scheme in ["ws", "http"] {
                let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/to/\(code)/final/\(scheme)", options: following)
                #expect(ws.handshake.target == "/final")
                try await roundTrip(ws)
            }
        }
    }

    @Test func relativeLocation() async throws {
        try await withRedirectServer { port, _ in
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/relative", options: following)
            #expect(ws.handshake.target == "/final?from=relative")
            try await roundTrip(ws)
        }
    }

    @Test func redirectsAreOffByDefault() async throws {
        try await withRedirectServer { port, _ in
            await #expect {
                _ = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/to/301/final")
            } throws: { error in
                guard case ConnectError.unexpectedResponse(301, let headers, _) = error else { return false }
                return headers.first("Location") == "ws://127.0.0.1:\(port)/final"
            }
        }
    }

    @Test func loopStopsAtMaxRedirects() async throws {
        try await withRedirectServer { port, _ in
            var options = following
            options.maxRedirects = 3
            await #expect {
                _ = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/loop", options: options)
            } throws: { error in
                guard case ConnectError.tooManyRedirects(3) = error else { return false }
                return true
            }
        }
    }

    @Test func credentialsStayOnTheirHost() async throws {
        try await withRedirectServer { port, seen in
            let ws = try await WebSocket.connect(to: "ws://user:pw@127.0.0.1:\(port)/same", options: following)
            try await roundTrip(ws)
            var options = following
            options.headers.add(name: "Authorization", value: "Bearer secret")
            let other = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/cross", options: options)
            try await roundTrip(other)
            let landed = seen.withLockedValue { $0 }
            #expect(landed.count == 1)
            // The same-host hop kept the URL's credentials; the cross-host hop (last) dropped the header.
            #expect(landed["/landed"] == .some(nil))
        }
    }

    @Test func sameHostKeepsCredentials() async throws {
        try await withRedirectServer { port, seen in
            let ws = try await WebSocket.connect(to: "ws://user:pw@127.0.0.1:\(port)/same", options: following)
            try await roundTrip(ws)
            #expect(seen.withLockedValue { $0["/landed"] } == .some("Basic dXNlcjpwdw=="))
        }
    }
}
