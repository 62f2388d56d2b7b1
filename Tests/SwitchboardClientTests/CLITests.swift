import AsyncTestSupport
import BrokerProcess
import Foundation
import SwitchboardClient
import Testing

/// `switchboard sub` and `switchboard pub` as subprocesses against a real broker.
@Suite struct CLITests {
    /// The subscriber runs through a relay (a stable URL while the broker restarts on a new
    /// port); a publisher runs at a steady rate, the broker is killed with SIGKILL in the
    /// middle and restarted, a second publisher finishes. `sub` prints every acked seq once,
    /// in order, with no gap.
    @Test func subSurvivesKillDashNineEndToEnd() async throws {
        try await withBroker(retain: "t.>") { broker in
            let relay = try await CuttingRelay(target: broker.port)
            let url = "ws://127.0.0.1:\(relay.port)/"
            let sub = try SwitchboardProcess.start(["sub", "t.r", "--since", "0", "--json", "--url", url], in: broker.directory)
            defer { sub.kill() }
            @Sendable func lines(_ text: String) -> [Substring] { text.split(separator: "\n") }
            // The subscription is open once the first publish shows up.
            let first = try SwitchboardProcess.start(["pub", "t.r", "0", "--url", url], in: broker.directory)
            #expect(try await first.exitStatus() == 0, "\(first.stderr.text)")
            try await sub.stdout.wait(for: "the first message") { lines($0).count >= 1 ? () : nil }

            let steady = try SwitchboardProcess.start(
                ["pub", "t.r", #"{"n":1}"#, "--count", "400", "--rate", "400", "--url", url], in: broker.directory)
            defer { steady.kill() }
            try await sub.stdout.wait(for: "100 messages") { lines($0).count >= 100 ? () : nil }
            try await broker.restart(kill: true)
            relay.retarget(broker.port)
            let steadyStatus = try await steady.exitStatus()
            #expect(steadyStatus == 0 || steadyStatus == 69, "\(steady.stderr.text)")

            let last = try SwitchboardProcess.start(
                ["pub", "t.r", "\"done\"", "--count", "50", "--url", url], in: broker.directory)
            #expect(try await last.exitStatus() == 0, "\(last.stderr.text)")
            let acked = (first.stdout.text + steady.stdout.text + last.stdout.text).split(separator: "\n").compactMap {
                UInt64($0)
            }
            let lastSeq = try #require(acked.max())
            try await sub.stdout.wait(for: "seq \(lastSeq)") { text in
                text.contains(#""seq":\#(lastSeq),"#) ? () : nil
            }
            sub.terminate()
            let seqs = lines(sub.stdout.text).map { line -> UInt64 in
                guard let range = line.firstRange(of: #""seq":"#) else { return 0 }
                return UInt64(line[range.upperBound...].prefix { $0.isNumber }) ?? 0
            }
            #expect(!sub.stdout.text.contains(#"{"gap""#))
            #expect(seqs == Array(1...lastSeq), "every seq once, in order (\(seqs.count) lines for \(lastSeq))")
            #expect(Set(acked).isSubset(of: Set(seqs)))
            await relay.close()
        }
    }

    /// `sub --last N`: the last N retained messages of each matching topic first; with
    /// `--since` too it is a bad argument (64).
    @Test func subLastPrintsTheLastMessagesOfEachTopic() async throws {
        try await withBroker(retain: "t.>") { broker in
            for (topic, count) in [("t.a", "3"), ("t.b", "1")] {
                let pub = try SwitchboardProcess.start(["pub", topic, "7", "--count", count, "--url", broker.url], in: broker.directory)
                #expect(try await pub.exitStatus() == 0, "\(pub.stderr.text)")
            }
            let sub = try SwitchboardProcess.start(["sub", "t.*", "--last", "2", "--url", broker.url], in: broker.directory)
            defer { sub.kill() }
            let lines = try await sub.stdout.wait(for: "3 lines") { text -> [Substring]? in
                let lines = text.split(separator: "\n")
                return lines.count >= 3 ? lines : nil
            }
            #expect(lines == ["t.a 2 7", "t.a 3 7", "t.b 1 7"])
            let both = try SwitchboardProcess.start(["sub", "t.a", "--last", "1", "--since", "1"], in: broker.directory)
            #expect(try await both.exitStatus() == 64)
            #expect(both.stderr.text.contains("give --since or --last, not both"), "\(both.stderr.text)")
        }
    }

    @Test func exitStatusesAndOneLineForEachFailure() async throws {
        try await withBroker(open: "open.>") { broker in
            let limited = try await broker.createToken(subscribe: ["a.>"], publish: ["a.x"])
            let unused = try await CuttingRelay(target: 1)
            let nowhere = "ws://127.0.0.1:\(unused.port)/"
            await unused.close()
            let cases: [(args: [String], status: Int32, mentions: String)] = [
                (["pub", "a.x", "1", "--url", "http:/nope"], 64, "URL"),
                (["sub", "a.*", "--since", "5", "--url", broker.url], 64, "--since"),
                (["pub", "a.x", "1", "--url", nowhere], 69, "cannot reach"),
                (["sub", "a.x", "--url", broker.url, "--token", "sb_nope"], 77, "refused the token"),
                (["pub", "a.y", "1", "--url", broker.url, "--token", limited.token], 77, "forbidden"),
                (["sub", "b.x", "--url", broker.url, "--token", limited.token], 77, "forbidden"),
                (["pub", "a.x", "--count", "2", "-", "--url", broker.url], 64, "--count"),
            ]
            for (args, status, mentions) in cases {
                let process = try SwitchboardProcess.start(args, in: broker.directory)
                defer { process.kill() }
                #expect(try await process.exitStatus() == status, "\(args): \(process.stderr.text)")
                let errorLines = process.stderr.text.split(separator: "\n")
                #expect(errorLines.contains { $0.contains(mentions) }, "\(args): \(process.stderr.text)")
            }
            let ok = try SwitchboardProcess.start(["pub", "a.x", "hello", "--url", broker.url, "--token", limited.token], in: broker.directory)
            #expect(try await ok.exitStatus() == 0)
            #expect(ok.stdout.text == "1\n")
            // SWITCHBOARD_URL is shared with the admin commands: an http:// URL names the same broker.
            let http = "http://" + broker.url.dropFirst("ws://".count)
            let viaHTTP = try SwitchboardProcess.start(
                ["pub", "a.x", "again", "--token", limited.token], in: broker.directory, environment: ["SWITCHBOARD_URL": http])
            #expect(try await viaHTTP.exitStatus() == 0, "\(viaHTTP.stderr.text)")
            #expect(viaHTTP.stdout.text == "2\n")
        }
    }

    /// Without DATA, `pub` publishes each line of standard input, as with `-`.
    @Test func pubWithoutDataPublishesEachLineOfStandardInput() async throws {
        try await withBroker(retain: "t.>") { broker in
            let pub = try SwitchboardProcess.start(
                ["pub", "t.in", "--url", broker.url], in: broker.directory, input: "plain text\n{\"n\":1}\n")
            #expect(try await pub.exitStatus() == 0, "\(pub.stderr.text)")
            #expect(pub.stdout.text == "1\n2\n")
            let client = try SwitchboardClient(url: broker.url, options: testOptions())
            try await withTimeout("the published lines") {
                var events = try await client.subscribe("t.in", from: .beginning).makeAsyncIterator()
                #expect(try await events.nextMessage().text == "plain text")
                #expect(try await events.nextMessage().json == #"{"n":1}"#)
            }
            await client.close()
        }
    }

    /// The broker's `unavailable` (here its replay log's full queue) is temporary: exit 75
    /// (EX_TEMPFAIL), as the admin commands answer a 503.
    @Test func anUnavailableBrokerIsExitStatus75() async throws {
        try await withBroker(
            retain: "t.>", arguments: ["--request-rate", "0"], environment: ["SWITCHBOARD_REPLAY_QUEUE_LIMIT": "1"]
        ) { broker in
            let blaster = try SwitchboardClient(url: broker.url, options: testOptions())
            let pub = try SwitchboardProcess.start(["pub", "t.full", "x", "--count", "5000", "--url", broker.url], in: broker.directory)
            defer { pub.kill() }
            // Bursts of publishes keep the queue full while `pub` publishes one at a time.
            let bursts = Task {
                for _ in 0..<200 where pub.process.isRunning {
                    await withTaskGroup(of: Void.self) { group in
                        for _ in 0..<200 { group.addTask { _ = try? await blaster.publish("t.full", text: "burst") } }
                    }
                }
            }
            let status = try await pub.exitStatus()
            bursts.cancel()
            await bursts.value
            #expect(status == 75, "\(pub.stderr.text)")
            #expect(pub.stderr.text.split(separator: "\n").contains { $0.contains("unavailable") }, "\(pub.stderr.text)")
            await blaster.close()
        }
    }

    @Test(arguments: ["sub", "pub"])
    func helpShowsExamplesAndExitStatuses(_ command: String) async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let help = try SwitchboardProcess.start([command, "--help"], in: directory)
        #expect(try await help.exitStatus() == 0)
        #expect(help.stdout.text.contains("Examples:\n") && help.stdout.text.contains("switchboard \(command) "), "\(help.stdout.text)")
        #expect(help.stdout.text.contains("75 broker unavailable"), "\(help.stdout.text)")
    }
}
