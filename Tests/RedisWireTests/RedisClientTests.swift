import AsyncTestSupport
import BrokerProcess
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

@testable import RedisWire

/// The client against a real `redis-server` on a loopback port, with its data in a temp dir.
@Suite(.serialized) struct RedisClientTests {
    let group = MultiThreadedEventLoopGroup.singleton

    @Test func commandsRepliesAndErrors() async throws {
        let redis = try await RedisServerProcess.start()
        defer { redis.stop() }
        let connection = try await RedisConnection.connect(to: RedisEndpoint(url: redis.url), on: group)
        defer { connection.close() }
        #expect(try await connection.send(["SET", "k", RESPArgument(ByteBuffer(bytes: [0, 255, 13, 10]))]) == .simpleString("OK"))
        #expect(try await connection.send(["GET", "k"]) == .bulkString(ByteBuffer(bytes: [0, 255, 13, 10])))
        #expect(try await connection.send(["GET", "missing"]) == .null)
        #expect(try await connection.send(["HSET", "h", "a", "1"]) == .integer(1))
        // RESP3 after HELLO 3: a hash comes back as a map.
        #expect(try await connection.send(["HGETALL", "h"]) == .map([RESPPair(key: .bulkString(ByteBuffer(string: "a")), value: .bulkString(ByteBuffer(string: "1")))]))
        await #expect(throws: RedisError.server("ERR unknown command 'NOPE', with args beginning with: ")) {
            try await connection.send(["NOPE"])
        }
        // The connection is still in step after an error reply.
        #expect(try await connection.send(["INCR", "n"]) == .integer(1))
    }

    @Test func aDatabaseInTheURLIsSelected() async throws {
        let redis = try await RedisServerProcess.start()
        defer { redis.stop() }
        let db3 = try await RedisConnection.connect(to: RedisEndpoint(url: redis.url + "/3"), on: group)
        defer { db3.close() }
        _ = try await db3.send(["SET", "where", "three"])
        let db0 = try await RedisConnection.connect(to: RedisEndpoint(url: redis.url), on: group)
        defer { db0.close() }
        #expect(try await db0.send(["GET", "where"]) == .null)
        #expect(try await db3.send(["GET", "where"]).string == "three")
    }

    @Test func pipelinedRepliesMatchTheirCommandsInOrder() async throws {
        let redis = try await RedisServerProcess.start()
        defer { redis.stop() }
        let connection = try await RedisConnection.connect(to: RedisEndpoint(url: redis.url), on: group)
        defer { connection.close() }
        let count = 2000
        let replies = (0..<count).map { i -> EventLoopFuture<RESPValue> in
            i % 7 == 0 ? connection.sendRaw(["NOPE\(i)"]) : connection.sendRaw(["ECHO", "reply \(i)"])
        }
        for (i, reply) in replies.enumerated() {
            let value = try await reply.get()
            if i % 7 == 0 {
                guard case .error(let message) = value else { Issue.record("\(i): \(value)"); continue }
                #expect(message.contains("NOPE\(i)"))
            } else {
                #expect(value.string == "reply \(i)")
            }
        }
    }

    @Test func commandsInFlightFailUnavailableWhenRedisDies() async throws {
        let redis = try await RedisServerProcess.start()
        let connection = try await RedisConnection.connect(to: RedisEndpoint(url: redis.url), on: group)
        defer { connection.close() }
        // Blocks in Redis until it dies, so the reply is certainly outstanding.
        let blocked = connection.sendRaw(["BLPOP", "nothing", "0"])
        try await redis.kill()
        // Closed or reset, depending on what the kernel saw first.
        await #expect {
            try await blocked.get()
        } throws: { error in
            if case RedisError.unavailable = error { true } else { false }
        }
        // A command sent after the close never reaches the handler; it must fail, not hang.
        try await connection.closeFuture.get()
        await #expect {
            try await withTimeout("a reply on a closed connection") { try await connection.send(["PING"]) }
        } throws: { error in
            if case RedisError.unavailable = error { true } else { false }
        }
    }

    @Test func theClientFailsFastWhileDisconnectedAndReconnects() async throws {
        let redis = try await RedisServerProcess.start()
        defer { redis.stop() }
        let events = Inbox<RedisClientEvent>()
        let client = RedisClient(
            endpoint: try RedisEndpoint(url: redis.url), group: group,
            backoff: RedisBackoff(initial: .milliseconds(20), maximum: .milliseconds(200)),
            onEvent: { events.put($0) })
        defer { client.close() }
        await #expect(throws: RedisError.unavailable("not connected to \(client.endpoint)")) {
            try await client.send(["PING"])
        }
        client.start()
        try await withTimeout("connect") { try await client.waitUntilConnected() }
        #expect(try await events.next() == .connected)
        _ = try await client.send(["SET", "kept", "yes"])

        try await redis.kill()
        guard case .disconnected = try await events.next() else { Issue.record("no disconnect event"); return }
        await #expect(throws: RedisError.self) { try await client.send(["PING"]) }

        try await redis.launch()
        #expect(try await events.next() == .connected)
        // appendonly with fsync always: the acknowledged write survived kill -9.
        #expect(try await client.send(["GET", "kept"]).string == "yes")
    }

    @Test func scriptsRunBySHAAndAreLoadedAgainAfterAFlush() async throws {
        let redis = try await RedisServerProcess.start()
        defer { redis.stop() }
        let connection = try await RedisConnection.connect(to: RedisEndpoint(url: redis.url), on: group)
        defer { connection.close() }
        let script = RedisScript("return redis.call('INCRBY', KEYS[1], ARGV[1])")
        #expect(try await script.run(on: connection, keys: ["counter"], arguments: [5]) == .integer(5))
        #expect(try await script.run(on: connection, keys: ["counter"], arguments: [2]) == .integer(7))
        _ = try await connection.send(["SCRIPT", "FLUSH"])
        #expect(try await script.run(on: connection, keys: ["counter"], arguments: [1]) == .integer(8))
        let failing = RedisScript("return redis.error_reply('BAD nope')")
        await #expect(throws: RedisError.server("BAD nope")) {
            try await failing.run(on: connection, keys: [], arguments: [])
        }
    }

    @Test func pubSubDeliversAndResubscribesAfterReconnect() async throws {
        let redis = try await RedisServerProcess.start()
        defer { redis.stop() }
        let endpoint = try RedisEndpoint(url: redis.url)
        let messages = Inbox<RedisPubSubMessage>()
        let events = Inbox<RedisClientEvent>()
        let subscriber = RedisSubscriber(
            endpoint: endpoint, group: group,
            backoff: RedisBackoff(initial: .milliseconds(20), maximum: .milliseconds(200)),
            onMessage: { messages.put($0) }, onEvent: { events.put($0) })
        defer { subscriber.close() }
        subscriber.start()
        try await withTimeout("connect") { try await subscriber.waitUntilConnected() }
        #expect(try await events.next() == .connected)
        try await subscriber.subscribe(channel: "t.news")
        try await subscriber.subscribe(pattern: "p.*")

        let publisher = RedisClient(endpoint: endpoint, group: group, backoff: RedisBackoff(initial: .milliseconds(20)))
        defer { publisher.close() }
        publisher.start()
        try await withTimeout("connect") { try await publisher.waitUntilConnected() }
        #expect(try await publisher.send(["PUBLISH", "t.news", "one"]) == .integer(1))
        #expect(try await publisher.send(["PUBLISH", "p.x", "two"]) == .integer(1))
        let first = try await messages.next()
        #expect(first.channel == "t.news" && first.pattern == nil && String(buffer: first.payload) == "one")
        let second = try await messages.next()
        #expect(second.channel == "p.x" && second.pattern == "p.*" && String(buffer: second.payload) == "two")

        try await subscriber.unsubscribe(channel: "t.news")
        _ = try await publisher.send(["PUBLISH", "t.news", "unheard"])

        try await redis.kill()
        guard case .disconnected = try await events.next() else { Issue.record("no disconnect event"); return }
        try await redis.launch()
        #expect(try await events.next() == .connected)
        try await withTimeout("publisher reconnect") { try await publisher.waitUntilConnected() }
        // Only the pattern is still wanted, and `.connected` came after it was subscribed again.
        _ = try await publisher.send(["PUBLISH", "t.news", "unheard too"])
        #expect(try await publisher.send(["PUBLISH", "p.y", "three"]) == .integer(1))
        let third = try await messages.next()
        #expect(third.channel == "p.y" && String(buffer: third.payload) == "three")
        #expect(messages.count == 0)
    }

    @Test func aSubscriberIsSubscribedOnlyWhileRedisConfirmedEverySubscription() async throws {
        let redis = try await RedisServerProcess.start()
        defer { redis.stop() }
        let endpoint = try RedisEndpoint(url: redis.url)
        let events = Inbox<RedisClientEvent>()
        let subscriber = RedisSubscriber(
            endpoint: endpoint, group: group, backoff: RedisBackoff(initial: .milliseconds(20), maximum: .milliseconds(200)),
            onMessage: { _ in }, onEvent: { events.put($0) })
        defer { subscriber.close() }
        #expect(!subscriber.isSubscribed)
        subscriber.start()
        #expect(try await events.next() == .connected)
        try await subscriber.subscribe(pattern: "p.*")
        #expect(subscriber.isSubscribed)

        let admin = RedisClient(endpoint: endpoint, group: group)
        defer { admin.close() }
        admin.start()
        try await withTimeout("connect") { try await admin.waitUntilConnected() }
        // New connections are refused (no password given) until it is cleared.
        _ = try await admin.send(["CONFIG", "SET", "requirepass", "cut-off"])
        _ = try await admin.send(["CLIENT", "KILL", "TYPE", "pubsub"])
        guard case .disconnected = try await events.next() else { Issue.record("no disconnect event"); return }
        #expect(!subscriber.isSubscribed)
        _ = try await admin.send(["CONFIG", "SET", "requirepass", ""])
        #expect(try await events.next() == .connected)
        #expect(subscriber.isSubscribed)
    }
}
