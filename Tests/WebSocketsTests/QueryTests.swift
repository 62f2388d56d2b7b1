import AsyncTestSupport
import TestPeers
import Testing
import WebSocketCore
import WebSockets

/// The query of an upgrade request as `verifyClient` reads it, from raw requests on a real
/// socket: every target parses by `URLQuery`'s rules, none can take the server down.
@Suite(.timeLimit(.minutes(1))) struct QueryTests {
    /// Sends `GET target` and returns the body of the 403 the hook answers with: the query as
    /// `request.query` and `URLQuery` saw it.
    func queryAsSeen(target: String, port: Int) async throws -> String {
        let peer = try await RawPeer.connect(port: port)
        try await peer.send(string: RawPeer.upgradeRequest(path: target))
        let response = try await peer.readResponse()
        #expect(response.status == 403, "\(response.head)")
        return String(response.body.dropLast())
    }

    static func describe(_ request: UpgradeRequest) -> String {
        let items = URLQuery(target: request.target).items.map { "[\($0.name)]=[\($0.value)]" }
        let dictionary = request.query.sorted { $0.key < $1.key }.map { "[\($0.key)]=[\($0.value)]" }
        return items.joined(separator: " ") + " | " + dictionary.joined(separator: " ")
    }

    @Test func emptyNameDoesNotTrap() async throws {
        try await withServer({
            $0.verifyClient = { request in
                request.query["ok"] == "1" ? .accept() : .reject(status: 403, body: "query \(request.query.count)")
            }
        }) { _, port in
            for target in ["/?=", "/?=x", "/?&=&", "/?a=1&=2"] {
                let body = try await queryAsSeen(target: target, port: port)
                #expect(body.hasPrefix("query "), "\(target): \(body)")
            }
            // Still serving.
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/?=&ok=1")
            ws.terminate()
        }
    }

    @Test func rulesOverTheWire() async throws {
        try await withServer({
            $0.verifyClient = { request in .reject(status: 403, body: QueryTests.describe(request)) }
        }) { _, port in
            let cases: [(String, String)] = [
                ("/", " | "),
                ("/?", " | "),
                ("/?=", "[]=[] | []=[]"),
                ("/?=x&&a=1&", "[]=[x] [a]=[1] | []=[x] [a]=[1]"),
                ("/?a=1&a=2", "[a]=[1] [a]=[2] | [a]=[1]"),
                ("/?flag&x=a=b", "[flag]=[] [x]=[a=b] | [flag]=[] [x]=[a=b]"),
                ("/?a+b=c%20d%2B", "[a b]=[c d+] | [a b]=[c d+]"),
                ("/?x=%zz%4&y=%", "[x]=[%zz%4] [y]=[%] | [x]=[%zz%4] [y]=[%]"),
                ("/?x=%C3%A9", "[x]=[é] | [x]=[é]"),
                ("/?x=%FF%C3", "[x]=[\u{FFFD}\u{FFFD}] | [x]=[\u{FFFD}\u{FFFD}]"),
                ("/p?x=%3F%26%3D", "[x]=[?&=] | [x]=[?&=]"),
            ]
            for (target, expected) in cases {
                let seen = try await queryAsSeen(target: target, port: port)
                #expect(seen == expected, "\(target)")
            }
        }
    }
}
