// Echoes every message with its kind (text stays text, binary stays binary).
// Used by the benchmarks and conformance runs, so its flags stay exactly these:
//   echo-server --port N [--host H] [--deflate] [--max-payload BYTES] [--threads N]
// and, for wss://, --tls-cert PEM --tls-key PEM (SIGHUP reloads both files).
#if canImport(Glibc)
@preconcurrency import Glibc
#endif
import ArgumentParser
import NIOCore
import NIOPosix
import WebSocketCore
import WebSockets

@main
struct EchoServer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "echo-server",
        abstract: "Echo every message with its kind (text stays text, binary stays binary).",
        discussion: "The server the benchmarks and conformance runs use.")

    @Option(help: "Port to listen on (0 picks a free one).") var port = 9001
    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Flag(help: "Accept permessage-deflate (default options).") var deflate = false
    @Option(help: "Largest message, in bytes.") var maxPayload = 64 * 1024 * 1024
    @Option(help: "Event-loop threads (default: one per CPU this process may use).") var threads: Int?
    @Option(help: "PEM certificate chain for wss:// (with --tls-key; SIGHUP reloads both).") var tlsCert: String?
    @Option(help: "PEM private key for wss:// (with --tls-cert).") var tlsKey: String?

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0 to 65535, not \(port)") }
        guard maxPayload >= 0 else { throw ValidationError("--max-payload must not be negative, not \(maxPayload)") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1, not \(threads)") }
        guard (tlsCert == nil) == (tlsKey == nil) else { throw ValidationError("--tls-cert and --tls-key go together") }
    }

    func run() async throws {
        var options = WebSocketServer.Options(host: host, port: port)
        options.connection.maxPayload = maxPayload
        if deflate { options.perMessageDeflate = PerMessageDeflateOptions() }
        if let tlsCert, let tlsKey {
            options.tls = TLSConfiguration(certificateFile: tlsCert, privateKeyFile: tlsKey)
        }
        let threads = threads ?? EventLoopThreads.available
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        let server = WebSocketServer(options: options, group: group) { ws in
            ws.onMessage { message in ws.sendWithoutWaiting(message) }
        }
        let address = try await server.listen()
        let reloader = options.tls == nil ? nil : server.reloadTLSOnSIGHUP { error in
            if let error { fputs("echo-server: certificate reload failed, keeping the old one: \(error)\n", stderr) }
            else { fputs("echo-server: certificate reloaded\n", stderr) }
        }
        print("echo-server listening on \(options.tls == nil ? "ws" : "wss")://\(host):\(address.port ?? port)/ deflate=\(deflate) threads=\(threads)")
        try await server.waitUntilStopped()
        reloader?.cancel()
    }
}
