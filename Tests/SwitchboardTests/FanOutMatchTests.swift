import AsyncTestSupport
import Testing

@_spi(Fuzzing) @testable import Switchboard

/// `forEachMatch(_:scratch:_:)`, the hub's fan-out iteration: one set iterated in place,
/// several deduplicated, each subscriber exactly once either way.
@Suite struct FanOutMatchTests {
    func p(_ s: String) -> TopicPattern { try! TopicPattern(s) }
    func t(_ s: String) -> Topic { try! Topic(s) }

    func visits(_ index: SubscriptionIndex<Int>, _ topic: String) -> [Int] {
        var scratch = Set<Int>([99])  // stale content must not leak into the result
        var seen: [Int] = []
        index.forEachMatch(t(topic), scratch: &scratch) { seen.append($0) }
        return seen.sorted()
    }

    @Test func eachSubscriberOnce() {
        var index = SubscriptionIndex<Int>()
        for i in 1...50 { index.insert(p("chat.room1"), i) }
        index.insert(p("chat.>"), 3)
        index.insert(p("chat.*"), 60)
        index.insert(p(">"), 70)
        index.insert(p("news"), 80)
        #expect(visits(index, "news") == [70, 80])  // two sets
        #expect(visits(index, "chat.room1") == Array(1...50) + [60, 70])  // 3 deduplicated
        #expect(visits(index, "nothing.here") == [70])  // only `>`: one set, in place
        index.remove(p(">"), 70)
        #expect(visits(index, "nothing.here") == [])
        #expect(visits(index, "news") == [80])  // one exact set, in place
        #expect(visits(index, "chat.room2.x") == [3])  // one rest set, in place
        for topic in ["chat.room1", "chat.room2", "news", "chat.a.b", "x"] {
            #expect(visits(index, topic) == index.match(t(topic)).sorted(), "\(topic)")
        }
    }
}
