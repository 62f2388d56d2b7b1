import Logging
import NIOCore
import NIOHTTP1
import WebSocketCore

/// Runs the server's side of the opening handshake on an HTTP/1.1 pipeline (NIOHTTP1's
/// request decoder and response encoder) and then swaps the HTTP handlers for a
/// `WebSocketHandler`.
///
/// Invariants:
/// - Every request it takes gets exactly one answer: 101 and an open WebSocket, or an
///   HTTP error status with a one-line body, after which the connection closes.
/// - While it is in the pipeline of a connection that `Admission` let in, that connection
///   holds one of the server's handshakes; it gives it back when it is removed (upgraded or
///   closed).
/// - In `attached` mode, requests for paths it does not serve, and requests that are not
///   upgrades, pass through untouched to the application's HTTP handlers.
/// - Bytes the client sent after its upgrade request stay in NIO's request decoder, which
///   hands them to the `WebSocketHandler` when it is removed (`.forwardBytes`). In `attached`
///   mode the application's decoder (which `configureHTTPServerPipeline` makes with
///   `.dropBytes` when it has no upgrader of its own) is swapped for one that forwards them
///   when this handler is added, so it must be added before the channel reads: in the
///   child channel initializer, as the HTTP handlers are.
final class ServerUpgradeHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    enum Mode {
        /// The pipeline belongs to a `WebSocketServer`: every request is ours. The verdict
        /// is the one the connection got when it was accepted.
        case standalone(WebSocketServer, Admission.Verdict)
        /// The pipeline belongs to an application's HTTP server; these paths are ours.
        case attached([String: WebSocketServer])
    }

    private enum State {
        case idle
        case awaitingEnd(HTTPRequestHead, WebSocketServer)
        case passingThrough
        case deciding
        /// A request that is not an upgrade, for the server's `plainHTTP`: its body so far.
        case readingPlain(HTTPRequestHead, WebSocketServer, ByteBuffer)
        /// `plainHTTP` is answering it.
        case answeringPlain
        case done
    }

    /// An answer decided before the request was read (or before it was validated), given
    /// when the request has been read.
    private struct Refusal {
        var status: HTTPResponseStatus
        var reason: String
        var headers: HTTPHeaders = [:]
    }

    private let mode: Mode
    private var state = State.idle
    private var handshakeTimer: Scheduled<Void>?
    private var refusal: Refusal?
    /// The admission whose handshake count this connection is in, until this handler goes.
    private var handshake: Admission?
    /// The server's `verifyClient` (or `plainHTTP`) running for this request, cancelled if the
    /// handshake ends first.
    private var verification: Task<Void, Never>?
    /// The server's logger, once it is known which server takes the request.
    private var logger = Logger.silent
    /// The path of the request being decided, for log lines.
    private var requestPath: String?

    init(mode: Mode) {
        self.mode = mode
    }

    func handlerAdded(context: ChannelHandlerContext) {
        switch mode {
        case .standalone(let server, let verdict):
            logger = server.options.logger
            admitted(verdict, by: server)
            armHandshakeTimer(context: context, server.options.handshakeTimeout)
        case .attached(let routes):
            do {
                try Self.installForwardingDecoder(context.pipeline.syncOperations)
            } catch {
                context.fireErrorCaught(error)
            }
            if let timeout = routes.values.map(\.options.handshakeTimeout).min() {
                armHandshakeTimer(context: context, timeout)
            }
        }
    }

    private func armHandshakeTimer(context: ChannelHandlerContext, _ timeout: Duration) {
        handshakeTimer = context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(timeout)) { [weak self] in
            self?.handshakeTimedOut(context: context)
        }
    }

    private func handshakeTimedOut(context: ChannelHandlerContext) {
        handshakeTimer = nil
        if case .attached = mode, case .idle = state {
            // No request head yet on an application's connection: there is no request to
            // answer (and its HTTP handlers expect none), so it is closed.
            state = .done
            context.close(promise: nil)
            return
        }
        reject(context: context, status: .requestTimeout, body: "opening handshake timed out")
    }

    /// Takes the verdict of the server's admission: a connection it counted holds a
    /// handshake; one it refused gets its answer once its request is read.
    private func admitted(_ verdict: Admission.Verdict, by server: WebSocketServer) {
        switch verdict {
        case .admitted:
            handshake = server.admission
        case .tooManyFromAddress(let address, let limit):
            handshake = server.admission
            refusal = Refusal(
                status: .tooManyRequests, reason: "too many connections from \(address) (limit \(limit))")
        case .overloaded(.rate(let perSecond, let retryAfter)):
            refusal = Refusal(
                status: .serviceUnavailable, reason: "too many handshakes (limit \(perSecond) per second)",
                headers: ["Retry-After": String(retryAfter)])
        case .overloaded(.handshakes(let limit)):
            refusal = Refusal(
                status: .serviceUnavailable, reason: "too many handshakes in progress (limit \(limit))",
                headers: ["Retry-After": "1"])
        }
    }

    /// An upgrade request on an application's connection was routed to `server`: it arrives
    /// at the server's admission now, and its handshake is timed from here.
    private func arrive(context: ChannelHandlerContext, head: HTTPRequestHead, server: WebSocketServer) {
        let verdict = server.admission.arrive(from: context.channel.remoteAddress)
        switch verdict {
        case .admitted(let address): server.track(context.channel, address: address)
        case .tooManyFromAddress: server.track(context.channel, address: nil)
        case .overloaded: break
        }
        admitted(verdict, by: server)
        let size = head.approximateSize
        if refusal == nil, size > server.options.maxHandshakeSize {
            refusal = Refusal(
                status: .requestHeaderFieldsTooLarge,
                reason: "request head exceeds \(server.options.maxHandshakeSize) bytes")
        }
        if handshakeTimer == nil {
            armHandshakeTimer(context: context, server.options.handshakeTimeout)
        }
    }

    /// Replaces the application's HTTP response encoder and request decoder with a pair
    /// made by NIO's own `configureHTTPServerPipeline(withServerUpgrade:)`, whose decoder
    /// forwards the bytes after an upgrade request instead of dropping them, and which stays
    /// paired with its encoder (for HEAD responses). NIO's upgrade handler that comes with
    /// them, with no upgraders, is removed at once. (The app's encoder and decoder
    /// configurations are not carried over; the defaults apply.) A pipeline that already has
    /// NIO's upgrade handler is left alone: its decoder forwards already, and that handler
    /// holds on to the encoder it was made with.
    private static func installForwardingDecoder(_ pipeline: ChannelPipeline.SynchronousOperations) throws {
        guard let decoder = try? pipeline.context(handlerType: ByteToMessageHandler<HTTPRequestDecoder>.self),
            (try? pipeline.context(handlerType: HTTPServerUpgradeHandler.self)) == nil
        else {
            return
        }
        let encoder = try? pipeline.context(handlerType: HTTPResponseEncoder.self)
        try pipeline.configureHTTPServerPipeline(
            position: .after(decoder.handler), withPipeliningAssistance: false,
            withServerUpgrade: (upgraders: [], completionHandler: { _ in }),
            withErrorHandling: false, withOutboundHeaderValidation: false)
        let upgrader = try pipeline.context(handlerType: HTTPServerUpgradeHandler.self)
        pipeline.removeHandler(context: upgrader, promise: nil)
        pipeline.removeHandler(context: decoder, promise: nil)
        if let encoder { pipeline.removeHandler(context: encoder, promise: nil) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        handshakeTimer?.cancel()
        handshakeTimer = nil
        handshake?.handshakeEnded()
        handshake = nil
        verification?.cancel()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        switch (state, part) {
        case (.idle, .head(let head)):
            guard let server = server(for: head) else {
                // The application's request: its timing is the application's business.
                handshakeTimer?.cancel()
                handshakeTimer = nil
                state = .passingThrough
                context.fireChannelRead(data)
                return
            }
            if case .attached = mode {
                arrive(context: context, head: head, server: server)
            } else if server.options.plainHTTP != nil {
                return plainHead(context: context, head: head, server: server)
            }
            state = .awaitingEnd(head, server)
        case (.passingThrough, .end):
            state = .idle
            context.fireChannelRead(data)
        case (.passingThrough, _):
            context.fireChannelRead(data)
        case (.awaitingEnd(let head, let server), .end):
            state = .deciding
            upgrade(context: context, head: head, server: server)
        case (.awaitingEnd, .body):
            // An upgrade request has no body worth reading; it is dropped.
            break
        case (.readingPlain(let head, let server, var body), .body(var chunk)):
            guard body.readableBytes + chunk.readableBytes <= server.options.maxPlainHTTPBody else {
                return reject(
                    context: context, status: .payloadTooLarge,
                    body: "request body exceeds \(server.options.maxPlainHTTPBody) bytes")
            }
            state = .answeringPlain  // `body` is uniquely referenced while it grows
            body.writeBuffer(&chunk)
            state = .readingPlain(head, server, body)
        case (.readingPlain(let head, let server, let body), .end):
            answerPlain(context: context, head: head, server: server, body: body)
        default:
            // Anything after the upgrade request is WebSocket data the decoder keeps for us.
            break
        }
    }

    // MARK: Plain HTTP

    /// A request head on a server with `plainHTTP`. An upgrade goes on as without it, its
    /// bytes bounded by `maxHandshakeSize` again; any other request is read whole for
    /// `plainHTTP`, its body bounded here instead of by the size limit, which leaves.
    private func plainHead(context: ChannelHandlerContext, head: HTTPRequestHead, server: WebSocketServer) {
        let pipeline = context.pipeline.syncOperations
        let sizeLimit = try? pipeline.handler(type: HandshakeSizeLimit.self)
        guard !head.headers.contains(name: "Upgrade"), refusal == nil else {
            sizeLimit?.limit = server.options.maxHandshakeSize
            // The size limit let this head through with the body allowance; it is judged here.
            if refusal == nil, head.approximateSize > server.options.maxHandshakeSize {
                refusal = Refusal(
                    status: .requestHeaderFieldsTooLarge,
                    reason: "request head exceeds \(server.options.maxHandshakeSize) bytes")
            }
            state = .awaitingEnd(head, server)
            return
        }
        if let sizeLimit { pipeline.removeHandler(sizeLimit, promise: nil) }
        state = .readingPlain(head, server, context.channel.allocator.buffer(capacity: 0))
        if head.approximateSize > server.options.maxHandshakeSize {
            reject(
                context: context, status: .requestHeaderFieldsTooLarge,
                body: "request head exceeds \(server.options.maxHandshakeSize) bytes")
        } else if let length = head.headers.first(name: "Content-Length").flatMap(Int.init),
            length > server.options.maxPlainHTTPBody
        {
            reject(
                context: context, status: .payloadTooLarge,
                body: "request body exceeds \(server.options.maxPlainHTTPBody) bytes")
        }
    }

    /// Runs `plainHTTP` in a task (cancelled if the handshake timer answers 408 first), then
    /// writes its answer and closes.
    private func answerPlain(context: ChannelHandlerContext, head: HTTPRequestHead, server: WebSocketServer, body: ByteBuffer) {
        state = .answeringPlain
        guard let plainHTTP = server.options.plainHTTP else { return }
        let request = PlainHTTPRequest(
            method: head.method.rawValue, target: head.uri, headers: HTTPFields(head.headers.map { HTTPFields.Field(name: $0.name, value: $0.value) }), body: body,
            remoteAddress: context.channel.remoteAddress)
        let answered = context.eventLoop.makePromise(of: PlainHTTPResponse.self)
        verification = Task { answered.succeed(await plainHTTP(request)) }
        answered.futureResult.assumeIsolated().whenSuccess { [self] response in
            verification = nil
            guard case .answeringPlain = state, context.channel.isActive else { return }
            state = .done
            handshakeTimer?.cancel()
            handshakeTimer = nil
            var headers = HTTPHeaders(response.headers)
            headers.replaceOrAdd(name: "Content-Length", value: String(response.body.readableBytes))
            headers.replaceOrAdd(name: "Connection", value: "close")
            let status = HTTPResponseStatus(statusCode: response.status)
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))),
                          promise: nil)
            if head.method != .HEAD {
                context.write(wrapOutboundOut(.body(.byteBuffer(response.body))), promise: nil)
            }
            context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard case .standalone = mode else {
            // The application's HTTP pipeline answers its own errors (NIO's
            // HTTPServerProtocolErrorHandler, before us, has already sent a 400 for a parse
            // error); a second answer here would put two responses on the wire.
            if case .awaitingEnd = state { state = .done }
            context.fireErrorCaught(error)
            return
        }
        let reason = (error as? HTTPParserError).map { "malformed HTTP request: \($0)" } ?? "malformed HTTP request"
        reject(context: context, status: .badRequest, body: reason)
    }

    /// The server that takes this request, or nil when it passes through.
    private func server(for head: HTTPRequestHead) -> WebSocketServer? {
        switch mode {
        case .standalone(let server, _):
            return server
        case .attached(let routes):
            guard head.headers.contains(name: "Upgrade") else { return nil }
            return routes[String(head.uri.prefix { $0 != "?" })]
        }
    }

    private func upgrade(context: ChannelHandlerContext, head: HTTPRequestHead, server: WebSocketServer) {
        logger = server.options.logger
        requestPath = HandshakeInfo(target: head.uri).path
        if let refusal {
            return reject(context: context, status: refusal.status, body: refusal.reason, headers: refusal.headers)
        }
        let options = server.options
        let info: ClientRequestInfo
        let request: UpgradeRequest
        do {
            (info, request) = try ServerHandshake.check(head, remoteAddress: context.channel.remoteAddress, options: options)
        } catch {
            return reject(context: context, error)
        }
        guard server.connectionCount <= options.maxConnections else {
            return reject(context: context, status: .serviceUnavailable,
                          body: "server is at its limit of \(options.maxConnections) connections")
        }
        guard let verifyClient = options.verifyClient else {
            return complete(context: context, server: server, request: request, info: info, decision: .accept())
        }
        let decided = context.eventLoop.makePromise(of: UpgradeDecision.self)
        verification = Task { decided.succeed(await verifyClient(request)) }
        decided.futureResult.assumeIsolated().whenSuccess { [self] decision in
            verification = nil
            // The handshake timer may have answered 408 while the hook ran.
            guard case .deciding = state, context.channel.isActive else { return }
            complete(context: context, server: server, request: request, info: info, decision: decision)
        }
    }

    private func complete(
        context: ChannelHandlerContext, server: WebSocketServer, request: UpgradeRequest,
        info: ClientRequestInfo, decision: UpgradeDecision
    ) {
        let extraHeaders: HTTPFields
        let userInfo: ConnectionUserInfo
        switch decision {
        case .reject(let status, let body, let headers):
            return reject(context: context, ServerHandshake.Rejection(status, body, headers: headers))
        case .accept(let headers, let info):
            extraHeaders = headers
            userInfo = info
        }

        let options = server.options
        let acceptance = ServerHandshake.accept(info, request: request, extraHeaders: extraHeaders, options: options)
        var compression: PerMessageDeflate?
        if let parameters = acceptance.deflate, let deflateOptions = options.perMessageDeflate {
            compression = PerMessageDeflate(role: .server, parameters: parameters, options: deflateOptions)
        }

        handshakeTimer?.cancel()
        handshakeTimer = nil
        let response = HTTPResponseHead(
            version: .http1_1, status: .switchingProtocols, headers: HTTPHeaders(acceptance.headers))
        context.writeAndFlush(wrapOutboundOut(.head(response))).assumeIsolated().whenComplete { [self] result in
            guard case .success = result, context.channel.isActive else {
                context.close(promise: nil)
                return
            }
            let handler = WebSocketHandler(
                role: .server, options: server.connectionOptions, compression: compression,
                heartbeatSchedule: server.heartbeatSchedule(on: context.eventLoop),
                writesDirectly: writesDirectly(context.pipeline.syncOperations))
            do {
                try replaceHTTPHandlers(context: context, with: handler).assumeIsolated().whenSuccess {
                    handler.handoverComplete()
                }
            } catch {
                context.close(promise: nil)
                return
            }
            let socket = WebSocket(
                channel: context.channel, role: .server,
                handshake: HandshakeInfo(
                    target: request.target, subprotocol: acceptance.subprotocol, extensions: acceptance.extensions),
                request: request, userInfo: userInfo, server: server, handler: handler)
            server.didOpen(socket)
        }
    }

    /// Whether the connection's handler may write to the socket itself (`WebSocketHandler.writeDirect`):
    /// only in a pipeline of our own without TLS, where nothing but the WebSocket handler
    /// remains once the HTTP handlers are gone. An application's pipeline may have handlers
    /// of its own that must see every write.
    private func writesDirectly(_ pipeline: ChannelPipeline.SynchronousOperations) -> Bool {
        guard case .standalone = mode else { return false }
        return (try? pipeline.handler(type: TLSHandler.self)) == nil
    }

    /// Puts `handler` right after the request decoder, removes the other HTTP handlers
    /// and this one, then the decoder, which forwards any bytes it holds to `handler`; the
    /// returned future completes when it has.
    private func replaceHTTPHandlers(context: ChannelHandlerContext, with handler: WebSocketHandler) throws
        -> EventLoopFuture<Void>
    {
        let pipeline = context.pipeline.syncOperations
        let decoder = try pipeline.context(handlerType: ByteToMessageHandler<HTTPRequestDecoder>.self)
        try pipeline.addHandler(handler, position: .after(decoder.handler))
        if let encoder = try? pipeline.context(handlerType: HTTPResponseEncoder.self) {
            pipeline.removeHandler(context: encoder, promise: nil)
        }
        if let pipelining = try? pipeline.context(handlerType: HTTPServerPipelineHandler.self) {
            pipeline.removeHandler(context: pipelining, promise: nil)
        }
        if let errors = try? pipeline.context(handlerType: HTTPServerProtocolErrorHandler.self) {
            pipeline.removeHandler(context: errors, promise: nil)
        }
        if let validator = try? pipeline.context(handlerType: NIOHTTPResponseHeadersValidator.self) {
            pipeline.removeHandler(context: validator, promise: nil)
        }
        if let limit = try? pipeline.context(handlerType: HandshakeSizeLimit.self) {
            pipeline.removeHandler(context: limit, promise: nil)
        }
        pipeline.removeHandler(context: context, promise: nil)
        let decoderRemoved = context.eventLoop.makePromise(of: Void.self)
        pipeline.removeHandler(context: decoder, promise: decoderRemoved)
        return decoderRemoved.futureResult
    }

    private func reject(context: ChannelHandlerContext, _ rejection: ServerHandshake.Rejection) {
        reject(
            context: context, status: .init(statusCode: rejection.status), body: rejection.body,
            headers: HTTPHeaders(rejection.headers))
    }

    /// Answers with an error status and a one-line body, then closes the connection.
    private func reject(
        context: ChannelHandlerContext, status: HTTPResponseStatus, body: String, headers: HTTPHeaders = HTTPHeaders()
    ) {
        if case .done = state { return }
        state = .done
        handshakeTimer?.cancel()
        handshakeTimer = nil
        verification?.cancel()
        verification = nil
        logger.log(level: status.code >= 500 ? .notice : .info, "handshake refused", metadata: {
            var metadata: Logger.Metadata = [
                "peer": "\(peerDescription(context.channel.remoteAddress))", "status": "\(status.code)",
                "reason": "\(body)",
            ]
            if let requestPath { metadata["path"] = "\(requestPath)" }
            return metadata
        }())
        var headers = headers
        let bodyBuffer = context.channel.allocator.buffer(string: body + "\n")
        headers.replaceOrAdd(name: "Content-Type", value: "text/plain; charset=utf-8")
        headers.replaceOrAdd(name: "Content-Length", value: String(bodyBuffer.readableBytes))
        headers.replaceOrAdd(name: "Connection", value: "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))),
                      promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(bodyBuffer))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }
}

extension HTTPRequestHead {
    /// The bytes of the head on the wire, give or take the spaces the parser dropped.
    var approximateSize: Int {
        var size = method.rawValue.utf8.count + uri.utf8.count + 12  // " " " HTTP/1.1\r\n"
        for (name, value) in headers {
            size += name.utf8.count + value.utf8.count + 4  // ": " "\r\n"
        }
        return size + 2
    }
}

extension HTTPHeaders {
    init(_ fields: HTTPFields) {
        self.init(fields.map { ($0.name, $0.value) })
    }
}

/// Bounds the bytes a client may send before its handshake completes (NIO's HTTP parser
/// would accept a much larger head). Past the limit: 431 and close.
final class HandshakeSizeLimit: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    /// The server lowers it once a request head says it is an upgrade (see `plainHTTP`).
    var limit: Int
    private let logger: Logger
    private var seen = 0

    init(limit: Int, logger: Logger) {
        self.limit = limit
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // Past the limit, one answer; everything after it is dropped.
        guard seen <= limit else { return }
        seen += unwrapInboundIn(data).readableBytes
        guard seen <= limit else {
            logger.info("handshake refused", metadata: [
                "peer": "\(peerDescription(context.channel.remoteAddress))", "status": "431",
                "reason": "request head exceeds \(limit) bytes",
            ])
            let body = "request head exceeds \(limit) bytes\n"
            let response = "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; charset=utf-8\r\n"
                + "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n" + body
            context.writeAndFlush(NIOAny(context.channel.allocator.buffer(string: response))).assumeIsolated()
                .whenComplete { _ in context.close(promise: nil) }
            return
        }
        context.fireChannelRead(data)
    }
}
