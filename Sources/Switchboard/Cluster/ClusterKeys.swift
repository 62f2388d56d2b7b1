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
        sequence = "sb:{\(topic)}:seq"
        stream = "sb:{\(topic)}:log"
        channel = ClusterKeys.channelPrefix + "\(topic)"
    }

    static let channelPrefix = "sb:msg:"
}
