import AsyncTestSupport
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import TestPeers
import Testing
import WebSocketCore
import WebSockets

// MARK: Servers

/// Starts a server on an ephemeral port for one test and shuts it down afterwards.
func withServer<T>(
    _ configure: (inout WebSocketServer.Options) -> Void = { _ in },
    group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
    onConnection: @escaping @Sendable (WebSocket) -> Void = { ws in ws.onMessage { ws.send($0, promise: nil) } },
    _ body: (WebSocketServer, Int) async throws -> T
) async throws -> T {
    var options = WebSocketServer.Options()
    configure(&options)
    let server = WebSocketServer(options: options, group: group, onConnection: onConnection)
    let address = try await server.listen()
    do {
        let result = try await body(server, address.port!)
        try await withTimeout("server shutdown") { await server.shutdown() }
        return result
    } catch {
        _ = try? await withTimeout("server shutdown") { await server.shutdown() }
        throw error
    }
}

/// Bytes of a given size that do not compress to nothing.
func pseudoRandomBytes(_ count: Int, seed: UInt64 = 0x9E37_79B9_7F4A_7C15) -> ByteBuffer {
    var buffer = ByteBuffer()
    buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { raw in
        var state = seed
        let words = raw.bindMemory(to: UInt64.self)
        for i in 0..<(count + 7) / 8 where i < words.count {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            words[i] = state ^ (state >> 29)
        }
        return count
    }
    return buffer
}

// MARK: Raw TCP peer

/// Checks that need Swift Testing, on the shared raw peer.
extension RawPeer {
    /// Waits for the connection to close, failing if any bytes arrive meanwhile.
    func expectClosed(timeout: Duration = testTimeout) async throws {
        let rest = try await readToEnd(timeout: timeout)
        #expect(rest.isEmpty, "unexpected bytes before close: \(rest)")
    }

    /// Expects a close frame with `code`, then the server dropping TCP.
    func expectCloseFrame(_ code: UInt16, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let frame = try await readFrame()
        #expect(frame.opcode == 0x8, "expected close, got \(frame)", sourceLocation: sourceLocation)
        #expect(frame.fin && frame.rsv == 0, sourceLocation: sourceLocation)
        #expect(frame.closeCode == code, "close frame \(frame)", sourceLocation: sourceLocation)
        #expect(frame.payload.count <= 125, sourceLocation: sourceLocation)
        try await expectClosed()
    }
}

// MARK: Raw TCP server

/// A fake server that answers every connection with `respond(requestHead)` and then keeps
/// the bytes `extra` in the same write, and then keeps the connection open (or closes it
/// when `respond` returns nil).
func withFakeServer<T>(
    respond: @escaping @Sendable (String) -> String?,
    then extra: [UInt8] = [],
    _ body: (Int) async throws -> T
) async throws -> T {
    let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(FakeServerHandler(respond: respond, extra: extra))
            }
        }
        .bind(host: "127.0.0.1", port: 0).get()
    defer { channel.close(promise: nil) }
    return try await body(channel.localAddress!.port!)
}

private final class FakeServerHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let respond: @Sendable (String) -> String?
    let extra: [UInt8]
    var received: [UInt8] = []
    var answered = false

    init(respond: @escaping @Sendable (String) -> String?, extra: [UInt8]) {
        self.respond = respond
        self.extra = extra
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        received += unwrapInboundIn(data).readableBytesView
        guard !answered, let end = received.firstRange(of: [13, 10, 13, 10]) else { return }
        answered = true
        let head = String(decoding: received[..<end.upperBound], as: UTF8.self)
        if let response = respond(head) {
            var buffer = context.channel.allocator.buffer(string: response)
            buffer.writeBytes(extra)
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        } else {
            context.close(promise: nil)
        }
    }
}

extension Substring {
    func trimmingCharacters(in _: WhitespaceSet) -> String {
        String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}

enum WhitespaceSet { case whitespaces }
