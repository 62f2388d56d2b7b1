import NIOCore
import NIOPosix

/// `wss://` over the system OpenSSL: TCP (or a unix socket for `wss+unix:`), then TLS with
/// SNI = the URL's host, and verification of the server's certificate and host name
/// unless `configuration.verification` is `.none`.
///
/// `WebSocket.connect` picks this transport by itself for `wss://` URLs (with
/// `ClientOptions.tls` and `ClientOptions.proxy`); set it as `ClientOptions.transport`
/// only to pin a configuration.
public struct TLSTransport: ClientTransport {
    /// TLS settings. Default: verify against the system CA store and the URL's host.
    public var configuration: TLSConfiguration
    /// An HTTP CONNECT proxy to tunnel through. Default none.
    public var proxy: ProxyOptions?

    /// A TLS transport with `configuration`, through `proxy` when given.
    public init(configuration: TLSConfiguration = TLSConfiguration(), proxy: ProxyOptions? = nil) {
        self.configuration = configuration
        self.proxy = proxy
    }

    /// Connects (through the proxy, if any), completes the TLS handshake and runs `initializer`;
    /// throws `TLSError` when the handshake fails or times out.
    public func connect(
        to url: WebSocketURL, group: any EventLoopGroup, timeout: TimeAmount,
        initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>
    ) async throws -> any Channel {
        try await StreamConnector.connect(
            to: url, group: group, timeout: timeout, tls: configuration, proxy: proxy, initializer: initializer)
    }
}

/// The transport `WebSocket.connect` uses unless told otherwise: plain or TLS by the URL's
/// scheme, over TCP, a unix socket or a CONNECT proxy.
struct DefaultTransport: ClientTransport {
    var tls: TLSConfiguration
    var proxy: ProxySetting

    func connect(
        to url: WebSocketURL, group: any EventLoopGroup, timeout: TimeAmount,
        initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>
    ) async throws -> any Channel {
        try await StreamConnector.connect(
            to: url, group: group, timeout: timeout, tls: url.scheme == .wss ? tls : nil,
            proxy: proxy.proxy(for: url), initializer: initializer)
    }
}

enum StreamConnector {
    /// Opens the byte stream and builds the pipeline: [CONNECT proxy] [TLS] then what
    /// `initializer` adds. The proxy handler holds `channelActive` back until the tunnel is
    /// up, so TLS and the WebSocket handshake start only then.
    static func connect(
        to url: WebSocketURL, group: any EventLoopGroup, timeout: TimeAmount, tls: TLSConfiguration?,
        proxy: ProxyOptions?, initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>
    ) async throws -> any Channel {
        let tlsContext = try tls.map { try TLSContext.sharedClient($0) }
        let tlsTimeout = min(timeout, tls.map { TimeAmount($0.handshakeTimeout) } ?? timeout)
        let usesProxy = proxy != nil && url.socketPath == nil
        let host = url.host
        let port = url.port
        var bootstrap = ClientBootstrap(group: group)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    if usesProxy, let proxy {
                        try pipeline.addHandler(ProxyConnectHandler(proxy: proxy, host: host, port: port))
                    }
                    if let tlsContext {
                        try pipeline.addHandler(
                            TLSHandler(context: tlsContext, serverName: host, handshakeTimeout: tlsTimeout))
                    }
                }.flatMap { initializer(channel) }
            }
        if let socketPath = url.socketPath {
            return try await bootstrap.connect(unixDomainSocketPath: socketPath).get()
        }
        bootstrap = bootstrap.channelOption(.socketOption(.tcp_nodelay), value: 1)
        if usesProxy, let proxy {
            return try await bootstrap.connect(host: proxy.host, port: proxy.port).get()
        }
        return try await bootstrap.connect(host: host, port: port).get()
    }
}
