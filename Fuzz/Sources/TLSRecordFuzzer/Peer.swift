import COpenSSLPeer
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// The other end of the handler under test: a raw OpenSSL `SSL` over two memory BIOs, so
/// that it can do what a well-behaved but unusual peer does at any moment — write records
/// of any size, start a TLS 1.2 renegotiation or a TLS 1.3 key update, send close_notify —
/// and its ciphertext can be handed over in any pieces, or tampered with, by the fuzzer.
final class Peer {
    private let ssl: OpaquePointer
    /// Ciphertext from the handler, for this peer's `SSL_read`.
    private let incoming: OpaquePointer
    /// Ciphertext this peer wrote, for the handler.
    private let outgoing: OpaquePointer
    let isServer: Bool

    /// Plaintext bytes this peer has read (checked against `Pattern.toPeer` as they arrive).
    private(set) var received = 0
    /// Plaintext this peer was asked to write and could not yet (mid-handshake).
    private var unwritten: [UInt8] = []
    /// Plaintext bytes handed to `SSL_write` so far (`Pattern.toHandler` positions).
    private(set) var written = 0
    private(set) var isHandshakeDone = false
    /// A fatal TLS error on this side (OpenSSL's reason), after which it does nothing more.
    private(set) var failure: String?
    private(set) var sentCloseNotify = false
    private(set) var receivedCloseNotify = false

    init(context: OpaquePointer, isServer: Bool, maximumVersion: Int32) {
        self.isServer = isServer
        ssl = SSL_new(context)!
        incoming = BIO_new(BIO_s_mem())!
        outgoing = BIO_new(BIO_s_mem())!
        SSL_set_bio(ssl, incoming, outgoing)  // the SSL owns both BIOs from here
        SSL_ctrl(ssl, SSL_CTRL_SET_MAX_PROTO_VERSION, Int(maximumVersion), nil)
        if isServer { SSL_set_accept_state(ssl) } else { SSL_set_connect_state(ssl) }
    }

    deinit {
        SSL_free(ssl)
    }

    var isUsable: Bool { failure == nil }

    /// Ciphertext the handler wrote.
    func receive(_ buffer: ByteBuffer) {
        guard buffer.readableBytes > 0 else { return }
        buffer.withUnsafeReadableBytes { bytes in
            _ = BIO_write(incoming, bytes.baseAddress, Int32(bytes.count))
        }
    }

    /// All the ciphertext this peer has written and not yet handed over.
    func takeOutput() -> [UInt8] {
        let count = BIO_ctrl(outgoing, BIO_CTRL_PENDING, 0, nil)
        guard count > 0 else { return [] }
        var bytes = [UInt8](repeating: 0, count: count)
        let read = bytes.withUnsafeMutableBytes { BIO_read(outgoing, $0.baseAddress, Int32(count)) }
        return Array(bytes.prefix(Int(max(read, 0))))
    }

    /// Moves the handshake on, reads what plaintext there is (checking it), and writes what
    /// waits to be written.
    func pump() {
        guard isUsable else { return }
        ERR_clear_error()
        if !isHandshakeDone {
            let result = SSL_do_handshake(ssl)
            if result == 1 {
                isHandshakeDone = true
            } else if !isRetry(result) {
                return
            }
        }
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        reading: while isUsable, !receivedCloseNotify {
            let result = chunk.withUnsafeMutableBytes { SSL_read(ssl, $0.baseAddress, Int32($0.count)) }
            guard result > 0 else {
                switch SSL_get_error(ssl, result) {
                case SSL_ERROR_ZERO_RETURN: receivedCloseNotify = true
                case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE: break
                default: failure = reason("read")
                }
                break reading
            }
            let matches = chunk.withUnsafeBytes { Pattern.toPeer.matches(UnsafeRawBufferPointer(rebasing: $0.prefix(Int(result))), at: received) }
            require(matches, "the peer read bytes the handler never wrote at \(received)")
            received += Int(result)
        }
        writeUnwritten()
    }

    /// Writes plaintext (the next `count` bytes of `Pattern.toHandler`), now or once the
    /// handshake allows it.
    func write(count: Int) {
        guard isUsable, !sentCloseNotify else { return }
        let start = written + unwritten.count
        unwritten += Pattern.toHandler.bytes(count, from: start)
        writeUnwritten()
    }

    private func writeUnwritten() {
        ERR_clear_error()
        while isUsable, isHandshakeDone, !sentCloseNotify, !unwritten.isEmpty {
            let result = unwritten.withUnsafeBytes { SSL_write(ssl, $0.baseAddress, Int32($0.count)) }
            guard result > 0 else {
                if !isRetry(result) { failure = reason("write") }
                return
            }
            unwritten.removeFirst(Int(result))
            written += Int(result)
        }
    }

    /// close_notify (OpenSSL refuses while handshaking: then nothing is sent).
    func shutdown() {
        guard isUsable, isHandshakeDone, !sentCloseNotify else { return }
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
        sentCloseNotify = true
    }

    /// TLS 1.2: asks for a renegotiation (a HelloRequest from a server, a new ClientHello
    /// from a client). TLS 1.3: a KeyUpdate, asking the handler to update too or not.
    func renegotiate(requestUpdate: Bool) {
        guard isUsable, isHandshakeDone, !sentCloseNotify else { return }
        ERR_clear_error()
        if SSL_version(ssl) == TLS1_3_VERSION {
            _ = SSL_key_update(ssl, requestUpdate ? SSL_KEY_UPDATE_REQUESTED : SSL_KEY_UPDATE_NOT_REQUESTED)
        } else {
            _ = SSL_renegotiate(ssl)
        }
        let result = SSL_do_handshake(ssl)
        if result != 1, !isRetry(result) { failure = reason("renegotiate") }
        ERR_clear_error()
    }

    private func isRetry(_ result: Int32) -> Bool {
        switch SSL_get_error(ssl, result) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            return true
        default:
            failure = reason("handshake")
            return false
        }
    }

    private func reason(_ what: String) -> String {
        let code = ERR_get_error()
        ERR_clear_error()
        guard code != 0 else { return what }
        var text = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &text, text.count)
        return what + ": " + String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// The plaintext streams, position by position: a receiver can tell a byte that is out of
/// place, repeated or invented, not only a wrong count. Each stream repeats a table of a
/// prime length, so no record or chunk size lines up with it; bytes are made and compared
/// a run at a time (`memcmp`), so the harness does not drown the handler in per-byte work
/// (and in coverage of its own comparisons).
struct Pattern {
    private let table: [UInt8]

    static let toHandler = Pattern(seed: 7)
    static let toPeer = Pattern(seed: 91)

    private init(seed: UInt32) {
        var state = seed
        table = (0..<65521).map { _ in
            state = state &* 1_103_515_245 &+ 12345
            return UInt8(truncatingIfNeeded: state >> 16)
        }
    }

    /// Appends the stream's bytes `position..<position + count` to `buffer`.
    func write(_ count: Int, from position: Int, to buffer: inout ByteBuffer) {
        var position = position
        var left = count
        while left > 0 {
            let start = position % table.count
            let run = min(left, table.count - start)
            buffer.writeBytes(table[start..<start + run])
            position += run
            left -= run
        }
    }

    /// Whether `bytes` are the stream's bytes from `position` on.
    func matches(_ bytes: UnsafeRawBufferPointer, at position: Int) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let start = (position + offset) % table.count
            let run = min(bytes.count - offset, table.count - start)
            let same = table.withUnsafeBytes { memcmp(bytes.baseAddress! + offset, $0.baseAddress! + start, run) == 0 }
            guard same else { return false }
            offset += run
        }
        return true
    }

    func bytes(_ count: Int, from position: Int) -> [UInt8] {
        var buffer = ByteBuffer()
        write(count, from: position, to: &buffer)
        return Array(buffer.readableBytesView)
    }
}
