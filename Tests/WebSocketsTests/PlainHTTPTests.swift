import AsyncTestSupport
import NIOCore
import TestPeers
import Testing
import WebSockets
import WebSocketCore

/// `Options.plainHTTP`: requests without `Upgrade` on the server's port go to the handler,
/// bounded like a handshake; upgrades are served as without it.
@Suite(.timeLimit(.minutes(1))) struct PlainHTTPTests {
    static func echo(_ options: inout WebSocketServer.Options) {
        options.plainHTTP = { request in
            var headers = HTTPFields()
            headers.add(name: "X-Method", value: request.method)
            return PlainHTTPResponse(
                status: 201, headers: headers,
                body: ByteBuffer(string: "\(request.path) \(request.query["q"] ?? "-") \(request.body.readableBytes)"))
        }
        options.maxPlainHTTPBody = 1000
    }

    func exchange(_ port: Int, _ request: String) async throws -> (status: Int, head: String, body: String) {
        let peer = try await RawPeer.connect(port: port)
        defer { peer.close() }
        try await peer.send(string: request)
        return try await peer.readResponse()
    }

    @Test func aPlainRequestGetsTheHandlersAnswerAndUpgradesStillWork() async throws {
        try await withServer(Self.echo) { _, port in
            let body = String(repeating: "b", count: 700)
            let response = try await exchange(
                port, "POST /admin/x?q=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 700\r\n\r\n\(body)")
            #expect(response.status == 201 && response.body == "/admin/x 1 700", "\(response)")
            #expect(response.head.contains("X-Method: POST") && response.head.contains("Connection: close"))
            let ws = try await RawPeer.upgraded(port: port)
            try await ws.send(clientFrame(opcode: 0x1, Array("hi".utf8)))
            #expect(try await ws.readFrame().text == "hi")
            ws.close()
        }
    }

    @Test func aBodyOverTheLimitIs413AndAHeadOverTheHandshakeSizeIs431() async throws {
        try await withServer({ Self.echo(&$0); $0.maxHandshakeSize = 512 }) { _, port in
            let declared = try await exchange(port, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5000\r\n\r\n")
            #expect(declared.status == 413, "\(declared)")
            let chunked = try await exchange(
                port, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n7d0\r\n"
                    + String(repeating: "c", count: 2000) + "\r\n0\r\n\r\n")
            #expect(chunked.status == 413, "\(chunked)")
            let head = try await exchange(port, "GET / HTTP/1.1\r\nHost: h\r\nX-Pad: \(String(repeating: "p", count: 600))\r\n\r\n")
            #expect(head.status == 431, "\(head)")
            // An upgrade's bytes are bounded by the handshake size again, body allowance or not.
            let upgrade = try await exchange(
                port, RawPeer.upgradeRequest(extraHeaders: "X-Pad: \(String(repeating: "p", count: 600))\r\n"))
            #expect(upgrade.status == 431, "\(upgrade)")
        }
    }

    @Test func withoutAHandlerAPlainRequestIsRefusedAsBefore() async throws {
        try await withServer { _, port in
            let response = try await exchange(port, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            #expect(response.status == 400 || response.status == 426, "\(response)")
        }
    }
}
