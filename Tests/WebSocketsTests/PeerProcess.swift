import AsyncTestSupport
import Foundation
import Synchronization

/// The interop peers in `Tests/Peers` (see its README): real WebSocket implementations run
/// as child processes on 127.0.0.1. Every wait here is bounded, and every process started
/// is stopped (stdin closed, SIGTERM, then SIGKILL) before the helper returns.
enum Peer: String, CaseIterable, Sendable, CustomStringConvertible {
    case node = "node-ws"
    case python = "python-websockets"

    var description: String { rawValue }

    /// The repository root, found from this file's path (Tests/WebSocketsTests/PeerProcess.swift).
    static let repositoryRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    var script: URL {
        let name = self == .node ? "node-peer.js" : "python-peer.py"
        return Self.repositoryRoot.appendingPathComponent("Tests/Peers/\(name)")
    }

    /// The command line before the peer's own arguments (run through `/usr/bin/env`).
    var command: [String] {
        switch self {
        case .node: return ["node", script.path]
        case .python: return ["python3", script.path]
        }
    }

    /// Environment of a peer: node finds Debian's `ws` through NODE_PATH; python is unbuffered.
    static let environment: [String: String] = {
        var environment = ProcessInfo.processInfo.environment
        let nodePath = environment["NODE_PATH"].map { "\($0):/usr/share/nodejs" } ?? "/usr/share/nodejs"
        environment["NODE_PATH"] = nodePath
        environment["PYTHONUNBUFFERED"] = "1"
        return environment
    }()

    /// True when the runtime and its WebSocket package load (`scripts/setup.sh` installs both).
    var isAvailable: Bool {
        switch self {
        case .node: return Self.nodeAvailable
        case .python: return Self.pythonAvailable
        }
    }

    /// Whether the interop tests of this peer run: when it is available, and also when
    /// `CI` or `SWITCHBOARD_REQUIRE_PEERS` is set, so that a CI machine whose setup broke
    /// fails loudly (in `requireAvailable()`) instead of skipping the interop tests.
    var shouldRun: Bool {
        isAvailable || Self.peersRequired
    }

    static let peersRequired: Bool = {
        let environment = ProcessInfo.processInfo.environment
        return environment["CI"].map { !$0.isEmpty && $0 != "0" && $0 != "false" } == true
            || environment["SWITCHBOARD_REQUIRE_PEERS"].map { !$0.isEmpty && $0 != "0" } == true
    }()

    private static let nodeAvailable: Bool = probe(["node", "-e", "require('ws')"], script: Peer.node.script)
    private static let pythonAvailable: Bool = probe(
        ["python3", "-c", "import websockets.asyncio.server, websockets.asyncio.client"], script: Peer.python.script)

    private static func probe(_ arguments: [String], script: URL) -> Bool {
        guard FileManager.default.fileExists(atPath: script.path) else { return false }
        guard let process = try? PeerProcess(arguments: arguments, stdinPipe: false) else { return false }
        let status = process.waitForExit(timeout: .seconds(20))
        process.stop()
        return status == 0
    }

    /// Records (once per test) which peer ran, and fails with a clear message when the
    /// peer is missing although it is required.
    func requireAvailable(_ what: String) throws {
        guard isAvailable else {
            throw PeerError("\(self) peer unavailable (run scripts/setup.sh) but required by CI / SWITCHBOARD_REQUIRE_PEERS")
        }
        print("interop: \(self) — \(what)")
    }

    // MARK: Server mode

    /// Starts this peer's server (`server ARGS`), waits for its `LISTENING <port>` line,
    /// runs `body` with the port, then stops the server whatever `body` did.
    func withServer<T>(
        _ arguments: [String] = [], startTimeout: Duration = .seconds(30), _ body: (Int) async throws -> T
    ) async throws -> T {
        let process = try PeerProcess(arguments: command + ["server", "--max-seconds", "120"] + arguments)
        defer { process.stop() }
        let line = try await process.waitForLine(prefix: "LISTENING ", timeout: startTimeout)
        guard let port = Int(line.dropFirst("LISTENING ".count).trimmingCharacters(in: .whitespaces)) else {
            throw PeerError("\(self) server printed \(line)")
        }
        do {
            return try await body(port)
        } catch {
            throw PeerError("\(error)\n[\(self) server stderr]\n\(process.stderr.suffix(4000))")
        }
    }

    // MARK: Client mode

    /// What a peer client reports on its `RESULT {json}` line.
    struct ClientResult: Decodable, Sendable {
        var ok: Bool
        var peer: String
        var steps: Int
        var `protocol`: String?
        var extensions: String?
        var closeCode: Int?
        var closeReason: String?
        var error: String?
    }

    /// Runs this peer's client (`client --url URL ARGS`) to its end and returns its result.
    func runClient(url: String, _ arguments: [String] = [], timeout: Duration = .seconds(60)) async throws
        -> ClientResult
    {
        let process = try PeerProcess(
            arguments: command + ["client", "--url", url, "--max-seconds", "45"] + arguments, stdinPipe: false)
        defer { process.stop() }
        let line: String
        do {
            line = try await process.waitForLine(prefix: "RESULT ", timeout: timeout)
        } catch {
            throw PeerError("\(error)\n[\(self) client stderr]\n\(process.stderr.suffix(4000))")
        }
        do {
            return try JSONDecoder().decode(ClientResult.self, from: Data(line.dropFirst("RESULT ".count).utf8))
        } catch {
            throw PeerError("\(self) client printed an unreadable result: \(line)")
        }
    }
}

struct PeerError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// One child process with stdout and stderr collected (each by a thread reading until EOF)
/// and stdin a pipe held open until `stop()` (the peers exit when stdin reaches EOF).
final class PeerProcess: Sendable {
    private let process: Process
    private let stdinHandle: FileHandle?
    private let stdoutText = Output()
    private let stderrText = Output()

    init(arguments: [String], stdinPipe: Bool = true) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        process.environment = Peer.environment
        process.currentDirectoryURL = Peer.repositoryRoot
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        var stdinHandle: FileHandle?
        if stdinPipe {
            let stdin = Pipe()
            process.standardInput = stdin
            stdinHandle = stdin.fileHandleForWriting
        } else {
            process.standardInput = FileHandle.nullDevice
        }
        try process.run()
        self.process = process
        self.stdinHandle = stdinHandle
        readUntilEnd(of: stdout, stdoutText.append)
        readUntilEnd(of: stderr, stderrText.append)
    }

    var stdout: String { stdoutText.text }
    var stderr: String { stderrText.text }
    var isRunning: Bool { process.isRunning }

    /// Waits for a stdout line starting with `prefix`; fails if the process ends first or
    /// `timeout` passes.
    func waitForLine(prefix: String, timeout: Duration) async throws -> String {
        let deadline = ContinuousClock.now + timeout
        while true {
            let ended = stdoutText.ended  // read before the text, so a last line is not missed
            if let line = stdoutText.text.split(separator: "\n").first(where: { $0.hasPrefix(prefix) }) {
                return String(line)
            }
            if ended || ContinuousClock.now >= deadline {
                let why = ContinuousClock.now >= deadline ? "no \(prefix)line within \(timeout)" : "exited before printing \(prefix)line"
                throw PeerError(
                    "\(process.arguments!.prefix(3).joined(separator: " ")): \(why); stdout: \(stdoutText.text.suffix(500))")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Blocks until the process exits (its status) or `timeout` passes (nil).
    func waitForExit(timeout: Duration) -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
            if ContinuousClock.now >= deadline { return nil }
            usleep(5_000)
        }
        return process.terminationStatus
    }

    /// Closes stdin, then SIGTERM, then SIGKILL after a second; returns once it exited (at most ~3 s).
    func stop() {
        try? stdinHandle?.close()
        guard process.isRunning else { return }
        process.terminate()
        if waitForExit(timeout: .seconds(1)) == nil {
            kill(process.processIdentifier, SIGKILL)
            _ = waitForExit(timeout: .seconds(2))
        }
    }

    /// Bytes a child wrote to one pipe, read on a thread of its own until EOF.
    final class Output: Sendable {
        private let state = Mutex<(bytes: [UInt8], ended: Bool)>(([], false))

        func append(_ chunk: Data) {
            state.withLock { if chunk.isEmpty { $0.ended = true } else { $0.bytes += chunk } }
        }

        var text: String { state.withLock { String(decoding: $0.bytes, as: UTF8.self) } }
        var ended: Bool { state.withLock { $0.ended } }
    }
}
