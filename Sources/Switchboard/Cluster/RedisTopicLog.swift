import NIOCore
import RedisWire
import WebSocketCore

/// A topic's seq, history and fan-out in Redis, shared by every broker node. One Lua script
/// per publish assigns the next seq, appends the message to the topic's stream under that
/// seq and publishes it on the topic's channel, so seq, history and fan-out cannot diverge
/// (Redis runs a script atomically). The reply is the ack: a publish that throws may or may
/// not have been stored, never one that returned.
struct RedisTopicLog: Sendable {
    /// What a publish was given.
    struct Published: Sendable, Equatable {
        var sequence: UInt64
        var time: Int64
        var epoch: String
    }

    private let redis: any RedisCommandSending
    /// Given to a topic's first publish (or first after Redis lost its data), so resumers
    /// can tell a new history from the one they followed.
    private let newEpoch: @Sendable () -> String

    init(redis: any RedisCommandSending, newEpoch: @escaping @Sendable () -> String = {
        String(UInt64.random(in: 1...UInt64.max), radix: 16)
    }) {
        self.redis = redis
        self.newEpoch = newEpoch
    }

    /// KEYS: seq hash, stream. ARGV: channel, now (ms), stream length to keep (0: not
    /// retained), epoch for a new topic, format code, payload. Publish times never decrease
    /// (a node's clock may be behind another's), so `since_time` can bisect over seqs.
    static let publishScript = RedisScript(
        publishSource,
        sha1: Crypto.sha1(publishSource.utf8).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined())

    private static let publishSource =
        """
        local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
        redis.call('HSETNX', KEYS[1], 'epoch', ARGV[4])
        local meta = redis.call('HMGET', KEYS[1], 'epoch', 'time')
        local time = tonumber(ARGV[2])
        local last = tonumber(meta[2] or '0')
        if last > time then time = last end
        redis.call('HSET', KEYS[1], 'time', string.format('%d', time))
        local keep = tonumber(ARGV[3])
        if keep > 0 then
          redis.call('XADD', KEYS[2], 'MAXLEN', '~', keep, string.format('%d-0', seq),
            't', string.format('%d', time), 'f', ARGV[5], 'p', ARGV[6])
        end
        redis.call('PUBLISH', ARGV[1],
          string.format('%d %d %s %s\\n', seq, time, meta[1], ARGV[5]) .. ARGV[6])
        return {seq, string.format('%d', time), meta[1]}
        """

    /// Sequences, stores (when `keep` > 0, trimmed to about `keep` entries) and publishes.
    /// Throws `RedisError.unavailable` when Redis cannot be reached.
    func publish(
        topic: Topic, format: PayloadFormat, payload: ByteBuffer, now: Int64, keep: Int
    ) async throws -> Published {
        let (keys, arguments) = publishCall(topic: topic, format: format, payload: payload, now: now, keep: keep)
        return try Self.published(try await Self.publishScript.run(on: redis, keys: keys, arguments: arguments))
    }

    /// The keys and arguments of the publish script for one message.
    func publishCall(
        topic: Topic, format: PayloadFormat, payload: ByteBuffer, now: Int64, keep: Int
    ) -> (keys: [RESPArgument], arguments: [RESPArgument]) {
        let keys = ClusterKeys(topic)
        return (
            [RESPArgument(keys.sequence), RESPArgument(keys.stream)],
            [
                RESPArgument(keys.channel), RESPArgument(now), RESPArgument(max(keep, 0)), RESPArgument(newEpoch()),
                RESPArgument(ClusterMessage.code(format)), RESPArgument(payload),
            ]
        )
    }

    /// The publish script's reply read; an error reply throws `RedisError.server`.
    static func published(_ reply: RESPValue) throws -> Published {
        if case .error(let message) = reply { throw RedisError.server(message) }
        guard let fields = reply.elements, fields.count == 3, let sequence = fields[0].int, sequence > 0,
            let time = fields[1].int, let epoch = fields[2].string
        else { throw RedisError.unexpectedReply("publish script gave \(reply)") }
        return Published(sequence: UInt64(sequence), time: time, epoch: epoch)
    }

    /// The topic's last seq, its publish time and the topic's epoch; nil when Redis has never
    /// seen the topic.
    func current(topic: Topic) async throws -> (sequence: UInt64, time: Int64, epoch: String)? {
        let reply = try await redis.send(["HMGET", RESPArgument(ClusterKeys(topic).sequence), "seq", "epoch", "time"])
        guard let fields = reply.elements, fields.count == 3 else {
            throw RedisError.unexpectedReply("HMGET gave \(reply)")
        }
        guard let sequence = fields[0].int, let epoch = fields[1].string else { return nil }
        return (UInt64(sequence), fields[2].int ?? 0, epoch)
    }

    /// How many messages the topic's stream holds, and the bytes Redis spends on it
    /// (`MEMORY USAGE`: entries, ids and the stream's own structure, not payloads alone).
    func retainedSize(topic: Topic) async throws -> (count: Int, bytes: Int64) {
        let key = RESPArgument(ClusterKeys(topic).stream)
        let count = try await redis.send(["XLEN", key])
        let bytes = try await redis.send(["MEMORY", "USAGE", key])
        guard let count = count.int else { throw RedisError.unexpectedReply("XLEN gave \(count)") }
        return (Int(count), bytes.int ?? 0)
    }

    /// Trims every entry of the topic's stream (the key stays, so the topic is still listed
    /// as retained); returns how many went. Its seqs continue in the seq hash, so a resumer
    /// from before finds nothing up to the topic's seq: a gap.
    func purge(topic: Topic) async throws -> Int {
        let reply = try await redis.send(["XTRIM", RESPArgument(ClusterKeys(topic).stream), "MAXLEN", "0"])
        guard let trimmed = reply.int else { throw RedisError.unexpectedReply("XTRIM gave \(reply)") }
        return Int(trimmed)
    }

    /// Up to `limit` stored messages after seq `after`, in seq order.
    func read(topic: Topic, after: UInt64, limit: Int) async throws -> [StoredMessage] {
        let reply = try await redis.send([
            "XRANGE", RESPArgument(ClusterKeys(topic).stream), "\(after + 1)-0", "+", "COUNT", RESPArgument(limit),
        ])
        return try Self.messages(reply, topic: topic)
    }

    /// The last `count` stored messages, in seq order.
    func last(topic: Topic, count: Int) async throws -> [StoredMessage] {
        let reply = try await redis.send([
            "XREVRANGE", RESPArgument(ClusterKeys(topic).stream), "+", "-", "COUNT", RESPArgument(count),
        ])
        return try Self.messages(reply, topic: topic).reversed()
    }

    /// The topic's epoch, given one now when it has none (never published, or Redis lost its
    /// data), so that a subscriber learns the history its seqs will count in before they come.
    func epoch(topic: Topic) async throws -> String {
        let key = RESPArgument(ClusterKeys(topic).sequence)
        _ = try await redis.send(["HSETNX", key, "epoch", RESPArgument(newEpoch())])
        let reply = try await redis.send(["HGET", key, "epoch"])
        guard let epoch = reply.string else { throw RedisError.unexpectedReply("HGET epoch gave \(reply)") }
        return epoch
    }

    /// The first stored message with seq >= `sequence`.
    func first(topic: Topic, atOrAfter sequence: UInt64) async throws -> StoredMessage? {
        try await read(topic: topic, after: max(sequence, 1) - 1, limit: 1).first
    }

    /// The newest stored message.
    func newest(topic: Topic) async throws -> StoredMessage? {
        try await last(topic: topic, count: 1).first
    }

    /// The seq after which the messages published at or after `time` start: the one before
    /// the first stored at or after it. nil when the stream holds nothing.
    func sequence(before time: Int64, topic: Topic) async throws -> UInt64? {
        guard let newest = try await newest(topic: topic), let first = try await first(topic: topic, atOrAfter: 0)
        else { return nil }
        guard newest.time >= time else { return newest.sequence }
        if first.time >= time {
            // Trimmed messages may have been published at or after `time` (their times are
            // gone with them): start before the newest of them, so a gap is reported.
            return first.sequence > 1 ? first.sequence - 2 : 0
        }
        // Times never decrease with seqs: bisect for the first entry at or after `time`.
        var low = first.sequence
        var high = newest.sequence
        while low < high {
            let middle = low + (high - low) / 2
            if let probe = try await self.first(topic: topic, atOrAfter: middle), probe.time < time {
                low = probe.sequence + 1
            } else {
                high = middle
            }
        }
        return (try await self.first(topic: topic, atOrAfter: low)?.sequence ?? newest.sequence + 1) - 1
    }

    /// The topics `pattern` matches that have a key of `kind`, by name: a
    /// `SCAN` of the keyspace, paged by Redis.
    func topics(matching pattern: TopicPattern, _ kind: ClusterKeys.Kind) async throws -> [Topic] {
        let glob = ClusterKeys.glob(pattern, kind)
        var cursor = "0"
        var found: Set<Topic> = []
        repeat {
            let reply = try await redis.send(["SCAN", RESPArgument(cursor), "MATCH", RESPArgument(glob), "COUNT", "1000"])
            guard let parts = reply.elements, parts.count == 2, let next = parts[0].string, let keys = parts[1].elements
            else { throw RedisError.unexpectedReply("SCAN gave \(reply)") }
            for key in keys {
                if let topic = key.string.flatMap({ ClusterKeys.topic(ofKey: $0, kind) }), pattern.matches(topic) {
                    found.insert(topic)
                }
            }
            cursor = next
        } while cursor != "0"
        return found.sorted { $0.name < $1.name }
    }

    private static func messages(_ reply: RESPValue, topic: Topic) throws -> [StoredMessage] {
        guard let entries = reply.elements else { throw RedisError.unexpectedReply("stream read gave \(reply)") }
        return try entries.map { entry in
            guard let parts = entry.elements, parts.count == 2, let id = parts[0].string,
                let sequence = UInt64(id.prefix { $0 != "-" }), let fields = parts[1].elements
            else { throw RedisError.unexpectedReply("stream entry \(entry)") }
            var time: Int64?
            var format: PayloadFormat?
            var payload: ByteBuffer?
            var index = 0
            while index + 1 < fields.count {
                switch fields[index].string {
                case "t": time = fields[index + 1].int
                case "f": format = fields[index + 1].string.flatMap(ClusterMessage.format(code:))
                case "p": if case .bulkString(let bytes) = fields[index + 1] { payload = bytes }
                default: break
                }
                index += 2
            }
            guard let time, let format, let payload else { throw RedisError.unexpectedReply("stream entry \(id)") }
            return StoredMessage(topic: topic, sequence: sequence, time: time, format: format, payload: payload)
        }
    }
}
