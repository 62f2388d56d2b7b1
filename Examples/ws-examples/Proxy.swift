// ws README, "Connecting through a proxy" (there with an agent such as https-proxy-agent):
// the client opens an HTTP CONNECT tunnel and speaks WebSocket (or TLS, for wss://)
// through it. `ClientOptions.proxy` defaults to the environment's `https_proxy` /
// `http_proxy` / `no_proxy`; here it names the proxy, a small CONNECT proxy of this file.
import NIOCore
import NIOPosix
import WebSockets

enum ProxyExample {
    static func run() async throws {
        let server = WebSocketServer { (ws: WebSocket) async throws in
            for try await message in ws.messages { try await ws.send(text: "echo: \(message.text)") }
        }
        try await withServer(server) { port in
            let proxy = try await startConnectProxy()
            var options = ClientOptions()
            options.proxy = .http(ProxyOptions(host: "127.0.0.1", port: proxy.localAddress!.port!))
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/", options: options)
            try await ws.send(text: "hello through the tunnel")
            for try await reply in ws.messages {
                print("client received: \(reply.text)")
                break
            }
            try await ws.close()
            try await proxy.close()
        }
    }
}

/// An HTTP proxy on 127.0.0.1 that only tunnels (`CONNECT host:port`).
func startConnectProxy() async throws -> any Channel {
    try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(ConnectTunnel()) }
        }
        .bind(host: "127.0.0.1", port: 0).get()
}

/// Reads a CONNECT request head, connects to its target, answers 200 and then relays the
/// bytes both ways; any other request, or a target that cannot be reached, gets an error
/// status and the connection is closed.
final class ConnectTunnel: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State {
        case readingHead(ByteBuffer)
        case connecting(pending: ByteBuffer)
        case relaying(to: any Channel)
        case failed
    }
    private var state = State.readingHead(ByteBuffer())

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        switch state {
        case .readingHead(var head):
            head.writeBuffer(&bytes)
            guard let end = head.readableBytesView.firstRange(of: Array("\r\n\r\n".utf8)) else {
                state = .readingHead(head)
                return
            }
            let requestHead = String(decoding: head.readableBytesView[..<end.lowerBound], as: UTF8.self)
            head.moveReaderIndex(to: end.upperBound)
            state = .connecting(pending: head)
            connect(context: context, requestLine: requestHead.split(separator: "\r\n").first ?? "")
        case .connecting(var pending):
            pending.writeBuffer(&bytes)
            state = .connecting(pending: pending)
        case .relaying(let target):
            target.writeAndFlush(bytes, promise: nil)
        case .failed:
            break
        }
    }

    private func connect(context: ChannelHandlerContext, requestLine: Substring) {
        let parts = requestLine.split(separator: " ")
        guard parts.count == 3, parts[0] == "CONNECT", let colon = parts[1].lastIndex(of: ":"),
            let port = Int(parts[1][parts[1].index(after: colon)...])
        else { return fail(context: context, "400 Bad Request") }
        var host = parts[1][..<colon]
        if host.hasPrefix("["), host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        print("proxy: CONNECT to \(host) (the WebSocket server's port)")
        let client = context.channel
        ClientBootstrap(group: context.eventLoop)
            .channelInitializer { target in
                target.eventLoop.makeCompletedFuture { try target.pipeline.syncOperations.addHandler(Relay(to: client)) }
            }
            .connect(host: String(host), port: port)
            .assumeIsolated()
            .whenComplete { result in
                guard case .connecting(let pending) = self.state else { return }
                switch result {
                case .failure:
                    self.fail(context: context, "502 Bad Gateway")
                case .success(let target):
                    self.state = .relaying(to: target)
                    target.closeFuture.whenComplete { _ in client.close(promise: nil) }
                    client.closeFuture.whenComplete { _ in target.close(promise: nil) }
                    context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(string: "HTTP/1.1 200 Connection established\r\n\r\n")), promise: nil)
                    if pending.readableBytes > 0 { target.writeAndFlush(pending, promise: nil) }
                }
            }
    }

    private func fail(context: ChannelHandlerContext, _ status: String) {
        state = .failed
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "HTTP/1.1 \(status)\r\nContent-Length: 0\r\n\r\n")))
            .assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if case .relaying(let target) = state { target.close(promise: nil) }
        context.fireChannelInactive()
    }
}

/// Writes what the tunnel's target sends to the client.
final class Relay: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let client: any Channel

    init(to client: any Channel) {
        self.client = client
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        client.writeAndFlush(unwrapInboundIn(data), promise: nil)
    }
}
