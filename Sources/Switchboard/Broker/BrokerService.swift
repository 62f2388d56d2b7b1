import ServiceLifecycle

/// The broker as a swift-service-lifecycle `Service`: put it in the application's
/// `ServiceGroup`, next to its other services (docs/embedding.md).
extension Broker: Service {
    /// Starts listening unless `start()` was called already, serves until the task is
    /// cancelled, a graceful shutdown is triggered or `shutdown()` is called, then drains:
    /// every client is closed with 1001 after what was accepted for it, and the replay log
    /// commits what it holds and closes. Returns once that is done. One `run()` per broker.
    /// Throws what `start()` throws (the port is taken, say), after shutting down all the same.
    public func run() async throws {
        if !isStarted {
            do {
                try await start()
            } catch {
                await shutdown()
                throw error
            }
        }
        await withTaskCancellationOrGracefulShutdownHandler {
            for await _ in stopRequests.stream {}
        } onCancelOrGracefulShutdown: { [stopRequests] in
            stopRequests.continuation.finish()
        }
        await shutdown()
    }
}
