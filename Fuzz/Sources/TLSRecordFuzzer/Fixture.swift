import COpenSSLPeer
import WebSockets

#if canImport(Glibc)
import Glibc
#endif

/// What every input shares: one EC P-256 certificate (made once with the `openssl` CLI in a
/// temporary directory), the handler's contexts (ours, as `WebSocketServer` and
/// `WebSocket.connect` build them) and the raw peer's.
struct Fixture {
    let ourServer: TLSContext
    let ourClient: TLSContext
    let peerServer: OpaquePointer
    let peerClient: OpaquePointer

    nonisolated(unsafe) static let shared = Fixture()

    private init() {
        let directory = "/tmp/tls-record-fuzzer-\(getpid())"
        let made = system("""
            mkdir -p \(directory) && cd \(directory) && openssl req -x509 -newkey ec \
            -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout key.pem -out cert.pem -subj /CN=localhost \
            -days 2 -addext subjectAltName=DNS:localhost 2>/dev/null
            """)
        require(made == 0, "openssl could not make the fuzzer's certificate in \(directory)")
        let certificate = directory + "/cert.pem"
        let key = directory + "/key.pem"
        ourServer = try! TLSContext(
            configuration: TLSConfiguration(certificateFile: certificate, privateKeyFile: key), isServer: true)
        ourClient = try! TLSContext(configuration: .insecure, isServer: false)

        peerServer = SSL_CTX_new(TLS_server_method())!
        require(SSL_CTX_use_certificate_chain_file(peerServer, certificate) == 1)
        require(SSL_CTX_use_PrivateKey_file(peerServer, key, SSL_FILETYPE_PEM) == 1)
        peerClient = SSL_CTX_new(TLS_client_method())!
        for context in [peerServer, peerClient] {
            // A write retried after WANT_READ (mid-renegotiation) passes the same bytes
            // from a new address.
            SSL_CTX_ctrl(context, SSL_CTRL_MODE, Int(SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER), nil)
        }
    }
}
