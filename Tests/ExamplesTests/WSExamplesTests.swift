import AsyncTestSupport
import BrokerProcess
import Foundation
import Testing

/// Runs each example of the `ws-examples` executable (Examples/ws-examples): its server and
/// client talk over real loopback sockets; the test checks what it printed and its exit status.
@Suite(.timeLimit(.minutes(1))) struct WSExamplesTests {
    /// Lines each example prints, in any order (server and client print from their own tasks).
    static let expected: [String: [String]] = [
        "sending-text": ["received: something"],
        "sending-binary": ["server: got 20 bytes: [0.0, 0.5, 1.0, 1.5, 2.0]"],
        "simple-server": ["client received: something", "server received: hello", "client received: bye"],
        "external-http-server": ["GET /: HTTP/1.1 200 OK hello over plain HTTP", "websocket received: something"],
        "multiple-servers": ["/foo: foo got hello", "/bar: bar got hello", "/baz: server answered 404 instead of 101: not found"],
        "client-authentication": ["without a token: refused, 401 missing or unknown bearer token", "with a token: hello, alice"],
        "broadcast": [
            "alice received alice: hi all", "bob received alice: hi all", "carol received alice: hi all",
            "alice received bob: hi others", "carol received bob: hi others",
            "alice received carol: bye", "bob received carol: bye", "carol received carol: bye",
        ],
        "streams": ["ONE", "TWO", "THREE"],
        "client-ip": [
            "directly: socket peer 127.0.0.1, client 127.0.0.1",
            "behind a proxy: socket peer 127.0.0.1, client 203.0.113.7",
        ],
        "broken-connections": [
            "silent client: connection dropped (1006, clean: false)", "server: silent closed (1006, clean: false)",
            "healthy client: answered 5 pings, still open",
        ],
        "proxy": ["proxy: CONNECT to 127.0.0.1 (the WebSocket server's port)", "client received: echo: hello through the tunnel"],
    ]

    func run(_ arguments: [String]) async throws -> (status: Int32, stdout: [String], stderr: String) {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let process = try SwitchboardProcess.start(arguments, in: directory, executable: "ws-examples")
        do {
            let status = try await process.exitStatus(timeout: .seconds(30))
            return (status, process.stdout.text.split(separator: "\n").map(String.init), process.stderr.text)
        } catch {
            process.kill()
            throw error
        }
    }

    @Test(arguments: expected.keys.sorted())
    func example(_ name: String) async throws {
        let (status, lines, stderr) = try await run([name])
        #expect(status == 0, "\(name) exited \(status): \(stderr)")
        for line in Self.expected[name] ?? [] {
            #expect(lines.contains(line), "\(name) did not print \"\(line)\"; it printed \(lines)")
        }
    }

    @Test func roundTripTime() async throws {
        let (status, lines, stderr) = try await run(["round-trip-time"])
        #expect(status == 0, "exited \(status): \(stderr)")
        for n in 1...3 {
            let line = lines.first { $0.hasPrefix("round trip \(n): ") }
            let milliseconds = line.flatMap { Double($0.dropFirst("round trip \(n): ".count).dropLast(" ms".count)) }
            #expect(milliseconds.map { $0 > 0 } == true, "no round trip \(n) in \(lines)")
        }
    }

    /// A name it does not know is a usage error; the list of names it prints is the list
    /// this suite checks.
    @Test func unknownExampleExits64AndListsTheExamples() async throws {
        let (status, _, stderr) = try await run(["no-such-example"])
        #expect(status == 64)
        #expect(stderr.contains("'no-such-example' is invalid"))
        let names = stderr.split(separator: "\n").filter { $0.hasPrefix("  - ") }.map { String($0.dropFirst(4)) }
        #expect(Set(names) == Set(Self.expected.keys).union(["round-trip-time"]))
    }
}
