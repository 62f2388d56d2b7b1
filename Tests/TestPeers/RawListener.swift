import AsyncTestSupport
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import WebSocketCore

/// A listening socket on 127.0.0.1 whose connections are `RawPeer`s: the server end for
/// tests of our client that need exact bytes, or bytes written in exact pieces.
public final class RawListener: Sendable {
    public let channel: any Channel
    public let port: Int
    private let accepted: Inbox<RawPeer>

    private init(channel: any Channel, port: Int, accepted: Inbox<RawPeer>) {
        self.channel = channel
        self.port = port
        self.accepted = accepted
    }

    /// Listens on an ephemeral port of 127.0.0.1.
    public static func bind(group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws
        -> RawListener
    {
        let accepted = Inbox<RawPeer>()
        let channel = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let state = NIOLockedValueBox(RawPeer.State())
                    try channel.pipeline.syncOperations.addHandler(RawPeer.Collector(state: state))
                    accepted.put(RawPeer(channel: channel, state: state))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return RawListener(channel: channel, port: channel.localAddress!.port!, accepted: accepted)
    }

    /// The next connection, in the order they were accepted.
    public func accept(timeout: Duration = testTimeout) async throws -> RawPeer {
        try await accepted.next(timeout: timeout)
    }

    public func close() {
        channel.close(promise: nil)
    }
}

extension RawPeer {
    /// The server's half of the opening handshake, up to the answer: reads the client's
    /// request and makes the 101, agreeing to permessage-deflate with its default parameters
    /// when `deflate` is set and the client offered it. Returns the request head, whether
    /// permessage-deflate is agreed, and the answer, for the caller to send (with frames
    /// behind it in the same write, if it likes).
    public func readUpgradeRequest(deflate: Bool = false) async throws -> (head: String, deflate: Bool, answer: [UInt8]) {
        let head = try await readHead()
        let agreed = deflate && head.lowercased().contains("sec-websocket-extensions: permessage-deflate")
        let answer = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Accept: \(Handshake.acceptValue(forKey: requestKey(head)))\r\n"
            + (agreed ? "Sec-WebSocket-Extensions: permessage-deflate\r\n" : "") + "\r\n"
        return (head, agreed, Array(answer.utf8))
    }

    /// Writes frames as a peer that does not gather its writes does: each frame's header in
    /// a write of its own, its payload in writes of odd sizes from 1 to 16,383 bytes drawn
    /// from `generator`. Each write is awaited until it reached the socket, and now and then
    /// the task yields before the next, so the other end reads them in ever different runs.
    /// `prefix` (an upgrade answer, say) goes out in the first write, before the first header.
    public func sendInPieces(_ frames: [[UInt8]], after prefix: [UInt8] = [], using generator: inout SplitMix)
        async throws
    {
        var prefix = prefix
        for frame in frames {
            var position = RawFrame.headerLength(of: frame)
            try await send(prefix + frame[..<position])
            prefix = []
            while position < frame.count {
                let limit = 1 << Int.random(in: 0...13, using: &generator)
                let end = min(frame.count, position + Int.random(in: 0..<limit, using: &generator) * 2 + 1)
                try await send(Array(frame[position..<end]))
                position = end
                if Bool.random(using: &generator) { await Task.yield() }
            }
        }
    }
}

/// The `Sec-WebSocket-Key` of a request head.
public func requestKey(_ head: String) -> String {
    let name = "sec-websocket-key:"
    for line in head.split(separator: "\r\n") where line.lowercased().hasPrefix(name) {
        return String(line.dropFirst(name.count).filter { $0 != " " && $0 != "\t" })
    }
    return ""
}
