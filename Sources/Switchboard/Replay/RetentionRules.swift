import Foundation

/// One set of retention rules, first match wins, replaced whole at run time
/// (`Broker.replaceRetention`): a publish is decided by one set, never by half of two. A
/// topic no rule matches is not retained.
public final class RetentionRules: Sendable, Hashable, CustomStringConvertible {
    public let rules: [ReplayRule]

    public init(_ rules: [ReplayRule]) {
        self.rules = rules
    }

    /// Parses one rule per item (`ReplayRule.parse`); fails on the first bad one, naming it.
    public static func parse(_ texts: [String]) -> Result<RetentionRules, ReplayRule.ParseError> {
        var rules: [ReplayRule] = []
        for text in texts {
            switch ReplayRule.parse(text.trimmingCharacters(in: .whitespaces)) {
            case .success(let rule): rules.append(rule)
            case .failure(let problem): return .failure(problem)
            }
        }
        return .success(RetentionRules(rules))
    }

    /// The rule that applies to `topic`, or nil when it is not retained.
    public func rule(for topic: Topic) -> ReplayRule? {
        rules.first { $0.pattern.matches(topic) }
    }

    public func retains(_ topic: Topic) -> Bool { rule(for: topic) != nil }

    /// The rules in text form, one each, as `replay_retain` takes them.
    public var texts: [String] { rules.map(\.description) }

    public var description: String { texts.joined(separator: ", ") }

    public static func == (a: RetentionRules, b: RetentionRules) -> Bool { a.rules == b.rules }
    public func hash(into hasher: inout Hasher) { hasher.combine(rules) }
}
