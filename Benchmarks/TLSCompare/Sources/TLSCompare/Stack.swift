import ArgumentParser
import NIOCore
import NIOPosix
import NIOSSL
import WebSockets

/// The two TLS layers compared. Everything above them (HTTP upgrade, WebSocket handler,
/// echo) is the same code; only the handler at the front of the pipeline differs.
enum Stack: String, CaseIterable, ExpressibleByArgument {
    /// `TLSContext.makeHandler()`: our handler over the system OpenSSL.
    case ours
    /// `NIOSSLServerHandler` / `NIOSSLClientHandler`: swift-nio-ssl over its BoringSSL.
    case nioSSL = "nio-ssl"

    /// Makes one server-side TLS handler per connection, from one context shared by all.
    /// Both at their defaults, as an application would configure them, except the
    /// versions (TLS 1.2 and 1.3 on both) and ALPN (http/1.1 on both).
    func serverHandlers(certificate: String, key: String) throws -> @Sendable () throws -> any ChannelHandler {
        switch self {
        case .ours:
            let context = try TLSContext(
                configuration: WebSockets.TLSConfiguration(certificateFile: certificate, privateKeyFile: key),
                isServer: true)
            return { try context.makeHandler() }
        case .nioSSL:
            let chain: [NIOSSLCertificate]
            let privateKey: NIOSSLPrivateKey
            do {
                chain = try NIOSSLCertificate.fromPEMFile(certificate)
                privateKey = try NIOSSLPrivateKey(file: key, format: .pem)
            } catch {
                throw LoadFailure(description: "cannot load \(certificate) and \(key): \(error)")
            }
            var configuration = NIOSSL.TLSConfiguration.makeServerConfiguration(
                certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(privateKey))
            configuration.minimumTLSVersion = .tlsv12
            configuration.applicationProtocols = ["http/1.1"]
            let context = try NIOSSLContext(configuration: configuration)
            return { NIOSSLServerHandler(context: context) }
        }
    }

    /// Client options for the load generator. Neither client verifies the certificate chain
    /// (a benchmark on loopback; both still check the handshake signature), so that the
    /// load core spends less per handshake. swift-nio-ssl's client is held to X25519: by
    /// default it offers X25519MLKEM768 first, which the system OpenSSL (3.0) does not
    /// know, so our server would take X25519 and swift-nio-ssl's the costlier hybrid.
    func clientOptions() throws -> ClientOptions {
        var options = ClientOptions()
        options.perMessageDeflate = nil
        options.proxy = .none
        options.connection.maxPayload = 1 << 24
        switch self {
        case .ours:
            options.tls = .insecure
        case .nioSSL:
            var configuration = NIOSSL.TLSConfiguration.makeClientConfiguration()
            configuration.certificateVerification = .none
            configuration.curves = [.x25519]
            configuration.applicationProtocols = ["http/1.1"]
            options.transport = NIOSSLTransport(context: try NIOSSLContext(configuration: configuration))
        }
        return options
    }
}

/// swift-nio-ssl's errors do not name the file.
struct LoadFailure: Error, CustomStringConvertible {
    var description: String
}

/// wss:// over swift-nio-ssl, for `ClientOptions.transport`.
struct NIOSSLTransport: ClientTransport {
    let context: NIOSSLContext

    func connect(
        to url: WebSocketURL, group: any EventLoopGroup, timeout: TimeAmount,
        initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>
    ) async throws -> any Channel {
        let context = self.context
        return try await ClientBootstrap(group: group)
            .connectTimeout(timeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        NIOSSLClientHandler(context: context, serverHostname: nil))
                }.flatMap { initializer(channel) }
            }
            .connect(host: url.host, port: url.port)
            .get()
    }
}
