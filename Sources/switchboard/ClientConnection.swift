import ArgumentParser
import Foundation
import SwitchboardClient

/// Where `switchboard sub` and `pub` connect, and the exit statuses they share with the admin
/// commands (`ExitStatus`).
struct ClientConnection: ParsableArguments {
    @Option(help: "Broker URL (default SWITCHBOARD_URL, else ws://127.0.0.1:8080/).") var url: String?
    @Option(help: "Token (default SWITCHBOARD_TOKEN, else ./switchboard.db.admin-token when it exists).")
    var token: String?
    @Option(help: "File holding the token.") var tokenFile: String?

    /// The exit statuses of `sub` and `pub`, for their `--help`.
    static let exitStatusHelp = """
        Exit status: 0 done; 64 bad arguments; 65 refused as invalid (too large, bad request); \
        69 broker unreachable or the connection lost; 75 broker unavailable (try again); \
        77 token or topic refused.
        """

    func validate() throws {
        if token != nil, tokenFile != nil { throw ValidationError("--token and --token-file: give one of them") }
    }

    /// A client that has connected once; exits with a line and a status when it cannot.
    func connect() async -> SwitchboardClient {
        let environment = ProcessInfo.processInfo.environment
        let url = BrokerURL.converting(url ?? environment["SWITCHBOARD_URL"] ?? "ws://127.0.0.1:8080/", to: "ws")
        let client: SwitchboardClient
        do {
            client = try SwitchboardClient(url: url, token: resolvedToken(environment))
        } catch {
            Terminal.exit(withError: "\(error)", status: ExitStatus.usage)
        }
        for await state in client.states {
            switch state {
            case .connecting: continue
            case .connected: return client
            case .disconnected(_, let reason, _):
                Terminal.exit(withError: "cannot reach the broker at \(url): \(reason)", status: ExitStatus.unavailable)
            case .closed(let reason):
                Terminal.exit(withError: "\(url): \(reason)", status: Self.status(for: reason))
            }
        }
        Terminal.exit(withError: "\(url): the client closed", status: ExitStatus.unavailable)
    }

    private func resolvedToken(_ environment: [String: String]) -> Token {
        if let token { return .static(token) }
        let file = tokenFile ?? (environment["SWITCHBOARD_TOKEN"] == nil ? "switchboard.db.admin-token" : nil)
        if let file {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                if tokenFile != nil { Terminal.exit(withError: "cannot read the token file \(file)", status: ExitStatus.usage) }
                return .none
            }
            return .static(text.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return environment["SWITCHBOARD_TOKEN"].map { .static($0) } ?? .none
    }

    static func status(for reason: CloseReason) -> Int32 {
        switch reason {
        case .tokenRevoked, .tokenExpired, .unauthorized: return ExitStatus.noPermission
        case .refused, .closedByApplication: return ExitStatus.unavailable
        }
    }

    /// Exits with the line and status an error of a subscribe or publish calls for.
    static func exit(_ error: any Error) -> Never {
        switch error {
        case SwitchboardClientError.broker(let code, let message) where code == .forbidden:
            Terminal.exit(withError: "forbidden: \(message)", status: ExitStatus.noPermission)
        case SwitchboardClientError.broker(let code, let message) where code == .unavailable:
            Terminal.exit(withError: "unavailable: \(message)", status: ExitStatus.tryAgain)
        case SwitchboardClientError.broker(let code, let message):
            Terminal.exit(withError: "\(code): \(message)", status: ExitStatus.dataError)
        case SwitchboardClientError.closed(let reason):
            Terminal.exit(withError: "\(reason)", status: status(for: reason))
        default:
            Terminal.exit(withError: "\(error)", status: ExitStatus.unavailable)
        }
    }
}
