import Logging
import NIOCore
import WebSocketCore

extension Logger {
    /// The default logger of servers and clients: the label `websockets`, no output.
    package static let silent = Logger(label: "websockets", factory: { _ in SwiftLogNoOpLogHandler() })
}

/// A peer's address for log lines: `ip:port` (`[ip]:port` for IPv6), or a unix socket's path.
func peerDescription(_ address: SocketAddress?) -> String {
    guard let address else { return "?" }
    if let ip = address.ipAddress, let port = address.port {
        return ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)"
    }
    return address.pathname ?? "\(address)"
}

extension WebSocket {
    /// The peer and the request path, never the query (it may carry a token).
    var logMetadata: Logger.Metadata {
        ["peer": "\(peerDescription(remoteAddress))", "path": "\(handshake.path)"]
    }

    /// Logs how the connection ended: a protocol error of the peer at `.info`, any other
    /// close at `.debug`. On the connection's event loop, once its channel has closed.
    func logClose(to logger: Logger) {
        let handler = self.handler
        guard let info = handler.closeInfo else { return }
        let failure = handler.failure
        let level: Logger.Level = failure is WebSocketError ? .info : .debug
        guard logger.logLevel <= level else { return }
        var metadata = logMetadata
        switch failure {
        case let error as WebSocketError:
            metadata["code"] = "\(error.closeCode.rawValue)"
            metadata["reason"] = "\(error.reason)"
            logger.log(level: level, "protocol error", metadata: metadata)
        case let error?:
            metadata["code"] = "\(info.code.rawValue)"
            metadata["error"] = "\(error)"
            logger.log(level: level, "connection failed", metadata: metadata)
        case nil:
            metadata["code"] = "\(info.code.rawValue)"
            metadata["reason"] = "\(info.reason)"
            metadata["clean"] = "\(info.wasClean)"
            logger.log(level: level, "connection closed", metadata: metadata)
        }
    }
}
