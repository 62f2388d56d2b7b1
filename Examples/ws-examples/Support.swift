import NIOCore
import WebSockets

/// Serves `server` on a free port of 127.0.0.1 while `body` runs (given the port), then
/// shuts it down: every client is closed with 1001 and `run()` returns.
func withServer<T>(_ server: WebSocketServer, _ body: (Int) async throws -> T) async throws -> T {
    let port = try await server.listen().port!
    async let running: Void = server.run()
    let result: T
    do {
        result = try await body(port)
    } catch {
        await server.shutdown()
        try? await running
        throw error
    }
    await server.shutdown()
    try await running
    return result
}
