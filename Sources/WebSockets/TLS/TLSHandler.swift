import COpenSSL
import NIOCore

/// TLS on a NIO channel over the system OpenSSL: one `SSL*` over a BIO of our own
/// (`ByteBufferBIO`) that reads ciphertext straight out of the `ByteBuffer`s the socket
/// delivered (`inbound`) and writes ciphertext straight into one outgoing `ByteBuffer`
/// (`outbound`): no memory BIO in between, so no copy into it, no zeroing of its growth
/// and no copy out of it. Plaintext comes out of `SSL_read` and goes up the pipeline.
/// Plaintext written by the handlers after this one goes into `SSL_write` (small writes
/// are gathered until the flush, or 16 KiB, so many small messages share a record); the
/// ciphertext is written to the socket in one buffer per flush, or per 128 KiB of it (so
/// once per read cycle when the handlers above batch their flushes). Large ciphertext goes
/// into buffers the thread reuses (`CiphertextBufferPool`) rather than fresh ones.
///
/// Invariants:
/// - Writes made before the handshake completes wait in `pendingWrites` and go out, in
///   order, right after it; a flush asked for meanwhile is remembered.
/// - The handshake is bounded by `handshakeTimeout`: a peer that stalls or vanishes
///   mid-handshake gets its connection closed.
/// - Closing an open connection sends close_notify first; closing again (or closing
///   before the handshake completed) closes the socket at once.
/// - Every failure is reported once with `errorCaught(TLSError)`, carrying OpenSSL's reason,
///   and closes the connection.
final class TLSHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State {
        /// Added, the channel not yet active.
        case idle
        case handshaking
        case open
        /// close_notify sent; the socket closes once it is written.
        case closing
        case closed
    }

    private let tls: TLSContext
    private let ssl: OpaquePointer
    /// Ciphertext received and not yet read by OpenSSL, oldest first.
    fileprivate var inbound = CircularBuffer<ByteBuffer>(initialCapacity: 4)
    fileprivate var inboundBytes = 0
    /// Ciphertext OpenSSL wrote, not yet passed to the channel.
    fileprivate var outbound: ByteBuffer?
    /// The allocator for `outbound` (the channel's, once known).
    fileprivate var allocator = ByteBufferAllocator()
    /// Small plaintext writes gathered for one `SSL_write` (one record instead of one each).
    private var gathered: ByteBuffer?
    private let handshakeTimeout: TimeAmount
    private var state = State.idle
    private var pendingWrites: [(ByteBuffer, EventLoopPromise<Void>?)] = []
    private var flushAfterHandshake = false
    /// Promises of plaintext already given to `SSL_write`, completed by the next flush's write.
    private var unflushedPromises: [EventLoopPromise<Void>] = []
    private var handshakeTimer: Scheduled<Void>?
    /// The peer's ALPN choice, once the handshake is done.
    private(set) var negotiatedProtocol: String?

    /// Plaintext is read in chunks of at least this many bytes (a TLS record's maximum).
    private static let readChunk = 16 * 1024
    /// Writes up to this size are gathered; larger ones go to `SSL_write` as they are.
    private static let gatherLimit = 4 * 1024
    /// A TLS 1.3 record's plaintext maximum, and the most one gathers.
    private static let recordSize = 16 * 1024
    /// A record's ciphertext beyond its plaintext: header (5), content type (1), AEAD tag (16).
    private static let recordOverhead = 22

    /// - Parameters:
    ///   - serverName: client side: the host name for SNI and for certificate verification
    ///     (an IP address is verified against the certificate's IP SANs, and sent no SNI).
    init(context tls: TLSContext, serverName: String?, handshakeTimeout: TimeAmount) throws {
        self.tls = tls
        self.handshakeTimeout = handshakeTimeout
        ERR_clear_error()
        guard let ssl = SSL_new(tls.context) else {
            throw TLSError(.configuration, TLSError.drainErrorQueue("SSL_new failed"))
        }
        guard let method = ByteBufferBIO.method, let bio = BIO_new(method) else {
            SSL_free(ssl)
            throw TLSError(.configuration, "BIO_new failed")
        }
        SSL_set_bio(ssl, bio, bio)  // the SSL owns the BIO from here (one reference for both ends)
        self.ssl = ssl
        // Unretained: the BIO dies with `ssl`, in this object's deinit.
        BIO_set_data(bio, Unmanaged.passUnretained(self).toOpaque())

        if tls.isServer {
            SSL_set_accept_state(ssl)
        } else {
            SSL_set_connect_state(ssl)
            let name = tls.configuration.serverName ?? serverName
            if let name, !name.isEmpty {
                let isIPAddress = name.contains(":") || name.allSatisfy { $0.isNumber || $0 == "." }
                if !isIPAddress {
                    // SSL_set_tlsext_host_name is a macro over SSL_ctrl; OpenSSL copies the name.
                    _ = name.withCString { cName in
                        SSL_ctrl(
                            ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, Int(TLSEXT_NAMETYPE_host_name),
                            UnsafeMutableRawPointer(mutating: cName))
                    }
                }
                if tls.configuration.verification != .none {
                    let ok: Bool
                    if isIPAddress {
                        ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) == 1
                    } else {
                        SSL_set_hostflags(ssl, UInt32(X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS))
                        ok = SSL_set1_host(ssl, name) == 1
                    }
                    if !ok {
                        // `ssl` is freed by deinit (this object is fully initialized).
                        throw TLSError(.configuration, "cannot verify against host name \(name): \(TLSError.drainErrorQueue("invalid"))")
                    }
                }
            }
        }
    }

    deinit {
        SSL_free(ssl)
    }

    // MARK: Lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        allocator = context.channel.allocator
        if context.channel.isActive { startHandshake(context: context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        handshakeTimer?.cancel()
        handshakeTimer = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        startHandshake(context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        let wasHandshaking = state == .handshaking
        state = .closed
        handshakeTimer?.cancel()
        handshakeTimer = nil
        failPending(ChannelError.ioOnClosedChannel)
        if wasHandshaking {
            context.fireErrorCaught(TLSError(.handshake, "the peer closed the connection during the TLS handshake"))
        }
        context.fireChannelInactive()
    }

    private func startHandshake(context: ChannelHandlerContext) {
        guard state == .idle else { return }
        state = .handshaking
        handshakeTimer = context.eventLoop.assumeIsolated().scheduleTask(in: handshakeTimeout) { [weak self] in
            guard let self, self.state == .handshaking else { return }
            let seconds = Double(self.handshakeTimeout.nanoseconds) / 1e9
            self.fail(context: context, TLSError(.handshakeTimeout, "no TLS handshake within \(seconds) s"))
        }
        advanceHandshake(context: context)
    }

    private func advanceHandshake(context: ChannelHandlerContext) {
        ERR_clear_error()
        let result = SSL_do_handshake(ssl)
        if result == 1 {
            state = .open
            handshakeTimer?.cancel()
            handshakeTimer = nil
            var protocolName: UnsafePointer<UInt8>?
            var protocolLength: UInt32 = 0
            SSL_get0_alpn_selected(ssl, &protocolName, &protocolLength)
            if let protocolName, protocolLength > 0 {
                negotiatedProtocol = String(
                    decoding: UnsafeBufferPointer(start: protocolName, count: Int(protocolLength)), as: UTF8.self)
            }
            writeCiphertext(context: context, promise: nil)
            let writes = pendingWrites
            pendingWrites = []
            for (buffer, promise) in writes { encrypt(context: context, buffer, promise: promise) }
            if flushAfterHandshake || !writes.isEmpty {
                flushAfterHandshake = false
                flush(context: context)
            }
            context.fireUserInboundEventTriggered(TLSHandshakeCompleted(negotiatedProtocol: negotiatedProtocol))
            return
        }
        switch SSL_get_error(ssl, result) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            writeCiphertext(context: context, promise: nil)
        default:
            var reason = TLSError.drainErrorQueue("handshake failed")
            let verifyResult = SSL_get_verify_result(ssl)
            if verifyResult != X509_V_OK, let text = X509_verify_cert_error_string(verifyResult) {
                reason = "certificate verify failed: \(String(cString: text))"
            }
            // The alert OpenSSL wrote tells the peer why.
            writeCiphertext(context: context, promise: nil)
            fail(context: context, TLSError(.handshake, reason))
        }
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        switch state {
        case .closed:
            return
        case .idle:
            feed(buffer)
            startHandshake(context: context)
        case .handshaking:
            feed(buffer)
            advanceHandshake(context: context)
        case .open, .closing:
            feed(buffer)
        }
        if state == .open || state == .closing { readPlaintext(context: context) }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if let outbound, outbound.readableBytes > 0 { writeCiphertext(context: context, promise: nil) }
        context.fireChannelReadComplete()
    }

    private func feed(_ buffer: ByteBuffer) {
        guard buffer.readableBytes > 0 else { return }
        inboundBytes += buffer.readableBytes
        inbound.append(buffer)
    }

    private func readPlaintext(context: ChannelHandlerContext) {
        var plaintext: ByteBuffer?
        var peerClosed = false
        var failure: TLSError?
        ERR_clear_error()
        reading: while true {
            // Plaintext is never longer than the ciphertext it came in, so a buffer the size
            // of what is queued (and what OpenSSL holds decrypted) usually takes the whole
            // read, without rounding a 64 KiB read up to a 128 KiB buffer. A record begun in
            // an earlier read can make it longer: then the full buffer goes up the pipeline
            // and another takes the rest, rather than growing (and copying) the first.
            // Taken out of `plaintext` so that it is uniquely referenced: writing into a
            // shared copy would copy everything read so far, on every record.
            var chunk = plaintext.take() ?? context.channel.allocator.buffer(
                capacity: max(inboundBytes + Int(SSL_pending(ssl)), 1024))
            if chunk.writableBytes == 0 {
                context.fireChannelRead(wrapInboundOut(chunk))
                guard state == .open || state == .closing else { return }  // a handler above closed
                chunk = context.channel.allocator.buffer(capacity: max(inboundBytes + Int(SSL_pending(ssl)), Self.readChunk))
            }
            var result: Int32 = 0
            chunk.writeWithUnsafeMutableBytes(minimumWritableBytes: 0) { space in
                result = SSL_read(ssl, space.baseAddress, Int32(clamping: space.count))
                return max(Int(result), 0)
            }
            plaintext = chunk
            if result > 0 { continue }
            switch SSL_get_error(ssl, result) {
            case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
                break reading
            case SSL_ERROR_ZERO_RETURN:
                peerClosed = true
                break reading
            default:
                failure = TLSError(.io, TLSError.drainErrorQueue("read failed"))
                break reading
            }
        }
        if let plaintext, plaintext.readableBytes > 0 {
            context.fireChannelRead(wrapInboundOut(plaintext))
        }
        if let failure {
            fail(context: context, failure)
        } else if peerClosed {
            // The peer sent close_notify: answer it and close (nothing more will come).
            close(context: context, mode: .all, promise: nil)
        }
    }

    // MARK: Outbound

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let buffer = unwrapOutboundIn(data)
        switch state {
        case .idle, .handshaking:
            pendingWrites.append((buffer, promise))
        case .open:
            if buffer.readableBytes <= Self.gatherLimit {
                gather(context: context, buffer)
                if let promise { unflushedPromises.append(promise) }
            } else {
                encryptGathered(context: context)
                encrypt(context: context, buffer, promise: promise)
            }
        case .closing, .closed:
            promise?.fail(ChannelError.ioOnClosedChannel)
        }
    }

    private func gather(context: ChannelHandlerContext, _ buffer: ByteBuffer) {
        if gathered == nil {
            gathered = context.channel.allocator.buffer(capacity: Self.recordSize)
        } else if gathered!.readableBytes + buffer.readableBytes > Self.recordSize {  // non-nil: else branch
            encryptGathered(context: context)
            gathered = context.channel.allocator.buffer(capacity: Self.recordSize)
        }
        gathered!.writeImmutableBuffer(buffer)  // non-nil: both branches above leave a buffer
    }

    private func encryptGathered(context: ChannelHandlerContext) {
        guard let buffer = gathered.take(), buffer.readableBytes > 0 else { return }
        encrypt(context: context, buffer, promise: nil)
    }

    func flush(context: ChannelHandlerContext) {
        switch state {
        case .idle, .handshaking:
            flushAfterHandshake = true
        case .open:
            encryptGathered(context: context)
            guard state == .open else { return }  // encrypting failed and closed
            let promises = unflushedPromises
            unflushedPromises = []
            var promise: EventLoopPromise<Void>?
            if promises.count == 1 {
                promise = promises[0]
            } else if promises.count > 1 {
                let combined = context.eventLoop.makePromise(of: Void.self)
                combined.futureResult.whenComplete { result in
                    for each in promises { each.completeWith(result) }
                }
                promise = combined
            }
            if !writeCiphertext(context: context, promise: promise) { promise?.succeed() }
        case .closing, .closed:
            context.flush()
        }
    }

    private func encrypt(context: ChannelHandlerContext, _ buffer: ByteBuffer, promise: EventLoopPromise<Void>?) {
        var failure: TLSError?
        ERR_clear_error()
        buffer.withUnsafeReadableBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                // One record per SSL_write, with room made for its ciphertext first, so the
                // BIO never grows (and copies) a buffer.
                let length = min(bytes.count - offset, Self.recordSize)
                let records = (bytes.count - offset + Self.recordSize - 1) / Self.recordSize
                makeRoom(
                    context: context, for: length + Self.recordOverhead,
                    of: bytes.count - offset + records * Self.recordOverhead)
                // A non-empty buffer (offset < count) has a base address.
                let written = SSL_write(ssl, bytes.baseAddress! + offset, Int32(length))
                if written > 0 {
                    offset += Int(written)
                } else {
                    failure = TLSError(.io, TLSError.drainErrorQueue("write failed (SSL error \(SSL_get_error(ssl, written)))"))
                    return
                }
            }
        }
        if let failure {
            promise?.fail(failure)
            fail(context: context, failure)
        } else if let promise {
            unflushedPromises.append(promise)
        }
    }

    /// Makes room in `outbound` for `count` bytes of ciphertext, the next of `upcoming`
    /// bytes this write produces. Large ciphertext goes into the thread's pooled buffers;
    /// a full one is handed to the channel (flushed with the rest) rather than grown to the
    /// size of the whole flush (16 × 64 KiB messages = 1 MiB).
    private func makeRoom(context: ChannelHandlerContext, for count: Int, of upcoming: Int) {
        if let outbound {
            if outbound.writableBytes >= count { return }
            if outbound.readableBytes + count > CiphertextBufferPool.bufferSize {
                hand(self.outbound.take()!, context: context, flushing: false, promise: nil)  // non-nil: `if let`
            }
        }
        if (outbound?.readableBytes ?? 0) + upcoming >= Self.recordSize {
            var pooled = CiphertextBufferPool.current.take(allocator: allocator)
            if let small = outbound.take() { pooled.writeImmutableBuffer(small) }
            outbound = pooled
        } else {
            reserveOutbound(upcoming)
        }
    }

    fileprivate func reserveOutbound(_ count: Int) {
        if outbound == nil {
            outbound = allocator.buffer(capacity: max(count, 1024))
        } else {
            outbound!.reserveCapacity(minimumWritableBytes: count)  // non-nil: the branch above handles nil
        }
    }

    /// Passes ciphertext to the channel; a pooled buffer goes back to the pool for reuse
    /// once written.
    private func hand(
        _ buffer: ByteBuffer, context: ChannelHandlerContext, flushing: Bool, promise: EventLoopPromise<Void>?
    ) {
        if buffer.capacity == CiphertextBufferPool.bufferSize { CiphertextBufferPool.current.keep(buffer) }
        if flushing {
            context.writeAndFlush(wrapOutboundOut(buffer), promise: promise)
        } else {
            context.write(wrapOutboundOut(buffer), promise: promise)
        }
    }

    /// Writes and flushes whatever ciphertext OpenSSL produced; false if there was none.
    @discardableResult
    private func writeCiphertext(context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) -> Bool {
        guard let buffer = outbound.take(), buffer.readableBytes > 0 else { return false }
        hand(buffer, context: context, flushing: true, promise: promise)
        return true
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        switch (state, mode) {
        case (.open, .all), (.open, .output):
            state = .closing
            flush(context: context)
            ERR_clear_error()
            SSL_shutdown(ssl)  // queues close_notify; we do not wait for the peer's
            ERR_clear_error()
            let written = context.eventLoop.makePromise(of: Void.self)
            if writeCiphertext(context: context, promise: written) {
                written.futureResult.assumeIsolated().whenComplete { _ in
                    context.close(mode: mode, promise: promise)
                }
            } else {
                written.succeed()
                context.close(mode: mode, promise: promise)
            }
        case (.idle, .all), (.handshaking, .all):
            state = .closed
            handshakeTimer?.cancel()
            handshakeTimer = nil
            failPending(ChannelError.ioOnClosedChannel)
            context.close(mode: mode, promise: promise)
        default:
            context.close(mode: mode, promise: promise)
        }
    }

    // MARK: Failure

    private func failPending(_ error: any Error) {
        gathered = nil
        let writes = pendingWrites
        pendingWrites = []
        for (_, promise) in writes { promise?.fail(error) }
        let promises = unflushedPromises
        unflushedPromises = []
        for promise in promises { promise.fail(error) }
    }

    private func fail(context: ChannelHandlerContext, _ error: TLSError) {
        guard state != .closed else { return }
        state = .closed
        handshakeTimer?.cancel()
        handshakeTimer = nil
        failPending(error)
        context.fireErrorCaught(error)
        context.close(promise: nil)
    }
}

extension TLSContext {
    /// A TLS handler for one connection of an application's own NIO bootstrap, to go first
    /// in the channel's pipeline: on a server, in front of `configureHTTPServerPipeline()`
    /// and `WebSocketServer.upgradeHandler(routes:)` to serve wss:// there. The handshake is
    /// bounded by the configuration's `handshakeTimeout`; completion is announced with
    /// `TLSHandshakeCompleted`, failures with `TLSError`.
    ///
    /// - Parameter serverName: client side only: the host for SNI and verification when
    ///   the configuration names none.
    public func makeHandler(serverName: String? = nil) throws -> any ChannelHandler {
        try TLSHandler(
            context: self, serverName: serverName, handshakeTimeout: TimeAmount(configuration.handshakeTimeout))
    }
}

/// Fired inbound (`userInboundEventTriggered`) once the TLS handshake completed.
public struct TLSHandshakeCompleted: Sendable, Hashable {
    /// The ALPN protocol both sides agreed on, if any.
    public var negotiatedProtocol: String?
}

/// The BIO under every `TLSHandler`'s `SSL`: reads come out of the handler's `inbound`
/// buffers, writes go into its `outbound` buffer. An empty `inbound` means "retry when
/// more arrives", never end of stream.
private enum ByteBufferBIO {
    nonisolated(unsafe) static let method: OpaquePointer? = {
        guard let method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "switchboard-bytebuffer") else {
            return nil
        }
        BIO_meth_set_create(method) { bio in
            BIO_set_init(bio, 1)
            return 1
        }
        BIO_meth_set_destroy(method) { _ in 1 }
        BIO_meth_set_read(method) { bio, out, length in
            BIO_clear_flags(bio, BIO_FLAGS_READ | BIO_FLAGS_WRITE | BIO_FLAGS_IO_SPECIAL | BIO_FLAGS_SHOULD_RETRY)
            guard let out, length > 0, let data = BIO_get_data(bio) else { return 0 }
            let wanted = Int(length)
            // Guaranteed: OpenSSL calls the BIO only inside the handler's own SSL_* calls.
            // (Retaining it each time would take the slow path: a handler with a weak
            // reference has a side table.)
            let copied = Unmanaged<TLSHandler>.fromOpaque(data)._withUnsafeGuaranteedRef { handler in
                var copied = 0
                while copied < wanted, var first = handler.inbound.first {
                    let count = min(wanted - copied, first.readableBytes)
                    // `feed` never queues an empty buffer and drained ones are removed: a base address exists.
                    first.withUnsafeReadableBytes { bytes in
                        UnsafeMutableRawPointer(out + copied).copyMemory(from: bytes.baseAddress!, byteCount: count)
                    }
                    first.moveReaderIndex(forwardBy: count)
                    copied += count
                    if first.readableBytes == 0 {
                        handler.inbound.removeFirst()  // let the socket's receive buffer go back to it
                    } else {
                        handler.inbound[handler.inbound.startIndex] = first
                    }
                }
                handler.inboundBytes -= copied
                return copied
            }
            if copied == 0 {
                BIO_set_flags(bio, BIO_FLAGS_READ | BIO_FLAGS_SHOULD_RETRY)
                return -1
            }
            return Int32(copied)
        }
        BIO_meth_set_write(method) { bio, input, length in
            BIO_clear_flags(bio, BIO_FLAGS_READ | BIO_FLAGS_WRITE | BIO_FLAGS_IO_SPECIAL | BIO_FLAGS_SHOULD_RETRY)
            guard let input, length > 0, let data = BIO_get_data(bio) else { return 0 }
            let count = Int(length)
            Unmanaged<TLSHandler>.fromOpaque(data)._withUnsafeGuaranteedRef { handler in  // guaranteed: as in read
                handler.reserveOutbound(count)
                handler.outbound!.writeBytes(UnsafeRawBufferPointer(start: input, count: count))  // made just above
            }
            return length
        }
        BIO_meth_set_ctrl(method) { bio, command, _, _ in
            switch command {
            case BIO_CTRL_FLUSH:
                return 1
            case BIO_CTRL_PENDING:
                guard let data = BIO_get_data(bio) else { return 0 }
                return Unmanaged<TLSHandler>.fromOpaque(data)._withUnsafeGuaranteedRef { $0.inboundBytes }
            default:
                return 0
            }
        }
        return method
    }()
}
