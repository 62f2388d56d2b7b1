import NIOCore
import RedisWire

/// Age retention on the topic streams. A stream's entry ids are seqs, not times, so
/// `XTRIM MINID` cannot take an age directly; each entry carries its publish time (`t`),
/// and times never decrease along a stream (the publish script keeps the max). So the
/// oldest entries are read from the head and the stream is trimmed up to the first one
/// young enough, a page at a time, by one script per page. Counts need none of this: the
/// publish script's `MAXLEN ~` keeps them.
enum ClusterStreamTrim {
    /// Entries a trim script reads from a stream's head at once. Default 1000.
    static let page = 1000
    /// Keys one `SCAN` step asks for. Default 500.
    static let scanCount = 500

    /// KEYS: stream. ARGV: cutoff (unix ms), page. Trims the head entries older than the
    /// cutoff among the first `page`; returns {trimmed, 1 when the whole page was old}.
    static let script = RedisScript(
        """
        local cutoff = tonumber(ARGV[1])
        local entries = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', tonumber(ARGV[2]))
        for _, entry in ipairs(entries) do
          local fields = entry[2]
          for i = 1, #fields, 2 do
            if fields[i] == 't' and tonumber(fields[i + 1]) >= cutoff then
              return {redis.call('XTRIM', KEYS[1], 'MINID', entry[1]), 0}
            end
          end
        end
        if #entries == 0 then return {0, 0} end
        local last = tonumber(string.match(entries[#entries][1], '^(%d+)'))
        local trimmed = redis.call('XTRIM', KEYS[1], 'MINID', string.format('%d-0', last + 1))
        return {trimmed, #entries == tonumber(ARGV[2]) and 1 or 0}
        """)

    /// How often to trim under `rules`: a quarter of the shortest age, between 1 s and 60 s;
    /// nil when no rule has an age.
    static func interval(_ rules: RetentionRules) -> TimeAmount? {
        guard let shortest = rules.rules.compactMap(\.maxAgeMilliseconds).min() else { return nil }
        return .milliseconds(min(max(shortest / 4, 1000), 60_000))
    }

    /// Trims every topic stream whose rule has an age; returns how many entries went.
    static func trim(_ redis: some RedisCommandSending, rules: RetentionRules, now: Int64) async throws -> Int {
        var trimmed = 0
        var cursor = "0"
        repeat {
            let reply = try await redis.send([
                "SCAN", RESPArgument(cursor), "MATCH", "sb:{*}:log", "COUNT", RESPArgument(scanCount),
            ])
            guard let parts = reply.elements, parts.count == 2, let next = parts[0].string, let keys = parts[1].elements else {
                throw RedisError.unexpectedReply("SCAN gave \(reply)")
            }
            cursor = next
            for case let key? in keys.map(\.string) {
                guard let topic = ClusterKeys.topic(ofStream: key), let age = rules.rule(for: topic)?.maxAgeMilliseconds
                else { continue }
                var more = true
                while more {
                    let result = try await script.run(
                        on: redis, keys: [RESPArgument(key)], arguments: [RESPArgument(now - age), RESPArgument(page)])
                    guard let fields = result.elements, fields.count == 2, let count = fields[0].int, let flag = fields[1].int
                    else { throw RedisError.unexpectedReply("trim script gave \(result)") }
                    trimmed += Int(count)
                    more = flag == 1
                }
            }
        } while cursor != "0"
        return trimmed
    }
}

extension ClusterKeys {
    /// The topic of a stream key (`sb:{TOPIC}:log`); nil for any other key.
    static func topic(ofStream key: String) -> Topic? {
        guard key.hasPrefix("sb:{"), key.hasSuffix("}:log") else { return nil }
        return try? Topic(String(key.dropFirst(4).dropLast(5)))
    }
}
