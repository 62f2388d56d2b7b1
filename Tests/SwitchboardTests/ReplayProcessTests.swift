import AsyncTestSupport
import BrokerProcess
import CSQLite
import Foundation
import NIOConcurrencyHelpers
import Testing
import WebSockets

@_spi(Fuzzing) @testable import Switchboard

/// The replay log's faults with the real `switchboard serve` process: kill -9 in the middle
/// of a publish burst, a damaged database at start, a replay database that cannot be
/// created. Real process, real sockets on 127.0.0.1, real SQLite files in a temporary
/// directory. (A disk that fails while the broker runs is covered in process by
/// `BrokerReplayTests.aFailingDiskKeepsLiveTrafficAcksUnavailableAndRecovers`.)
@Suite struct ReplayProcessTests {
    static let topic = "crash.t"

    /// `switchboard serve` on an ephemeral port, retaining `crash.>` in the store's file,
    /// anonymous clients allowed on `crash.>` (so no token has to be fished out of stdout).
    static func serve(in directory: URL) throws -> SwitchboardProcess {
        try SwitchboardProcess.start(
            [
                "serve", "--port", "0", "--host", "127.0.0.1", "--anonymous-subscribe", "crash.>",
                "--anonymous-publish", "crash.>",
            ],
            in: directory, environment: ["SWITCHBOARD_REPLAY_RETAIN": "crash.>"])
    }

    // MARK: kill -9

    /// Rounds of: start on the same file, check what the previous (killed) run stored, then
    /// a pipelined burst killed with SIGKILL once some acks are in and more publishes are in
    /// flight. Every acked message must survive with the seq it was acked with, the stored
    /// seqs must be 1…last with no hole, and what is stored of a burst is a prefix of it
    /// (batches commit in order and atomically).
    @Test func killDashNineMidBurstLosesNoAckedMessage() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        // seq → data of every message known to be stored (acked, or seen in a resume).
        var known: [Int: Int] = [:]
        // Different kill points, so the kill lands in different places of a batch.
        let killAfter = [300, 1200, 2500]
        for round in 0...killAfter.count {
            let serve = try Self.serve(in: directory)
            defer { serve.kill() }
            // Starts cleanly on a file whose writer was killed (WAL recovery).
            let port = try await serve.listeningPort()
            if round > 0 {
                known = try await Self.verify(port: port, known: known, bursts: round, probe: -round)
            }
            guard round < killAfter.count else {
                serve.terminate()
                #expect(try await serve.exitStatus() == 0, "stderr: \(serve.stderr.text)")
                break
            }
            let burst = try await Self.burstAndKill(
                serve, port: port, first: Self.burstStart(round), killAfter: killAfter[round], window: 1000)
            let inFlight = try #require(burst.inFlightAtKill, "the kill point was reached")
            #expect(inFlight > 0, "publishes were in flight when the broker was killed")
            #expect(burst.errors.isEmpty, "\(burst.errors.prefix(3))")
            for (seq, data) in burst.acked {
                #expect(known[seq] == nil, "seq \(seq) acked twice (data \(data), before \(known[seq] ?? 0))")
                known[seq] = data
            }
        }
    }

    /// The data of burst `round`'s first message: bursts use disjoint ranges, so a stored
    /// message tells which burst it came from and where in it.
    static func burstStart(_ round: Int) -> Int { (round + 1) * 1_000_000 }

    /// What a burst saw, filled in on the publisher's event loop as answers arrive.
    final class Burst: Sendable {
        struct State {
            /// seq → data of every ack received, including those that arrived after SIGKILL
            /// was sent (the broker had written them before it died).
            var acked: [Int: Int] = [:]
            var errors: [String] = []
            var answers = 0
            var sent = 0
            /// Publishes sent but not yet answered when SIGKILL was sent.
            var inFlightAtKill: Int?
        }
        let state = NIOLockedValueBox(State())
        var snapshot: State { state.withLockedValue { $0 } }
    }

    /// Publishes `first`, `first + 1`, … to `crash.t`, each with its data as id, keeping
    /// exactly `window` unanswered (pipelined: each answer lets one more publish go), and
    /// SIGKILLs `serve` from the publisher's message callback the moment the `killAfter`th
    /// ack arrives, so the kill lands with a full window of publishes in flight. Sending is
    /// done on the publisher's event loop, without waiting for writes, so publishes go out
    /// in data order and as fast as the broker takes them.
    static func burstAndKill(
        _ serve: SwitchboardProcess, port: Int, first: Int, killAfter: Int, window: Int
    ) async throws -> Burst.State {
        let publisher = try await Client.connect(port: port)
        defer { publisher.ws.terminate() }
        let burst = Burst()
        let ws = publisher.ws
        /// On the event loop: sends the next publish unless the broker has been killed.
        @Sendable func publishNext() {
            let n = burst.state.withLockedValue { state -> Int? in
                guard state.inFlightAtKill == nil else { return nil }
                defer { state.sent += 1 }
                return first + state.sent
            }
            guard let n else { return }
            ws.send(.text(#"{"op":"pub","topic":"\#(topic)","data":\#(n),"id":"\#(n)"}"#), promise: nil)
        }
        ws.onMessage { message in
            burst.state.withLockedValue { state in
                state.answers += 1
                if let json = try? JSON(message.text), json["op"] == "ack", let seq = json.int("seq"),
                    let data = json["id"].flatMap({ Int($0) })
                {
                    state.acked[seq] = data
                } else {
                    state.errors.append(message.text)
                }
                if state.acked.count == killAfter && state.inFlightAtKill == nil {
                    state.inFlightAtKill = state.sent - state.answers
                    serve.kill()
                }
            }
            publishNext()
        }
        // Replaces the Client's own close handler, so it fulfills `closed` itself.
        ws.onClose { [closed = publisher.closed] info in closed.fulfill(info) }
        ws.eventLoop.execute {
            for _ in 0..<window { publishNext() }
        }
        _ = try await serve.exitStatus()
        // The connection's end comes after every frame received before it: every ack the
        // broker wrote before it died is in.
        _ = try await publisher.waitForClose()
        return burst.snapshot
    }

    /// Learns the last stored seq by publishing one more message with an id (its ack is
    /// last + 1), then resumes with `since: 0` up to it: every seq from 1 must come, as a
    /// `msg` (no `gap`: nothing was pruned), with the data it was acked with. Returns the
    /// stored messages (seq → data).
    static func verify(port: Int, known: [Int: Int], bursts: Int, probe: Int) async throws -> [Int: Int] {
        let client = try await Client.connect(port: port)
        defer { client.ws.terminate() }
        let last = try await client.publish(topic, "\(probe)")
        let lastAcked = known.keys.max() ?? 0
        #expect(last > lastAcked, "the seq after a restart (\(last)) continues past every acked one (\(lastAcked))")

        let subscribed = try await client.request(#"{"op":"sub","topic":"\#(topic)","id":"r","since":0}"#)
        #expect(subscribed["op"] == "subscribed", "\(subscribed)")
        var stored: [Int: Int] = [:]
        for seq in 1...last {
            let message = try await client.nextJSON()
            guard message["op"] == "msg", message.int("seq") == seq, let data = message.int("data") else {
                Issue.record("expected stored seq \(seq) of 1…\(last), got \(message)")
                return stored
            }
            stored[seq] = data
        }
        try await client.expectNothingPending()

        for (seq, data) in known.sorted(by: { $0.key < $1.key }) where stored[seq] != data {
            Issue.record("acked seq \(seq) (data \(data)) is stored as \(stored[seq].map(String.init) ?? "nothing")")
        }
        // Of each burst, what is stored is its first k messages in order: data first…first+k-1
        // at consecutive seqs (one publisher, sequenced in order, batches committed in order).
        let ordered = stored.sorted { $0.key < $1.key }.map(\.value).filter { $0 >= burstStart(0) }
        for round in 0..<bursts {
            let range = burstStart(round)..<burstStart(round + 1)
            let ofBurst = ordered.filter { range.contains($0) }
            #expect(ofBurst == Array(range.lowerBound..<range.lowerBound + ofBurst.count),
                "burst \(round) is not stored as a prefix: starts \(ofBurst.prefix(5)), \(ofBurst.count) messages")
        }
        #expect(stored[last] == probe)
        return stored
    }

    // MARK: Damaged or unusable files at start

    /// A database file that is not a database, or whose schema page is damaged, stops the
    /// start with 69 and a message naming the file and the way out; the file is left exactly
    /// as it was (never "repaired" by creating a fresh database over it). Three ways in: the
    /// store's file (which the token store opens first, and which also holds the log), a
    /// database with an intact header and a scribbled page, and a separate `replay_database`.
    @Test func corruptDatabaseAtStartExits69NamingTheFileAndLeavesItAlone() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let garbageStore = directory.appendingPathComponent("garbage.db").path
        let damagedStore = directory.appendingPathComponent("damaged.db").path
        let garbageLog = directory.appendingPathComponent("garbage-log.db").path
        let garbage = Data((0..<65_536).map { _ in UInt8.random(in: 0...255) })
        try garbage.write(to: URL(fileURLWithPath: garbageStore))
        try garbage.write(to: URL(fileURLWithPath: garbageLog))
        try Self.makeDamagedDatabase(damagedStore)

        let cases: [(what: String, file: String, args: [String], environment: [String: String])] = [
            ("random bytes as the store", garbageStore, ["--database", garbageStore], [:]),
            ("a scribbled schema page", damagedStore, ["--database", damagedStore], [:]),
            (
                "random bytes as replay_database", garbageLog, ["--database", directory.appendingPathComponent("ok.db").path],
                ["SWITCHBOARD_REPLAY_DATABASE": garbageLog]
            ),
        ]
        for (what, file, args, environment) in cases {
            let before = try Data(contentsOf: URL(fileURLWithPath: file))
            let process = try SwitchboardProcess.start(
                ["serve", "--port", "0", "--host", "127.0.0.1"] + args, in: directory,
                environment: environment.merging(["SWITCHBOARD_REPLAY_RETAIN": "chat.>"]) { old, _ in old })
            defer { process.kill() }
            let status = try await process.exitStatus()
            let stderr = process.stderr.text
            #expect(status == 69, "\(what): exit \(status), stderr: \(stderr)")
            // Which file, that it is damaged, and what to do about it.
            for mention in [file, "corrupt", "\(file) and its -wal and -shm files aside", "backup", "sqlite3 \(file) .recover"] {
                #expect(stderr.contains(mention), "\(what): stderr lacks \"\(mention)\": \(stderr)")
            }
            #expect(!process.stdout.text.contains("listening"), "\(what)")
            #expect(try Data(contentsOf: URL(fileURLWithPath: file)) == before, "\(what): the file was changed")
        }
    }

    /// A real store with tokens and retained messages, checkpointed into the main file, then
    /// page 1 overwritten past the 100-byte header (as `ReplayLogTests` does to the log alone):
    /// the header, and so `user_version`, stay intact; the schema cannot be read.
    static func makeDamagedDatabase(_ path: String) throws {
        do {
            let tokens = try TokenStore(store: Store(path: path))
            _ = try tokens.create(name: "x", permissions: Permissions(subscribe: [try TopicPattern(">")]))
        }
        do {
            let log = try ReplayLog(path: path, configuration: ReplayLogTests.configuration())
            try ReplayLogTests.appendAll(log, (UInt64(1)...100).map { ReplayLogTests.message($0) })
            log.close()
        }
        var db: OpaquePointer?
        guard sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, nil) == SQLITE_OK,
            sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", nil, nil, nil) == SQLITE_OK
        else {
            sqlite3_close(db)
            throw TestFailure("cannot checkpoint \(path)")
        }
        sqlite3_close(db)
        let wal = (try? FileManager.default.attributesOfItem(atPath: path + "-wal")[.size] as? Int) ?? 0
        guard wal == 0 else { throw TestFailure("\(path)-wal still holds \(wal) bytes") }
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        try handle.seek(toOffset: 100)
        try handle.write(contentsOf: Data(repeating: 0xA5, count: 3000))
        try handle.close()
    }

    /// `replay_database` in a directory that does not exist (tests run as root, for whom a
    /// read-only mode bit stops nothing): 69 at start, naming the file, and nothing is created.
    @Test func replayDatabaseThatCannotBeCreatedExits69NamingIt() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("no/such/dir/replay.db").path
        let process = try SwitchboardProcess.start(
            ["serve", "--port", "0", "--host", "127.0.0.1"], in: directory,
            environment: ["SWITCHBOARD_REPLAY_RETAIN": "chat.>", "SWITCHBOARD_REPLAY_DATABASE": file])
        defer { process.kill() }
        let status = try await process.exitStatus()
        let stderr = process.stderr.text
        #expect(status == 69, "exit \(status), stderr: \(stderr)")
        #expect(stderr.contains("replay log \(file)"), "\(stderr)")
        #expect(stderr.contains("replay_database"), "says which setting to change: \(stderr)")
        #expect(!process.stdout.text.contains("listening"))
        #expect(!FileManager.default.fileExists(atPath: directory.appendingPathComponent("no").path))
    }
}
