import Logging
import NIOCore
import WebSocketCore
import WebSockets

extension Engine {
    /// How one connection attempt, or one connection, ended.
    enum Outcome: Equatable {
        /// Try again after the backoff delay.
        case retry(code: UInt16?, reason: String)
        /// The token expired: ask the provider for a fresh one at once (once).
        case renewToken
        case fatal(CloseReason)
    }

    /// Connects, and reconnects with backoff, until the client closes. The one task the client
    /// runs; `close()` waits for it.
    func run() async {
        var attempt = 0
        var renewed = false
        while await withCore({ $0.beginAttempt() }) {
            var ending: Outcome
            switch await connectOnce() {
            case .ended(let outcome): ending = outcome
            case .connected(let ws):
                attempt = 0
                renewed = false
                let info = (try? await ws.waitUntilClosed()) ?? CloseInfo(code: .abnormalClosure, reason: "", wasClean: false)
                guard await withCore({ $0.disconnected(ws, info) }) else { return }
                ending = Self.classify(info)
            }
            if ending == .renewToken {
                if token.isProvider, !renewed {
                    renewed = true
                    continue
                }
                ending = .fatal(.tokenExpired)
            }
            switch ending {
            case .fatal(let reason):
                onLoop { $0.finish(reason) }
                return
            case .retry(let code, let reason):
                let delay = options.reconnect.delay(attempt: attempt)
                attempt += 1
                options.logger.debug("reconnecting", metadata: ["in": "\(delay)", "reason": "\(reason)"])
                let proceed = await withCheckedContinuation { continuation in
                    onLoop { $0.waitToRetry(delay, code: code, reason: reason, continuation) }
                }
                guard proceed else { return }
            case .renewToken: continue
            }
        }
    }

    private enum Attempt {
        case connected(WebSocket)
        case ended(Outcome)
    }

    /// One attempt: a token, the handshake, the core takes the connection.
    private func connectOnce() async -> Attempt {
        var webSocket = options.webSocket
        webSocket.protocols = ["switchboard.v1"]
        webSocket.connection.heartbeat = options.heartbeat
        let ws: WebSocket
        do {
            if let token = try await token.current() {
                webSocket.headers.replaceOrAdd(name: "Authorization", value: "Bearer \(token)")
            }
            ws = try await WebSocket.connect(to: url, options: webSocket, group: loop)
        } catch {
            return .ended(Self.classify(error))
        }
        guard await withCore({ $0.connected(ws) }) else {
            ws.closeWithoutWaiting()
            return .ended(.fatal(.closedByApplication))
        }
        return .connected(ws)
    }

    /// A failed attempt: refusals of the token end the client (a revoked or unknown token is
    /// not retried blindly; an expired one gets one fresh token), as do answers a retry cannot
    /// change; everything else (unreachable, 5xx, 429, timeouts) is retried.
    static func classify(_ error: any Error) -> Outcome {
        guard let refusal = error as? ConnectError, case .unexpectedResponse(let status, _, let body) = refusal else {
            return .retry(code: nil, reason: "\(error)")
        }
        let line = String(body.split(separator: "\n").first ?? "")
        switch status {
        case 401:
            // "unauthorized: REASON: message" (docs/protocol.md).
            let reason = line.split(separator: ":").dropFirst().first.map { String($0.drop { $0 == " " }) } ?? line
            switch reason {
            case "revoked": return .fatal(.tokenRevoked)
            case "expired": return .renewToken
            default: return .fatal(.unauthorized(reason.isEmpty ? "401" : reason))
            }
        case 408, 429, 500...: return .retry(code: nil, reason: "HTTP \(status): \(line)")
        default: return .fatal(.refused(status: status, body: line))
        }
    }

    /// The end of a connection that was open.
    static func classify(_ info: CloseInfo) -> Outcome {
        switch info.code.rawValue {
        case 4001: return .fatal(.tokenRevoked)
        case 4002: return .renewToken
        default: return .retry(code: info.code.rawValue, reason: info.reason)
        }
    }
}
