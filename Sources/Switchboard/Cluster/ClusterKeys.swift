/// Redis names for one topic. The topic sits in a hash tag (`{…}`) so its seq and its
/// stream always live on the same Redis (or Redis Cluster slot), which one script needs.
struct ClusterKeys: Sendable {
    /// Hash with the topic's last `seq`, last publish `time` and its `epoch`.
    var sequence: String
    /// Stream of the retained messages, entry id `SEQ-0`.
    var stream: String
    /// Pub/sub channel on which every node hears the topic's messages.
    var channel: String

    init(_ topic: Topic) {
        sequence = Self.prefix + "\(topic)" + Kind.sequence.rawValue
        stream = Self.prefix + "\(topic)" + Kind.stream.rawValue
        channel = ClusterKeys.channelPrefix + "\(topic)"
    }

    static let channelPrefix = "sb:msg:"
    private static let prefix = "sb:{"

    /// A topic's keys, by the end of their name.
    enum Kind: String {
        case sequence = "}:seq"
        case stream = "}:log"
    }

    /// A `SCAN MATCH` glob for the keys of `kind` of the topics `pattern` may match (topic
    /// names hold no glob characters; both wildcards become `*`, so `matches` decides).
    static func glob(_ pattern: TopicPattern, _ kind: Kind) -> String {
        prefix + pattern.name.replacingOccurrences(of: ">", with: "*") + kind.rawValue
    }

    /// The topic a key of `kind` belongs to; nil for another key.
    static func topic(ofKey key: String, _ kind: Kind) -> Topic? {
        guard key.hasPrefix(prefix), key.hasSuffix(kind.rawValue) else { return nil }
        return try? Topic(String(key.dropFirst(prefix.count).dropLast(kind.rawValue.count)))
    }
}
