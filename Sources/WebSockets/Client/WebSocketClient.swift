import Logging
import NIOCore
import NIOPosix
import WebSocketCore

/// Options of `WebSocket.connect`, with documented defaults.
public struct ClientOptions: Sendable {
    /// Extra request headers (`Host` here replaces the URL's). Default none.
    public var headers: HTTPFields = HTTPFields()
    /// `Origin` (version 13) or `Sec-WebSocket-Origin` (version 8). Default none.
    public var origin: String? = nil
    /// Subprotocols to offer (tokens), in order of preference. Default none.
    public var protocols: [String] = []
    /// Time from starting to connect until the 101 is validated (positive). Default 10 s.
    public var handshakeTimeout: Duration = .seconds(10)
    /// Protocol version to speak. Default 13.
    public var version: WebSocketVersion = .v13
    /// permessage-deflate to offer; on by default, as `ws`; nil offers none.
    public var perMessageDeflate: PerMessageDeflateOptions? = PerMessageDeflateOptions()
    /// Options of the connection once open (limits, heartbeat, close timeout…).
    public var connection = ConnectionOptions()
    /// Largest response head accepted (at least 1). Default 16 KiB.
    public var maxHandshakeSize: Int = 16 * 1024
    /// How bytes reach the server. Default `TCPTransport()`, which `connect` takes as "by
    /// the URL": TLS (`tls`) for wss://, a unix socket for ws+unix:, through `proxy`.
    public var transport: any ClientTransport = TCPTransport()
    /// TLS for wss://. Default: verify the server against the system CA store and the
    /// URL's host; `.insecure` skips verification.
    public var tls = TLSConfiguration()
    /// HTTP CONNECT proxy. Default `.environment` (`https_proxy`/`http_proxy`/`no_proxy`).
    public var proxy: ProxySetting = .environment
    /// Follow 301/302/303/307/308 answers to the handshake. Default off, as `ws`.
    public var followRedirects = false
    /// Redirects followed before giving up with `ConnectError.tooManyRedirects` (not
    /// negative). Default 10.
    public var maxRedirects = 10
    /// Where the client reports a failed handshake (`.info`), protocol errors of the server
    /// (`.info`) and the connection's open and close (`.debug`), with `peer`, `path` and `code`
    /// or `error` as metadata, never a header, query or password. Default: the label
    /// `websockets` with a handler that drops everything.
    public var logger: Logger = .silent

    /// The defaults listed with each option.
    public init() {}

    /// Throws `InvalidOption` naming the first option out of its range (`connect` calls it
    /// before connecting).
    public func validate() throws(InvalidOption) {
        for (index, name) in protocols.enumerated() where !HeaderGrammar.isToken(name) {
            throw InvalidOption(option: "protocols[\(index)]", allowed: "a token (RFC 7230)", value: "\"\(name)\"")
        }
        try InvalidOption.checkPositive("handshakeTimeout", handshakeTimeout)
        try InvalidOption.check("maxHandshakeSize", maxHandshakeSize, atLeast: 1)
        try InvalidOption.check("maxRedirects", maxRedirects, atLeast: 0)
        do { try connection.validate() } catch { throw error.under("connection") }
        do { try perMessageDeflate?.validate() } catch { throw error.under("perMessageDeflate") }
    }
}

/// Opens the byte stream a client handshake runs over: plain TCP, or (elsewhere) TLS,
/// a unix socket, a proxy tunnel. `initializer` adds the handshake handler; a transport
/// that adds handlers of its own (TLS) adds them before calling it.
///
/// The one place NIO's `Channel` is part of the public API: the escape hatch for a transport
/// the library does not have (another TLS stack, a test double), written with NIO's bootstraps.
public protocol ClientTransport: Sendable {
    /// Opens a connection to `url`'s server (or a tunnel to it) on `group`, within `timeout`,
    /// runs `initializer` on the channel once its own handlers are in place, and returns the
    /// channel. Throws what connecting threw, or `ConnectError` for what the transport cannot do.
    func connect(
        to url: WebSocketURL, group: any EventLoopGroup, timeout: TimeAmount,
        initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>
    ) async throws -> any Channel
}

/// Plain TCP (`ws://`), with `TCP_NODELAY`.
public struct TCPTransport: ClientTransport {
    /// A plain TCP transport.
    public init() {}

    /// Connects with TCP to the URL's host and port; throws `ConnectError.unsupported` for a
    /// `wss://` URL, which needs `TLSTransport`.
    public func connect(
        to url: WebSocketURL, group: any EventLoopGroup, timeout: TimeAmount,
        initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>
    ) async throws -> any Channel {
        guard url.scheme == .ws else {
            throw ConnectError.unsupported("\(url.scheme.rawValue):// needs a TLS transport")
        }
        return try await ClientBootstrap(group: group)
            .connectTimeout(timeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer(initializer)
            .connect(host: url.host, port: url.port)
            .get()
    }
}

/// Why `WebSocket.connect` failed.
public enum ConnectError: Error, Sendable, CustomStringConvertible {
    /// The server answered with a status other than 101 (an auth hook's 401, a 404…).
    case unexpectedResponse(status: Int, headers: HTTPFields, body: String)
    /// The server's 101 broke a rule of RFC 6455 §4.1 (or RFC 7692 for the extension).
    case invalidResponse(String)
    /// No validated 101 within the handshake timeout.
    case timedOut(Duration)
    /// The connection closed before the handshake completed.
    case connectionClosed
    /// The URL or options ask for something this transport cannot do.
    case unsupported(String)
    /// The HTTP proxy did not open the tunnel (status 0: no valid answer).
    case proxyRefused(status: Int, reason: String)
    /// More than `maxRedirects` redirects.
    case tooManyRedirects(Int)
    /// A redirect without a usable `Location`.
    case invalidRedirect(String)

    /// One line naming what failed, for logs and messages.
    public var description: String {
        switch self {
        case .unexpectedResponse(let status, _, let body):
            let line = body.split(separator: "\n").first.map { ": \($0)" } ?? ""
            return "server answered \(status) instead of 101\(line)"
        case .invalidResponse(let rule): return "handshake response rejected: \(rule)"
        case .timedOut(let timeout):
            return "opening handshake timed out after \(TimeAmount(timeout).nanoseconds / 1_000_000) ms"
        case .connectionClosed: return "connection closed during the opening handshake"
        case .unsupported(let what): return what
        case .proxyRefused(let status, let reason): return "proxy refused the tunnel: \(status) \(reason)"
        case .tooManyRedirects(let limit): return "more than \(limit) redirects"
        case .invalidRedirect(let why): return "invalid redirect: \(why)"
        }
    }
}

extension WebSocket {
    /// Connects to a `ws://` URL and completes the opening handshake.
    ///
    ///     let ws = try await WebSocket.connect(to: "ws://127.0.0.1:9001/chat")
    ///     try await ws.send(text: "hello")
    ///     for try await message in ws.messages { print(message.text) }
    ///
    /// `group`: default NIO's `MultiThreadedEventLoopGroup.singleton` (see `EventLoopThreads`).
    public static func connect(
        to url: String, options: ClientOptions = ClientOptions(),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> WebSocket {
        try await connect(to: WebSocketURL(url), options: options, group: group)
    }

    /// Throws `InvalidOption` before connecting when an option is out of its range.
    public static func connect(
        to url: WebSocketURL, options: ClientOptions = ClientOptions(),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> WebSocket {
        try options.validate()
        let logger = options.logger
        let socket: WebSocket
        do {
            socket = try await connectFollowingRedirects(to: url, options: options, group: group)
        } catch {
            logger.info("handshake failed", metadata: [
                "peer": "\(url.socketPath ?? url.hostHeader)", "path": "\(HandshakeInfo(target: url.target).path)",
                "error": "\(error)",
            ])
            throw error
        }
        logger.debug("connection opened", metadata: socket.logMetadata)
        socket.channel.closeFuture.whenComplete { _ in socket.logClose(to: logger) }
        return socket
    }

    static func connectOnce(
        to url: WebSocketURL, options: ClientOptions, group: any EventLoopGroup
    ) async throws -> WebSocket {
        let eventLoop = group.next()
        let opened = eventLoop.makePromise(of: WebSocket.self)
        let deadline = NIODeadline.now() + TimeAmount(options.handshakeTimeout)
        let channel: any Channel
        do {
            channel = try await options.resolvedTransport.connect(
                to: url, group: eventLoop, timeout: TimeAmount(options.handshakeTimeout)
            ) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ClientHandshakeHandler(url: url, options: options, deadline: deadline, opened: opened))
                }
            }
        } catch {
            // The handshake timer may have closed the channel first: report the timeout.
            opened.fail(error)
            _ = try await opened.futureResult.get()
            throw error
        }
        _ = channel
        return try await opened.futureResult.get()
    }
}

/// Sends the client's upgrade request, validates the server's answer and swaps itself for
/// a `WebSocketHandler`, handing it any frames that came in with the 101.
final class ClientHandshakeHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State {
        case sending
        case awaitingHead
        /// A non-101 answer: collecting its body (up to `bodyLength`) before reporting it.
        case readingBody(status: Int, headers: HTTPFields, bodyLength: Int)
        case done
    }

    private let url: WebSocketURL
    private let options: ClientOptions
    private let deadline: NIODeadline
    private let opened: EventLoopPromise<WebSocket>
    private let key = Handshake.makeKey()
    private let offer: ExtensionOffer?
    private var state = State.sending
    private var received: [UInt8] = []
    private var timer: Scheduled<Void>?

    /// A rejection's body is reported up to this many bytes.
    private static let maxReportedBody = 4096

    init(url: WebSocketURL, options: ClientOptions, deadline: NIODeadline, opened: EventLoopPromise<WebSocket>) {
        self.url = url
        self.options = options
        self.deadline = deadline
        self.opened = opened
        self.offer = options.perMessageDeflate.map { PerMessageDeflate.makeOffer(options: $0) }
    }

    func handlerAdded(context: ChannelHandlerContext) {
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [weak self] in
            self?.fail(context: context, ConnectError.timedOut(self?.options.handshakeTimeout ?? .zero))
        }
        if context.channel.isActive { sendRequest(context: context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
    }

    func channelActive(context: ChannelHandlerContext) {
        sendRequest(context: context)
        context.fireChannelActive()
    }

    private func sendRequest(context: ChannelHandlerContext) {
        guard case .sending = state else { return }
        state = .awaitingHead
        var extra = options.headers
        if let user = url.user, !extra.contains("Authorization") {
            let credentials = Array("\(user):\(url.password ?? "")".utf8)
            extra.add(name: "Authorization", value: "Basic \(Crypto.base64Encode(credentials))")
        }
        let headers = Handshake.makeRequestHeaders(
            host: url.hostHeader, key: key, origin: options.origin, protocols: options.protocols,
            extensions: offer.map { [$0] } ?? [], version: options.version, extra: extra)
        var request = context.channel.allocator.buffer(capacity: 512)
        request.writeString("GET \(url.target) HTTP/1.1\r\n")
        for field in headers { request.writeString("\(field.name): \(field.value)\r\n") }
        request.writeString("\r\n")
        context.writeAndFlush(wrapOutboundOut(request), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        received += unwrapInboundIn(data).readableBytesView
        switch state {
        case .awaitingHead:
            readHead(context: context)
        case .readingBody(let status, let headers, let bodyLength):
            if received.count >= bodyLength { reportRejection(context: context, status, headers) }
        case .sending, .done:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if case .readingBody(let status, let headers, _) = state {
            reportRejection(context: context, status, headers)
        }
        fail(context: context, ConnectError.connectionClosed)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(context: context, error)
    }

    private func readHead(context: ChannelHandlerContext) {
        let head: Handshake.ResponseHead
        do {
            guard let parsed = try Handshake.parseResponseHead(received, maxSize: options.maxHandshakeSize) else {
                return
            }
            head = parsed
        } catch {
            return fail(context: context, ConnectError.invalidResponse(error.reason))
        }
        received.removeFirst(head.length)
        guard head.status == 101 else {
            let length = head.headers.first("Content-Length").flatMap { Int($0) } ?? Self.maxReportedBody
            state = .readingBody(status: head.status, headers: head.headers, bodyLength: min(length, Self.maxReportedBody))
            if received.count >= min(length, Self.maxReportedBody) {
                reportRejection(context: context, head.status, head.headers)
            }
            return
        }
        do {
            let (response, deflate) = try ClientHandshake.accept(
                status: head.status, headers: head.headers, key: key, protocols: options.protocols, offer: offer)
            var compression: PerMessageDeflate?
            if let deflate, let deflateOptions = options.perMessageDeflate {
                compression = PerMessageDeflate(role: .client, parameters: deflate, options: deflateOptions)
            }
            try open(context: context, response: response, compression: compression)
        } catch {
            fail(context: context, error)
        }
    }

    private func open(context: ChannelHandlerContext, response: ServerResponseInfo, compression: PerMessageDeflate?)
        throws
    {
        state = .done
        timer?.cancel()
        let leftover = received.isEmpty ? nil : context.channel.allocator.buffer(bytes: received)
        received = []
        let handler = WebSocketHandler(
            role: .client, options: SharedConnectionOptions(options.connection),
            compression: compression,
            leftover: leftover)
        let pipeline = context.pipeline.syncOperations
        try pipeline.addHandler(handler, position: .after(self))
        pipeline.removeHandler(context: context, promise: nil)
        let socket = WebSocket(
            channel: context.channel, role: .client,
            handshake: HandshakeInfo(target: url.target, subprotocol: response.subprotocol, extensions: response.extensions),
            handler: handler)
        opened.succeed(socket)
    }

    private func reportRejection(context: ChannelHandlerContext, _ status: Int, _ headers: HTTPFields) {
        let body = String(decoding: received.prefix(Self.maxReportedBody), as: UTF8.self)
        fail(context: context, ConnectError.unexpectedResponse(status: status, headers: headers, body: body))
    }

    private func fail(context: ChannelHandlerContext, _ error: any Error) {
        if case .done = state { return }
        state = .done
        timer?.cancel()
        opened.fail(error)
        context.close(promise: nil)
    }
}
