// Replay log benchmarks and the kill -9 check. Release build:
//
//   swift build -c release --product ReplayBenchmarks
//   .build/release/ReplayBenchmarks ingest 1       # acked appends/s, 1 appender
//   .build/release/ReplayBenchmarks ingest 16      # 16 concurrent appenders
//   .build/release/ReplayBenchmarks read 1000000   # replay from 1,000,000 back
//   Benchmarks/replay-crash.sh storage             # kill -9 during a burst, then verify
//   Benchmarks/replay.sh                           # end to end against `switchboard serve`
//
// End-to-end modes (EndToEnd.swift), this process being the client of a running server:
//   ReplayBenchmarks e2e-ingest PORT PUBLISHERS TOTAL WINDOW [SERVER_PID]
//   ReplayBenchmarks e2e-replay PORT TOPIC LAST_SEQ [SINCE] [SERVER_PID]
//   ReplayBenchmarks prefill DB TOPIC COUNT        # append straight into the log, server stopped
//
// Appenders publish like pipelining clients: each keeps up to `window` publishes waiting
// for their ack (a client does not wait for one ack before sending the next publish).
// Payloads are 64 bytes. Sequencing happens under one lock, as in Broker.publish.
import ArgumentParser
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Switchboard

func now() -> Double { Date().timeIntervalSince1970 }

func seconds(_ value: Double) -> String { String(Double(Int(value * 100)) / 100) }

func temporaryDatabase() -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("replay-bench-\(UUID().uuidString)")
    try! FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir.appendingPathComponent("replay.db").path
}

func openLog(_ path: String, rules: String = "bench.>") -> ReplayLog {
    var configuration = ReplayConfiguration()
    configuration.rules = [try! ReplayRule.parse(rules).get()]
    configuration.maxBytes = 0
    do {
        return try ReplayLog(path: path, configuration: configuration)
    } catch {
        FileHandle.standardError.write("\(error)\n".data(using: .utf8)!)
        exit(69)
    }
}

/// Appends; false when refused (queue full).
@inline(never)
func append(_ log: ReplayLog, _ message: StoredMessage, _ completion: @escaping @Sendable (Result<Void, ReplayError>) -> Void) -> Bool {
    do {
        try log.append(message, completion: completion)
        return true
    } catch {
        return false
    }
}

let payload = ByteBuffer(repeating: UInt8(ascii: "x"), count: 64)

func ingest(appenders: Int, total: Int, window: Int = 4096) {
    let path = temporaryDatabase()
    let log = openLog(path)
    let topics = (0..<appenders).map { try! Topic("bench.p\($0)") }
    let sequences = NIOLockedValueBox<[Topic: UInt64]>([:])
    let acked = ManagedAtomicCounter()
    let perAppender = total / appenders
    let start = now()
    let threads = (0..<appenders).map { i in
        Thread {
            let credits = DispatchSemaphore(value: window)
            let topic = topics[i]
            for _ in 0..<perAppender {
                credits.wait()
                sequences.withLockedValue { seqs in
                    let seq = (seqs[topic] ?? 0) + 1
                    seqs[topic] = seq
                    let message = StoredMessage(
                        topic: topic, sequence: seq, time: Int64(now() * 1000), format: .json, payload: payload,
                        publisher: "bench")
                    let accepted = append(log, message) { result in
                        if case .success = result { acked.increment() }
                        credits.signal()
                    }
                    if !accepted { credits.signal() }
                }
            }
            for _ in 0..<window { credits.wait() }  // every ack is in
            for _ in 0..<window { credits.signal() }  // (libdispatch traps on a semaphore freed below its start value)
        }
    }
    for t in threads { t.start() }
    while threads.contains(where: { !$0.isFinished }) { usleep(1000) }
    let elapsed = now() - start
    let stats = log.statistics
    log.close()
    let count: Int = acked.value
    let rate: Int = Int(Double(count) / elapsed)
    let perBatch: UInt64 = stats.committed / max(1, stats.batches)
    print("ingest: \(appenders) appenders, \(count) acked in \(seconds(elapsed)) s = \(rate) acked msg/s (\(stats.batches) transactions, \(perBatch) msgs/transaction)")
    try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent)
}

func read(count: Int) {
    let path = temporaryDatabase()
    let topic = try! Topic("bench.replay")
    do {
        let log = openLog(path)
        let fill = now()
        let done = DispatchSemaphore(value: 0)
        let credits = DispatchSemaphore(value: 8192)
        for seq in 1...UInt64(count) {
            credits.wait()
            _ = append(log, StoredMessage(topic: topic, sequence: seq, time: Int64(now() * 1000), format: .json, payload: payload)) { _ in
                credits.signal()
                if seq == UInt64(count) { done.signal() }
            }
        }
        done.wait()
        log.close()
        print("read: wrote \(count) messages in \(seconds(now() - fill)) s")
    }
    let log = openLog(path)
    // 1. The cursor alone, pages of 2048 with frames encoded (what the reader thread does).
    let cursor = ReplayCursor(log: log, pattern: TopicPattern(topic), position: .sequence(0))
    var start = now()
    var read = 0
    var bytes = 0
    while !cursor.isExhausted {
        let page = try! cursor.next(limit: 2048)
        read += page.messages.count
        for m in page.messages { bytes += m.frame!.readableBytes }
    }
    var elapsed = now() - start
    let cursorRate: Int = Int(Double(read) / elapsed)
    print("read: cursor paged \(read) messages (\(bytes) frame bytes) in \(seconds(elapsed)) s = \(cursorRate) msg/s")

    // 2. ReplayCatchUp to an event loop, frames handed to a sink (a session without a socket).
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let loop = group.next()
    let delivered = NIOLockedValueBox(0)
    let finished = DispatchSemaphore(value: 0)
    start = now()
    try! loop.submit {
        let catchUp = ReplayCatchUp<ByteBuffer>(
            log: log, pattern: TopicPattern(topic), position: .sequence(0), highWater: [topic: UInt64(count)],
            eventLoop: loop,
            emit: { outputs in
                var n = 0
                for output in outputs { if case .replayed(let m) = output, m.frame != nil { n += 1 } }
                delivered.withLockedValue { $0 += n }
            },
            canContinue: { true },
            finished: { _ in finished.signal() })
        catchUp.start()
    }.wait()
    finished.wait()
    elapsed = now() - start
    let n = delivered.withLockedValue { $0 }
    let catchUpRate: Int = Int(Double(n) / elapsed)
    print("read: catch-up delivered \(n) messages to the event loop in \(seconds(elapsed)) s = \(catchUpRate) msg/s")
    try? group.syncShutdownGracefully()
    log.close()
    try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent)
}

/// Appends to `bench.crash` forever from 4 appenders, printing each acked seq (flushed)
/// until killed.
func crashWriter(path: String) {
    let log = openLog(path)
    let topic = try! Topic("bench.crash")
    var seq = log.retainedTopics()[topic]?.sequence ?? 0
    let lock = NIOLock()
    let credits = DispatchSemaphore(value: 4096)
    while now() > 0 {  // not `while true`: Swift 6.3 -O hangs in LICM on a loop with no exit
        credits.wait()
        lock.lock()
        seq += 1
        let s = seq
        _ = append(log, StoredMessage(topic: topic, sequence: s, time: Int64(now() * 1000), format: .binary, payload: payload)) { result in
            if case .success = result {
                // One write(2) per ack: a line is out before the next ack.
                FileHandle.standardOutput.write("\(s)\n".data(using: .utf8)!)
            }
            credits.signal()
        }
        lock.unlock()
    }
}

/// After a kill -9: every acked seq is stored, stored seqs are contiguous, seqs continue.
func verify(path: String, lastAcked: UInt64) {
    let log = openLog(path)
    let topic = try! Topic("bench.crash")
    let last = log.retainedTopics()[topic]?.sequence ?? 0
    var expected: UInt64 = 1
    var after: UInt64 = 0
    while true {
        let page = try! log.read(topic: topic, after: after, limit: 10_000)
        if page.isEmpty { break }
        for m in page {
            guard m.sequence == expected else {
                print("FAIL: stored seq \(m.sequence), expected \(expected)")
                exit(1)
            }
            expected += 1
        }
        after = page.last!.sequence
    }
    let stored = expected - 1
    log.close()
    guard stored >= lastAcked else {
        print("FAIL: last acked \(lastAcked) but only 1...\(stored) stored")
        exit(1)
    }
    guard last == stored else {
        print("FAIL: retainedTopics says \(last), stored up to \(stored)")
        exit(1)
    }
    print("OK: acked up to \(lastAcked), stored 1...\(stored) contiguous, next seq \(last + 1)")
}

final class ManagedAtomicCounter: @unchecked Sendable {
    private let lock = NIOLock()
    private var count = 0
    func increment() { lock.withLock { count += 1 } }
    var value: Int { lock.withLock { count } }
}

struct ReplayBenchmarks: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ReplayBenchmarks", abstract: "Replay log benchmarks and the kill -9 check.",
        subcommands: [Ingest.self, Read.self, CrashWriter.self, Verify.self, EndToEndIngest.self, EndToEndReplay.self, Prefill.self])

    func run() throws {
        throw ValidationError("name a mode; --help lists them")
    }

    struct Ingest: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Acked appends/s straight into a ReplayLog.")
        @Argument(help: "Concurrent appenders.") var appenders = 1
        @Argument(help: "Messages in all.") var total = 1_000_000

        func validate() throws {
            guard appenders >= 1 else { throw ValidationError("appenders must be at least 1, not \(appenders)") }
            guard total >= appenders else { throw ValidationError("total must be at least appenders (\(appenders)), not \(total)") }
        }

        func run() { ingest(appenders: appenders, total: total) }
    }

    struct Read: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Write COUNT messages, then page them back and catch up from 0.")
        @Argument(help: "Messages to write and read back.") var count = 1_000_000

        func validate() throws {
            guard count >= 1 else { throw ValidationError("count must be at least 1, not \(count)") }
        }

        func run() { read(count: count) }
    }

    struct CrashWriter: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "crash-writer", abstract: "Append to bench.crash until killed, printing each acked seq.")
        @Argument(help: "The replay log's SQLite file.") var database: String

        func run() { crashWriter(path: database) }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "After a kill -9: every acked seq is stored, contiguous, and seqs continue.")
        @Argument(help: "The replay log's SQLite file.") var database: String
        @Argument(help: "The last seq crash-writer printed.") var lastAcked: UInt64

        func run() { verify(path: database, lastAcked: lastAcked) }
    }

    struct EndToEndIngest: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "e2e-ingest", abstract: "Publish to a running server and count acks.")
        @Argument(help: "The server's port on 127.0.0.1.") var port: Int
        @Argument(help: "Concurrent publishers.") var publishers: Int
        @Argument(help: "Publishes in all.") var total: Int
        @Argument(help: "Publishes each publisher keeps waiting for their ack.") var window: Int
        @Argument(help: "The server's pid, for its CPU time.") var serverPID: Int32?

        func validate() throws {
            try validatePort(port)
            guard publishers >= 1 else { throw ValidationError("publishers must be at least 1, not \(publishers)") }
            guard total >= 0 else { throw ValidationError("total must not be negative, not \(total)") }
            guard window >= 1 else { throw ValidationError("window must be at least 1, not \(window)") }
        }

        func run() throws {
            try endToEndIngest(port: port, publishers: publishers, total: total, window: window, serverPID: serverPID)
        }
    }

    struct EndToEndReplay: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "e2e-replay", abstract: "Resume one subscriber from SINCE on a running server until LAST_SEQ arrives.")
        @Argument(help: "The server's port on 127.0.0.1.") var port: Int
        @Argument(help: "The topic to subscribe to.", transform: { try Topic($0).name }) var topic: String
        @Argument(help: "The seq to wait for.") var lastSeq: UInt64
        @Argument(help: "The seq to resume after.") var since: UInt64 = 0
        @Argument(help: "The server's pid, for its CPU time.") var serverPID: Int32?

        func validate() throws {
            try validatePort(port)
            guard lastSeq > since else { throw ValidationError("last-seq must be above since (\(since)), not \(lastSeq)") }
        }

        func run() throws {
            try endToEndReplay(port: port, topic: topic, since: since, last: lastSeq, serverPID: serverPID)
        }
    }

    struct Prefill: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Append straight into the replay log of a stopped server.")
        @Argument(help: "The replay log's SQLite file.") var database: String
        @Argument(help: "The topic to fill.", transform: { try Topic($0) }) var topic: Topic
        @Argument(help: "Messages to append.") var count: Int

        func validate() throws {
            guard count >= 1 else { throw ValidationError("count must be at least 1, not \(count)") }
        }

        func run() { prefill(path: database, topic: topic, count: count) }
    }
}

func validatePort(_ port: Int) throws {
    guard (1...65535).contains(port) else { throw ValidationError("port must be 1 to 65535, not \(port)") }
}

ReplayBenchmarks.main()
