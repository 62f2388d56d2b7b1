// TLSEcho: the cost of TLS on an echo, our client against our server, in one process
// (server and client on one event-loop thread each), ws:// then wss:// (TLS 1.3,
// AES-GCM by OpenSSL's choice, EC P-256 certificate made with the `openssl` CLI).
//
//   swift run -c release TLSEcho [--seconds S] [--window N] [--size BYTES]... [--only ws|wss]
//
// For each message size (64 B, 64 KiB) it keeps `window` messages in flight for S seconds
// and prints messages/s and MB/s (one direction) for ws and wss, and their ratio, plus the
// process CPU time per message (both ends): on a loaded machine the threads wait for a
// core and the rate swings by 2x between runs, the CPU per message much less.
//
// glibc trims each event-loop thread's malloc arena once 128 KiB at its top is free, so
// at 64 KiB per message the pages of one message's buffers are often handed back and
// faulted in again (up to ~20 % of the run in page faults), depending on how the sizes
// of the few live buffers happen to line up. To compare TLS costs without that noise:
//   MALLOC_MMAP_THRESHOLD_=4194304 MALLOC_TRIM_THRESHOLD_=67108864 swift run -c release TLSEcho
import ArgumentParser
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import WebSockets

func makeCertificate() throws -> (cert: String, key: String) {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tlsecho-\(getpid())")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = [
        "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "key.pem", "-out", "cert.pem", "-subj", "/CN=localhost", "-days", "1",
        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
    ]
    process.currentDirectoryURL = directory
    process.standardError = FileHandle.nullDevice
    try process.run()
    process.waitUntilExit()
    return (directory.appendingPathComponent("cert.pem").path, directory.appendingPathComponent("key.pem").path)
}

struct Result {
    var messagesPerSecond: Double
    var megabytesPerSecond: Double
    /// Process CPU time (user + system, both ends) per message: steadier than the rate on a
    /// loaded machine, where the two event-loop threads wait for a core.
    var cpuMicrosecondsPerMessage: Double
}

func cpuSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
    return seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

func measureEcho(size: Int, tls: (cert: String, key: String)?, seconds: Double, window: Int) async throws -> Result {
    let serverGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let clientGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    var serverOptions = WebSocketServer.Options()
    serverOptions.connection.maxPayload = TLSEcho.largestSize
    if let tls { serverOptions.tls = TLSConfiguration(certificateFile: tls.cert, privateKeyFile: tls.key) }
    let server = WebSocketServer(options: serverOptions, group: serverGroup) { ws in
        ws.onMessage { ws.sendWithoutWaiting($0) }
    }
    let port = try await server.listen().port!
    var clientOptions = ClientOptions()
    clientOptions.perMessageDeflate = nil
    clientOptions.tls = TLSConfiguration(caFile: tls?.cert)
    let scheme = tls == nil ? "ws" : "wss"
    let ws = try await WebSocket.connect(to: "\(scheme)://127.0.0.1:\(port)/", options: clientOptions, group: clientGroup)
    let payload = ByteBuffer(repeating: 0x61, count: size)
    let received = NIOLockedValueBox(0)
    let running = NIOLockedValueBox(true)
    ws.onMessage { _ in
        received.withLockedValue { $0 += 1 }
        if running.withLockedValue({ $0 }) { ws.sendWithoutWaiting(.init(kind: .binary, data: payload)) }
    }
    // Warm up for a fifth of the run, then measure.
    for _ in 0..<window { ws.sendWithoutWaiting(.init(kind: .binary, data: payload)) }
    try await Task.sleep(for: .seconds(seconds / 5))
    let startCount = received.withLockedValue { $0 }
    let start = ContinuousClock.now
    let startCPU = cpuSeconds()
    try await Task.sleep(for: .seconds(seconds))
    let count = received.withLockedValue { $0 } - startCount
    let cpu = cpuSeconds() - startCPU
    let elapsed = ContinuousClock.now - start
    running.withLockedValue { $0 = false }
    try? await Task.sleep(for: .milliseconds(200))
    try? await ws.close()
    await server.shutdown()
    try await clientGroup.shutdownGracefully()
    try await serverGroup.shutdownGracefully()
    let time = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    let rate = Double(count) / time
    return Result(
        messagesPerSecond: rate, megabytesPerSecond: rate * Double(size) / 1e6,
        cpuMicrosecondsPerMessage: cpu * 1e6 / Double(max(count, 1)))
}

func format(_ result: Result) -> String {
    String(
        format: "%10.0f msg/s %9.1f MB/s %8.1f µs CPU/msg", result.messagesPerSecond, result.megabytesPerSecond,
        result.cpuMicrosecondsPerMessage)
}

@main
struct TLSEcho: AsyncParsableCommand {
    enum Transport: String, ExpressibleByArgument, CaseIterable { case ws, wss }

    static let configuration = CommandConfiguration(
        commandName: "TLSEcho", abstract: "Echo rate and CPU per message over ws:// and wss://, in one process.")

    /// The largest `--size`: the server's `maxPayload`.
    static let largestSize = 1 << 24

    @Option(help: "Seconds measured per run (after a fifth of that to warm up).") var seconds = 3.0
    @Option(help: "Messages kept in flight.") var window = 16
    @Option(help: "Message size in bytes; repeat for several (default: 64 and 65536).") var size: [Int] = []
    @Option(help: "Run only this transport.") var only: Transport?

    func validate() throws {
        guard seconds > 0, seconds.isFinite else { throw ValidationError("--seconds must be positive, not \(seconds)") }
        guard window >= 1 else { throw ValidationError("--window must be at least 1, not \(window)") }
        for size in size where !(0...Self.largestSize).contains(size) {
            throw ValidationError("--size must be 0 to \(Self.largestSize) bytes, not \(size)")
        }
    }

    func run() async throws {
        let certificate = try makeCertificate()
        print("TLSEcho: \(seconds) s per run, \(window) messages in flight, server and client one thread each")
        for size in size.isEmpty ? [64, 64 * 1024] : size {
            let plain = only == .wss ? nil : try await measureEcho(size: size, tls: nil, seconds: seconds, window: window)
            let secure =
                only == .ws ? nil : try await measureEcho(size: size, tls: certificate, seconds: seconds, window: window)
            if let plain { print(String(format: "%6d B  ws  %@", size, format(plain))) }
            if let secure {
                let ratio = plain.map {
                    String(
                        format: "  wss/ws = %.0f %% (CPU/msg ws/wss = %.0f %%)",
                        100 * secure.messagesPerSecond / $0.messagesPerSecond,
                        100 * $0.cpuMicrosecondsPerMessage / secure.cpuMicrosecondsPerMessage)
                }
                print(String(format: "%6d B  wss %@", size, format(secure)) + (ratio ?? ""))
            }
        }
    }
}
