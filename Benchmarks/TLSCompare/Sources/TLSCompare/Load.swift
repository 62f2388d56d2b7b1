import ArgumentParser
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import WebSockets

/// The load generator: one event-loop thread, our WebSocket client over the chosen TLS
/// stack. It prints one line `RESULT {json}` with what it measured over the window after
/// the warm-up: `ops` (handshakes or round trips), `seconds`, `rate` (ops/s), `mb_per_s`
/// (echo: payload MB/s each way), `server_cpu_s` (with `--server-pid`), `client_cpu_s`,
/// `errors`.
struct Load: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load a wss:// echo server: full handshakes, or echo round trips.",
        discussion: """
            handshakes: each of -c loops opens a wss:// connection (TCP, TLS handshake, \
            WebSocket upgrade) and closes it (close handshake, close_notify), again and again. \
            echo: -c connections each keep -d binary messages of -s bytes in flight, sending \
            the next one as each echo arrives.
            """)

    enum Scenario: String, ExpressibleByArgument, CaseIterable {
        case handshakes, echo
    }

    @Argument(help: "handshakes or echo.")
    var scenario: Scenario

    @Option(help: "The server's URL, e.g. wss://127.0.0.1:9443/ (ws:// for the plain baseline).")
    var url: String

    @Option(help: "The client's TLS layer: ours or nio-ssl.")
    var client: Stack = .ours

    @Option(name: .short, help: "Connections (echo) or concurrent connect loops (handshakes).")
    var connections = 16

    @Option(name: .short, help: "Echo: message size in bytes.")
    var size = 64

    @Option(name: .short, help: "Echo: messages in flight per connection.")
    var depth = 16

    @Option(name: .customShort("t"), help: "Seconds measured (after the warm-up).")
    var seconds = 10.0

    @Option(help: "Seconds of load before the measured window.")
    var warmup = 1.0

    @Option(help: "The server's process id: its CPU time over the window is reported.")
    var serverPid: Int32?

    func validate() throws {
        guard (1...10_000).contains(connections) else { throw ValidationError("-c must be 1…10000, got \(connections)") }
        guard (1...(1 << 24)).contains(size) else { throw ValidationError("-s must be 1…16777216, got \(size)") }
        guard (1...1024).contains(depth) else { throw ValidationError("-d must be 1…1024, got \(depth)") }
        guard seconds > 0, seconds <= 600 else { throw ValidationError("-t must be in (0, 600], got \(seconds)") }
        guard warmup >= 0, warmup <= 60 else { throw ValidationError("--warmup must be in [0, 60], got \(warmup)") }
        guard (try? WebSocketURL(url)) != nil else { throw ValidationError("--url must be a ws:// or wss:// URL, got \(url)") }
        if let serverPid, cpuSeconds(of: serverPid) == nil {
            throw ValidationError("--server-pid \(serverPid): no such process")
        }
    }

    func run() async throws {
        let options = try client.clientOptions()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let counts = NIOLockedValueBox(Counts())
        let window: Window
        switch scenario {
        case .handshakes:
            window = await handshakes(options: options, group: group, counts: counts)
        case .echo:
            window = try await echo(options: options, group: group, counts: counts)
        }
        try await group.shutdownGracefully()
        let errors = counts.withLockedValue { $0.errors }
        var result: [String: Double] = [
            "ops": Double(window.ops), "seconds": window.seconds, "rate": Double(window.ops) / window.seconds,
            "client_cpu_s": window.clientCPU, "errors": Double(errors),
        ]
        if scenario == .echo { result["mb_per_s"] = Double(window.ops) * Double(size) / window.seconds / 1e6 }
        if let serverCPU = window.serverCPU { result["server_cpu_s"] = serverCPU }
        let json = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
        print("RESULT " + String(decoding: json, as: UTF8.self))
        if let first = counts.withLockedValue({ $0.firstError }) {
            FileHandle.standardError.write(Data("load: \(errors) errors, the first: \(first)\n".utf8))
        }
    }

    /// Loops of connect + close until the window is over.
    private func handshakes(options: ClientOptions, group: any EventLoopGroup, counts: NIOLockedValueBox<Counts>) async
        -> Window
    {
        let url = self.url
        let end = ContinuousClock.now + .seconds(warmup + seconds)
        return await withTaskGroup(of: Window?.self) { tasks in
            for _ in 0..<connections {
                tasks.addTask {
                    while ContinuousClock.now < end {
                        do {
                            let ws = try await WebSocket.connect(to: url, options: options, group: group)
                            try await ws.close()
                            counts.withLockedValue { $0.ops += 1 }
                        } catch {
                            counts.withLockedValue { $0.failed(error) }
                        }
                    }
                    return nil
                }
            }
            tasks.addTask { [self] in await measure(counts) }
            var window: Window?
            for await each in tasks where each != nil { window = each }
            return window!
        }
    }

    /// `connections` connections, each with `depth` messages in flight, for the window.
    private func echo(options: ClientOptions, group: any EventLoopGroup, counts: NIOLockedValueBox<Counts>) async throws
        -> Window
    {
        var sockets: [WebSocket] = []
        for _ in 0..<connections {
            sockets.append(try await WebSocket.connect(to: url, options: options, group: group))
        }
        let payload = ByteBuffer(repeating: 0x61, count: size)
        let size = self.size
        let running = NIOLockedValueBox(true)
        for ws in sockets {
            ws.onMessage { message in
                counts.withLockedValue { counts in
                    if message.data.readableBytes == size {
                        counts.ops += 1
                    } else {
                        counts.failed("echo of \(message.data.readableBytes) bytes, sent \(size)")
                    }
                }
                if running.withLockedValue({ $0 }) { ws.sendWithoutWaiting(.init(kind: .binary, data: payload)) }
            }
            for _ in 0..<depth { ws.sendWithoutWaiting(.init(kind: .binary, data: payload)) }
        }
        let window = await measure(counts)
        running.withLockedValue { $0 = false }
        // The messages still in flight come back, then each close handshake completes.
        await withTaskGroup(of: Void.self) { tasks in
            for ws in sockets {
                tasks.addTask {
                    do { try await ws.close() } catch { counts.withLockedValue { $0.failed(error) } }
                }
            }
        }
        return window
    }

    /// Sleeps through the warm-up, then takes the counts and CPU times at both ends of the window.
    private func measure(_ counts: NIOLockedValueBox<Counts>) async -> Window {
        try? await Task.sleep(for: .seconds(warmup))
        let startOps = counts.withLockedValue { $0.ops }
        let start = ContinuousClock.now
        let startServer = serverPid.flatMap(cpuSeconds(of:))
        let startClient = cpuSeconds(of: getpid())!
        try? await Task.sleep(for: .seconds(seconds))
        let ops = counts.withLockedValue { $0.ops } - startOps
        let elapsed = ContinuousClock.now - start
        let endServer = serverPid.flatMap(cpuSeconds(of:))
        let endClient = cpuSeconds(of: getpid())!
        return Window(
            ops: ops,
            seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18,
            serverCPU: startServer.flatMap { start in endServer.map { $0 - start } },
            clientCPU: endClient - startClient)
    }
}

struct Counts {
    var ops = 0
    var errors = 0
    var firstError: String?

    mutating func failed(_ error: Any) {
        errors += 1
        if firstError == nil { firstError = "\(error)" }
    }
}

struct Window: Sendable {
    var ops: Int
    var seconds: Double
    var serverCPU: Double?
    var clientCPU: Double
}

/// Seconds of CPU (user + system) a process has used, from /proc; nil if there is no such process.
func cpuSeconds(of pid: Int32) -> Double? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let close = stat.lastIndex(of: ")")
    else { return nil }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    // After the command: state is field 3, utime 14, stime 15 (1-based over the whole line).
    guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}
