import COpenSSL
import NIOConcurrencyHelpers
import NIOCore

/// TLS settings of a server (`WebSocketServer.Options.tls`) or a client
/// (`ClientOptions.tls`), over the system's OpenSSL (libssl). Defaults are safe: a client
/// verifies the server's certificate chain against the system CA store and its host name.
///
///     // server
///     options.tls = TLSConfiguration(certificateFile: "cert.pem", privateKeyFile: "key.pem")
///     // client with a private CA
///     options.tls.caFile = "ca.pem"
public struct TLSConfiguration: Sendable, Hashable {
    /// How the peer's certificate is checked.
    public enum Verification: Sendable, Hashable {
        /// Client: the chain must lead to a trusted CA and name the host. Server: a client
        /// certificate is required and must lead to a trusted CA (mutual TLS).
        case full
        /// Server only: a client certificate is asked for; if one is sent it must be valid.
        case optional
        /// No verification at all. Client: the connection is encrypted but not
        /// authenticated (`insecure`); only when explicitly asked for. Server: no client
        /// certificate is asked for (the server default).
        case none
    }

    /// PEM file with the certificate (chain, leaf first) to present. Required on a
    /// server; on a client it is the client certificate for mutual TLS. Default nil.
    public var certificateFile: String?
    /// PEM file with the private key of `certificateFile`. Default nil.
    public var privateKeyFile: String?
    /// PEM file of trusted CA certificates. Default nil: the system CA store
    /// (`SSL_CTX_set_default_verify_paths`). On a server, the CAs client certificates
    /// must lead to.
    public var caFile: String?
    /// Also trust the system CA store when `caFile` is set. Default false.
    public var trustSystemCAs: Bool = false
    /// Peer verification. Default: `.full` for a client, `.none` for a server (set by
    /// the initializers).
    public var verification: Verification
    /// Host name the server certificate must match (and SNI). Default nil: the URL's host.
    public var serverName: String?
    /// ALPN protocols offered (client) or accepted (server). Default ["http/1.1"].
    public var alpn: [String] = ["http/1.1"]
    /// Oldest protocol version accepted. Default TLS 1.2.
    public var minimumVersion: Version = .tls12
    /// Time a peer has to complete the TLS handshake before the connection is dropped.
    /// Default 10 s (a server uses the shorter of this and its own `handshakeTimeout`).
    public var handshakeTimeout: Duration = .seconds(10)

    /// A TLS protocol version.
    public enum Version: Sendable, Hashable {
        /// TLS 1.2.
        case tls12
        /// TLS 1.3.
        case tls13

        var openSSLValue: Int { self == .tls12 ? Int(TLS1_2_VERSION) : Int(TLS1_3_VERSION) }
    }

    /// Client settings: verify against the system CA store (or `caFile`).
    public init(caFile: String? = nil) {
        self.caFile = caFile
        self.verification = .full
    }

    /// Server settings: present this certificate and key; no client certificate asked for.
    public init(certificateFile: String, privateKeyFile: String) {
        self.certificateFile = certificateFile
        self.privateKeyFile = privateKeyFile
        self.verification = .none
    }

    /// A client that encrypts but does not verify the server (self-signed test servers).
    public static var insecure: TLSConfiguration {
        var configuration = TLSConfiguration()
        configuration.verification = .none
        return configuration
    }

    /// The client default: system CA store, full verification.
    public static var client: TLSConfiguration { TLSConfiguration() }
}

/// A TLS failure, with OpenSSL's reason string.
public struct TLSError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure.
    public enum Kind: Sendable, Hashable {
        /// A certificate, key or CA file could not be loaded, or a setting was refused.
        case configuration
        /// The handshake failed: the peer's certificate was not accepted, no shared
        /// protocol, an alert from the peer…
        case handshake
        /// The TLS handshake did not complete within the handshake timeout.
        case handshakeTimeout
        /// A TLS error after the handshake (bad record, unexpected EOF…).
        case io
    }

    /// What kind of failure.
    public var kind: Kind
    /// OpenSSL's reason ("certificate verify failed: certificate has expired").
    public var reason: String

    /// An error of `kind` with `reason`.
    public init(_ kind: Kind, _ reason: String) {
        self.kind = kind
        self.reason = reason
    }

    /// One line: the kind and OpenSSL's reason.
    public var description: String {
        switch kind {
        case .configuration: return "TLS configuration error: \(reason)"
        case .handshake: return "TLS handshake failed: \(reason)"
        case .handshakeTimeout: return "TLS handshake timed out: \(reason)"
        case .io: return "TLS error: \(reason)"
        }
    }

    /// Drains OpenSSL's error queue of this thread into one reason string.
    static func drainErrorQueue(_ fallback: String) -> String {
        var reasons: [String] = []
        var buffer = [CChar](repeating: 0, count: 256)
        while true {
            let code = ERR_get_error()
            guard code != 0 else { break }
            ERR_error_string_n(code, &buffer, buffer.count)
            let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            // "error:0A000086:SSL routines::certificate verify failed" → the part after the last "::" or ":"
            let reason = text.split(separator: ":", omittingEmptySubsequences: true).last.map(String.init) ?? text
            if !reasons.contains(reason) { reasons.append(reason) }
        }
        return reasons.isEmpty ? fallback : reasons.joined(separator: "; ")
    }
}

/// One `SSL_CTX` built from a `TLSConfiguration`: shared by every connection made with it
/// (OpenSSL reference-counts it, so a connection keeps its context alive after a reload).
public final class TLSContext: @unchecked Sendable {
    // @unchecked: SSL_CTX is thread-safe for SSL_new once configured; nothing here mutates it after init.
    let context: OpaquePointer
    /// The settings it was built from.
    public let configuration: TLSConfiguration
    /// Whether it serves (presents a certificate, optionally asks for the client's) or connects.
    public let isServer: Bool
    /// ALPN protocols in wire format after a 2-byte big-endian length, kept alive for the
    /// server's selection callback (its argument).
    private let alpnWire: UnsafeMutableBufferPointer<UInt8>

    /// Loads the certificate, key and CA files of `configuration` into a new OpenSSL context.
    /// Throws `TLSError` (`.configuration`) for a missing or bad file, a key that does not match
    /// the certificate, or a server configuration without a certificate.
    public init(configuration: TLSConfiguration, isServer: Bool) throws {
        ERR_clear_error()
        guard let context = SSL_CTX_new(isServer ? TLS_server_method() : TLS_client_method()) else {
            throw TLSError(.configuration, TLSError.drainErrorQueue("SSL_CTX_new failed"))
        }
        self.context = context
        self.configuration = configuration
        self.isServer = isServer
        var wire: [UInt8] = []
        for name in configuration.alpn where !name.isEmpty && name.utf8.count < 256 {
            wire.append(UInt8(name.utf8.count))
            wire += name.utf8
        }
        wire = wire.count > 0xffff ? [] : wire
        alpnWire = .allocate(capacity: 2 + wire.count)
        _ = alpnWire.initialize(from: [UInt8(wire.count >> 8), UInt8(wire.count & 0xff)] + wire)
        let alpnCount = wire.count
        func check(_ ok: Bool, _ what: String) throws {
            if !ok { throw TLSError(.configuration, "\(what): \(TLSError.drainErrorQueue("failed"))") }
        }

        let mode = SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS
        SSL_CTX_ctrl(context, SSL_CTRL_MODE, Int(mode), nil)
        // No TLS 1.2 renegotiation either way (TLS 1.3 has none; swift-nio-ssl refuses it
        // too): a client-initiated one costs the server a full handshake per request, and a
        // server-initiated one would make a write fail while it is under way. A server that
        // asks gets a no_renegotiation alert.
        switchboard_refuse_renegotiation(context)
        try check(
            SSL_CTX_ctrl(context, SSL_CTRL_SET_MIN_PROTO_VERSION, configuration.minimumVersion.openSSLValue, nil) == 1,
            "minimum TLS version")
        // TLS 1.3 suites, AES-128-GCM first (as Go and BoringSSL order them): as strong in
        // practice and about a third cheaper than AES-256 per byte.
        try check(
            SSL_CTX_set_ciphersuites(context, "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384") == 1,
            "TLS 1.3 cipher suites")
        if isServer {
            // No session tickets to hand out per connection (memory, and nothing resumes them here).
            SSL_CTX_set_num_tickets(context, 0)
        }

        if let certificateFile = configuration.certificateFile {
            try check(
                SSL_CTX_use_certificate_chain_file(context, certificateFile) == 1, "certificate \(certificateFile)")
            guard let keyFile = configuration.privateKeyFile else {
                throw TLSError(.configuration, "certificate \(certificateFile) given without a private key")
            }
            try check(SSL_CTX_use_PrivateKey_file(context, keyFile, SSL_FILETYPE_PEM) == 1, "private key \(keyFile)")
            try check(SSL_CTX_check_private_key(context) == 1, "private key \(keyFile) does not match \(certificateFile)")
        } else if isServer {
            throw TLSError(.configuration, "a TLS server needs a certificate and a private key")
        }

        let verifies = configuration.verification != .none
        if verifies {
            if let caFile = configuration.caFile {
                try check(SSL_CTX_load_verify_locations(context, caFile, nil) == 1, "CA file \(caFile)")
                if isServer, let names = SSL_load_client_CA_file(caFile) {
                    SSL_CTX_set_client_CA_list(context, names)
                }
            }
            if configuration.caFile == nil || configuration.trustSystemCAs {
                try check(SSL_CTX_set_default_verify_paths(context) == 1, "system CA store")
            }
        }
        var verifyMode = SSL_VERIFY_NONE
        switch (configuration.verification, isServer) {
        case (.none, _): verifyMode = SSL_VERIFY_NONE
        case (.full, true): verifyMode = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
        case (.optional, true), (.full, false), (.optional, false): verifyMode = SSL_VERIFY_PEER
        }
        SSL_CTX_set_verify(context, verifyMode, nil)

        // `alpnWire` holds at least its 2-byte length: it has a base address.
        if alpnCount > 0 {
            if isServer {
                SSL_CTX_set_alpn_select_cb(context, tlsSelectALPN, UnsafeMutableRawPointer(alpnWire.baseAddress!))
            } else {
                // Unlike most of OpenSSL, 0 means success here.
                try check(SSL_CTX_set_alpn_protos(context, alpnWire.baseAddress! + 2, UInt32(alpnCount)) == 0, "ALPN")
            }
        }
    }

    deinit {
        SSL_CTX_free(context)
        alpnWire.deallocate()
    }

    private static let clientCache = NIOLockedValueBox<[TLSConfiguration: TLSContext]>([:])

    /// The shared client context of a configuration (built once: loading the system CA
    /// store is not free).
    static func sharedClient(_ configuration: TLSConfiguration) throws -> TLSContext {
        if let cached = clientCache.withLockedValue({ $0[configuration] }) { return cached }
        let made = try TLSContext(configuration: configuration, isServer: false)
        return clientCache.withLockedValue { cache in
            if let raced = cache[configuration] { return raced }
            if cache.count > 64 { cache.removeAll() }
            cache[configuration] = made
            return made
        }
    }
}

/// Server ALPN: the first of the client's protocols we accept; none in common means no ALPN
/// (not a failure), as most servers do.
private func tlsSelectALPN(
    _ ssl: OpaquePointer?, _ out: UnsafeMutablePointer<UnsafePointer<UInt8>?>?,
    _ outLength: UnsafeMutablePointer<UInt8>?, _ input: UnsafePointer<UInt8>?, _ inputLength: UInt32,
    _ argument: UnsafeMutableRawPointer?
) -> Int32 {
    guard let argument, let input, let out, let outLength else { return SSL_TLSEXT_ERR_NOACK }
    let header = argument.assumingMemoryBound(to: UInt8.self)
    let serverLength = Int(header[0]) << 8 | Int(header[1])
    let server = header + 2
    var selected: UnsafeMutablePointer<UInt8>?
    var selectedLength: UInt8 = 0
    let result = SSL_select_next_proto(&selected, &selectedLength, server, UInt32(serverLength), input, inputLength)
    guard result == OPENSSL_NPN_NEGOTIATED, let selected else { return SSL_TLSEXT_ERR_NOACK }
    out.pointee = UnsafePointer(selected)
    outLength.pointee = selectedLength
    return SSL_TLSEXT_ERR_OK
}

/// The server's context, swappable for a certificate reload: new connections take the
/// current one, live connections keep the one they started with.
final class ReloadableTLSContext: Sendable {
    private let current: NIOLockedValueBox<TLSContext>
    let configuration: TLSConfiguration

    init(configuration: TLSConfiguration) throws {
        self.configuration = configuration
        current = NIOLockedValueBox(try TLSContext(configuration: configuration, isServer: true))
    }

    var context: TLSContext { current.withLockedValue { $0 } }

    /// Reads the certificate, key and CA files again; on failure the old context stays.
    func reload() throws {
        let made = try TLSContext(configuration: configuration, isServer: true)
        current.withLockedValue { $0 = made }
    }
}
