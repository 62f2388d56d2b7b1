import AsyncTestSupport
import BrokerProcess
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import SwitchboardClient
import Testing

// The SDK against the real `switchboard serve` of this build, in a temporary directory.

/// A broker process and where it keeps its files; `restart` starts a new process on the same
/// files (after a SIGTERM or a kill -9 of the previous one).
final class ServedBroker: @unchecked Sendable {
    let directory: URL
    let arguments: [String]
    let environment: [String: String]
    private(set) var process: SwitchboardProcess
    private(set) var port: Int

    /// Anonymous clients may subscribe and publish to `open`; `retain` turns the replay log on;
    /// `environment` adds settings (`SWITCHBOARD_…`).
    init(
        open: String = "t.>", retain: String? = nil, arguments extra: [String] = [], environment settings: [String: String] = [:]
    ) async throws {
        directory = try makeTemporaryDirectory()
        arguments =
            ["serve", "--port", "0", "--host", "127.0.0.1", "--anonymous-subscribe", open, "--anonymous-publish", open]
            + extra
        environment = settings.merging(retain.map { ["SWITCHBOARD_REPLAY_RETAIN": $0] } ?? [:]) { $1 }
        process = try SwitchboardProcess.start(arguments, in: directory, environment: environment)
        port = try await process.listeningPort()
    }

    var url: String { "ws://127.0.0.1:\(port)/" }

    /// Stops the process (SIGTERM, or SIGKILL with `kill`), waits for its end, starts a new
    /// one; with `replacingDatabase`, on a new database (its files deleted in between).
    func restart(kill: Bool, replacingDatabase: Bool = false) async throws {
        if kill { process.kill() } else { process.terminate() }
        let status = try await process.exitStatus()
        if !kill { #expect(status == 0, "SIGTERM exit: \(process.stderr.text)") }
        if replacingDatabase {
            for suffix in ["", "-wal", "-shm", ".admin-token"] {
                try? FileManager.default.removeItem(at: directory.appendingPathComponent("switchboard.db" + suffix))
            }
        }
        process = try SwitchboardProcess.start(arguments, in: directory, environment: environment)
        port = try await process.listeningPort()
    }

    /// The admin token the first start created.
    var adminToken: String {
        get throws {
            try String(contentsOf: directory.appendingPathComponent("switchboard.db.admin-token"), encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines)
        }
    }

    /// A new opaque token with these rights: (secret, id).
    func createToken(subscribe: [String] = [], publish: [String] = []) async throws -> (token: String, id: String) {
        let rights = subscribe.flatMap { ["--subscribe", $0] } + publish.flatMap { ["--publish", $0] }
        let create = try SwitchboardProcess.start(["token", "create", "--name", "test"] + rights, in: directory)
        #expect(try await create.exitStatus() == 0, "\(create.stderr.text)")
        let token = create.stdout.text.trimmingCharacters(in: .whitespacesAndNewlines)
        let id = try #require(create.stderr.text.split(separator: " ").first { $0.hasPrefix("tok_") }.map(String.init))
        return (token, id)
    }

    /// The JSON object the admin API answers to `GET path` (`/admin/v1/…`), with the admin token.
    func adminGET(_ path: String) async throws -> [String: Any] {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
        request.setValue("Bearer \(try adminToken)", forHTTPHeaderField: "Authorization")
        let (data, response) = try await URLSession.shared.data(for: request)
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        guard status == 200, let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw TestFailure("GET \(path): \(status) \(String(decoding: data, as: UTF8.self))")
        }
        return object
    }

    func revoke(_ id: String) async throws {
        let revoke = try SwitchboardProcess.start(["token", "revoke", id], in: directory)
        #expect(try await revoke.exitStatus() == 0, "\(revoke.stderr.text)")
    }

    func stop() async {
        process.terminate()
        _ = try? await process.exitStatus()
        process.kill()
        try? FileManager.default.removeItem(at: directory)
    }
}

/// Runs `body` with a broker, stopped afterwards whatever happens.
func withBroker<T>(
    open: String = "t.>", retain: String? = nil, arguments: [String] = [], environment: [String: String] = [:],
    _ body: (ServedBroker) async throws -> T
) async throws -> T {
    let broker = try await ServedBroker(open: open, retain: retain, arguments: arguments, environment: environment)
    do {
        let result = try await body(broker)
        await broker.stop()
        return result
    } catch {
        await broker.stop()
        throw error
    }
}

/// Client options for tests: quick reconnects, so a test does not wait out real backoff.
func testOptions(deflate: Bool = true) -> SwitchboardClient.Options {
    var options = SwitchboardClient.Options()
    options.reconnect = .init(initialDelay: .milliseconds(20), maxDelay: .milliseconds(200))
    if !deflate { options.webSocket.perMessageDeflate = nil }
    return options
}

extension Subscription.AsyncIterator {
    /// The next event; the subscription must not end. (Tests bound their whole body with
    /// `withTimeout`, so a missing event fails the test.)
    mutating func nextEvent() async throws -> SubscriptionEvent {
        guard let event = try await next() else { throw TestFailure("the subscription ended") }
        return event
    }

    /// The next event, which must be a message.
    mutating func nextMessage() async throws -> Message {
        let event = try await nextEvent()
        guard case .message(let message) = event else { throw TestFailure("expected a message, got \(event)") }
        return message
    }
}

/// Waits until `client.states` reports a state `matching` holds for.
func waitForState(
    _ client: SwitchboardClient, _ what: String, _ matching: @escaping @Sendable (ConnectionState) -> Bool
) async throws -> ConnectionState {
    try await withTimeout(what) {
        for await state in client.states where matching(state) { return state }
        throw TestFailure("\(what): the states ended")
    }
}
