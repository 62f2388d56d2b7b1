// The usage examples of the Node `ws` README, in Swift, as one program: `ws-examples NAME`
// runs one of them. Each example starts its own server on a free port of 127.0.0.1, plays
// the client's part against it, prints what happens and exits 0; one file per example.
import ArgumentParser

enum Example: String, CaseIterable, ExpressibleByArgument {
    case sendingText = "sending-text"
    case sendingBinary = "sending-binary"
    case simpleServer = "simple-server"
    case externalHTTPServer = "external-http-server"
    case multipleServers = "multiple-servers"
    case clientAuthentication = "client-authentication"
    case broadcast
    case roundTripTime = "round-trip-time"
    case streams
    case clientIP = "client-ip"
    case brokenConnections = "broken-connections"
    case proxy

    func run() async throws {
        switch self {
        case .sendingText: try await SendingText.run()
        case .sendingBinary: try await SendingBinary.run()
        case .simpleServer: try await SimpleServer.run()
        case .externalHTTPServer: try await ExternalHTTPServer.run()
        case .multipleServers: try await MultipleServers.run()
        case .clientAuthentication: try await ClientAuthentication.run()
        case .broadcast: try await Broadcast.run()
        case .roundTripTime: try await RoundTripTime.run()
        case .streams: try await Streams.run()
        case .clientIP: try await ClientIP.run()
        case .brokenConnections: try await BrokenConnections.run()
        case .proxy: try await ProxyExample.run()
        }
    }
}

@main
struct WSExamples: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ws-examples",
        abstract: "Run one of the `ws` README's examples, server and client, on 127.0.0.1.")

    @Argument(help: "The example to run.")
    var example: Example

    func run() async throws {
        try await example.run()
    }
}
