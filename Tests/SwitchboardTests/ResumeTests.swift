import AsyncTestSupport
import NIOCore
import Testing

@_spi(Fuzzing) @testable import Switchboard

/// The replay/live merge: no gap, no duplicate, whatever the interleaving.
@Suite struct ResumeTests {
    static let a = try! Topic("chat.a")
    static let b = try! Topic("chat.b")
    static let c = try! Topic("other.c")

    static func message(_ topic: Topic, _ seq: UInt64) -> StoredMessage {
        StoredMessage(topic: topic, sequence: seq, time: Int64(seq), format: .json, payload: ByteBuffer(string: "1"))
    }

    static func page(_ messages: [StoredMessage], starts: [Topic: UInt64] = [:], exhausted: Bool = false) -> ReplayPage {
        ReplayPage(messages: messages, starts: starts, exhausted: exhausted, settledBefore: 0)
    }

    /// What a subscriber sees: (topic, seq) per message, and gaps.
    enum Seen: Equatable, CustomStringConvertible {
        case message(String, UInt64)
        case gap(String, ClosedRange<UInt64>)
        var description: String {
            switch self {
            case .message(let t, let s): "\(t)#\(s)"
            case .gap(let t, let r): "\(t) gap \(r)"
            }
        }
    }

    static func seen(_ outputs: [ResumeMerger<(Topic, UInt64)>.Output]) -> [Seen] {
        outputs.map { output in
            switch output {
            case .replayed(let m): .message(m.topic.name, m.sequence)
            case .live(let item): .message(item.0.name, item.1)
            case .gap(let topic, let missing): .gap(topic.name, missing)
            }
        }
    }

    /// A history that knows a topic's seq the broker's sequence map does not (a cluster's
    /// Redis): a purged stream is a gap up to that seq at the end of the replay, with no
    /// later message needed to reveal it.
    @Test func aSeqTheHistoryReachedIsAGapWhenItsMessagesAreGone() {
        var merger = ResumeMerger<(Topic, UInt64)>(position: .sequence(2), highWater: [:], isReplayed: { _ in true })
        var out: [ResumeMerger<(Topic, UInt64)>.Output] = []
        merger.begin(into: &out)
        var empty = Self.page([], starts: [Self.a: 2], exhausted: true)
        empty.reached = [Self.a: 5]
        merger.replayed(empty, into: &out)
        #expect(!merger.reachedRequired)
        merger.finish(into: &out)
        #expect(Self.seen(out) == [.gap("chat.a", 3...5)])
        #expect(merger.live((Self.a, 6), topic: Self.a, sequence: 6) == .deliver)

        // Reached through the messages read: nothing missing.
        var whole = ResumeMerger<(Topic, UInt64)>(position: .sequence(2), highWater: [:], isReplayed: { _ in true })
        var read = Self.page([Self.message(Self.a, 3)], starts: [Self.a: 2], exhausted: true)
        read.reached = [Self.a: 3]
        let asItIs = whole.replayedWhole(read)
        #expect(asItIs)
        #expect(whole.reachedRequired)
        var tail: [ResumeMerger<(Topic, UInt64)>.Output] = []
        whole.finish(into: &tail)
        #expect(tail.isEmpty)
    }

    @Test func replayThenBufferedLiveWithoutDuplicates() {
        var merger = ResumeMerger<(Topic, UInt64)>(
            position: .sequence(3), highWater: [Self.a: 6], isReplayed: { _ in true })
        var out: [ResumeMerger<(Topic, UInt64)>.Output] = []
        merger.begin(into: &out)
        // Live 5, 6 were still in the hub's inbox at registration; 7, 8 come after.
        for seq: UInt64 in [5, 6, 7, 8] {
            #expect(merger.live((Self.a, seq), topic: Self.a, sequence: seq) == .buffered)
        }
        merger.replayed(Self.page([Self.message(Self.a, 4), Self.message(Self.a, 5), Self.message(Self.a, 6)]), into: &out)
        #expect(merger.reachedRequired)
        merger.finish(into: &out)
        #expect(Self.seen(out) == [.message("chat.a", 4), .message("chat.a", 5), .message("chat.a", 6), .message("chat.a", 7), .message("chat.a", 8)])
        #expect(merger.phase == .live)
        #expect(merger.live((Self.a, 8), topic: Self.a, sequence: 8) == .duplicate)
        #expect(merger.live((Self.a, 9), topic: Self.a, sequence: 9) == .deliver)
    }

    /// The whole-page fast path takes exactly the pages `replayed` would pass through
    /// unchanged, and leaves the others (gap, duplicate, several topics) to it.
    @Test func wholePagesOnlyWhenNothingIsSkippedOrReported() {
        var merger = ResumeMerger<(Topic, UInt64)>(
            position: .sequence(3), highWater: [Self.a: 20, Self.b: 5], isReplayed: { _ in true })
        func whole(_ messages: [StoredMessage], starts: [Topic: UInt64] = [:]) -> Bool {
            merger.replayedWhole(Self.page(messages, starts: starts))
        }
        #expect(whole([Self.message(Self.a, 4), Self.message(Self.a, 5)]))
        #expect(whole([Self.message(Self.a, 6)]))
        // A duplicate, a gap, a hole inside the page, two topics: not whole.
        #expect(!whole([Self.message(Self.a, 6), Self.message(Self.a, 7)]))
        #expect(!whole([Self.message(Self.a, 8)]))
        #expect(!whole([Self.message(Self.a, 7), Self.message(Self.a, 9)]))
        #expect(!whole([Self.message(Self.a, 7), Self.message(Self.b, 4)]))
        #expect(!whole([]))
        // What was refused goes through `replayed`, which sees 4…6 as delivered.
        var out: [ResumeMerger<(Topic, UInt64)>.Output] = []
        merger.replayed(Self.page([Self.message(Self.a, 6), Self.message(Self.a, 8)]), into: &out)
        #expect(Self.seen(out) == [.gap("chat.a", 7...7), .message("chat.a", 8)])
        // A topic's start comes with the page that first visits it.
        #expect(whole([Self.message(Self.b, 3), Self.message(Self.b, 4)], starts: [Self.b: 2]))
        #expect(!whole([Self.message(Self.b, 4)]))
    }

    @Test func positionOlderThanRetainedGetsAGapFirst() {
        var merger = ResumeMerger<(Topic, UInt64)>(position: .sequence(2), highWater: [Self.a: 12], isReplayed: { _ in true })
        var out: [ResumeMerger<(Topic, UInt64)>.Output] = []
        merger.replayed(Self.page([Self.message(Self.a, 10), Self.message(Self.a, 11), Self.message(Self.a, 12)]), into: &out)
        merger.finish(into: &out)
        #expect(Self.seen(out) == [.gap("chat.a", 3...9), .message("chat.a", 10), .message("chat.a", 11), .message("chat.a", 12)])
    }

    @Test func everythingPrunedReportsTheGapUpToTheCurrentSeq() {
        var merger = ResumeMerger<(Topic, UInt64)>(position: .sequence(2), highWater: [Self.a: 12], isReplayed: { _ in true })
        var out: [ResumeMerger<(Topic, UInt64)>.Output] = []
        merger.replayed(Self.page([], exhausted: true), into: &out)
        #expect(!merger.reachedRequired)
        merger.finish(into: &out)
        #expect(Self.seen(out) == [.gap("chat.a", 3...12)])
    }

    @Test func nonRetainedTopicsPassThroughAndReportMissedPositions() {
        var merger = ResumeMerger<(Topic, UInt64)>(
            position: .perTopic([Self.a: 1, Self.c: 5]), highWater: [Self.a: 3, Self.c: 9],
            isReplayed: { $0 != Self.c })
        var out: [ResumeMerger<(Topic, UInt64)>.Output] = []
        merger.begin(into: &out)
        #expect(Self.seen(out) == [.gap("other.c", 6...9)])
        #expect(merger.live((Self.c, 9), topic: Self.c, sequence: 9) == .duplicate)
        #expect(merger.live((Self.c, 10), topic: Self.c, sequence: 10) == .deliver)
        #expect(merger.live((Self.a, 4), topic: Self.a, sequence: 4) == .buffered)
    }

    @Test func overflowDropsTheBufferAndRaisesWhatTheReplayMustReach() {
        var merger = ResumeMerger<(Topic, UInt64)>(
            position: .sequence(0), highWater: [Self.a: 2], isReplayed: { _ in true }, bufferLimit: 3)
        for seq: UInt64 in 3...5 { #expect(merger.live((Self.a, seq), topic: Self.a, sequence: seq) == .buffered) }
        #expect(merger.live((Self.a, 6), topic: Self.a, sequence: 6) == .overflowed)
        #expect(merger.required[Self.a] == 6)
        #expect(merger.bufferedCount == 0)
        #expect(merger.live((Self.a, 7), topic: Self.a, sequence: 7) == .buffered)
        var out: [ResumeMerger<(Topic, UInt64)>.Output] = []
        merger.replayed(Self.page((1...6).map { Self.message(Self.a, $0) }), into: &out)
        #expect(merger.reachedRequired)
        merger.finish(into: &out)
        #expect(Self.seen(out) == (1...7).map { .message("chat.a", $0) })
    }

    @Test func timePositionUsesTheStartsThePagesResolved() {
        var merger = ResumeMerger<(Topic, UInt64)>(position: .time(unixMilliseconds: 100), highWater: [Self.a: 9], isReplayed: { _ in true })
        var out: [ResumeMerger<(Topic, UInt64)>.Output] = []
        merger.replayed(Self.page([Self.message(Self.a, 8), Self.message(Self.a, 9)], starts: [Self.a: 7]), into: &out)
        merger.finish(into: &out)
        #expect(Self.seen(out) == [.message("chat.a", 8), .message("chat.a", 9)])
    }

    // MARK: Property test

    /// Simulates a broker, its group-commit writer (batches that commit or fail), retention,
    /// a hub inbox, and a subscriber resuming mid-burst through `ResumeMerger`, driven the
    /// way `ReplayCatchUp` drives it; then checks what the subscriber saw.
    struct Simulation {
        var rng: SplitMix
        let topics = [ResumeTests.a, ResumeTests.b, ResumeTests.c]
        let retained: Set<Topic> = [ResumeTests.a, ResumeTests.b]
        var sequence: [Topic: UInt64] = [:]
        /// Appended, not yet settled (in order): the writer queue.
        var writerQueue: [StoredMessage] = []
        var stored: [Topic: [UInt64: StoredMessage]] = [:]
        var lost: [Topic: Set<UInt64>] = [:]
        var appended: UInt64 = 0
        var settled: UInt64 = 0
        /// The hub inbox: live messages not yet drained to the session.
        var inbox: [(Topic, UInt64)] = []
        var subscribed = false
        /// What happened, for the failure message.
        var trace: [String] = []

        init(seed: UInt64) { rng = SplitMix(seed: seed) }

        mutating func publish() {
            let topic = topics.randomElement(using: &rng)!
            let seq = (sequence[topic] ?? 0) + 1
            sequence[topic] = seq
            if retained.contains(topic) {
                writerQueue.append(ResumeTests.message(topic, seq))
                appended += 1
            }
            inbox.append((topic, seq))
            if !subscribed && inbox.count > 5 { inbox.removeFirst() }  // drained to others
        }

        mutating func writerBatch(failureRate: Double) {
            guard !writerQueue.isEmpty else { return }
            let n = Int.random(in: 1...writerQueue.count, using: &rng)
            let fails = Double.random(in: 0..<1, using: &rng) < failureRate
            trace.append("batch \(writerQueue.prefix(n).map { "\($0.topic)#\($0.sequence)" })\(fails ? " FAILED" : "")")
            for m in writerQueue.prefix(n) {
                if fails { lost[m.topic, default: []].insert(m.sequence) } else { stored[m.topic, default: [:]][m.sequence] = m }
            }
            writerQueue.removeFirst(n)
            settled += UInt64(n)
        }

        mutating func prune(keep: Int) {
            for topic in retained {
                let seqs = (stored[topic] ?? [:]).keys.sorted()
                for seq in seqs.dropLast(keep) {
                    stored[topic]![seq] = nil
                    lost[topic, default: []].insert(seq)
                }
            }
        }

        /// The cursor, over `stored`: topics by name, seq order, `limit` per page.
        struct Cursor {
            var after: [Topic: UInt64] = [:]
            var index = 0
            var names: [Topic]?
            var passSettled: UInt64 = 0
        }

        func readPage(_ cursor: inout Cursor, position: [Topic: UInt64], limit: Int) -> ReplayPage {
            if cursor.names == nil {
                cursor.names = retained.filter { stored[$0] != nil }.sorted { $0.name < $1.name }
                cursor.passSettled = settled
            }
            let names = cursor.names!
            var page = ReplayPage(messages: [], starts: [:], exhausted: false, settledBefore: cursor.passSettled)
            while cursor.index < names.count {
                let topic = names[cursor.index]
                if cursor.after[topic] == nil {
                    cursor.after[topic] = position[topic] ?? 0
                    page.starts[topic] = position[topic] ?? 0
                }
                let want = limit - page.messages.count
                let rows = stored[topic]!.keys.filter { $0 > cursor.after[topic]! }.sorted().prefix(want)
                page.messages += rows.map { stored[topic]![$0]! }
                if let last = rows.last { cursor.after[topic] = last }
                if rows.count < want { cursor.index += 1 }
                if page.messages.count >= limit { break }
            }
            page.exhausted = cursor.index >= names.count
            return page
        }

        /// Runs one scenario; returns a failure description or nil.
        mutating func run(failureRate: Double, pruneKeep: Int?, bufferLimit: Int) -> String? {
            // Warm up: publish, commit, maybe prune.
            for _ in 0..<Int.random(in: 0...60, using: &rng) {
                publish()
                if Bool.random(using: &rng) { writerBatch(failureRate: failureRate) }
            }
            if let pruneKeep { prune(keep: pruneKeep) }
            // The subscriber's position: somewhere at or behind each topic's seq.
            var position: [Topic: UInt64] = [:]
            for topic in topics {
                let current = sequence[topic] ?? 0
                position[topic] = UInt64.random(in: 0...current, using: &rng)
            }
            subscribed = true
            let highWater = sequence
            trace.append("subscribe position \(position) highWater \(highWater) inbox \(inbox)")
            var ticket = appended
            let retained = self.retained
            var merger = ResumeMerger<(Topic, UInt64)>(
                position: .perTopic(position), highWater: highWater, isReplayed: { retained.contains($0) },
                bufferLimit: bufferLimit)
            var out: [ResumeMerger<(Topic, UInt64)>.Output] = []
            merger.begin(into: &out)
            var cursor = Cursor()
            var waitingFor: UInt64?
            var steps = 0
            while merger.phase == .catchingUp {
                steps += 1
                if steps > 100_000 { return "catch-up never finished" }
                switch Int.random(in: 0..<10, using: &rng) {
                case 0...2:
                    publish()
                case 3...4:
                    writerBatch(failureRate: failureRate)
                case 5...6:
                    if !inbox.isEmpty {
                        let (topic, seq) = inbox.removeFirst()
                        let decision = merger.live((topic, seq), topic: topic, sequence: seq)
                        trace.append("live \(topic)#\(seq) \(decision)")
                        switch decision {
                        case .deliver: out.append(.live((topic, seq)))
                        case .overflowed: ticket = appended
                        case .buffered, .duplicate: break
                        }
                    }
                default:
                    if let target = waitingFor {
                        guard settled >= target else { continue }
                        waitingFor = nil
                        cursor.index = 0  // rewind
                        cursor.names = nil
                    }
                    let page = readPage(&cursor, position: position, limit: Int.random(in: 1...7, using: &rng))
                    trace.append("page \(page.messages.map { "\($0.topic)#\($0.sequence)" }) starts \(page.starts) exhausted \(page.exhausted) settled \(page.settledBefore)/\(ticket)")
                    merger.replayed(page, into: &out)
                    if page.exhausted {
                        if page.settledBefore >= ticket || merger.reachedRequired {
                            merger.finish(into: &out)
                        } else {
                            waitingFor = ticket
                        }
                    }
                }
            }
            // Live: drain what is left.
            while !writerQueue.isEmpty { writerBatch(failureRate: 0) }
            for (topic, seq) in inbox where merger.live((topic, seq), topic: topic, sequence: seq) == .deliver {
                out.append(.live((topic, seq)))
            }
            return check(out, position: position)
        }

        func check(_ out: [ResumeMerger<(Topic, UInt64)>.Output], position: [Topic: UInt64]) -> String? {
            var next: [Topic: UInt64] = position.mapValues { $0 + 1 }
            for output in out {
                switch output {
                case .replayed(let m):
                    guard m.sequence == next[m.topic] else { return "\(m.topic)#\(m.sequence) replayed, expected #\(next[m.topic]!)" }
                    next[m.topic] = m.sequence + 1
                case .live(let (topic, seq)):
                    guard seq == next[topic] else { return "\(topic)#\(seq) live, expected #\(next[topic]!)" }
                    next[topic] = seq + 1
                case .gap(let topic, let missing):
                    guard missing.lowerBound == next[topic] else { return "\(topic) gap \(missing), expected from #\(next[topic]!)" }
                    for seq in missing where !(lost[topic]?.contains(seq) ?? false) && retained.contains(topic) {
                        return "\(topic) gap \(missing) covers #\(seq), which was not lost"
                    }
                    next[topic] = missing.upperBound + 1
                }
            }
            for topic in topics where next[topic]! != (sequence[topic] ?? 0) + 1 {
                return "\(topic) ended at #\(next[topic]! - 1), published up to #\(sequence[topic] ?? 0)"
            }
            return nil
        }
    }

    @Test(arguments: [
        (0.0, nil, 10_000), (0.0, nil, 4), (0.2, nil, 10_000), (0.0, 10, 10_000), (0.1, 5, 3),
    ] as [(Double, Int?, Int)])
    func randomInterleavingsDeliverEverySeqOnceOrAGap(failureRate: Double, pruneKeep: Int?, bufferLimit: Int) {
        for seed in UInt64(1)...1500 {
            var simulation = Simulation(seed: seed &* 7919)
            if let failure = simulation.run(failureRate: failureRate, pruneKeep: pruneKeep, bufferLimit: bufferLimit) {
                Issue.record("seed \(seed &* 7919): \(failure)\n\(simulation.trace.joined(separator: "\n"))")
                return
            }
        }
    }
}
