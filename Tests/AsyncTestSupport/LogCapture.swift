import Logging
import NIOConcurrencyHelpers

/// A swift-log handler that keeps every message, so tests can wait for a server or the broker
/// to say it did something (close a slow consumer, refuse a handshake), and check what it said.
public final class LogCapture: LogHandler, Sendable {
    public struct Entry: Sendable {
        public var level: Logger.Level
        public var message: String
        public var metadata: [String: String]
    }

    private let entries = NIOLockedValueBox<[Entry]>([])
    private let waiters = NIOLockedValueBox<[(@Sendable (Entry) -> Bool, Waiter<Entry>)]>([])

    public init() {}

    public var logLevel: Logger.Level {
        get { .trace }
        set {}
    }
    public var metadata: Logger.Metadata {
        get { [:] }
        set {}
    }
    public subscript(metadataKey _: String) -> Logger.Metadata.Value? {
        get { nil }
        set {}
    }

    public func log(event: LogEvent) {
        let entry = Entry(
            level: event.level, message: "\(event.message)",
            metadata: (event.metadata ?? [:]).mapValues { "\($0)" })
        let ready = NIOLockedValueBox<[Waiter<Entry>]>([])
        entries.withLockedValue { entries in
            entries.append(entry)
            waiters.withLockedValue { waiters in
                waiters.removeAll { match, waiter in
                    guard match(entry) else { return false }
                    ready.withLockedValue { $0.append(waiter) }
                    return true
                }
            }
        }
        for waiter in ready.withLockedValue({ $0 }) { waiter.fulfill(entry) }
    }

    public var all: [Entry] { entries.withLockedValue { $0 } }

    /// The first entry (past or future) that `match` accepts.
    public func waitFor(
        _ what: String, timeout: Duration = testTimeout, _ match: @escaping @Sendable (Entry) -> Bool
    ) async throws -> Entry {
        let waiter = Waiter<Entry>(what)
        entries.withLockedValue { entries in
            if let found = entries.first(where: match) {
                waiter.fulfill(found)
            } else {
                waiters.withLockedValue { $0.append((match, waiter)) }
            }
        }
        return try await waiter.value(timeout: timeout)
    }
}
