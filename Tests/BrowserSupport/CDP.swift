import AsyncTestSupport
import BrokerProcess
import Foundation
import NIOConcurrencyHelpers
import WebSockets

/// A JSON value from the DevTools protocol (Foundation objects: only read, never shared mutably).
public struct CDPValue: @unchecked Sendable {
    public let value: Any?
    public init(_ value: Any?) { self.value = value }
    public var string: String? { value as? String }
    public var int: Int? { (value as? NSNumber)?.intValue }
    public var bool: Bool? { (value as? NSNumber)?.boolValue }
    public var array: [Any]? { value as? [Any] }
    public var object: [String: Any]? { value as? [String: Any] }
}

/// The `result` of a DevTools command.
public struct CDPResult: @unchecked Sendable {
    public let object: [String: Any]

    public func string(_ key: String) throws -> String {
        guard let value = object[key] as? String else { throw TestFailure("DevTools answer without \(key): \(object)") }
        return value
    }
}

/// A Chrome DevTools Protocol connection over our own WebSocket client: commands are
/// matched to their answers by id; events are handed to whoever waits for them.
public final class CDPConnection: Sendable {
    private struct State {
        var nextID = 1
        var pending: [Int: Waiter<CDPResult>] = [:]
        var eventWaiters: [(method: String, session: String?, waiter: Waiter<CDPResult>)] = []
        var ended: (any Error)?
    }

    private let socket: WebSocket
    private let state = NIOLockedValueBox(State())

    public static func connect(to url: String) async throws -> CDPConnection {
        var options = ClientOptions()
        options.perMessageDeflate = nil
        let socket = try await WebSocket.connect(to: url, options: options)
        let connection = CDPConnection(socket: socket)
        Task { await connection.read() }
        return connection
    }

    private init(socket: WebSocket) {
        self.socket = socket
    }

    private func read() async {
        do {
            for try await message in socket.messages {
                guard let object = try? JSONSerialization.jsonObject(with: Data(message.text.utf8)) as? [String: Any]
                else { continue }
                dispatch(object)
            }
            end(TestFailure("the DevTools connection closed"))
        } catch {
            end(error)
        }
    }

    private func dispatch(_ object: [String: Any]) {
        if let id = object["id"] as? Int {
            guard let waiter = state.withLockedValue({ $0.pending.removeValue(forKey: id) }) else { return }
            if let error = object["error"] as? [String: Any] {
                waiter.fail(TestFailure("DevTools error: \(error["message"] ?? error)"))
            } else {
                waiter.fulfill(CDPResult(object: object["result"] as? [String: Any] ?? [:]))
            }
        } else if let method = object["method"] as? String {
            let session = object["sessionId"] as? String
            let waiter = state.withLockedValue { state -> Waiter<CDPResult>? in
                guard let index = state.eventWaiters.firstIndex(where: { $0.method == method && $0.session == session }) else {
                    return nil
                }
                return state.eventWaiters.remove(at: index).waiter
            }
            waiter?.fulfill(CDPResult(object: object["params"] as? [String: Any] ?? [:]))
        }
    }

    private func end(_ error: any Error) {
        let waiters = state.withLockedValue { state in
            state.ended = error
            defer {
                state.pending = [:]
                state.eventWaiters = []
            }
            return Array(state.pending.values) + state.eventWaiters.map(\.waiter)
        }
        for waiter in waiters { waiter.fail(error) }
    }

    /// Sends a command and returns its result; a DevTools error is thrown.
    public func send(_ method: String, _ parameters: [String: any Sendable] = [:], session: String? = nil) async throws
        -> CDPResult
    {
        let waiter = Waiter<CDPResult>("DevTools to answer \(method)")
        let id = try state.withLockedValue { state in
            if let ended = state.ended { throw ended }
            defer { state.nextID += 1 }
            state.pending[state.nextID] = waiter
            return state.nextID
        }
        var command: [String: Any] = ["id": id, "method": method, "params": parameters]
        if let session { command["sessionId"] = session }
        let data = try JSONSerialization.data(withJSONObject: command)
        try await socket.send(text: String(decoding: data, as: UTF8.self))
        return try await waiter.value()
    }

    /// A waiter for the next event `method` of `session`, registered now (before the command
    /// that causes it is sent).
    public func expectEvent(_ method: String, session: String?) -> Waiter<CDPResult> {
        let waiter = Waiter<CDPResult>("the DevTools event \(method)")
        state.withLockedValue { $0.eventWaiters.append((method, session, waiter)) }
        return waiter
    }

    public func close() async {
        try? await socket.close()
    }
}
