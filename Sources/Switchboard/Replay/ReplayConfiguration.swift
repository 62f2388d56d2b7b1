import Foundation

/// Which topics the replay log retains, and for how long. Part of `BrokerConfiguration`
/// (`replay_*` keys); read by `ReplayLog`.
///
/// A topic is retained when a rule's pattern matches it; the first matching rule (in
/// configuration order) gives its limits. A topic no rule matches is **not retained**:
/// its messages go to live subscribers only, a publish to it is acked as soon as it is
/// sequenced (nothing waits for the disk), and a `since` on it replays nothing (the
/// subscriber is sent a `gap` notice when it missed messages). Its sequence numbers
/// still survive a restart (`topic_sequences`).
public struct ReplayConfiguration: Sendable, Hashable {
    /// Retention rules, first match wins. Default none: the replay log is off.
    public var rules: [ReplayRule] = []
    /// Global cap on the database's used size in bytes; past it the oldest messages of any
    /// topic are pruned. Default 1 GiB; 0 = no cap.
    public var maxBytes: Int64 = 1 << 30
    /// Appends queued for the writer (not yet committed) before further appends are
    /// refused with `unavailable`. Default 65 536 (about 10 MB of 64-byte messages; at most
    /// `queueLimit × maxPayload` in the worst case).
    public var queueLimit = 65_536
    /// The SQLite file of the replay log; nil = the broker's `database`. Default nil.
    public var database: String? = nil

    public init() {}

    /// True when at least one topic can be retained.
    public var isEnabled: Bool { !rules.isEmpty }

    /// `rules` as the rule set a replay log starts with when its store holds none.
    public var retention: RetentionRules { RetentionRules(rules) }

    /// Keys of `BrokerConfiguration` handled here, with their environment variables.
    static let keys: [(key: String, environment: String)] = [
        ("replay_retain", "SWITCHBOARD_REPLAY_RETAIN"), ("replay_max_bytes", "SWITCHBOARD_REPLAY_MAX_BYTES"),
        ("replay_queue_limit", "SWITCHBOARD_REPLAY_QUEUE_LIMIT"), ("replay_database", "SWITCHBOARD_REPLAY_DATABASE"),
    ]

    /// Sets one `replay_*` key from its text form; returns a problem description on a bad value.
    mutating func set(_ key: String, _ text: String) -> String? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        switch key {
        case "replay_retain":
            let items = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            switch RetentionRules.parse(items) {
            case .success(let parsed): rules = parsed.rules
            case .failure(let problem): return problem.message
            }
        case "replay_max_bytes":
            guard let value = Int64(trimmed), value >= 0 else {
                return "must be a number of bytes (0 = no cap), not \(text.debugDescription)"
            }
            guard value == 0 || value >= 1 << 20 else { return "must be 0 or at least 1048576 (1 MiB), not \(value)" }
            maxBytes = value
        case "replay_queue_limit":
            guard let value = Int(trimmed), (1...10_000_000).contains(value) else {
                return "must be an integer from 1 to 10000000, not \(text.debugDescription)"
            }
            queueLimit = value
        case "replay_database":
            database = trimmed.isEmpty ? nil : trimmed
        default:
            return "unknown key"
        }
        return nil
    }
}

/// One retention rule: the topics `pattern` matches keep at most `maxMessages` messages
/// each, none older than `maxAge`. nil limits are unbounded (the global size cap still applies).
///
/// Text form (the `replay_retain` key, rules separated by commas):
/// `PATTERN [count=N] [age=DURATION]`, DURATION being a number with `ms`, `s`, `m`, `h`
/// or `d`: `chat.> count=10000 age=24h, orders.* age=7d, audit.>`.
public struct ReplayRule: Sendable, Hashable, CustomStringConvertible {
    public var pattern: TopicPattern
    public var maxMessages: UInt64?
    /// Maximum age in milliseconds.
    public var maxAgeMilliseconds: Int64?

    public init(pattern: TopicPattern, maxMessages: UInt64? = nil, maxAgeMilliseconds: Int64? = nil) {
        self.pattern = pattern
        self.maxMessages = maxMessages
        self.maxAgeMilliseconds = maxAgeMilliseconds
    }

    public struct ParseError: Error, Sendable, Hashable {
        public var message: String
    }

    public static func parse(_ text: String) -> Result<ReplayRule, ParseError> {
        let words = text.split(separator: " ", omittingEmptySubsequences: true)
        guard let first = words.first else { return .failure(ParseError(message: "empty rule")) }
        let pattern: TopicPattern
        do {
            pattern = try TopicPattern(String(first))
        } catch {
            return .failure(ParseError(message: "rule \(text.debugDescription): bad pattern \(first.debugDescription): \(error.message)"))
        }
        var rule = ReplayRule(pattern: pattern)
        for word in words.dropFirst() {
            let parts = word.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else {
                return .failure(ParseError(message: "rule \(text.debugDescription): expected count=N or age=DURATION, not \(word.debugDescription)"))
            }
            switch parts[0] {
            case "count":
                guard let n = UInt64(parts[1]), n > 0 else {
                    return .failure(ParseError(message: "rule \(text.debugDescription): count must be a positive integer"))
                }
                rule.maxMessages = n
            case "age":
                guard let ms = parseDuration(parts[1]), ms > 0 else {
                    return .failure(ParseError(message: "rule \(text.debugDescription): age must be like 500ms, 30s, 10m, 24h or 7d"))
                }
                rule.maxAgeMilliseconds = ms
            default:
                return .failure(ParseError(message: "rule \(text.debugDescription): unknown limit \(parts[0].debugDescription) (count, age)"))
            }
        }
        return .success(rule)
    }

    static func parseDuration(_ text: Substring) -> Int64? {
        let units: [(String, Int64)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            guard let n = Int64(text.dropLast(suffix.count)), n >= 0 else { return nil }
            let (product, overflow) = n.multipliedReportingOverflow(by: factor)
            return overflow ? nil : product
        }
        return nil
    }

    public var description: String {
        var text = pattern.name
        if let maxMessages { text += " count=\(maxMessages)" }
        if let maxAgeMilliseconds { text += " age=\(maxAgeMilliseconds)ms" }
        return text
    }
}
