import AsyncTestSupport
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Testing
import WebSocketCore
import WebSockets

/// Starts an echo server with TLS (`cert` signed by the test CA unless told otherwise).
func withTLSEchoServer<T>(
    cert: String = "server",
    _ configure: (inout WebSocketServer.Options) -> Void = { _ in },
    _ body: (WebSocketServer, Int) async throws -> T
) async throws -> T {
    var options = WebSocketServer.Options()
    options.tls = TLSConfiguration(certificateFile: TestCertificates.pem(cert), privateKeyFile: TestCertificates.key(cert))
    configure(&options)
    let server = WebSocketServer(options: options) { ws in
        ws.onMessage { message in ws.send(message, promise: nil) }
    }
    let address = try await server.listen()
    do {
        let result = try await body(server, address.port ?? 0)
        await server.shutdown()
        return result
    } catch {
        await server.shutdown()
        throw error
    }
}

/// Client options trusting the test CA.
func trustingTestCA(deflate: Bool = true) -> ClientOptions {
    var options = ClientOptions()
    options.tls = TLSConfiguration(caFile: TestCertificates.pem("ca"))
    options.handshakeTimeout = .seconds(30)  // the whole suite runs in parallel on a busy machine
    if !deflate { options.perMessageDeflate = nil }
    return options
}

@Suite(.enabled(if: TestCertificates.available, "needs the openssl CLI (scripts/setup.sh)"))
struct TLSTests {
    @Test(arguments: [false, true])
    func ourClientToOurServer(deflate: Bool) async throws {
        try await withTLSEchoServer({ if deflate { $0.perMessageDeflate = PerMessageDeflateOptions() } }) { _, port in
            let ws = try await WebSocket.connect(to: "wss://127.0.0.1:\(port)/echo", options: trustingTestCA(deflate: deflate))
            #expect(ws.handshake.extensions.isEmpty == !deflate)
            try await ws.send(text: "héllo over TLS")
            try await ws.send(binary: ByteBuffer(bytes: [0, 1, 2, 255]))
            var iterator = ws.messages.makeAsyncIterator()
            #expect(try await iterator.next() == .text("héllo over TLS"))
            #expect(try await iterator.next() == .binary([0, 1, 2, 255]))
            try await ws.close()
            #expect(ws.readyState == .closed)
        }
    }

    @Test func hostNameLocalhostVerifies() async throws {
        try await withTLSEchoServer { _, port in
            let ws = try await WebSocket.connect(to: "wss://localhost:\(port)/", options: trustingTestCA())
            try await ws.send(text: "hi")
            var iterator = ws.messages.makeAsyncIterator()
            #expect(try await iterator.next() == .text("hi"))
            try await ws.close()
        }
    }

    @Test(arguments: [false, true])
    func sixteenMebibyteMessage(deflate: Bool) async throws {
        try await withTLSEchoServer({
            $0.connection.maxPayload = 32 * 1024 * 1024
            if deflate { $0.perMessageDeflate = PerMessageDeflateOptions() }
        }) { _, port in
            var options = trustingTestCA(deflate: deflate)
            options.connection.maxPayload = 32 * 1024 * 1024
            options.connection.maxBufferedAmount = 64 * 1024 * 1024
            let ws = try await WebSocket.connect(to: "wss://127.0.0.1:\(port)/", options: options)
            let block = (0..<65536).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
            var payload = ByteBuffer()
            for _ in 0..<256 { payload.writeBytes(block) }
            try await ws.send(binary: payload)
            var iterator = ws.messages.makeAsyncIterator()
            let echo = try await iterator.next()
            #expect(echo?.data == payload)
            try await ws.close()
        }
    }

    /// Large messages on eight connections served by one thread, all in flight at once, each
    /// with its own bytes, some larger than one pooled ciphertext buffer: the buffers the
    /// thread reuses across its connections (some still queued for a full socket) never put
    /// one connection's bytes into another's echo, in either direction.
    @Test func largeMessagesOnManyConnectionsOfOneThreadArriveIntact() async throws {
        let serverGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var options = WebSocketServer.Options()
        options.tls = TLSConfiguration(
            certificateFile: TestCertificates.pem("server"), privateKeyFile: TestCertificates.key("server"))
        let server = WebSocketServer(options: options, group: serverGroup) { ws in
            ws.onMessage { message in ws.send(message, promise: nil) }
        }
        let port = try await server.listen().port ?? 0
        do {
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                for connection in 0..<8 {
                    tasks.addTask {
                        let ws = try await WebSocket.connect(
                            to: "wss://127.0.0.1:\(port)/", options: trustingTestCA(deflate: false))
                        // A 251-byte pattern of its own (a prime length, so it never lines up with records).
                        let payloads = (0..<12).map { index in
                            let pattern = (0..<251).map { UInt8(truncatingIfNeeded: $0 &* (2 * connection + 1) &+ index) }
                            var payload = ByteBuffer()
                            while payload.readableBytes < 65536 + index * 17_000 { payload.writeBytes(pattern) }
                            return payload
                        }
                        for payload in payloads { ws.sendWithoutWaiting(.init(kind: .binary, data: payload)) }
                        var iterator = ws.messages.makeAsyncIterator()
                        for (index, payload) in payloads.enumerated() {
                            let echo = try await iterator.next()
                            #expect(echo?.data == payload, "connection \(connection), message \(index)")
                        }
                        try await ws.close()
                    }
                }
                try await tasks.waitForAll()
            }
        } catch {
            await server.shutdown()
            try await serverGroup.shutdownGracefully()
            throw error
        }
        await server.shutdown()
        try await serverGroup.shutdownGracefully()
    }

    /// The reason OpenSSL gave, as the error's description carries it.
    private func failure(connecting url: String, _ options: ClientOptions) async -> String {
        do {
            let ws = try await WebSocket.connect(to: url, options: options)
            ws.terminate()
            return "connected"
        } catch {
            return String(describing: error)
        }
    }

    @Test func wrongCAIsRejected() async throws {
        try await withTLSEchoServer { _, port in
            var options = ClientOptions()
            options.tls = TLSConfiguration(caFile: TestCertificates.pem("otherca"))
            let message = await failure(connecting: "wss://127.0.0.1:\(port)/", options)
            #expect(message.contains("certificate verify failed: unable to get local issuer certificate"), "\(message)")
        }
    }

    @Test func systemStoreRejectsTestCA() async throws {
        try await withTLSEchoServer { _, port in
            let message = await failure(connecting: "wss://127.0.0.1:\(port)/", ClientOptions())
            #expect(message.contains("certificate verify failed"), "\(message)")
        }
    }

    @Test func wrongHostNameIsRejected() async throws {
        try await withTLSEchoServer(cert: "wronghost") { _, port in
            let byName = await failure(connecting: "wss://localhost:\(port)/", trustingTestCA())
            #expect(byName.contains("certificate verify failed: hostname mismatch"), "\(byName)")
            let byAddress = await failure(connecting: "wss://127.0.0.1:\(port)/", trustingTestCA())
            #expect(byAddress.contains("certificate verify failed: IP address mismatch"), "\(byAddress)")
        }
    }

    @Test func expiredCertificateIsRejected() async throws {
        try await withTLSEchoServer(cert: "expired") { _, port in
            let message = await failure(connecting: "wss://127.0.0.1:\(port)/", trustingTestCA())
            #expect(message.contains("certificate verify failed: certificate has expired"), "\(message)")
        }
    }

    @Test func insecureModeConnectsDespiteEverything() async throws {
        for cert in ["expired", "wronghost", "server2"] {
            try await withTLSEchoServer(cert: cert) { _, port in
                var options = ClientOptions()
                options.tls = .insecure
                let ws = try await WebSocket.connect(to: "wss://localhost:\(port)/", options: options)
                try await ws.send(text: cert)
                var iterator = ws.messages.makeAsyncIterator()
                #expect(try await iterator.next() == .text(cert))
                try await ws.close()
            }
        }
    }

    private func mutualTLS(_ configure: inout WebSocketServer.Options) {
        configure.tls?.caFile = TestCertificates.pem("ca")
        configure.tls?.verification = .full
    }

    @Test func mutualTLSAccepted() async throws {
        try await withTLSEchoServer(mutualTLS) { _, port in
            var options = trustingTestCA()
            options.tls.certificateFile = TestCertificates.pem("client")
            options.tls.privateKeyFile = TestCertificates.key("client")
            let ws = try await WebSocket.connect(to: "wss://127.0.0.1:\(port)/", options: options)
            try await ws.send(text: "mutual")
            var iterator = ws.messages.makeAsyncIterator()
            #expect(try await iterator.next() == .text("mutual"))
            try await ws.close()
        }
    }

    @Test func mutualTLSRejected() async throws {
        try await withTLSEchoServer(mutualTLS) { server, port in
            let none = await failure(connecting: "wss://127.0.0.1:\(port)/", trustingTestCA())
            #expect(none.contains("certificate required"), "\(none)")
            var options = trustingTestCA()
            options.tls.certificateFile = TestCertificates.pem("otherclient")
            options.tls.privateKeyFile = TestCertificates.key("otherclient")
            let wrong = await failure(connecting: "wss://127.0.0.1:\(port)/", options)
            #expect(wrong.contains("unknown ca"), "\(wrong)")
            try await eventually("the server to drop every connection") { server.connectionCount == 0 }
        }
    }

    @Test func badCertificateFileFailsListen() async throws {
        var options = WebSocketServer.Options()
        options.tls = TLSConfiguration(certificateFile: "/nonexistent.pem", privateKeyFile: TestCertificates.key("server"))
        let server = WebSocketServer(options: options) { _ in }
        await #expect(throws: TLSError.self) { try await server.listen() }
        options.tls = TLSConfiguration(certificateFile: TestCertificates.pem("server"), privateKeyFile: TestCertificates.key("client"))
        let mismatched = WebSocketServer(options: options) { _ in }
        do {
            try await mismatched.listen()
            Issue.record("listened with a key that does not match")
        } catch {
            #expect(String(describing: error).contains("mismatch"), "\(error)")
        }
    }

    /// A client that connects and sends nothing, or half a ClientHello, then goes silent:
    /// the server drops it when the handshake timeout passes.
    @Test func stalledHandshakeIsDropped() async throws {
        try await withTLSEchoServer({ $0.handshakeTimeout = .seconds(1) }) { server, port in
            let group = MultiThreadedEventLoopGroup.singleton
            let start = ContinuousClock.now
            var stalled: [any Channel] = []
            for bytes in [[], [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00]] as [[UInt8]] {
                let channel = try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: port).get()
                // On a loaded machine the server may already have dropped it; that is fine.
                if !bytes.isEmpty { try? await channel.writeAndFlush(ByteBuffer(bytes: bytes)) }
                stalled.append(channel)
            }
            // The server closes both (we never do), not before the timeout.
            for channel in stalled { try await channel.closeFuture.get() }
            #expect(ContinuousClock.now - start >= .milliseconds(900))
            try await eventually("the server to drop every connection") { server.connectionCount == 0 }
        }
    }

    /// A client that vanishes mid-handshake (TCP closed after half a ClientHello).
    @Test func vanishingPeerDoesNotLeak() async throws {
        try await withTLSEchoServer { server, port in
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(host: "127.0.0.1", port: port).get()
            try await channel.writeAndFlush(ByteBuffer(bytes: [0x16, 0x03, 0x01, 0x02, 0x00, 0x01]))
            try await channel.close()
            try await eventually("the server to drop the connection") { server.connectionCount == 0 }
        }
    }

    /// A certificate reload: live connections keep going on the old certificate, new ones
    /// get the new one.
    @Test func reloadSwapsCertificateForNewConnections() async throws {
        let directory = TestCertificates.directory.appendingPathComponent("reload-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let cert = directory.appendingPathComponent("cert.pem").path
        let key = directory.appendingPathComponent("key.pem").path
        func install(_ name: String) throws {
            try? FileManager.default.removeItem(atPath: cert)
            try? FileManager.default.removeItem(atPath: key)
            try FileManager.default.copyItem(atPath: TestCertificates.pem(name), toPath: cert)
            try FileManager.default.copyItem(atPath: TestCertificates.key(name), toPath: key)
        }
        try install("server")
        var options = WebSocketServer.Options()
        options.tls = TLSConfiguration(certificateFile: cert, privateKeyFile: key)
        let server = WebSocketServer(options: options) { ws in ws.onMessage { ws.send($0, promise: nil) } }
        let port = try await server.listen().port!
        defer { Task { await server.shutdown() } }
        let url = "wss://127.0.0.1:\(port)/"

        let live = try await WebSocket.connect(to: url, options: trustingTestCA())
        var liveMessages = live.messages.makeAsyncIterator()
        try install("server2")
        try server.reloadTLS()
        var otherCA = ClientOptions()
        otherCA.tls = TLSConfiguration(caFile: TestCertificates.pem("otherca"))
        let fresh = try await WebSocket.connect(to: url, options: otherCA)
        let stale = await failure(connecting: url, trustingTestCA())
        #expect(stale.contains("certificate verify failed"), "\(stale)")
        try await live.send(text: "still here")
        #expect(try await liveMessages.next() == .text("still here"))
        try await fresh.close()
        try await live.close()

        // A broken file keeps the current certificate.
        try "garbage".write(toFile: cert, atomically: true, encoding: .utf8)
        #expect(throws: TLSError.self) { try server.reloadTLS() }
        let again = try await WebSocket.connect(to: url, options: otherCA)
        try await again.close()
        await server.shutdown()
    }

    @Test func plainClientToTLSServerFailsClearly() async throws {
        try await withTLSEchoServer { _, port in
            var options = ClientOptions()
            options.handshakeTimeout = .seconds(3)
            let message = await failure(connecting: "ws://127.0.0.1:\(port)/", options)
            #expect(message != "connected")
        }
    }

    /// wss:// on an application's own NIO bootstrap: our handler from
    /// `TLSContext.makeHandler()` in front of the HTTP pipeline and the attached endpoint.
    @Test func attachedEndpointBehindMakeHandler() async throws {
        let context = try TLSContext(
            configuration: TLSConfiguration(
                certificateFile: TestCertificates.pem("server"), privateKeyFile: TestCertificates.key("server")),
            isServer: true)
        let echo = WebSocketServer { ws in ws.onMessage { ws.send($0, promise: nil) } }
        let listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    try pipeline.addHandler(context.makeHandler())
                    try pipeline.configureHTTPServerPipeline()
                    try pipeline.addHandler(WebSocketServer.upgradeHandler(routes: ["/tls": echo]))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        defer { listener.close(promise: nil) }
        let ws = try await WebSocket.connect(
            to: "wss://localhost:\(listener.localAddress!.port!)/tls", options: trustingTestCA(deflate: false))
        try await ws.send(text: "behind our TLS")
        var iterator = ws.messages.makeAsyncIterator()
        #expect(try await iterator.next() == .text("behind our TLS"))
        try await ws.close()
        #expect(ws.readyState == .closed)
    }
}
