import AsyncTestSupport
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing
import WebSocketCore
import WebSockets

// MARK: Servers

/// Starts a server on an ephemeral port for one test and shuts it down afterwards.
func withServer<T>(
    _ configure: (inout WebSocketServer.Options) -> Void = { _ in },
    group: any EventLoopGroup = EventLoopThreads.shared,
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

/// A TCP peer that sends exact bytes and reads what comes back, for the cases our own
/// client cannot produce (bad frames, bad requests, silence).
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

    static func connect(port: Int) async throws -> RawPeer {
        let state = NIOLockedValueBox(State())
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Collector(state: state))
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return RawPeer(channel: channel, state: state)
    }

    /// Connects and completes a version-13 handshake (no extensions) to `path`.
    static func upgraded(port: Int, path: String = "/", extraHeaders: String = "") async throws -> RawPeer {
        let peer = try await connect(port: port)
        try await peer.send(string: upgradeRequest(path: path, extraHeaders: extraHeaders))
        let head = try await peer.readHead()
        #expect(head.hasPrefix("HTTP/1.1 101"), "\(head)")
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

    /// Stops reading from the socket (the kernel buffers fill, then the peer's writes stall).
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

    /// A whole HTTP response: head and the body up to EOF (the server closes after errors).
    func readResponse() async throws -> (status: Int, head: String, body: String) {
        let head = try await readHead()
        let body = try await readToEnd()
        let status = Int(head.split(separator: " ").dropFirst().first ?? "") ?? 0
        return (status, head, String(decoding: body, as: UTF8.self))
    }

    /// Everything until the server closes the connection.
    func readToEnd(timeout: Duration = testTimeout) async throws -> [UInt8] {
        try await take("the connection to close", timeout: timeout) { bytes, eof in
            guard eof else { return nil }
            defer { bytes = [] }
            return bytes
        }
    }

    /// Waits for the connection to close, failing if more than `allowing` bytes arrive meanwhile.
    func expectClosed(timeout: Duration = testTimeout) async throws {
        let rest = try await readToEnd(timeout: timeout)
        #expect(rest.isEmpty, "unexpected bytes before close: \(rest)")
    }

    /// The next server frame (unmasked), consumed.
    func readFrame(timeout: Duration = testTimeout) async throws -> RawFrame {
        try await take("a frame", timeout: timeout) { bytes, _ in
            guard let (frame, length) = RawFrame.parse(bytes) else { return nil }
            bytes.removeFirst(length)
            return frame
        }
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
    var rsv: UInt8
    var opcode: UInt8
    var payload: [UInt8]

    var closeCode: UInt16? {
        payload.count >= 2 ? UInt16(payload[0]) << 8 | UInt16(payload[1]) : nil
    }
    var text: String { String(decoding: payload, as: UTF8.self) }

    var description: String {
        "frame(fin: \(fin), rsv: \(rsv), opcode: \(opcode), \(payload.count) bytes\(closeCode.map { ", code \($0) \(String(decoding: payload.dropFirst(2), as: UTF8.self))" } ?? ""))"
    }

    /// Parses one frame from the start of `bytes`; nil if incomplete. Masked frames are unmasked.
    static func parse(_ bytes: [UInt8]) -> (RawFrame, Int)? {
        guard bytes.count >= 2 else { return nil }
        var offset = 2
        var length = Int(bytes[1] & 0x7F)
        if length == 126 {
            guard bytes.count >= 4 else { return nil }
            length = Int(bytes[2]) << 8 | Int(bytes[3])
            offset = 4
        } else if length == 127 {
            guard bytes.count >= 10 else { return nil }
            length = bytes[2..<10].reduce(0) { $0 << 8 | Int($1) }
            offset = 10
        }
        var mask: [UInt8]?
        if bytes[1] & 0x80 != 0 {
            guard bytes.count >= offset + 4 else { return nil }
            mask = Array(bytes[offset..<offset + 4])
            offset += 4
        }
        guard bytes.count >= offset + length else { return nil }
        var payload = Array(bytes[offset..<offset + length])
        if let mask { for i in payload.indices { payload[i] ^= mask[i % 4] } }
        let frame = RawFrame(fin: bytes[0] & 0x80 != 0, rsv: (bytes[0] >> 4) & 0x7, opcode: bytes[0] & 0xF, payload: payload)
        return (frame, offset + length)
    }
}

/// Encodes a frame as a client sends it (masked unless told otherwise).
func clientFrame(
    opcode: UInt8, fin: Bool = true, rsv: UInt8 = 0, _ payload: [UInt8] = [], masked: Bool = true,
    mask: [UInt8] = [0x37, 0xFA, 0x21, 0x3D]
) -> [UInt8] {
    var bytes: [UInt8] = [(fin ? 0x80 : 0) | (rsv & 0x7) << 4 | opcode & 0xF]
    let maskBit: UInt8 = masked ? 0x80 : 0
    if payload.count < 126 {
        bytes.append(maskBit | UInt8(payload.count))
    } else if payload.count <= 0xFFFF {
        bytes.append(maskBit | 126)
        bytes += [UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
    } else {
        bytes.append(maskBit | 127)
        bytes += (0..<8).reversed().map { UInt8(truncatingIfNeeded: payload.count >> ($0 * 8)) }
    }
    if masked {
        bytes += mask
        bytes += payload.enumerated().map { $0.element ^ mask[$0.offset % 4] }
    } else {
        bytes += payload
    }
    return bytes
}

func closePayload(_ code: UInt16, _ reason: [UInt8] = []) -> [UInt8] {
    [UInt8(code >> 8), UInt8(code & 0xFF)] + reason
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

/// The `Sec-WebSocket-Key` of a request head.
func requestKey(_ head: String) -> String {
    for line in head.split(separator: "\r\n") where line.lowercased().hasPrefix("sec-websocket-key:") {
        return line.dropFirst("sec-websocket-key:".count).trimmingCharacters(in: .whitespaces)
    }
    return ""
}

extension Substring {
    func trimmingCharacters(in _: WhitespaceSet) -> String {
        String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}

enum WhitespaceSet { case whitespaces }
