import NIOConcurrencyHelpers

// Waiting in tests without sleeping: one-shot values and queues fed by callbacks, every wait
// bounded, so a hang fails a test instead of blocking CI. Shared by the socket test suites.

/// Every wait in this suite is bounded by this, so a hang fails a test instead of blocking CI.
/// Generous because the machine is small and shared; a passing test never waits this long.
public let testTimeout: Duration = .seconds(60)

public struct TimedOut: Error, CustomStringConvertible {
    public var what: String
    public init(what: String) { self.what = what }
    public var description: String { "timed out waiting for \(what)" }
}

/// A value that arrives once from a callback (first one wins), awaited with a timeout.
public final class Waiter<T: Sendable>: Sendable {
    private struct State {
        var result: Result<T, any Error>?
        var continuation: CheckedContinuation<T, any Error>?
    }
    private let state = NIOLockedValueBox(State())
    public let what: String

    public init(_ what: String = "an event") { self.what = what }

    /// Returns false when the waiter had already completed (fulfilled, failed or timed out)
    /// and `value` was not taken.
    @discardableResult public func fulfill(_ value: T) -> Bool { complete(.success(value)) }
    @discardableResult public func fail(_ error: any Error) -> Bool { complete(.failure(error)) }

    public var isFulfilled: Bool { state.withLockedValue { $0.result != nil } }

    private func complete(_ result: Result<T, any Error>) -> Bool {
        let (taken, continuation) = state.withLockedValue { state -> (Bool, CheckedContinuation<T, any Error>?) in
            guard state.result == nil else { return (false, nil) }
            state.result = result
            defer { state.continuation = nil }
            return (true, state.continuation)
        }
        continuation?.resume(with: result)
        return taken
    }

    public func value(timeout: Duration = testTimeout) async throws -> T {
        let timer = Task { [what] in
            try await Task.sleep(for: timeout)
            self.fail(TimedOut(what: what))
        }
        defer { timer.cancel() }
        return try await withCheckedThrowingContinuation { continuation in
            let ready = state.withLockedValue { state -> Result<T, any Error>? in
                if let result = state.result { return result }
                state.continuation = continuation
                return nil
            }
            if let ready { continuation.resume(with: ready) }
        }
    }
}

/// Runs `body` and fails with `TimedOut` if it has not finished after `timeout`. The body
/// is not awaited past the timeout (NIO future waits do not observe cancellation).
public func withTimeout<T: Sendable>(
    _ what: String, _ timeout: Duration = testTimeout, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    let waiter = Waiter<T>(what)
    let task = Task {
        do { waiter.fulfill(try await body()) } catch { waiter.fail(error) }
    }
    defer { task.cancel() }
    return try await waiter.value(timeout: timeout)
}

/// Polls `condition` until it holds, failing with `TimedOut` after `timeout`: only for state
/// that no event announces (a background thread's counters, a server's connection count,
/// another process's answers);
/// wherever a callback exists, wait on a `Waiter` instead.
public func eventually(
    _ what: String, timeout: Duration = testTimeout, _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while try await !condition() {
        guard ContinuousClock.now < deadline else { throw TimedOut(what: what) }
        try await Task.sleep(for: .milliseconds(10))
    }
}

/// Collects values from callbacks; `next()` awaits the next one in order (one consumer).
public final class Inbox<T: Sendable>: Sendable {
    private struct State {
        var items: [T] = []
        var waiters: [Waiter<T>] = []
    }
    private let state = NIOLockedValueBox(State())

    public init() {}

    /// Hands `value` to the oldest waiter still waiting (one whose `next` timed out does
    /// not take it), else keeps it for the next `next`.
    public func put(_ value: T) {
        state.withLockedValue { state in
            while !state.waiters.isEmpty {
                if state.waiters.removeFirst().fulfill(value) { return }
            }
            state.items.append(value)
        }
    }

    public func next(timeout: Duration = testTimeout) async throws -> T {
        let (item, waiter) = state.withLockedValue { state -> (T?, Waiter<T>?) in
            if !state.items.isEmpty { return (state.items.removeFirst(), nil) }
            let waiter = Waiter<T>("the next value")
            state.waiters.append(waiter)
            return (nil, waiter)
        }
        if let item { return item }
        return try await waiter!.value(timeout: timeout)
    }

    public var count: Int { state.withLockedValue { $0.items.count } }
}

