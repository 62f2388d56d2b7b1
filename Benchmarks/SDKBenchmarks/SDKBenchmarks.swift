// SwitchboardClient benchmarks against a running `switchboard serve` (Benchmarks/sdk.sh starts
// the server on CPU 0 and runs these on CPU 1). Release build:
//
//   swift build -c release --product SDKBenchmarks
//   .build/release/SDKBenchmarks subscribe PORT TOPIC COUNT --client sdk|raw
//   .build/release/SDKBenchmarks publish PORT TOPIC TOTAL --client sdk|raw --window 256
//
// `raw` is the baseline: the plain WebSocket client of the WebSockets module (what the SDK is
// built on) speaking docs/protocol.md by hand, reading only the bytes it needs. `sdk` is the
// same job through SwitchboardClient: every message parsed, checked against the
// subscription's positions and handed through its async sequence; every publish awaited.
// Each mode prints one line and a RESULT line (JSON) for the script.
import ArgumentParser
import Foundation

enum ClientKind: String, ExpressibleByArgument, CaseIterable {
    case sdk, raw
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Seconds of CPU (user + system) this process has used.
func processCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
    return seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Times `body` (returning its message count) and prints the line and RESULT for `mode`.
func measure(_ mode: String, _ client: ClientKind, _ body: () async throws -> Int) async throws {
    let cpuBefore = processCPUSeconds()
    let start = ContinuousClock.now
    let count = try await body()
    let elapsed = (ContinuousClock.now - start) / .seconds(1)
    let cpu = processCPUSeconds() - cpuBefore
    let rate = Int(Double(count) / elapsed)
    let perMessage = cpu / Double(max(1, count)) * 1e6
    print(
        "\(mode) \(client): \(count) messages in \(String(format: "%.2f", elapsed)) s = \(rate) msg/s, "
            + "client CPU \(Int(cpu / elapsed * 100))% = \(String(format: "%.2f", perMessage)) µs/msg")
    print(
        #"RESULT {"mode":"\#(mode)","client":"\#(client)","count":\#(count),"seconds":\#(elapsed),"rate":\#(rate),"#
            + #""client_cpu_pct":\#(cpu / elapsed * 100),"client_cpu_us":\#(perMessage)}"#)
}

@main
struct SDKBenchmarks: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "SDKBenchmarks", abstract: "SwitchboardClient against a raw-protocol client.",
        subcommands: [Subscribe.self, Publish.self])

    struct Subscribe: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Subscribe from the beginning to a retained topic holding seqs 1…COUNT and receive them all.")
        @Argument(help: "The server's port on 127.0.0.1.") var port: Int
        @Argument(help: "The retained topic.") var topic: String
        @Argument(help: "The seq to wait for (the topic's last).") var count: Int
        @Option(help: "sdk or raw.") var client: ClientKind = .sdk

        func validate() throws {
            try validatePort(port)
            guard count >= 1 else { throw ValidationError("count must be at least 1, not \(count)") }
        }

        func run() async throws {
            let url = "ws://127.0.0.1:\(port)/"
            switch client {
            case .sdk: try await subscribeSDK(url: url, topic: topic, count: UInt64(count))
            case .raw: try await subscribeRaw(url: url, topic: topic, count: UInt64(count))
            }
        }
    }

    struct Publish: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Publish TOTAL 64-byte messages, each acked, WINDOW waiting for their ack at a time.")
        @Argument(help: "The server's port on 127.0.0.1.") var port: Int
        @Argument(help: "The topic (not retained: acks do not wait for the disk).") var topic: String
        @Argument(help: "Publishes in all.") var total: Int
        @Option(help: "sdk or raw.") var client: ClientKind = .sdk
        @Option(help: "Publishes in flight (sdk: tasks each awaiting one publish at a time).") var window = 256

        func validate() throws {
            try validatePort(port)
            guard total >= 1 else { throw ValidationError("total must be at least 1, not \(total)") }
            guard window >= 1, window <= total else {
                throw ValidationError("window must be 1 to total (\(total)), not \(window)")
            }
        }

        func run() async throws {
            let url = "ws://127.0.0.1:\(port)/"
            switch client {
            case .sdk: try await publishSDK(url: url, topic: topic, total: total, window: window)
            case .raw: try await publishRaw(url: url, topic: topic, total: total, window: window)
            }
        }
    }
}

func validatePort(_ port: Int) throws {
    guard (1...65535).contains(port) else { throw ValidationError("port must be 1 to 65535, not \(port)") }
}

/// A 64-byte JSON payload: a string of 62 characters in quotes.
let payloadText = String(repeating: "x", count: 62)
