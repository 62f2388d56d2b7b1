/// A subscription's topic or pattern, matched against the topics of incoming messages so
/// that each message reaches every subscription of the client that covers it (the broker
/// sends a message once per connection however many of its subscriptions match).
struct TopicPattern: Sendable, Hashable {
    let text: String
    /// Nil for a concrete topic (matched by equality).
    private let segments: [Substring]?

    init(_ text: String) {
        self.text = text
        let split = text.split(separator: ".", omittingEmptySubsequences: false)
        segments = split.contains { $0 == "*" || $0 == ">" } ? split : nil
    }

    var isPattern: Bool { segments != nil }

    func matches(_ topic: String) -> Bool {
        guard let segments else { return topic == text }
        var index = 0
        for part in topic.split(separator: ".", omittingEmptySubsequences: false) {
            guard index < segments.count else { return false }
            switch segments[index] {
            case ">": return true
            case "*": break
            case let literal where literal == part: break
            default: return false
            }
            index += 1
        }
        return index == segments.count
    }
}
