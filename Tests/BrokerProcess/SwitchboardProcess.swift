import AsyncTestSupport
import Foundation
import NIOConcurrencyHelpers

// Running the `switchboard` executable of this build as a real process, for the test
// suites that need real restarts (SIGTERM, kill -9) of a real broker.

public struct TestFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

public func makeTemporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("switchboard-test-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// The `switchboard` executable of this build (see `builtExecutable`).
public let switchboardExecutable: URL? = builtExecutable("switchboard")

/// An executable product of this build: beside the test bundle, or in `.build/debug` of
/// the package.
public func builtExecutable(_ name: String) -> URL? {
    var candidates: [URL] = []
    if let bundle = Bundle.main.executableURL {
        candidates.append(bundle.deletingLastPathComponent().appendingPathComponent(name))
    }
    candidates.append(
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(name))
    let package = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    candidates.append(package.appendingPathComponent(".build/debug/\(name)"))
    return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) }
}

/// Output of a child process, collected as it comes.
public final class ProcessOutput: Sendable {
    public init() {}
    private struct State {
        var data = Data()
        var eof = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }
    private let state = NIOLockedValueBox(State())

    public var text: String { String(decoding: state.withLockedValue { $0.data }, as: UTF8.self) }

    public func append(_ data: Data) {
        let waiters = state.withLockedValue { state in
            if data.isEmpty { state.eof = true } else { state.data.append(data) }
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Waits until `extract` finds what it looks for in the text so far.
    public func wait<R: Sendable>(for what: String, timeout: Duration = testTimeout, _ extract: @escaping @Sendable (String) -> R?) async throws
        -> R
    {
        try await withTimeout(what, timeout) { [self] in
            while true {
                if let found = extract(text) { return found }
                if state.withLockedValue({ $0.eof }) { throw TestFailure("\(what): output ended: \(text)") }
                await withCheckedContinuation { continuation in
                    let changed = state.withLockedValue { state in
                        if state.eof || extract(String(decoding: state.data, as: UTF8.self)) != nil { return true }
                        state.waiters.append(continuation)
                        return false
                    }
                    if changed { continuation.resume() }
                }
            }
        }
    }
}

/// One run of the `switchboard` executable.
public final class SwitchboardProcess: @unchecked Sendable {
    public let process = Process()
    public let stdout = ProcessOutput()
    public let stderr = ProcessOutput()
    public let exited = Waiter<Int32>("the process to exit")
    public let exitedAt = NIOLockedValueBox<ContinuousClock.Instant?>(nil)

    /// Starts `executable` (default `switchboard`) with `arguments` in `directory`; with
    /// `input`, that is all its standard input holds.
    public static func start(
        _ arguments: [String], in directory: URL, environment: [String: String] = [:],
        executable name: String = "switchboard", input: String? = nil
    ) throws -> SwitchboardProcess {
        guard let executable = name == "switchboard" ? switchboardExecutable : builtExecutable(name) else {
            throw TestFailure("the \(name) executable was not built (looked beside the test bundle and in .build/debug)")
        }
        return try run(executable, arguments, in: directory, environment: environment, input: input)
    }

    /// Runs any executable with its output collected, as `start` does for `switchboard`.
    public static func run(
        _ executable: URL, _ arguments: [String], in directory: URL, environment: [String: String] = [:],
        input: String? = nil
    ) throws -> SwitchboardProcess {
        let child = SwitchboardProcess()
        child.process.executableURL = executable
        child.process.arguments = arguments
        child.process.currentDirectoryURL = directory
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("SWITCHBOARD_") }
        env.merge(environment) { _, new in new }
        child.process.environment = env
        let stdout = Pipe()
        let stderr = Pipe()
        child.process.standardOutput = stdout
        child.process.standardError = stderr
        child.process.terminationHandler = { [exited = child.exited, exitedAt = child.exitedAt] process in
            exitedAt.withLockedValue { $0 = .now }
            exited.fulfill(process.terminationStatus)
        }
        let stdin = input.map { _ in Pipe() }
        if let stdin { child.process.standardInput = stdin }
        try child.process.run()
        if let stdin, let input {
            try stdin.fileHandleForWriting.write(contentsOf: Data(input.utf8))
            try stdin.fileHandleForWriting.close()
        }
        readUntilEnd(of: stdout, child.stdout.append)
        readUntilEnd(of: stderr, child.stderr.append)
        return child
    }

    /// Waits for `switchboard listening on HOST:PORT` and returns the port.
    public func listeningPort() async throws -> Int {
        try await stdout.wait(for: "the listening line") { text in
            // Whole lines only: a line read in two parts would give a port cut short.
            text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().lazy.compactMap { line -> Int? in
                guard line.hasPrefix("switchboard listening on 127.0.0.1:") else { return nil }
                return Int(line.split(separator: ":").last ?? "")
            }.first
        }
    }

    /// The exit status, once the process has exited and its output is all read.
    public func exitStatus(timeout: Duration = testTimeout) async throws -> Int32 {
        let status = try await exited.value(timeout: timeout)
        _ = try? await stdout.wait(for: "stdout to end", timeout: .seconds(2)) { _ in nil as Int? }
        _ = try? await stderr.wait(for: "stderr to end", timeout: .seconds(2)) { _ in nil as Int? }
        return status
    }

    /// SIGTERM.
    public func terminate() {
        if process.isRunning { process.terminate() }
    }

    /// SIGKILL, for cleanup after a failure.
    public func kill() {
        if process.isRunning { Foundation.kill(process.processIdentifier, SIGKILL) }
    }
}
