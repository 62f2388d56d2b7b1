import COpenSSLPeer
import NIOCore
import NIOEmbedded
import WebSockets

/// One connection: the handler under test and a `Recorder` in an `EmbeddedChannel`, the
/// peer, and the peer's ciphertext not yet handed to the handler (where the fuzzer may cut
/// or tamper with it).
final class Session {
    let channel: EmbeddedChannel
    let recorder = Recorder()
    let peer: Peer
    /// The peer's ciphertext, not yet given to the handler.
    private var toHandler: [UInt8] = []
    /// Plaintext bytes written on the handler's side (`Pattern.toPeer` positions), and of
    /// those, the ones followed by a flush.
    private var written = 0
    private var flushed = 0
    private var writePromises = 0
    private var completedPromises = 0
    /// Ciphertext bytes for the handler were changed or made up.
    private var tampered = false
    private var timedOut = false
    private var handlerClosed = false
    /// The handler side closed a connection that was open and sound.
    private var closedWhileOpen = false

    init(handlerIsServer: Bool, tls12: Bool) {
        let fixture = Fixture.shared
        let handler = try! (handlerIsServer ? fixture.ourServer : fixture.ourClient).makeHandler()
        channel = EmbeddedChannel(handlers: [handler, recorder])
        peer = Peer(
            context: handlerIsServer ? fixture.peerClient : fixture.peerServer, isServer: !handlerIsServer,
            maximumVersion: tls12 ? TLS1_2_VERSION : TLS1_3_VERSION)
        try! channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 443)).wait()
    }

    func perform(_ operation: UInt8, _ input: inout Input) {
        switch operation % 16 {
        case 0: peerWrite(Int(input.next()) + 1)
        case 1: peerWrite((Int(input.next()) + 1) * 300)
        case 2: write(count: Int(input.next()) + 1, flush: true)
        case 3: write(count: (Int(input.next()) + 1) * 300, flush: true)
        case 4: write(count: Int(input.next()) + 1, flush: false)
        case 5: flush()
        case 6:
            let count = Int(input.next())
            deliverToHandler(count == 0 ? nil : count)
        case 7: deliverToPeer()
        case 8: peer.shutdown()
        case 9: peer.renegotiate(requestUpdate: input.next() & 1 == 1)
        case 10:
            let offset = Int(input.next())
            let bit = input.next() % 8
            collectPeerOutput()
            if offset < toHandler.count {
                toHandler[offset] ^= 1 << bit
                tampered = true
            }
        case 11:
            collectPeerOutput()
            let bytes = input.take(Int(input.next()))
            toHandler += bytes
            tampered = tampered || !bytes.isEmpty
        case 12:
            closedWhileOpen = closedWhileOpen
                || (!handlerClosed && recorder.isHandshakeDone && channel.isActive && recorder.errors.isEmpty)
            handlerClosed = true
            channel.close(promise: nil)
        case 13:
            timedOut = timedOut || !recorder.isHandshakeDone
            channel.embeddedEventLoop.advanceTime(by: .seconds(20))
        case 14: peer.pump()
        default:
            for _ in 0..<input.next() { deliverToHandler(1) }
        }
        checkErrors()
    }

    /// Plaintext each side may write in one input: past it writes are skipped, so that no
    /// input takes seconds (CI runs this fuzzer with `-timeout=10`).
    private static let writeBudget = 1 << 20
    private var peerWritten = 0

    private func peerWrite(_ count: Int) {
        guard peerWritten + count <= Self.writeBudget else { return }
        peerWritten += count
        peer.write(count: count)
    }

    private func write(count: Int, flush: Bool) {
        guard written + count <= Self.writeBudget else {
            if flush { self.flush() }
            return
        }
        var buffer = channel.allocator.buffer(capacity: count)
        Pattern.toPeer.write(count, from: written, to: &buffer)
        written += count
        if flush { flushed = written }
        let promise = channel.eventLoop.makePromise(of: Void.self)
        writePromises += 1
        promise.futureResult.whenComplete { _ in self.completedPromises += 1 }
        if flush {
            channel.writeAndFlush(buffer, promise: promise)
        } else {
            channel.write(buffer, promise: promise)
        }
    }

    private func flush() {
        flushed = written
        channel.flush()
    }

    private func collectPeerOutput() {
        toHandler += peer.takeOutput()
    }

    /// Gives the handler the next `count` bytes of the peer's ciphertext (all if nil), as one read.
    private func deliverToHandler(_ count: Int?) {
        collectPeerOutput()
        guard !toHandler.isEmpty, channel.isActive else { return }
        let count = min(count ?? toHandler.count, toHandler.count)
        let buffer = channel.allocator.buffer(bytes: toHandler.prefix(count))
        toHandler.removeFirst(count)
        try! channel.writeInbound(buffer)
    }

    /// Gives the peer all the ciphertext the handler wrote; false if there was none.
    @discardableResult
    private func deliverToPeer() -> Bool {
        var moved = false
        while let buffer = try! channel.readOutbound(as: ByteBuffer.self) {
            peer.receive(buffer)
            moved = moved || buffer.readableBytes > 0
        }
        peer.pump()
        return moved
    }

    /// Errors are `TLSError`s, one at most, and each has a cause the fuzzer made.
    private func checkErrors() {
        guard let error = recorder.errors.first else { return }
        require(recorder.errors.count == 1, "\(recorder.errors.count) errors: \(recorder.errors)")
        require(error is TLSError, "not a TLSError: \(error)")
        require(
            tampered || timedOut || !peer.isUsable,
            "the handler failed with nothing wrong on the wire: \(error) (peer: \(peer.failure ?? "fine"))")
    }

    /// Both sides exchange what they have until nothing moves; then what was sent must
    /// have arrived unless something closed or failed.
    func settle() {
        if channel.isActive { flush() }
        for _ in 0..<64 {
            let toPeer = deliverToPeer()
            collectPeerOutput()
            let fromPeer = !toHandler.isEmpty && channel.isActive
            deliverToHandler(nil)
            if !toPeer && !fromPeer { break }
        }
        toHandler = []
        checkErrors()
        if !tampered && peer.sentCloseNotify && recorder.isHandshakeDone && recorder.errors.isEmpty {
            require(!channel.isActive, "the peer's close_notify arrived and the channel is still open")
        }
        if closedWhileOpen {
            require(!channel.isActive, "the handler side closed and the channel is still open")
            require(
                peer.receivedCloseNotify || !peer.isUsable,
                "the handler side closed an open connection without close_notify")
        }
        let undisturbed = !tampered && !timedOut && !handlerClosed && peer.isUsable && !peer.sentCloseNotify
            && !peer.receivedCloseNotify && recorder.errors.isEmpty && recorder.isHandshakeDone && peer.isHandshakeDone
        if undisturbed {
            require(recorder.received == peer.written, "the handler read \(recorder.received) of \(peer.written) bytes")
            require(peer.received == flushed, "the peer read \(peer.received) of \(flushed) flushed bytes")
        }
    }

    /// Closes the channel; every write promise must have completed.
    func finish() {
        _ = try? channel.finish(acceptAlreadyClosed: true)
        checkErrors()
        require(
            completedPromises == writePromises, "\(writePromises - completedPromises) of \(writePromises) write promises pending")
    }
}
