// ws README, "External HTTP/S server" (and "noServer" + handleUpgrade): an application's own
// HTTP/1.1 server answers its plain requests and hands WebSocket upgrades for a path to a
// `WebSocketServer` that does not listen itself.
//   const server = createServer(...);
//   const wss = new WebSocketServer({ server });
//   wss.on('connection', ws => ws.send('something'));
//   server.listen(8080);
import NIOCore
import NIOHTTP1
import NIOPosix
import WebSockets

enum ExternalHTTPServer {
    static func run() async throws {
        var options = WebSocketServer.Options()
        options.listens = false  // the application's server does
        let wss = WebSocketServer(options: options) { ws in
            ws.sendWithoutWaiting(.text("something"))
            ws.onMessage { _ in }
        }
        let app = try await startApplicationServer(routes: ["/ws": wss])
        let port = app.localAddress!.port!

        print(try await httpGet(port: port, path: "/"))
        let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/ws")
        for try await message in ws.messages {
            print("websocket received: \(message.text)")
            break
        }
        try await ws.close()

        await wss.shutdown()
        try await app.close()
    }
}

/// An application's NIO HTTP/1.1 server: upgrade requests for the paths of `routes` go to
/// those WebSocket servers; everything else to `HelloHTTPHandler`.
func startApplicationServer(routes: [String: WebSocketServer]) async throws -> any Channel {
    try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                let pipeline = channel.pipeline.syncOperations
                try pipeline.configureHTTPServerPipeline()
                try pipeline.addHandler(WebSocketServer.upgradeHandler(routes: routes))
                try pipeline.addHandler(HelloHTTPHandler())
            }
        }
        .bind(host: "127.0.0.1", port: 0).get()
}

/// The application's own requests: `GET /` says hello, any other path is 404.
final class HelloHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private var request: HTTPRequestHead?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): request = head
        case .body: break
        case .end:
            guard let request else { return }
            let found = request.uri == "/"
            let body = context.channel.allocator.buffer(string: found ? "hello over plain HTTP" : "not found")
            var headers = HTTPHeaders([("Content-Length", String(body.readableBytes))])
            if !request.isKeepAlive { headers.add(name: "Connection", value: "close") }
            let head = HTTPResponseHead(version: request.version, status: found ? .ok : .notFound, headers: headers)
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            if !request.isKeepAlive { context.close(promise: nil) }
            self.request = nil
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// `GET path` on 127.0.0.1:`port` over a plain TCP connection: the status line and the body.
func httpGet(port: Int, path: String) async throws -> String {
    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .connect(host: "127.0.0.1", port: port) { channel in
            channel.eventLoop.makeCompletedFuture {
                try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
            }
        }
    let response = try await channel.executeThenClose { inbound, outbound in
        try await outbound.write(ByteBuffer(string: "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"))
        var response = ByteBuffer()
        for try await var chunk in inbound { response.writeBuffer(&chunk) }
        return String(buffer: response)
    }
    let lines = response.split(separator: "\r\n", omittingEmptySubsequences: false)
    return "GET \(path): \(lines.first ?? "") \(lines.last ?? "")"
}
