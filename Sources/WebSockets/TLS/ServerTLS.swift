import Dispatch
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

extension WebSocketServer {
    /// Reads `options.tls`'s certificate, key and CA files again: connections accepted from
    /// now on use the new ones, live connections keep theirs. On error (a missing or bad
    /// file) the current certificate stays in use and the error is thrown.
    public func reloadTLS() throws {
        guard let tls = tlsContext.withLockedValue({ $0 }) else {
            throw TLSError(.configuration, "the server has no TLS configuration (or is not listening yet)")
        }
        try tls.reload()
    }

    /// Calls `reloadTLS()` on every SIGHUP until the returned source is cancelled;
    /// `onReload` hears the outcome (nil on success). SIGHUP's default action (exit) is
    /// replaced by this.
    public func reloadTLSOnSIGHUP(onReload: @escaping @Sendable ((any Error)?) -> Void = { _ in })
        -> any DispatchSourceSignal
    {
        signal(SIGHUP, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        source.setEventHandler { [self] in
            do {
                try reloadTLS()
                onReload(nil)
            } catch {
                onReload(error)
            }
        }
        source.resume()
        return source
    }

    func makeTLSHandler(_ tls: ReloadableTLSContext) throws -> TLSHandler {
        let timeout = min(tls.configuration.handshakeTimeout, options.handshakeTimeout)
        return try TLSHandler(context: tls.context, serverName: nil, handshakeTimeout: TimeAmount(timeout))
    }
}
