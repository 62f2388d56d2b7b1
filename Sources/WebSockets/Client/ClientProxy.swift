#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import WebSocketCore

/// An HTTP proxy the client tunnels through with `CONNECT host:port` (for ws:// and wss://).
public struct ProxyOptions: Sendable, Hashable {
    /// The proxy's host name or address.
    public var host: String
    /// The proxy's port.
    public var port: Int
    /// Basic auth for the proxy (`Proxy-Authorization`). Default none.
    public var user: String?
    /// The password sent with `user`. Default none.
    public var password: String?

    /// A proxy at `host`:`port`, with basic auth when `user` is given.
    public init(host: String, port: Int, user: String? = nil, password: String? = nil) {
        self.host = host
        self.port = port
        self.user = user
        self.password = password
    }

    /// Parses `http://[user:password@]host[:port]` (a bare `host:port` too), as the
    /// `https_proxy` convention writes it; without a port, 80 (443 for `https://`).
    public init(url: String) throws(WebSocketURL.ParseError) {
        var text = url
        if !text.contains("://") { text = "http://" + text }
        let parsed: WebSocketURL
        do {
            parsed = try WebSocketURL(text)
        } catch {
            throw WebSocketURL.ParseError(url: url, problem: "proxy URL: \(error.problem)")
        }
        self.init(host: parsed.host, port: parsed.port, user: parsed.user, password: parsed.password)
    }

    var authorization: String? {
        guard let user else { return nil }
        return "Basic " + Crypto.base64Encode(Array("\(user):\(password ?? "")".utf8))
    }
}

/// Which proxy `WebSocket.connect` goes through.
public enum ProxySetting: Sendable, Hashable {
    /// Always connect directly.
    case none
    /// The environment's convention (the default): `wss://` through `https_proxy`
    /// (or `HTTPS_PROXY`), `ws://` through `http_proxy` (or `HTTP_PROXY`), falling back
    /// to `all_proxy`; except hosts matched by `no_proxy` (comma-separated names, a
    /// leading `.` or `*.` for a domain, `*` for all) and loopback addresses.
    case environment
    /// Always this proxy (unix-socket URLs excepted).
    case http(ProxyOptions)

    func proxy(for url: WebSocketURL) -> ProxyOptions? {
        guard url.socketPath == nil else { return nil }
        switch self {
        case .none: return nil
        case .http(let proxy): return proxy
        case .environment:
            return Self.environmentProxy(for: url, lookup: { name in getenv(name).map { String(cString: $0) } })
        }
    }

    /// The proxy `.environment` picks for `url` given these environment variables.
    public static func fromEnvironment(_ environment: [String: String], for url: WebSocketURL) -> ProxyOptions? {
        guard url.socketPath == nil else { return nil }
        return environmentProxy(for: url, lookup: { environment[$0] })
    }

    static func environmentProxy(for url: WebSocketURL, lookup: (String) -> String?) -> ProxyOptions? {
        func variable(_ name: String) -> String? {
            (lookup(name) ?? lookup(name.uppercased())).flatMap { $0.isEmpty ? nil : $0 }
        }
        let host = url.host.lowercased()
        if ["localhost", "127.0.0.1", "::1"].contains(host) || host.hasPrefix("127.") { return nil }
        if let noProxy = variable("no_proxy") {
            for entry in noProxy.split(separator: ",").map({ $0.trimmingSpaces.lowercased() }) where !entry.isEmpty {
                if entry == "*" { return nil }
                var domain = entry
                if domain.hasPrefix("*.") { domain.removeFirst() }
                let name = domain.split(separator: ":").first.map(String.init) ?? domain
                if name.hasPrefix(".") {
                    if host.hasSuffix(name) || host == String(name.dropFirst()) { return nil }
                } else if host == name || host.hasSuffix("." + name) {
                    return nil
                }
            }
        }
        let proxyURL = url.scheme == .wss ? variable("https_proxy") : variable("http_proxy")
        guard let proxyURL = proxyURL ?? variable("all_proxy") else { return nil }
        return try? ProxyOptions(url: proxyURL)
    }
}

extension Substring {
    fileprivate var trimmingSpaces: String {
        String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}

/// Opens a tunnel with `CONNECT host:port`. Until the proxy answers 2xx it holds back
/// `channelActive` and every write from the handlers after it; then it replays them and
/// removes itself. Any other answer fails the connection with `ConnectError.proxyRefused`.
final class ProxyConnectHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State {
        case idle
        case awaitingResponse
        case established
        case failed
    }

    private let proxy: ProxyOptions
    private let target: String
    private var state = State.idle
    private var received: [UInt8] = []
    private var heldWrites: [(ByteBuffer, EventLoopPromise<Void>?)] = []
    private var heldFlush = false

    init(proxy: ProxyOptions, host: String, port: Int) {
        self.proxy = proxy
        self.target = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { sendConnect(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        sendConnect(context: context)
    }

    private func sendConnect(context: ChannelHandlerContext) {
        guard state == .idle else { return }
        state = .awaitingResponse
        var request = "CONNECT \(target) HTTP/1.1\r\nHost: \(target)\r\n"
        if let authorization = proxy.authorization { request += "Proxy-Authorization: \(authorization)\r\n" }
        request += "\r\n"
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: request)), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard state == .awaitingResponse else {
            if state == .established { context.fireChannelRead(data) }
            return
        }
        received += unwrapInboundIn(data).readableBytesView
        let head: Handshake.ResponseHead
        do {
            guard let parsed = try Handshake.parseResponseHead(received, maxSize: 16 * 1024) else { return }
            head = parsed
        } catch {
            return fail(context: context, ConnectError.proxyRefused(status: 0, reason: "bad proxy response: \(error.reason)"))
        }
        guard (200..<300).contains(head.status) else {
            return fail(context: context, ConnectError.proxyRefused(status: head.status, reason: head.reason))
        }
        state = .established
        let leftover = Array(received[head.length...])
        received = []
        context.fireChannelActive()
        let writes = heldWrites
        heldWrites = []
        for (buffer, promise) in writes { context.write(wrapOutboundOut(buffer), promise: promise) }
        if heldFlush || !writes.isEmpty { context.flush() }
        if !leftover.isEmpty {
            context.fireChannelRead(wrapInboundOut(context.channel.allocator.buffer(bytes: leftover)))
            context.fireChannelReadComplete()
        }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch state {
        case .established: context.write(data, promise: promise)
        case .failed: promise?.fail(ChannelError.ioOnClosedChannel)
        case .idle, .awaitingResponse: heldWrites.append((unwrapOutboundIn(data), promise))
        }
    }

    func flush(context: ChannelHandlerContext) {
        if state == .established { context.flush() } else { heldFlush = true }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if state == .awaitingResponse {
            fail(context: context, ConnectError.proxyRefused(status: 0, reason: "the proxy closed the connection"))
        }
        context.fireChannelInactive()
    }

    private func fail(context: ChannelHandlerContext, _ error: ConnectError) {
        guard state != .failed else { return }
        state = .failed
        let writes = heldWrites
        heldWrites = []
        for (_, promise) in writes { promise?.fail(error) }
        context.fireErrorCaught(error)
        context.close(promise: nil)
    }
}
