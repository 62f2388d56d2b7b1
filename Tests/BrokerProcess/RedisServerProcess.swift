import AsyncTestSupport
import Foundation
import NIOConcurrencyHelpers

/// A real `redis-server` on a free loopback port with its data in a temporary directory,
/// append-only so that a restart keeps everything it acknowledged.
public final class RedisServerProcess: Sendable {
    public let port: Int
    public let directory: URL
    private let current = NIOLockedValueBox<SwitchboardProcess?>(nil)

    public var url: String { "redis://127.0.0.1:\(port)" }

    private init(port: Int, directory: URL) {
        self.port = port
        self.directory = directory
    }

    public static func start() async throws -> RedisServerProcess {
        let server = RedisServerProcess(port: try freeLoopbackPort(), directory: try makeTemporaryDirectory())
        try await server.launch()
        return server
    }

    /// Starts it again on the same port and directory (after `kill`).
    public func launch() async throws {
        guard let executable = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
            .first(where: { FileManager.default.isExecutableFile(atPath: $0) })
        else { throw TestFailure("redis-server is not installed (scripts/setup.sh installs it)") }
        let child = try SwitchboardProcess.run(
            URL(fileURLWithPath: executable),
            ["--port", String(port), "--bind", "127.0.0.1", "--dir", directory.path, "--save", "",
             "--appendonly", "yes", "--appendfsync", "always"],
            in: directory)
        current.withLockedValue { $0 = child }
        _ = try await child.stdout.wait(for: "redis-server to be ready") { text in
            text.contains("Ready to accept connections") ? true : nil
        }
    }

    /// SIGKILL: nothing is flushed beyond what `appendfsync always` already wrote.
    public func kill() async throws {
        guard let child = current.withLockedValue({ $0 }) else { return }
        child.kill()
        _ = try await child.exitStatus()
    }

    /// `FLUSHALL` through `redis-cli`: Redis loses every key, as after a data loss.
    public func flushAll() async throws {
        let cli = try SwitchboardProcess.run(
            URL(fileURLWithPath: "/usr/bin/redis-cli"), ["-p", String(port), "FLUSHALL"], in: directory)
        guard try await cli.exitStatus() == 0 else { throw TestFailure("redis-cli FLUSHALL failed") }
    }

    public func stop() {
        current.withLockedValue { $0 }?.kill()
    }
}

/// A loopback TCP port nobody listens on right now (the kernel picks it; a tiny race with
/// other programs remains, acceptable in tests).
public func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestFailure("socket() failed") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
    }
    guard bound == 0 else { throw TestFailure("bind() failed") }
    let named = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    guard named == 0 else { throw TestFailure("getsockname() failed") }
    return Int(UInt16(bigEndian: address.sin_port))
}
