import AsyncTestSupport
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

// A raw TCP peer for tests: exact bytes out, whatever comes back collected, for what a real
// WebSocket client will not do (bad frames, bad requests, silence, a stalled reader).

/// The peer's handshake was not answered with 101.
public struct HandshakeRefused: Error, CustomStringConvertible {
    public let head: String
    public var description: String { "handshake refused: \(head)" }
}

/// A TCP peer that sends exact bytes and reads what comes back, for the cases our own
/// client cannot produce (bad frames, bad requests, silence).
public final class RawPeer: Sendable {
    struct State: Sendable {
        var bytes: [UInt8] = []
        var eof = false
        var version = 0
        var waiter: CheckedContinuation<Void, Never>?
    }

    public let channel: any Channel
    let state: NIOLockedValueBox<State>

    init(channel: any Channel, state: NIOLockedValueBox<State>) {
        self.channel = channel
        self.state = state
    }

    /// Connects to 127.0.0.1:`port`; `receiveBuffer` sets SO_RCVBUF (a small one makes a
    /// stalled reader back up the server quickly).
    public static func connect(
        port: Int, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, receiveBuffer: Int? = nil
    ) async throws -> RawPeer {
        let state = NIOLockedValueBox(State())
        var bootstrap = ClientBootstrap(group: group)
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

    /// Connects and completes a version-13 handshake (no extensions) to `path`; throws
    /// `HandshakeRefused` unless the answer is 101.
    public static func upgraded(
        port: Int, path: String = "/", extraHeaders: String = "",
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, receiveBuffer: Int? = nil
    ) async throws -> RawPeer {
        let peer = try await connect(port: port, group: group, receiveBuffer: receiveBuffer)
        try await peer.send(string: upgradeRequest(path: path, extraHeaders: extraHeaders))
        let head = try await peer.readHead()
        guard head.hasPrefix("HTTP/1.1 101") else { throw HandshakeRefused(head: head) }
        return peer
    }

    public static func upgradeRequest(path: String = "/", extraHeaders: String = "") -> String {
        "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\(extraHeaders)\r\n"
    }

    public func send(_ bytes: [UInt8]) async throws {
        try await channel.writeAndFlush(ByteBuffer(bytes: bytes)).get()
    }

    public func send(string: String) async throws {
        try await send(Array(string.utf8))
    }

    /// Sends a masked text frame.
    public func send(text: String) async throws {
        try await send(clientFrame(opcode: 0x1, Array(text.utf8)))
    }

    /// Stops reading from the socket (the kernel buffers fill, then the peer's writes stall).
    public func stopReading() async throws {
        try await channel.setOption(.autoRead, value: false).get()
    }

    public func resumeReading() async throws {
        try await channel.setOption(.autoRead, value: true).get()
        channel.read()
    }

    /// Waits until `extract` returns a value from the bytes received so far (it may consume them).
    public func take<R>(_ what: String, timeout: Duration = testTimeout, _ extract: (inout [UInt8], Bool) throws -> R?)
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

    /// An HTTP head, request or response (through the blank line), consumed.
    public func readHead() async throws -> String {
        try await take("an HTTP head") { bytes, _ in
            guard let end = bytes.firstRange(of: [13, 10, 13, 10]) else { return nil }
            let head = String(decoding: bytes[..<end.upperBound], as: UTF8.self)
            bytes.removeSubrange(..<end.upperBound)
            return head
        }
    }

    /// A whole HTTP response: head and the body up to EOF (the server closes after errors).
    public func readResponse() async throws -> (status: Int, head: String, body: String) {
        let head = try await readHead()
        let body = try await readToEnd()
        let status = Int(head.split(separator: " ").dropFirst().first ?? "") ?? 0
        return (status, head, String(decoding: body, as: UTF8.self))
    }

    /// Everything until the server closes the connection.
    public func readToEnd(timeout: Duration = testTimeout) async throws -> [UInt8] {
        try await take("the connection to close", timeout: timeout) { bytes, eof in
            guard eof else { return nil }
            defer { bytes = [] }
            return bytes
        }
    }

    /// The next server frame (unmasked), consumed.
    public func readFrame(timeout: Duration = testTimeout) async throws -> RawFrame {
        try await take("a frame", timeout: timeout) { bytes, _ in
            guard let (frame, length) = RawFrame.parse(bytes) else { return nil }
            bytes.removeFirst(length)
            return frame
        }
    }

    /// Every complete frame received so far (at least one: waits for it), consumed in one
    /// pass: for a peer with a large backlog, where `readFrame` would move the rest of the
    /// bytes once per frame.
    public func readFrames(timeout: Duration = testTimeout) async throws -> [RawFrame] {
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
    public func readUntilClose(timeout: Duration = testTimeout, _ each: (RawFrame) -> Void = { _ in }) async throws -> RawFrame {
        while true {
            let frame = try await readFrame(timeout: timeout)
            if frame.opcode == 0x8 { return frame }
            each(frame)
        }
    }

    /// Waits for the connection to be closed by the other side.
    public func waitForEOF(timeout: Duration = testTimeout) async throws {
        _ = try await take("the connection to close", timeout: timeout) { _, eof in eof ? true : nil }
    }

    public func close() {
        channel.close(promise: nil)
    }

    final class Collector: ChannelInboundHandler, Sendable {
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
public struct RawFrame: CustomStringConvertible, Sendable {
    public var fin: Bool
    public var rsv: UInt8
    public var opcode: UInt8
    public var payload: [UInt8]

    public var closeCode: UInt16? {
        payload.count >= 2 ? UInt16(payload[0]) << 8 | UInt16(payload[1]) : nil
    }
    public var text: String { String(decoding: payload, as: UTF8.self) }

    public var description: String {
        "frame(fin: \(fin), rsv: \(rsv), opcode: \(opcode), \(payload.count) bytes\(closeCode.map { ", code \($0) \(String(decoding: payload.dropFirst(2), as: UTF8.self))" } ?? ""))"
    }

    /// The length of the header a frame starts with (2 to 14 bytes), from its first two bytes.
    public static func headerLength(of frame: [UInt8]) -> Int {
        let length7 = frame[1] & 0x7F
        return 2 + (length7 == 126 ? 2 : length7 == 127 ? 8 : 0) + (frame[1] & 0x80 != 0 ? 4 : 0)
    }

    /// Parses one frame starting at `start` of `bytes`; returns it and its length on the
    /// wire, nil if incomplete. Masked frames are unmasked.
    public static func parse(_ bytes: [UInt8], at start: Int = 0) -> (RawFrame, Int)? {
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
            // A length past Int.max (RFC 6455 forbids the top bit) never completes; left
            // to wrap, it would make a negative one.
            guard length >= 0 else { return nil }
        }
        var mask: [UInt8]?
        if bytes[start + 1] & 0x80 != 0 {
            guard available >= offset + 4 else { return nil }
            mask = Array(bytes[start + offset..<start + offset + 4])
            offset += 4
        }
        guard available >= offset + length else { return nil }
        var payload = Array(bytes[start + offset..<start + offset + length])
        if let mask { applyMask(mask, to: &payload) }
        let first = bytes[start]
        let frame = RawFrame(fin: first & 0x80 != 0, rsv: (first >> 4) & 0x7, opcode: first & 0xF, payload: payload)
        return (frame, offset + length)
    }
}

/// Encodes a frame as a client sends it (masked unless told otherwise).
public func clientFrame(
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
        var masked = payload
        applyMask(mask, to: &masked)
        bytes += mask
        bytes += masked
    } else {
        bytes += payload
    }
    return bytes
}

public func closePayload(_ code: UInt16, _ reason: [UInt8] = []) -> [UInt8] {
    [UInt8(code >> 8), UInt8(code & 0xFF)] + reason
}

/// XORs `bytes` with the 4-byte `mask` in place (RFC 6455 §5.3), eight bytes at a time:
/// byte by byte, a megabyte takes a debug build most of a second.
func applyMask(_ mask: [UInt8], to bytes: inout [UInt8]) {
    let word = (mask + mask).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
    bytes.withUnsafeMutableBytes { raw in
        var offset = 0
        while offset + 8 <= raw.count {
            raw.storeBytes(of: raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self) ^ word, toByteOffset: offset, as: UInt64.self)
            offset += 8
        }
        while offset < raw.count {
            raw[offset] ^= mask[offset % 4]
            offset += 1
        }
    }
}
