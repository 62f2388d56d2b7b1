// Echoes every message with its kind (text stays text, binary stays binary).
// Used by the benchmarks and conformance runs, so its flags stay exactly these:
//   echo-server --port N [--host H] [--deflate] [--max-payload BYTES] [--threads N]
// and, for wss://, --tls-cert PEM --tls-key PEM (SIGHUP reloads both files).
#if canImport(Glibc)
@preconcurrency import Glibc
#endif
import NIOCore
import NIOPosix
import WebSocketCore
import WebSockets

struct UsageError: Error, CustomStringConvertible {
    var description: String
}

func parseArguments() throws -> (options: WebSocketServer.Options, threads: Int) {
    var options = WebSocketServer.Options(host: "127.0.0.1", port: 9001)
    options.connection.maxPayload = 64 * 1024 * 1024
    var threads = EventLoopThreads.available
    var arguments = CommandLine.arguments.dropFirst()
    var tlsCert: String?
    var tlsKey: String?
    func value(for flag: String) throws -> String {
        guard let value = arguments.popFirst() else { throw UsageError(description: "\(flag) needs a value") }
        return value
    }
    func number(for flag: String) throws -> Int {
        let text = try value(for: flag)
        guard let number = Int(text), number >= 0 else {
            throw UsageError(description: "\(flag) must be a non-negative integer, not \"\(text)\"")
        }
        return number
    }
    while let flag = arguments.popFirst() {
        switch flag {
        case "--port": options.port = try number(for: flag)
        case "--host": options.host = try value(for: flag)
        case "--deflate": options.perMessageDeflate = PerMessageDeflateOptions()
        case "--max-payload": options.connection.maxPayload = try number(for: flag)
        case "--threads":
            threads = try number(for: flag)
            guard threads > 0 else { throw UsageError(description: "--threads must be at least 1") }
        case "--tls-cert": tlsCert = try value(for: flag)
        case "--tls-key": tlsKey = try value(for: flag)
        case "--help", "-h":
            print("usage: echo-server --port N [--host H] [--deflate] [--max-payload BYTES] [--threads N] [--tls-cert PEM --tls-key PEM]")
            exit(0)
        default: throw UsageError(description: "unknown argument \(flag)")
        }
    }
    switch (tlsCert, tlsKey) {
    case (let cert?, let key?): options.tls = TLSConfiguration(certificateFile: cert, privateKeyFile: key)
    case (nil, nil): break
    default: throw UsageError(description: "--tls-cert and --tls-key go together")
    }
    return (options, threads)
}

let (options, threads): (WebSocketServer.Options, Int)
do {
    (options, threads) = try parseArguments()
} catch {
    fputs("echo-server: \(error)\n", stderr)
    exit(64)
}

let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
let server = WebSocketServer(options: options, group: group) { ws in
    ws.onMessage { message in ws.send(message, promise: nil) }
}
let address = try await server.listen()
let reloader = options.tls == nil ? nil : server.reloadTLSOnSIGHUP { error in
    if let error { fputs("echo-server: certificate reload failed, keeping the old one: \(error)\n", stderr) }
    else { fputs("echo-server: certificate reloaded\n", stderr) }
}
print("echo-server listening on \(options.tls == nil ? "ws" : "wss")://\(options.host):\(address.port ?? options.port)/ deflate=\(options.perMessageDeflate != nil) threads=\(threads)")
try await server.waitUntilStopped()
