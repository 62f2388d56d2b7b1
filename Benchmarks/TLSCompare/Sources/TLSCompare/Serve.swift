import ArgumentParser
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import WebSockets

/// An echo WebSocket server on our own NIO bootstrap: [TLS] [HTTP/1.1 server pipeline]
/// [`WebSocketServer.upgradeHandler`] [404], with `--tls` choosing only the first handler.
/// After the upgrade the pipeline is [TLS] [WebSocketHandler] for either stack.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve a wss:// echo endpoint at / with one TLS stack; prints \"listening on PORT\".")

    @Option(help: "The TLS layer: ours or nio-ssl.")
    var tls: Stack

    @Option(help: "PEM certificate (chain) to present.")
    var certificate: String

    @Option(help: "PEM private key of the certificate.")
    var key: String

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "Port; 0 picks a free one.")
    var port = 0

    @Option(help: "Event-loop threads.")
    var threads = 1

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0…65535, got \(port)") }
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1, got \(threads)") }
    }

    func run() async throws {
        let makeTLSHandler = try tls.serverHandlers(certificate: certificate, key: key)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        var options = WebSocketServer.Options()
        options.connection.maxPayload = 1 << 24
        let echo = WebSocketServer(options: options, group: group) { ws in
            ws.onMessage { ws.sendWithoutWaiting($0) }
        }
        let listener = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: options.backlog)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            // The read sizes of the standalone WebSocketServer (256 B first, up to 64 KiB).
            .childChannelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 256, maximum: 65536))
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    try pipeline.addHandler(makeTLSHandler())
                    try pipeline.configureHTTPServerPipeline()
                    try pipeline.addHandler(WebSocketServer.upgradeHandler(routes: ["/": echo]))
                    try pipeline.addHandler(NotFound())
                }
            }
            .bind(host: host, port: port)
            .get()
        // Unbuffered: the script waits for this line while the server runs.
        FileHandle.standardOutput.write(Data("listening on \(listener.localAddress?.port ?? port)\n".utf8))
        try await listener.closeFuture.get()
    }
}

/// Answers every request that is not a WebSocket upgrade of `/` with 404 and closes.
private final class NotFound: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .end = unwrapInboundIn(data) else { return }
        var headers = HTTPHeaders()
        headers.add(name: "Content-Length", value: "0")
        headers.add(name: "Connection", value: "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .notFound, headers: headers))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
