import AsyncTestSupport
import COpenSSL
import NIOCore
import NIOEmbedded
import Testing
import WebSockets

/// A TLS 1.2 peer on the system OpenSSL over memory BIOs: the far end of our handler in an
/// `EmbeddedChannel`, so that the test decides when each side's bytes arrive (a
/// renegotiation's race with a write cannot be timed over a socket).
private final class MemoryPeer {
    private let context: OpaquePointer
    private let ssl: OpaquePointer
    private let incoming: OpaquePointer
    private let outgoing: OpaquePointer
    /// OpenSSL's reason for the peer's fatal error, once it failed.
    private(set) var failure: String?

    init(isServer: Bool) {
        context = SSL_CTX_new(isServer ? TLS_server_method() : TLS_client_method())!
        if isServer {
            precondition(SSL_CTX_use_certificate_chain_file(context, TestCertificates.pem("server")) == 1)
            precondition(SSL_CTX_use_PrivateKey_file(context, TestCertificates.key("server"), SSL_FILETYPE_PEM) == 1)
        }
        ssl = SSL_new(context)!
        incoming = BIO_new(BIO_s_mem())!
        outgoing = BIO_new(BIO_s_mem())!
        SSL_set_bio(ssl, incoming, outgoing)
        SSL_ctrl(ssl, SSL_CTRL_SET_MAX_PROTO_VERSION, Int(TLS1_2_VERSION), nil)
        if isServer { SSL_set_accept_state(ssl) } else { SSL_set_connect_state(ssl) }
    }

    deinit {
        SSL_free(ssl)
        SSL_CTX_free(context)
    }

    /// Takes what the handler wrote, moves the handshake on or reads, and hands the
    /// handler what this peer wrote.
    func exchange(with channel: EmbeddedChannel) throws {
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) {
            _ = buffer.withUnsafeReadableBytes { BIO_write(incoming, $0.baseAddress, Int32($0.count)) }
        }
        ERR_clear_error()
        let result: Int32
        if SSL_is_init_finished(ssl) == 1 {
            var byte: UInt8 = 0
            result = SSL_read(ssl, &byte, 1)
        } else {
            result = SSL_do_handshake(ssl)
        }
        let error = SSL_get_error(ssl, result)
        if result <= 0, error != SSL_ERROR_WANT_READ, error != SSL_ERROR_WANT_WRITE, failure == nil {
            var text = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(ERR_get_error(), &text, text.count)
            failure = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        let pending = BIO_ctrl(outgoing, BIO_CTRL_PENDING, 0, nil)
        if pending > 0, channel.isActive {
            var bytes = [UInt8](repeating: 0, count: pending)
            _ = bytes.withUnsafeMutableBytes { BIO_read(outgoing, $0.baseAddress, Int32(pending)) }
            try channel.writeInbound(ByteBuffer(bytes: bytes))
        }
    }

    var isHandshakeDone: Bool { SSL_is_init_finished(ssl) == 1 }

    /// Starts a renegotiation: a HelloRequest from a server, a new ClientHello from a client.
    func renegotiate() {
        precondition(SSL_renegotiate(ssl) == 1)
        _ = SSL_do_handshake(ssl)
    }
}

/// Collects what reaches the end of the pipeline.
private final class Sink: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    var errors: [any Error] = []
    var handshakeDone = false

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is TLSHandshakeCompleted { handshakeDone = true }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        errors.append(error)
    }
}

/// Renegotiation (TLS 1.2 only) is refused both ways, as swift-nio-ssl refuses it: a
/// client-initiated one costs a server a full handshake per request, and a write made while
/// a server-initiated one was under way failed the client's connection.
@Suite(.enabled(if: TestCertificates.available, "needs the openssl CLI (scripts/setup.sh)"))
struct TLSRenegotiationTests {
    private func connected(isServer: Bool) throws -> (EmbeddedChannel, MemoryPeer, Sink) {
        let configuration =
            isServer
            ? TLSConfiguration(certificateFile: TestCertificates.pem("server"), privateKeyFile: TestCertificates.key("server"))
            : .insecure
        let sink = Sink()
        let channel = EmbeddedChannel(handlers: [try TLSContext(configuration: configuration, isServer: isServer).makeHandler(), sink])
        let peer = MemoryPeer(isServer: !isServer)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 443)).wait()
        for _ in 0..<6 where !(sink.handshakeDone && peer.isHandshakeDone) {
            try peer.exchange(with: channel)
        }
        #expect(sink.handshakeDone && peer.isHandshakeDone)
        return (channel, peer, sink)
    }

    @Test func clientRefusesServerRenegotiationAndItsWriteGoesOut() throws {
        let (channel, server, sink) = try connected(isServer: false)
        server.renegotiate()
        try server.exchange(with: channel)  // the HelloRequest reaches our client
        let written = channel.eventLoop.makePromise(of: Void.self)
        channel.writeAndFlush(ByteBuffer(string: "during"), promise: written)
        #expect(throws: Never.self) { try written.futureResult.wait() }
        try server.exchange(with: channel)
        // The server asked, our client said no_renegotiation; OpenSSL's server gives up on
        // the connection then (its choice), and our client hears why.
        #expect(server.failure?.contains("no renegotiation") == true)
        #expect(sink.errors.count == 1)
        #expect((sink.errors.first as? TLSError)?.kind == .io)
        _ = try? channel.finish(acceptAlreadyClosed: true)
    }

    @Test func serverRefusesClientRenegotiation() throws {
        let (channel, client, _) = try connected(isServer: true)
        client.renegotiate()
        try client.exchange(with: channel)  // the new ClientHello reaches our server
        try client.exchange(with: channel)
        #expect(client.failure?.contains("no renegotiation") == true)
        _ = try? channel.finish(acceptAlreadyClosed: true)
    }
}
