import ArgumentParser
import Foundation
import SwitchboardClient

/// A live dashboard on the SDK: `publish` samples this machine's load, memory and CPU from
/// /proc ten times a second to `metrics.HOST.load|memory|cpu`; `view` shows the latest value
/// of every metric, opening with the last one each topic retained (`.last(1)`), so a viewer
/// started between samples, or after the publisher stopped, is not blank.
@main
struct Dashboard: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dashboard", abstract: "Publish system metrics, or view them live.",
        subcommands: [Publish.self, View.self])

    struct Connection: ParsableArguments {
        @Option(help: "Broker URL.") var url = "ws://127.0.0.1:8080/"
        @Option(help: "Token (default: SWITCHBOARD_TOKEN).") var token: String?

        func client() throws -> SwitchboardClient {
            let secret = token ?? ProcessInfo.processInfo.environment["SWITCHBOARD_TOKEN"]
            do {
                return try SwitchboardClient(url: url, token: secret.map { .static($0) } ?? .none)
            } catch {
                throw ValidationError("\(error)")
            }
        }
    }

    struct Publish: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Publish load, memory and CPU to metrics.HOST.* at 10 Hz until interrupted.")
        @OptionGroup var connection: Connection
        @Option(help: "The host segment of the topics (default: this host's name).") var host: String?

        func run() async throws {
            let segment = topicSegment(host ?? ProcessInfo.processInfo.hostName)
            guard !segment.isEmpty else { throw ValidationError("--host must have a letter or digit") }
            var sampler = try SystemSampler()
            let client = try connection.client()
            while !Task.isCancelled {
                for (metric, values) in try sampler.sample() {
                    // Without an ack: a sample that waits is worth less than the next one.
                    try client.publishWithoutAck("metrics.\(segment).\(metric)", json: values)
                }
                try await Task.sleep(for: .milliseconds(100))
            }
            await client.close()
        }
    }

    struct View: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show the latest metrics of every host, or of one.")
        @OptionGroup var connection: Connection
        @Option(help: "Only this host (a topic segment, as `publish --host` made it).") var host: String?

        func run() async throws {
            let client = try connection.client()
            let pattern = host.map { "metrics.\(topicSegment($0)).*" } ?? "metrics.>"
            var latest: [String: [String: Double]] = [:]
            var lost: [String] = []
            for try await event in try await client.subscribe(pattern, from: .last(1)) {
                switch event {
                case .message(let message):
                    latest[message.topic] = try? message.decode([String: Double].self)
                case .gap(let gap):
                    lost.append("\(gap.topic): \(gap.to - gap.from + 1) samples missed (\(gap.reason))")
                }
                render(latest, notes: lost.suffix(3))
            }
        }

        private func render(_ latest: [String: [String: Double]], notes: ArraySlice<String>) {
            var screen = "\u{1B}[H\u{1B}[J"  // cursor home, clear to the end
            for (topic, values) in latest.sorted(by: { $0.key < $1.key }) {
                let fields = values.sorted { $0.key < $1.key }.map { "\($0.key) \(String(format: "%.2f", $0.value))" }
                screen += topic.padding(toLength: 32, withPad: " ", startingAt: 0) + fields.joined(separator: "  ") + "\n"
            }
            for note in notes { screen += note + "\n" }
            // One write per frame, unbuffered, so a pipe sees it as a terminal does.
            FileHandle.standardOutput.write(Data(screen.utf8))
        }
    }
}

/// `name` as one topic segment: characters a segment may not hold become `-`.
func topicSegment(_ name: String) -> String {
    let allowed = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
    let first = name.split(separator: ".").first.map(String.init) ?? name
    return String(first.prefix(64).map { allowed.contains($0) ? $0 : "-" })
}
