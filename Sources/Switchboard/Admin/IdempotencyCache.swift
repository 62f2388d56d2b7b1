import NIOConcurrencyHelpers
import WebSockets

/// The answers to admin publishes by idempotency key, for `idempotencyWindow` after the
/// first: a request that repeats a key gets the first answer and publishes nothing; one that
/// arrives while the first is still publishing waits for it. Only successes are kept, so a
/// publish that failed can be retried with the same key. A key reused for a different
/// request (another topic or payload) is a conflict (409).
///
/// Bounded: at most `capacity` keys; past it the oldest finished one is forgotten early.
final class IdempotencyCache: Sendable {
    /// How long a key is remembered: 5 minutes, in milliseconds.
    static let window: Int64 = 5 * 60 * 1000
    /// Keys remembered at most. 100 000 (over 300 keyed publishes a second for the window).
    static let capacity = 100_000
    /// Longest key, in bytes.
    static let maxKeyBytes = 255

    private struct Entry {
        var fingerprint: [UInt8]
        var at: Int64
        var outcome: Outcome
    }

    private enum Outcome {
        case pending([CheckedContinuation<PlainHTTPResponse?, Never>])
        case done(PlainHTTPResponse)
    }

    private struct State {
        var entries: [String: Entry] = [:]
        /// Keys in the order they were first seen, with that time: expiry walks from the front.
        var order: [(key: String, at: Int64)] = []
        var front = 0
    }

    private let state = NIOLockedValueBox(State())

    /// What to do with a keyed request.
    enum Claim {
        /// The first with this key: carry it out, then `finish`.
        case first
        /// Seen before: answer this.
        case replay(PlainHTTPResponse)
        /// The key was used for a different request.
        case conflict
    }

    /// Claims `key` for a request whose content hashes to `fingerprint`.
    func claim(_ key: String, fingerprint: [UInt8], now: Int64) async -> Claim {
        enum Step {
            case claim(Claim)
            case wait
        }
        let step = state.withLockedValue { state -> Step in
            expire(&state, now: now)
            guard let entry = state.entries[key] else {
                state.entries[key] = Entry(fingerprint: fingerprint, at: now, outcome: .pending([]))
                state.order.append((key, now))
                return .claim(.first)
            }
            guard entry.fingerprint == fingerprint else { return .claim(.conflict) }
            switch entry.outcome {
            case .done(let response): return .claim(.replay(response))
            case .pending: return .wait
            }
        }
        switch step {
        case .claim(let claim):
            return claim
        case .wait:
            let response = await withCheckedContinuation { (continuation: CheckedContinuation<PlainHTTPResponse?, Never>) in
                let resumeNow = state.withLockedValue { state -> Bool in
                    guard case .pending(var waiting)? = state.entries[key]?.outcome else { return true }
                    waiting.append(continuation)
                    state.entries[key]?.outcome = .pending(waiting)
                    return false
                }
                if resumeNow { continuation.resume(returning: nil) }
            }
            // The first failed (or was forgotten): this one goes ahead as the first.
            guard let response else { return await claim(key, fingerprint: fingerprint, now: now) }
            return .replay(response)
        }
    }

    /// The claimed request is done: a success (2xx) is kept for the window and handed to
    /// those waiting; anything else forgets the key.
    func finish(_ key: String, _ response: PlainHTTPResponse) {
        let keep = (200..<300).contains(response.status)
        let waiting = state.withLockedValue { state -> [CheckedContinuation<PlainHTTPResponse?, Never>] in
            guard case .pending(let waiting)? = state.entries[key]?.outcome else { return [] }
            if keep {
                state.entries[key]?.outcome = .done(response)
            } else {
                state.entries[key] = nil
            }
            return waiting
        }
        for continuation in waiting { continuation.resume(returning: keep ? response : nil) }
    }

    /// Forgets keys older than the window, and the oldest finished ones past `capacity`.
    private func expire(_ state: inout State, now: Int64) {
        while state.front < state.order.count {
            let (key, at) = state.order[state.front]
            let expired = at <= now - Self.window
            let full = state.entries.count >= Self.capacity
            guard expired || full else { break }
            if let entry = state.entries[key], entry.at == at {
                switch entry.outcome {
                case .done:
                    state.entries[key] = nil
                case .pending:
                    // Still publishing: kept (its waiters are resumed by `finish`), timed from now.
                    guard expired else { return }
                    state.entries[key]?.at = now
                    state.order.append((key, now))
                }
            }
            state.front += 1
        }
        if state.front > 1024, state.front * 2 > state.order.count {
            state.order.removeFirst(state.front)
            state.front = 0
        }
    }
}
