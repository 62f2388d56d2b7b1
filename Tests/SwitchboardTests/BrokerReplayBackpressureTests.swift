import AsyncTestSupport
import BrokerProcess
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import TestPeers
import Testing
import WebSocketCore
import WebSockets

@_spi(Fuzzing) @testable import Switchboard

/// A `since` far in the past streams in bounded memory and cannot starve other clients: the
/// broker reads the next page of a replay only when the subscriber's socket takes more, so a
/// subscriber that stops reading holds up its own replay and nothing else.
@Suite struct BrokerReplayBackpressureTests {
    static let history = 40_000
    /// A 400-byte payload: the history is about 18 MB of `msg` frames.
    static let data = "\"" + String(repeating: "h", count: 398) + "\""
    /// A `msg` frame of this history is at most this long (header, envelope, payload).
    static let frameBytes = data.utf8.count + 64
    /// What a replay to a subscriber that reads nothing may write before it stops: the
    /// kernel's socket buffers (on loopback, send-buffer autotuning reaches Linux's default
    /// `tcp_wmem` maximum of 4 MiB with the first window, whatever the peer reads) plus the
    /// broker's own share — NIO's high watermark and one page, a few hundred KB under this
    /// queue limit. A quarter of the history.
    static let stalledBytesBound = 5 << 20

    /// Writes seqs 1…count of `topic` straight into the replay log the broker will open from
    /// `directory` (much faster than publishing them).
    static func prefill(_ directory: URL, topic: Topic, count: Int) async throws {
        var configuration = ReplayConfiguration()
        configuration.rules = [try ReplayRule.parse("hist.>").get()]
        let path = directory.appendingPathComponent("switchboard.db").path
        let payload = ByteBuffer(string: data)
        try await NIOThreadPool.singleton.runIfActive { [configuration] in
            let log = try ReplayLog(path: path, configuration: configuration)
            for seq in 1...UInt64(count) {
                try log.append(StoredMessage(topic: topic, sequence: seq, time: 1, format: .json, payload: payload))
            }
            log.close()  // commits the queue; blocking, hence the thread pool
        }
    }

    /// Counts the `msg`s a client receives, checking their seqs are contiguous from `first`;
    /// the waiter fires when `last` arrives (or at the first seq out of place).
    final class Contiguous: Sendable {
        private let state: NIOLockedValueBox<(next: Int, problem: String?)>
        let last: Int
        let done: Waiter<Void>

        init(first: Int, last: Int) {
            self.state = NIOLockedValueBox((first, nil))
            self.last = last
            self.done = Waiter("seqs \(first)…\(last)")
        }

        func receive(_ message: WebSocketMessage) {
            guard let seq = BrokerReplayTests.seq(of: message) else { return }
            let finished = state.withLockedValue { state -> Bool in
                guard state.problem == nil else { return false }
                if seq != state.next { state.problem = "expected seq \(state.next), got \(seq)" }
                state.next += 1
                return state.problem != nil || seq == last
            }
            if finished { done.fulfill(()) }
        }

        var problem: String? { state.withLockedValue { $0.problem } }
    }

    @Test func aStalledResumeFromFarBackIsBoundedAndStarvesNoOne() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let topic = try Topic("hist.a")
        try await Self.prefill(directory, topic: topic, count: Self.history)
        try await TestBroker.with({
            $0.replay.rules = [try! ReplayRule.parse("hist.>").get()]
            $0.maxQueuedBytes = 64 * 1024
        }, directory: directory) { broker in
            // A subscriber with a small receive buffer that reads nothing asks for everything.
            let stalled = try await RawPeer.upgraded(port: broker.port, token: try broker.token().token, receiveBuffer: 4096)
            try await stalled.stopReading()
            try await stalled.send(text: #"{"op":"sub","topic":"hist.a","since":0,"id":"old"}"#)
            try await eventually("the stalled subscriber's replay to start") { broker.broker.statistics.replayed > 0 }

            // Live traffic on the same broker goes on at once, one acked round trip at a time.
            let live = try await broker.client()
            try await live.subscribe("live.x")
            let publisher = try await broker.client()
            for n in 1...50 {
                #expect(try await publisher.publish("live.x", "\(n)") == n)
                let message = try await live.nextJSON()
                #expect(message["op"] == "msg" && message.int("seq") == n, "\(message)")
            }

            // Another subscriber resuming from as far back gets its whole replay meanwhile,
            // and the live message published during it, after it.
            let other = try await broker.client()
            let tracker = Contiguous(first: 1, last: Self.history + 1)
            other.ws.onMessage { tracker.receive($0) }
            try await other.send(#"{"op":"sub","topic":"hist.a","since":0}"#)
            #expect(try await publisher.publish("hist.a", "\"live\"") == Self.history + 1)
            try await tracker.done.value()
            #expect(tracker.problem == nil, "\(tracker.problem ?? "")")

            // All this time the stalled replay wrote no more than its socket could hold, and
            // it stays stopped: more live traffic does not move it. (The second replay may or
            // may not have read the live message from the log: history or history + 1.)
            let stalledReplayed = Int(broker.broker.statistics.replayed) - Self.history
            #expect(
                stalledReplayed > 0 && (stalledReplayed - 1) * Self.frameBytes <= Self.stalledBytesBound,
                "\(stalledReplayed) messages replayed to the stalled subscriber")
            let before = broker.broker.statistics.replayed
            for n in 51...60 {
                #expect(try await publisher.publish("live.x", "\(n)") == n)
                #expect(try await live.nextJSON().int("seq") == n)
            }
            #expect(broker.broker.statistics.replayed == before)

            // Reading again, it gets everything, contiguous, then the live message.
            try await stalled.resumeReading()
            var next = 1
            var answered = false
            while next <= Self.history + 1 {
                for frame in try await stalled.readFrames() {
                    let text = frame.text
                    if text.hasPrefix(#"{"op":"subscribed""#) {
                        answered = true
                        continue
                    }
                    guard let range = text.range(of: #","seq":"#), let seq = Int(text[range.upperBound...].prefix { $0.isNumber }),
                        seq == next
                    else {
                        Issue.record("expected seq \(next), got \(text.prefix(80))")
                        return
                    }
                    next += 1
                }
            }
            #expect(answered)
            // Each replay wrote the history, and the live message when it read it from the log.
            let replayed = broker.broker.statistics.replayed
            #expect(replayed >= UInt64(2 * Self.history) && replayed <= UInt64(2 * Self.history + 2), "\(replayed)")
            stalled.close()
            await other.close()
            await live.close()
            await publisher.close()
        }
    }
}
