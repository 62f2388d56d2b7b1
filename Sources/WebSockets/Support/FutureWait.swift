import NIOConcurrencyHelpers
import NIOCore

extension EventLoopFuture where Value: Sendable {
    /// Waits for the future like `get()`, except that a cancelled task stops waiting and
    /// throws `CancellationError`; the work behind the future goes on regardless.
    func getUnlessCancelled() async throws -> Value {
        let waiter = CancellableWaiter<Value>()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                guard waiter.suspend(continuation) else { return }
                whenComplete { waiter.complete($0) }
            }
        } onCancel: {
            waiter.cancel()
        }
    }
}

/// One continuation, resumed by whichever comes first: the result or the cancellation.
private final class CancellableWaiter<Value: Sendable>: Sendable {
    private enum State {
        case idle
        case suspended(CheckedContinuation<Value, any Error>)
        case cancelled
        case resumed
    }

    private let state = NIOLockedValueBox(State.idle)

    /// Keeps the continuation; false, having resumed it, when the task was cancelled already.
    func suspend(_ continuation: CheckedContinuation<Value, any Error>) -> Bool {
        let cancelled = state.withLockedValue { state -> Bool in
            guard case .idle = state else { return true }
            state = .suspended(continuation)
            return false
        }
        if cancelled { continuation.resume(throwing: CancellationError()) }
        return !cancelled
    }

    func complete(_ result: Result<Value, any Error>) {
        take(next: .resumed)?.resume(with: result)
    }

    func cancel() {
        take(next: .cancelled)?.resume(throwing: CancellationError())
    }

    /// The continuation, if it still waits; the state moves to `next` either way unless
    /// it was already resumed or cancelled.
    private func take(next: State) -> CheckedContinuation<Value, any Error>? {
        state.withLockedValue { state in
            switch state {
            case .idle:
                state = next
                return nil
            case .suspended(let continuation):
                state = next
                return continuation
            case .cancelled, .resumed:
                return nil
            }
        }
    }
}
