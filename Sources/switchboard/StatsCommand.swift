import ArgumentParser
import Foundation

/// `switchboard stats [--watch]`: the broker's counters, once or refreshed with rates.
struct StatsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats", abstract: "Show the broker's counters; --watch refreshes them with rates (admin API).",
        discussion: """
            Examples:
              switchboard stats
              switchboard stats --watch --interval 2
              switchboard stats --watch --count 5 --json    # five samples, one a second
              switchboard stats --json

            \(ExitStatus.help)
            """)
    @OptionGroup var admin: AdminOptions
    @Flag(help: "Refresh until interrupted, with rates per second.") var watch = false
    @Option(help: "Seconds between refreshes with --watch (default 1).") var interval: Double = 1
    @Option(help: "With --watch: stop after this many refreshes (default: until interrupted).") var count: Int?

    func validate() throws {
        guard interval >= 0.1, interval <= 3600 else { throw ValidationError("--interval must be 0.1 to 3600 seconds") }
        if let count {
            guard watch else { throw ValidationError("--count needs --watch") }
            guard count >= 1 else { throw ValidationError("--count must be at least 1, not \(count)") }
        }
    }

    func run() async throws {
        let client = await admin.client()
        var previous: (at: ContinuousClock.Instant, info: [String: Any])?
        var shown = 0
        repeat {
            let info = await client.call("GET", "admin/v1/info")
            let now = ContinuousClock.now
            if !client.printJSON(info) {
                if watch, isatty(STDOUT_FILENO) != 0 { print("\u{1B}[H\u{1B}[2J", terminator: "") }
                render(info, since: previous.map { (now - $0.at, $0.info) })
            }
            previous = (now, info)
            shown += 1
            if shown == count { return }
            if watch { try await Task.sleep(for: .seconds(interval)) }
        } while watch
    }

    private func render(_ info: [String: Any], since previous: (Duration, [String: Any])?) {
        func number(_ object: [String: Any], _ key: String) -> Double { (object[key] as? NSNumber)?.doubleValue ?? 0 }
        func rate(_ key: String) -> String {
            guard let (elapsed, before) = previous else { return "" }
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            guard seconds > 0 else { return "" }
            return String(format: "%.1f/s", (number(info, key) - number(before, key)) / seconds)
        }
        var rows: [[String]] = [
            ["status", Table.text(info["status"]) + (info["reason"].map { " (\($0))" } ?? ""), ""],
            ["version", Table.text(info["version"]), ""],
            ["uptime", "\(Int(number(info, "uptime_seconds")))s", ""],
            ["connections", Table.text(info["connections"]), ""],
            ["topics", Table.text(info["topics"]), ""],
            ["subscriptions", Table.text(info["subscriptions"]), ""],
        ]
        for key in ["messages_in", "messages_out", "bytes_in", "bytes_out", "replayed", "gaps_sent",
                    "slow_consumer_closes", "slow_consumer_drops"] {
            rows.append([key.replacingOccurrences(of: "_", with: " "), Table.text(info[key]), rate(key)])
        }
        if let replay = info["replay"] as? [String: Any] {
            rows.append(["replay log", Table.text(replay["status"]) + (replay["reason"].map { " (\($0))" } ?? ""), ""])
            rows.append(["replay log size", Table.text(replay["size_bytes"]) + " bytes", ""])
            rows.append(["replay queue", "\(Table.text(replay["queue_depth"])) of \(Table.text(replay["queue_limit"]))", ""])
        }
        Table.print(["", "", watch ? "RATE" : ""], rows)
    }
}

/// `switchboard connections [--close ID]`: who is connected; closing one.
struct ConnectionsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "connections", abstract: "List open connections, or close one with 4003 (admin API).",
        discussion: """
            Examples:
              switchboard connections
              switchboard connections --limit 1000 --json
              switchboard connections --close 17

            \(ExitStatus.help)
            """)
    @OptionGroup var admin: AdminOptions
    @Option(help: "Close this connection (its id from the list).") var close: UInt64?
    @Option(help: "At most this many (default 100, at most 1000).") var limit: Int = 100

    func validate() throws {
        guard (1...1000).contains(limit) else { throw ValidationError("--limit must be 1 to 1000, not \(limit)") }
    }

    func run() async {
        let client = await admin.client()
        if let close {
            let answer = await client.call("POST", "admin/v1/connections/\(close)/close")
            if !client.printJSON(answer) { print("closed connection \(close)") }
            return
        }
        let answer = await client.call("GET", "admin/v1/connections?limit=\(limit)")
        guard !client.printJSON(answer) else { return }
        let rows = (answer["connections"] as? [[String: Any]] ?? []).map { connection in
            [
                Table.text(connection["id"]), Table.text(connection["peer"]), Table.text(connection["principal"]),
                ((connection["subscriptions"] as? [String]) ?? []).joined(separator: ","),
                Table.text(connection["queued_bytes"]),
                "\(Int((connection["age_seconds"] as? NSNumber)?.doubleValue ?? 0))s",
            ]
        }
        Table.print(["ID", "PEER", "PRINCIPAL", "SUBSCRIPTIONS", "QUEUED", "AGE"], rows)
        if answer["next"] != nil { print("(more: raise --limit)") }
    }
}

/// `switchboard ready`: asks `/readyz` (no token), for health checks such as Docker's.
struct ReadyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ready", abstract: "Exit 0 when the broker is ready (GET /readyz), else print why and exit 1.",
        discussion: """
            Examples:
              switchboard ready
              switchboard ready --server http://127.0.0.1:8080   # a Docker HEALTHCHECK

            Exit status: 0 ready; 1 not ready; 64 bad arguments; 69 server unreachable.
            """)
    @Option(help: "The broker's URL (default $SWITCHBOARD_URL, else http://127.0.0.1:8080).") var server: String?

    func run() async {
        let base = server ?? ProcessInfo.processInfo.environment["SWITCHBOARD_URL"] ?? "http://127.0.0.1:8080"
        let client = AdminClient.at(base, token: nil, json: false)
        let (status, object) = await client.fetch("GET", "readyz")
        guard status == 200 else {
            Terminal.exit(withError: "not ready: \(Table.text(object?["reason"]))", status: 1)
        }
        print("ready")
    }
}
