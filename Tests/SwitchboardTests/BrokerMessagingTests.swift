import AsyncTestSupport
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import TestPeers
import Testing
import WebSockets

@_spi(Fuzzing) @testable import Switchboard

/// Subscribe, publish and fan-out through a real broker over real sockets.
@Suite struct BrokerMessagingTests {
    @Test func publishReachesSubscriber() async throws {
        try await TestBroker.with { broker in
            let subscriber = try await broker.client()
            let publisher = try await broker.client()
            try await subscriber.subscribe("chat.room1")
            let seq = try await publisher.publish("chat.room1", #"{"user":"ann","text":"hi"}"#)
            #expect(seq == 1)
            let message = try await subscriber.nextText()
            let json = try JSON(message)
            #expect(message.hasPrefix(#"{"op":"msg","topic":"chat.room1","seq":1,"time":"#))
            #expect(message.hasSuffix(#","data":{"user":"ann","text":"hi"}}"#))
            let time = try #require(json.int("time"))
            #expect(abs(time - Int(Date().timeIntervalSince1970 * 1000)) < 60_000)
            await subscriber.close()
            await publisher.close()
        }
    }

    @Test func repliesEchoIDsByteForByte() async throws {
        try await TestBroker.with { broker in
            let client = try await broker.client()
            let epoch = try #require(broker.broker.replayLog?.epoch)
            // A string id with escapes, and numbers written unusually: echoed as written.
            let stringID = #""a\"\u00e9\/b""#
            #expect(
                try await client.request(#"{"id":\#(stringID),"op":"sub","topic":"t.*"}"#).text
                    == #"{"op":"subscribed","id":\#(stringID),"topic":"t.*","epoch":"\#(epoch)"}"#)
            #expect(
                try await client.request(#"{"op":"pub","topic":"t.x","data":1,"id":1.50e2}"#).text
                    == #"{"op":"ack","id":1.50e2,"seq":1}"#)
            _ = try await client.next()  // its own message
            #expect(
                try await client.request(#"{"op":"pub","topic":"t.x","data":2,"id":-0}"#).text
                    == #"{"op":"ack","id":-0,"seq":2}"#)
            _ = try await client.next()
            #expect(
                try await client.request(#"{"op":"unsub","topic":"t.*","id":"\ud83d\ude00"}"#).text
                    == #"{"op":"unsubscribed","id":"\ud83d\ude00","topic":"t.*"}"#)
            // Without an id: subscribed without id, publish without answer.
            #expect(try await client.request(#"{"op":"sub","topic":"u"}"#).text == #"{"op":"subscribed","topic":"u","epoch":"\#(epoch)"}"#)
            try await client.send(#"{"op":"pub","topic":"u","data":"x"}"#)
            let message = try await client.nextJSON()
            #expect(message["op"] == "msg" && message["seq"] == "1", "a publish without id is not acked: \(message)")
            // An error answer echoes the id too.
            #expect(
                try await client.request(#"{"op":"unsub","topic":"nope","id":"e1"}"#).text.hasPrefix(
                    #"{"op":"error","id":"e1","code":"not_found","message":"#))
            await client.close()
        }
    }

    @Test func wildcardsMatchAsDocumented() async throws {
        try await TestBroker.with { broker in
            let star = try await broker.client()
            let tail = try await broker.client()
            let exact = try await broker.client()
            let publisher = try await broker.client()
            try await star.subscribe("chat.*")
            try await tail.subscribe("chat.>")
            try await exact.subscribe("chat.a")
            for topic in ["chat", "chat.a", "chat.a.b", "chatroom.a", "other.a", "chat.b"] {
                try await publisher.publish(topic, #""\#(topic)""#)
            }
            func received(_ client: Client, _ count: Int) async throws -> [String] {
                var topics: [String] = []
                for _ in 0..<count { topics.append(try await client.nextJSON()["topic"] ?? "?") }
                try await client.expectNothingPending()
                return topics
            }
            #expect(try await received(star, 2) == ["chat.a", "chat.b"])
            #expect(try await received(tail, 3) == ["chat.a", "chat.a.b", "chat.b"])
            #expect(try await received(exact, 1) == ["chat.a"])
            for client in [star, tail, exact, publisher] { await client.close() }
        }
    }

    @Test func unsubscribeStopsDelivery() async throws {
        try await TestBroker.with { broker in
            let subscriber = try await broker.client()
            let publisher = try await broker.client()
            try await subscriber.subscribe("news.*")
            try await publisher.publish("news.a", "1")
            #expect(try await subscriber.nextJSON()["seq"] == "1")
            #expect(try await subscriber.request(#"{"op":"unsub","topic":"news.*","id":"u"}"#)["op"] == "unsubscribed")
            try await publisher.publish("news.a", "2")
            try await subscriber.expectNothingPending()
            // Unsubscribing again: not_found; the connection stays usable.
            let again = try await subscriber.request(#"{"op":"unsub","topic":"news.*","id":"u2"}"#)
            #expect(again["code"] == "not_found" && again["id"] == "u2")
            try await subscriber.subscribe("news.*")
            try await publisher.publish("news.a", "3")
            #expect(try await subscriber.nextJSON()["seq"] == "3")
            await subscriber.close()
            await publisher.close()
        }
    }

    @Test func overlappingSubscriptionsDeliverOnce() async throws {
        try await TestBroker.with { broker in
            let subscriber = try await broker.client()
            let publisher = try await broker.client()
            for pattern in ["a.b.c", "a.*.c", "a.>", "*.b.*", ">"] { try await subscriber.subscribe(pattern) }
            try await subscriber.subscribe("a.>")  // again: answered, changes nothing
            try await publisher.publish("a.b.c", "1")
            try await publisher.publish("a.b.c", "2")
            #expect(try await subscriber.nextJSON()["seq"] == "1")
            #expect(try await subscriber.nextJSON()["seq"] == "2")
            try await subscriber.expectNothingPending()
            await subscriber.close()
            await publisher.close()
        }
    }

    /// Four publishers on their own connections (spread over the group's two loops) publish
    /// to one topic at once: every subscriber sees 1…4N in order, and each publisher's
    /// messages in the order it sent them.
    @Test func perTopicOrderingWithConcurrentPublishers() async throws {
        let publishers = 4
        let perPublisher = 200
        let total = publishers * perPublisher
        // The broker on a group of its own, so that its connections alternate between the
        // two loops (publishers 1 and 3 on one, 2 and 4 on the other).
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        defer { group.shutdownGracefully { _ in } }
        try await TestBroker.with(group: group) { broker in
            var subscribers: [Client] = []
            for _ in 0..<3 {
                let subscriber = try await broker.client()
                try await subscriber.subscribe("orders.*")
                subscribers.append(subscriber)
            }
            var clients: [Client] = []
            for _ in 0..<publishers { clients.append(try await broker.client()) }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (p, client) in clients.enumerated() {
                    group.addTask {
                        for i in 0..<perPublisher {
                            try await client.send(#"{"op":"pub","topic":"orders.eu","data":{"p":\#(p),"i":\#(i)}}"#)
                        }
                    }
                }
                try await group.waitForAll()
            }
            for subscriber in subscribers {
                var next = [Int](repeating: 0, count: publishers)
                for expected in 1...total {
                    let message = try await subscriber.nextJSON()
                    try #require(message.int("seq") == expected, "\(message)")
                    let data = try #require(message.object["data"] as? [String: Any])
                    let p = try #require((data["p"] as? NSNumber)?.intValue)
                    let i = (data["i"] as? NSNumber)?.intValue
                    try #require(i == next[p], "publisher \(p): got \(i ?? -1), expected \(next[p])")
                    next[p] += 1
                }
                #expect(next == [Int](repeating: perPublisher, count: publishers))
                try await subscriber.expectNothingPending()
            }
            for client in subscribers + clients { await client.close() }
        }
    }

    /// Any `EventLoopGroup` will do: here one event loop is the whole group, so the broker
    /// has one hub and every connection is on that loop.
    @Test func brokerOnASingleEventLoopAsItsGroup() async throws {
        let loop = testGroup.next()
        try await TestBroker.with(group: loop) { broker in
            let subscriber = try await broker.client()
            try await subscriber.subscribe("chat.*")
            let publisher = try await broker.client()
            #expect(try await publisher.publish("chat.a", "1") == 1)
            let message = try await subscriber.nextJSON()
            #expect(message["op"] == "msg" && message.int("seq") == 1, "\(message)")
            #expect(broker.broker.statistics.connections == 2)
        }
    }

    @Test func binaryPublishIsDeliveredAsBinaryMessage() async throws {
        try await TestBroker.with { broker in
            let subscriber = try await broker.client()
            let jsonSubscriber = try await broker.client()
            let publisher = try await broker.client()
            try await subscriber.subscribe("a.b")
            try await jsonSubscriber.subscribe("a.*")
            // docs/protocol.md's example: publish bytes 01 02 to a.b with id 9.
            try await publisher.send(binary: [0x11, 0x03, 0x61, 0x2E, 0x62, 0x01, 0x39, 0x01, 0x02])
            #expect(try await publisher.nextText() == #"{"op":"ack","id":"9","seq":1}"#)
            // Every byte value, no id (no ack).
            let payload = (0..<300).map { UInt8(truncatingIfNeeded: $0 &* 7) }
            try await publisher.send(binary: [0x11, 0x03, 0x61, 0x2E, 0x62, 0x00] + payload)
            let before = Int64(Date().timeIntervalSince1970 * 1000)
            for (seq, expected) in [(UInt64(1), [UInt8]([0x01, 0x02])), (2, payload)] {
                for client in [subscriber, jsonSubscriber] {
                    let message = try await client.next()
                    #expect(message.kind == .binary)
                    let bytes = Array(message.data.readableBytesView)
                    #expect(Array(bytes.prefix(5)) == [0x12, 0x03, 0x61, 0x2E, 0x62])
                    #expect(bytes.bigEndian(at: 5, count: 8) == seq)
                    let time = Int64(bitPattern: bytes.bigEndian(at: 13, count: 8))
                    #expect(abs(time - before) < 60_000)
                    #expect(Array(bytes.dropFirst(21)) == expected)
                }
            }
            try await publisher.expectNothingPending()
            // An empty payload is a message too.
            try await publisher.send(binary: [0x11, 0x03, 0x61, 0x2E, 0x62, 0x01, 0x41])
            #expect(try await publisher.nextText() == #"{"op":"ack","id":"A","seq":3}"#)
            #expect(Array(try await subscriber.next().data.readableBytesView).count == 21)
            for client in [subscriber, jsonSubscriber, publisher] { await client.close() }
        }
    }

    /// 1000 subscribers on a two-thread group all receive every one of 20 messages, in order.
    @Test func thousandSubscribersReceiveEveryMessage() async throws {
        let subscriberCount = 1000
        let messageCount = 20
        try await TestBroker.with { broker in
            let token = try broker.token(subscribe: ["fan.>"], publish: []).token
            let received = NIOLockedValueBox([Int](repeating: 0, count: subscriberCount))
            let outOfOrder = NIOLockedValueBox<[String]>([])
            let remaining = NIOLockedValueBox(subscriberCount * messageCount)
            let allReceived = Waiter<Void>("every subscriber to receive every message")
            let subscribedCount = NIOLockedValueBox(0)
            let allSubscribed = Waiter<Void>("every subscription to be confirmed")
            // Connect in parallel, a few dozen at a time.
            let sockets = try await withThrowingTaskGroup(of: WebSocket.self) { group in
                var sockets: [WebSocket] = []
                for index in 0..<subscriberCount {
                    if index >= 50 { sockets.append(try await group.next()!) }
                    group.addTask {
                        var options = ClientOptions()
                        options.perMessageDeflate = nil
                        options.headers.add(name: "Authorization", value: "Bearer \(token)")
                        let ws = try await WebSocket.connect(to: broker.url, options: options, group: testGroup)
                        ws.onMessage { message in
                            let text = message.text
                            if text.hasPrefix(#"{"op":"subscribed""#) {
                                let done = subscribedCount.withLockedValue { $0 += 1; return $0 == subscriberCount }
                                if done { allSubscribed.fulfill(()) }
                                return
                            }
                            let seq = (try? JSON(text).int("seq")) ?? -1
                            let ok = received.withLockedValue { counts in
                                counts[index] += 1
                                return counts[index] == seq
                            }
                            if !ok { outOfOrder.withLockedValue { $0.append("subscriber \(index): \(text)") } }
                            let left = remaining.withLockedValue { $0 -= 1; return $0 }
                            if left == 0 { allReceived.fulfill(()) }
                        }
                        try await ws.send(text: #"{"op":"sub","topic":"fan.>"}"#)
                        return ws
                    }
                }
                for try await ws in group { sockets.append(ws) }
                return sockets
            }
            #expect(sockets.count == subscriberCount)
            try await allSubscribed.value()
            let publisher = try await broker.client(subscribe: [], publish: ["fan.>"])
            for i in 1...messageCount {
                try await publisher.send(#"{"op":"pub","topic":"fan.out","data":\#(i)}"#)
            }
            try await allReceived.value(timeout: .seconds(30))
            #expect(outOfOrder.withLockedValue { $0 }.isEmpty)
            #expect(received.withLockedValue { $0 }.allSatisfy { $0 == messageCount })
            for ws in sockets { ws.terminate() }
            await publisher.close()
        }
    }

    /// The symptom of issue 15's "lost wakeup" (wsload fanout -r 0 -d 16): a publisher that
    /// writes a window of publishes at once and then waits for them must see every subscriber
    /// get the window's last message with no further publish, window after window. (The
    /// reported loss was wsload's drain reading a stale count; the broker never held them.)
    @Test("windows of 16 pipelined publishes reach 100 subscribers whole, each without a later publish")
    func pipelinedWindowsArriveWhole() async throws {
        try await TestBroker.with { broker in
            let subscribers = try await withThrowingTaskGroup(of: Client.self) { group in
                for _ in 0..<100 { group.addTask { try await broker.client() } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            for subscriber in subscribers {
                #expect(try await subscriber.request(#"{"op":"sub","topic":"window"}"#)["op"] == "subscribed")
            }
            let publisher = try await RawPeer.upgraded(port: broker.port, token: try broker.token().token)
            for window in 0..<20 {
                var frames: [UInt8] = []
                for i in 1...16 {
                    frames += clientFrame(opcode: 0x1, Array(#"{"op":"pub","topic":"window","data":\#(window * 16 + i)}"#.utf8))
                }
                try await publisher.send(frames)
                for subscriber in subscribers {
                    var last = 0
                    while last < (window + 1) * 16 { last = try await subscriber.nextJSON().int("seq") ?? -1 }
                    #expect(last == (window + 1) * 16)
                }
            }
            publisher.close()
            for subscriber in subscribers { subscriber.ws.terminate() }
        }
    }
}
