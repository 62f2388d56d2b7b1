// The Autobahn|Testsuite testee client: runs every case of a fuzzingserver and echoes
// what it sends, then asks it to write its reports.
//   autobahn-client [--url ws://127.0.0.1:9001] [--agent switchboard]
//
// 1. /getCaseCount: one text message with the number of cases.
// 2. /runCase?case=N&agent=NAME for N in 1...count: every message goes back with its
//    kind until the server closes (permessage-deflate offered with default options).
// 3. /updateReports?agent=NAME: open, then close.
#if canImport(Glibc)
@preconcurrency import Glibc
#endif
import ArgumentParser
import NIOCore
import NIOPosix
import WebSocketCore
import WebSockets

/// Parsed by `parseOrExit()` rather than run through `main()`: the client below is
/// top-level code in the order of the suite's three steps.
struct AutobahnClient: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "autobahn-client",
        abstract: "Run every case of an Autobahn|Testsuite fuzzingserver, then have it write its reports.")

    @Option(help: "The fuzzingserver's base URL.") var url = "ws://127.0.0.1:9001"
    @Option(help: "The agent name the reports are filed under.") var agent = "switchboard"

    func validate() throws {
        guard !agent.isEmpty else { throw ValidationError("--agent must not be empty") }
    }
}

/// Percent-encodes a query value (the agent name).
func queryEncoded(_ text: String) -> String {
    var out = ""
    for byte in text.utf8 {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."),
            UInt8(ascii: "~"):
            out.unicodeScalars.append(Unicode.Scalar(byte))
        default:
            out += "%" + (byte < 16 ? "0" : "") + String(byte, radix: 16, uppercase: true)
        }
    }
    return out
}

var clientOptions: ClientOptions {
    var options = ClientOptions()
    options.perMessageDeflate = PerMessageDeflateOptions()
    options.connection.maxPayload = 128 * 1024 * 1024
    options.connection.maxBufferedAmount = 256 * 1024 * 1024
    options.connection.closeTimeout = .seconds(10)
    options.handshakeTimeout = .seconds(30)
    return options
}

let arguments = AutobahnClient.parseOrExit()
let baseURL = arguments.url.hasSuffix("/") ? String(arguments.url.dropLast()) : arguments.url
let agent = arguments.agent
let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
let agentQuery = queryEncoded(agent)

// 1. How many cases.
let caseCount: Int
do {
    let ws = try await WebSocket.connect(to: "\(baseURL)/getCaseCount", options: clientOptions, group: group)
    var count: Int?
    for try await message in ws.messages {
        count = Int(message.text.filter { !$0.isWhitespace })
        break
    }
    try? await ws.close()
    guard let count else {
        fputs("autobahn-client: /getCaseCount sent no count\n", stderr)
        exit(1)
    }
    caseCount = count
} catch {
    fputs("autobahn-client: cannot get the case count from \(baseURL): \(error)\n", stderr)
    exit(1)
}
print("autobahn-client: \(caseCount) cases, agent \(agent)")

// 2. Every case: echo until the server closes. A case that fails (the server breaks the
// protocol on purpose, or a handshake is refused) is the suite's to judge; go on.
for number in 1...max(caseCount, 1) where caseCount > 0 {
    do {
        let ws = try await WebSocket.connect(
            to: "\(baseURL)/runCase?case=\(number)&agent=\(agentQuery)", options: clientOptions, group: group)
        ws.onMessage { message in ws.sendWithoutWaiting(message) }
        _ = try await ws.waitUntilClosed()
    } catch {
        fputs("autobahn-client: case \(number): \(error)\n", stderr)
    }
    if number % 50 == 0 || number == caseCount { print("autobahn-client: ran \(number)/\(caseCount)") }
}

// 3. Reports.
do {
    let ws = try await WebSocket.connect(
        to: "\(baseURL)/updateReports?agent=\(agentQuery)", options: clientOptions, group: group)
    try await ws.close()
} catch {
    fputs("autobahn-client: updateReports: \(error)\n", stderr)
    exit(1)
}
print("autobahn-client: reports updated")
try? await group.shutdownGracefully()
exit(0)
