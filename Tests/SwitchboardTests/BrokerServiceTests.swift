import AsyncTestSupport
import BrokerProcess
import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import Testing
import WebSocketCore

@_spi(Fuzzing) @testable import Switchboard

/// The broker as a swift-service-lifecycle `Service`, run the way docs/embedding.md shows:
/// in a real `ServiceGroup`, started by `run()`, drained on a graceful shutdown or a
/// cancellation.
@Suite struct BrokerServiceTests {
    /// The port of a broker that `run()` started: the "listening" line it logs.
    static func listeningPort(_ logs: LogCapture) async throws -> Int {
        let entry = try await logs.waitFor("the broker to listen") { $0.message == "listening" }
        // `SocketAddress` prints as `[IPv4]127.0.0.1/127.0.0.1:PORT`.
        guard let port = entry.metadata["address"]?.split(separator: ":").last.flatMap({ Int($0) }) else {
            throw TestFailure("no port in \(entry.metadata)")
        }
        return port
    }

    @Test func gracefulShutdownOfItsServiceGroupClosesClientsWith1001AndKeepsAckedMessages() async throws {
        let prepared = try TestBroker.prepare(BrokerReplayTests.retaining("orders.>"))
        defer { try? FileManager.default.removeItem(at: prepared.directory) }
        let token = try prepared.tokens.create(name: "test", permissions: .all).token
        let services = ServiceGroup(
            configuration: .init(services: [prepared.broker], logger: Logger(label: "switchboard-test")))
        let running = Task { try await services.run() }
        let port = try await Self.listeningPort(prepared.logs)
        let subscriber = try await Client.connect(port: port, token: token)
        try await subscriber.subscribe("orders.*")
        let publisher = try await Client.connect(port: port, token: token)
        for n in 1...20 {
            #expect(try await publisher.publish("orders.eu", "\(n)") == n)
        }
        // Unacked publishes in flight as the shutdown begins: what is acked is durable.
        for n in 21...40 {
            try await publisher.send(#"{"op":"pub","topic":"orders.eu","data":\#(n),"id":"\#(n)"}"#)
        }
        await services.triggerGracefulShutdown()
        for client in [subscriber, publisher] {
            let close = try await client.waitForClose()
            #expect(close.code == .goingAway, "\(close)")
        }
        try await withTimeout("the service group to finish") { try await running.value }
        var acked = Array(1...20)
        while publisher.inbox.count > 0 {
            let answer = try await publisher.nextJSON()
            if answer["op"] == "ack", let seq = answer.int("seq") { acked.append(seq) }
        }
        // The drain closed the replay log after committing what it held.
        #expect(throws: ReplayError.self) {
            try prepared.broker.replayLog?.append(
                StoredMessage(topic: try Topic("orders.eu"), sequence: 99, time: 0, format: .json, payload: ByteBuffer()))
        }
        let reopened = try ReplayLog(path: prepared.broker.configuration.database, configuration: prepared.broker.configuration.replay)
        defer { reopened.close() }
        let stored = try reopened.read(topic: try Topic("orders.eu"), after: 0, limit: 100).map { Int($0.sequence) }
        #expect(Set(acked).isSubset(of: Set(stored)), "acked \(acked), stored \(stored)")
        #expect(stored.prefix(20) == ArraySlice(1...20))
    }

    @Test func cancellingRunDrainsTheBroker() async throws {
        let prepared = try TestBroker.prepare()
        defer { try? FileManager.default.removeItem(at: prepared.directory) }
        let token = try prepared.tokens.create(name: "test", permissions: .all).token
        let run = Task { try await prepared.broker.run() }
        let port = try await Self.listeningPort(prepared.logs)
        let client = try await Client.connect(port: port, token: token)
        try await client.subscribe("orders.*")
        run.cancel()
        let close = try await client.waitForClose()
        #expect(close.code == .goingAway, "\(close)")
        try await withTimeout("run() to return") { try await run.value }
        await #expect(throws: Broker.LifecycleError.stopped) { try await prepared.broker.start() }
    }

    @Test func runThatCannotListenThrowsAndStillClosesTheReplayLog() async throws {
        try await TestBroker.with { taken in
            let prepared = try TestBroker.prepare { $0.port = taken.port }
            defer { try? FileManager.default.removeItem(at: prepared.directory) }
            await #expect(throws: (any Error).self) { try await prepared.broker.run() }
            #expect(throws: ReplayError.unavailable("the replay log is closed")) {
                try prepared.broker.replayLog?.append(
                    StoredMessage(topic: try Topic("orders.eu"), sequence: 1, time: 0, format: .json, payload: ByteBuffer()))
            }
        }
    }

    @Test func shutdownEndsRunAndRunAfterStartDoesNotListenAgain() async throws {
        let prepared = try TestBroker.prepare()
        defer { try? FileManager.default.removeItem(at: prepared.directory) }
        let address = try await prepared.broker.start()
        let run = Task { try await prepared.broker.run() }
        let token = try prepared.tokens.create(name: "test", permissions: .all).token
        let client = try await Client.connect(port: address.port!, token: token)
        try await client.subscribe("orders.*")
        await prepared.broker.shutdown()
        let close = try await client.waitForClose()
        #expect(close.code == .goingAway, "\(close)")
        try await withTimeout("run() to return") { try await run.value }
        #expect(prepared.logs.all.filter { $0.message == "listening" }.count == 1)
    }
}
