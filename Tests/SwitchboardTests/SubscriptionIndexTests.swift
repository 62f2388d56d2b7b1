import AsyncTestSupport
import Testing

@_spi(Fuzzing) @testable import Switchboard

@Suite struct SubscriptionIndexTests {
    func p(_ s: String) -> TopicPattern { try! TopicPattern(s) }
    func t(_ s: String) -> Topic { try! Topic(s) }

    @Test func basicMatching() {
        var index = SubscriptionIndex<Int>()
        let r1 = index.insert(p("chat.room1"), 1)
        #expect(r1)
        let r2 = index.insert(p("chat.*"), 2)
        #expect(r2)
        let r3 = index.insert(p("chat.>"), 3)
        #expect(r3)
        let r4 = index.insert(p(">"), 4)
        #expect(r4)
        let r5 = index.insert(p("*.room1"), 5)
        #expect(r5)
        let r6 = index.insert(p("news"), 6)
        #expect(r6)
        let r7 = index.insert(p("chat.*"), 2)
        #expect(!r7, "duplicate")
        #expect(index.count == 6)

        #expect(index.match(t("chat.room1")) == [1, 2, 3, 4, 5])
        #expect(index.match(t("chat.room2")) == [2, 3, 4])
        #expect(index.match(t("chat.room1.x")) == [3, 4])
        #expect(index.match(t("chat")) == [4])
        #expect(index.match(t("news")) == [4, 6])
        #expect(index.match(t("other.room1")) == [4, 5])
        #expect(index.hasMatch(t("zzz")))
    }

    @Test func subscriberWithOverlappingPatternsIsReportedOnce() {
        var index = SubscriptionIndex<String>()
        index.insert(p("a.*"), "x")
        index.insert(p("a.>"), "x")
        index.insert(p("a.b"), "x")
        #expect(index.match(t("a.b")) == ["x"])
    }

    @Test func removeAndPrune() {
        var index = SubscriptionIndex<Int>()
        index.insert(p("a.b.c"), 1)
        index.insert(p("a.*.c"), 2)
        index.insert(p("a.>"), 3)
        let full = index.nodeCount
        let r8 = index.remove(p("a.b.c"), 99)
        #expect(!r8)
        let r9 = index.remove(p("x.y"), 1)
        #expect(!r9)
        let r10 = index.remove(p("a.b.c"), 1)
        #expect(r10)
        let r11 = index.remove(p("a.b.c"), 1)
        #expect(!r11)
        #expect(index.match(t("a.b.c")) == [2, 3])
        #expect(index.nodeCount < full)
        let r12 = index.remove(p("a.*.c"), 2)
        #expect(r12)
        let r13 = index.remove(p("a.>"), 3)
        #expect(r13)
        #expect(index.isEmpty)
        #expect(index.nodeCount == 1, "only the root remains")
        #expect(index.match(t("a.b.c")).isEmpty)
        #expect(!index.hasMatch(t("a.b.c")))
        // Slots are reused.
        index.insert(p("q.r.s"), 1)
        #expect(index.nodeCount == 4)
        #expect(index.match(t("q.r.s")) == [1])
    }

    @Test func matchCostDoesNotGrowWithPatternCount() {
        var index = SubscriptionIndex<Int>()
        // 10k patterns on unrelated branches, plus wildcards on other prefixes.
        for i in 0..<10_000 {
            index.insert(p("tenant\(i).room\(i % 97).msg"), i)
            if i % 10 == 0 { index.insert(p("tenant\(i).*.msg"), i) }
            if i % 100 == 0 { index.insert(p("tenant\(i).>"), i) }
        }
        index.insert(p("*.room5.msg"), -1)
        index.insert(p(">"), -2)
        #expect(index.count == 10_000 + 1_000 + 100 + 2)

        var result = Set<Int>()
        let visited = index.collectMatches(t("tenant500.room15.msg"), into: &result)
        #expect(result == [500, -2])
        // root, tenant500, tenant500.room15, tenant500.*, their .msg children, and the
        // `*` branch from the root: a handful, not thousands.
        #expect(visited <= 8, "visited \(visited)")

        result.removeAll(keepingCapacity: true)
        let visited2 = index.collectMatches(t("nobody.room5.msg"), into: &result)
        #expect(result == [-1, -2])
        #expect(visited2 <= 6, "visited \(visited2)")
    }

    @Test func randomizedAgainstLinearScan() {
        var rng = SplitMix(seed: 42)
        let words = ["a", "b", "c", "d"]
        func randomPattern() -> String {
            let n = Int.random(in: 1...4, using: &rng)
            var tokens = (0..<n).map { _ -> String in
                let r = Int.random(in: 0..<10, using: &rng)
                return r < 2 ? "*" : words[r % words.count]
            }
            if Bool.random(using: &rng) && Int.random(in: 0..<3, using: &rng) == 0 { tokens[n - 1] = ">" }
            return tokens.joined(separator: ".")
        }
        var index = SubscriptionIndex<Int>()
        var reference: [(TopicPattern, Int)] = []
        for i in 0..<400 {
            let pattern = p(randomPattern())
            let subscriber = i % 37
            if index.insert(pattern, subscriber) { reference.append((pattern, subscriber)) }
            if i % 5 == 0, !reference.isEmpty {
                let victim = reference.remove(at: Int.random(in: 0..<reference.count, using: &rng))
                let r14 = index.remove(victim.0, victim.1)
                #expect(r14)
            }
        }
        #expect(index.count == reference.count)
        for _ in 0..<300 {
            let n = Int.random(in: 1...5, using: &rng)
            let topic = t((0..<n).map { _ in words[Int.random(in: 0..<4, using: &rng)] }.joined(separator: "."))
            let expected = Set(reference.filter { $0.0.matches(topic) }.map(\.1))
            #expect(index.match(topic) == expected, "\(topic)")
            #expect(index.hasMatch(topic) == !expected.isEmpty)
        }
    }
}
