import AsyncTestSupport
import NIOCore
import TestPeers
import Testing
import WebSocketCore
import WebSockets

/// The opening handshake: hooks, bad requests, limits, subprotocols.
@Suite(.timeLimit(.minutes(1))) struct HandshakeTests {
    @Test func verifyClientRejectsWith401AndBody() async throws {
        try await withServer({
            $0.verifyClient = { request in
                if request.headers.first("Authorization") == "Bearer good" { return .accept() }
                var headers = HTTPFields()
                headers.add(name: "WWW-Authenticate", value: "Bearer")
                return .reject(status: 401, body: "token required", headers: headers)
            }
        }) { _, port in
            do {
                _ = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
                Issue.record("connect should fail")
            } catch ConnectError.unexpectedResponse(let status, let headers, let body) {
                #expect(status == 401)
                #expect(body.hasPrefix("token required"))
                #expect(headers.first("WWW-Authenticate") == "Bearer")
            }
            var options = ClientOptions()
            options.headers.add(name: "Authorization", value: "Bearer good")
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/", options: options)
            #expect(ws.readyState == .open)
            try await withTimeout("close") { try await ws.close() }
        }
    }

    @Test func verifyClientSeesTheRequest() async throws {
        let seen = Waiter<UpgradeRequest>("request")
        try await withServer({
            $0.verifyClient = { request in
                seen.fulfill(request)
                return .accept()
            }
        }) { _, port in
            var options = ClientOptions()
            options.headers.add(name: "X-Forwarded-For", value: "203.0.113.7, 10.0.0.1")
            options.origin = "https://example.com"
            let ws = try await WebSocket.connect(to: "ws://alice:s%40cret@127.0.0.1:\(port)/room?id=42&name=a+b", options: options)
            let request = try await seen.value()
            #expect(request.path == "/room")
            #expect(request.query == ["id": "42", "name": "a b"])
            #expect(request.origin == "https://example.com")
            #expect(request.clientAddress == "127.0.0.1")
            #expect(request.remoteAddress?.ipAddress == "127.0.0.1")
            // user:password from the URL become basic auth ("alice:s@cret").
            #expect(request.headers.first("Authorization") == "Basic YWxpY2U6c0BjcmV0")
            try await withTimeout("close") { try await ws.close() }
        }
    }

    /// `clientAddress` believes `X-Forwarded-For` only when the socket's peer is a trusted
    /// proxy, and then takes the last hop that is not one (the entries before it are whatever
    /// the client sent); from any other peer the header is ignored.
    @Test(arguments: [
        (["127.0.0.1", "10.0.0.2"], "198.51.100.1, 203.0.113.7, 10.0.0.2", "203.0.113.7"),
        (["127.0.0.1", "10.0.0.2"], "10.0.0.2", "10.0.0.2"),
        (["127.0.0.1"], "", "127.0.0.1"),
        (["10.0.0.2"], "203.0.113.7", "127.0.0.1"),
        ([], "203.0.113.7", "127.0.0.1"),
    ])
    func clientAddressBelievesOnlyTrustedProxies(trusted: [String], forwardedFor: String, expected: String)
        async throws
    {
        let seen = Waiter<String?>("client address")
        let verified = Waiter<String?>("client address in verifyClient")
        try await withServer({
            $0.trustedProxies = trusted
            $0.verifyClient = { request in
                verified.fulfill(request.clientAddress)
                return .accept()
            }
        }, onConnection: { ws in seen.fulfill(ws.request?.clientAddress) }) { _, port in
            var options = ClientOptions()
            if !forwardedFor.isEmpty { options.headers.add(name: "X-Forwarded-For", value: forwardedFor) }
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/", options: options)
            #expect(try await verified.value() == expected)
            #expect(try await seen.value() == expected)
            try await withTimeout("close") { try await ws.close() }
        }
    }

    /// `keptRequestHeaders` trims what `ws.request` keeps, not what `verifyClient` sees.
    @Test func keptRequestHeadersAreAllTheConnectionKeeps() async throws {
        let verified = Waiter<HTTPFields>("headers in verifyClient")
        let kept = Waiter<UpgradeRequest?>("the connection's request")
        try await withServer({
            $0.keptRequestHeaders = ["x-kept"]
            $0.verifyClient = { request in
                verified.fulfill(request.headers)
                return .accept()
            }
        }, onConnection: { ws in kept.fulfill(ws.request) }) { _, port in
            var options = ClientOptions()
            options.headers.add(name: "X-Kept", value: "one")
            options.headers.add(name: "X-Dropped", value: "two")
            options.origin = "https://example.com"
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/room?id=1", options: options)
            let seen = try await verified.value()
            #expect(seen.first("X-Kept") == "one")
            #expect(seen.first("X-Dropped") == "two")
            let request = try #require(try await kept.value())
            #expect(request.headers.map(\.name) == ["X-Kept"])
            #expect(request.headers.first("x-kept") == "one")
            #expect(request.path == "/room")
            #expect(request.query == ["id": "1"])
            #expect(request.origin == "https://example.com")
            try await withTimeout("close") { try await ws.close() }
        }
    }

    enum UserKey: ConnectionUserInfoKey { typealias Value = String }
    enum LevelKey: ConnectionUserInfoKey { typealias Value = Int }
    enum UnsetKey: ConnectionUserInfoKey { typealias Value = String }

    @Test func verifyClientAttachesTypedUserInfo() async throws {
        let seen = Waiter<(String?, Int?, String?)>("the connection's user info")
        try await withServer({
            $0.verifyClient = { request in
                var userInfo = ConnectionUserInfo(UserKey.self, request.path)
                if request.path == "/two" { userInfo[LevelKey.self] = 2 }
                return .accept(userInfo: userInfo)
            }
        }, onConnection: { ws in
            seen.fulfill((ws.userInfo[UserKey.self], ws.userInfo[LevelKey.self], ws.userInfo[UnsetKey.self]))
            ws.onMessage { _ in }
        }) { _, port in
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/two")
            let (user, level, unset) = try await seen.value()
            #expect(user == "/two" && level == 2 && unset == nil)
            try await withTimeout("close") { try await ws.close() }
        }
        var userInfo = ConnectionUserInfo(UserKey.self, "alice")
        #expect(userInfo[LevelKey.self] == nil)
        userInfo[LevelKey.self] = 3
        userInfo[UserKey.self] = nil
        #expect(userInfo[UserKey.self] == nil && userInfo[LevelKey.self] == 3)
        userInfo[LevelKey.self] = nil
        #expect(userInfo[LevelKey.self] == nil)
    }

    @Test func missingKeyIs400WithOneLineReason() async throws {
        try await withServer { _, port in
            let peer = try await RawPeer.connect(port: port)
            try await peer.send(string: "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + "Sec-WebSocket-Version: 13\r\n\r\n")
            let response = try await peer.readResponse()
            #expect(response.status == 400)
            #expect(response.body.hasSuffix("\n"))
            #expect(response.body.dropLast().split(separator: "\n").count == 1)
            #expect(response.body.contains("Sec-WebSocket-Key"), "\(response.body)")
        }
    }

    @Test func version7Is426ListingSupportedVersions() async throws {
        try await withServer { _, port in
            let peer = try await RawPeer.connect(port: port)
            try await peer.send(string: RawPeer.upgradeRequest().replacingVersion("7"))
            let response = try await peer.readResponse()
            #expect(response.status == 426)
            #expect(response.head.contains("Sec-WebSocket-Version: 13, 8\r\n"), "\(response.head)")
        }
    }

    @Test func version8IsAccepted() async throws {
        try await withServer { _, port in
            var options = ClientOptions()
            options.version = .v8
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/", options: options)
            let inbox = Inbox<WebSocketMessage>()
            ws.onMessage { inbox.put($0) }
            try await ws.send(text: "v8")
            #expect(try await inbox.next() == .text("v8"))
            try await withTimeout("close") { try await ws.close() }
        }
    }

    @Test func postIs405() async throws {
        try await withServer { _, port in
            let peer = try await RawPeer.connect(port: port)
            try await peer.send(string: RawPeer.upgradeRequest().replacingOccurrences("GET ", "POST "))
            #expect(try await peer.readResponse().status == 405)
        }
    }

    @Test func plainGetWithoutUpgradeIs4xx() async throws {
        try await withServer { _, port in
            let peer = try await RawPeer.connect(port: port)
            try await peer.send(string: "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            let response = try await peer.readResponse()
            #expect((400..<500).contains(response.status), "\(response)")
        }
    }

    @Test func malformedRequestIs400() async throws {
        try await withServer { _, port in
            let peer = try await RawPeer.connect(port: port)
            try await peer.send(string: "this is not http\r\n\r\n")
            #expect(try await peer.readResponse().status == 400)
        }
    }

    @Test func wrongPathIs404() async throws {
        try await withServer({ $0.path = "/ws" }) { _, port in
            let peer = try await RawPeer.connect(port: port)
            try await peer.send(string: RawPeer.upgradeRequest(path: "/other"))
            #expect(try await peer.readResponse().status == 404)
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/ws?x=1")
            #expect(ws.handshake.path == "/ws")
            try await withTimeout("close") { try await ws.close() }
        }
    }

    @Test func silentClientDroppedAfterHandshakeTimeout() async throws {
        try await withServer({ $0.handshakeTimeout = .milliseconds(200) }) { server, port in
            let start = ContinuousClock.now  // before connecting: the server's timer starts later
            let peer = try await RawPeer.connect(port: port)
            let response = try await peer.readResponse()
            #expect(response.status == 408)
            #expect(ContinuousClock.now - start >= .milliseconds(190))
        }
    }

    @Test func slowVerifyClientLosesToHandshakeTimeoutAndIsCancelled() async throws {
        let ended = Waiter<Bool>("verifyClient to end")
        try await withServer({
            $0.handshakeTimeout = .milliseconds(200)
            $0.verifyClient = { _ in
                // Sleeps until cancelled, then accepts: too late.
                try? await Task.sleep(for: testTimeout)
                ended.fulfill(Task.isCancelled)
                return .accept()
            }
        }) { _, port in
            let peer = try await RawPeer.connect(port: port)
            try await peer.send(string: RawPeer.upgradeRequest())
            let head = try await peer.readHead()
            #expect(head.hasPrefix("HTTP/1.1 408"), "\(head)")
            #expect(try await ended.value(), "the hook is cancelled when the handshake times out")
            // Nothing after the 408 (no late 101), then the connection closes.
            let rest = try await peer.readToEnd()
            #expect(!String(decoding: rest, as: UTF8.self).contains("HTTP/1.1"))
        }
    }

    @Test func clientKeepsFramesThatCameWithThe101() async throws {
        _ = try await withFakeServer(respond: { head in
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + "Sec-WebSocket-Accept: \(Handshake.acceptValue(forKey: requestKey(head)))\r\n\r\n"
        }, then: [0x81, 0x05] + Array("hello".utf8) + [0x88, 0x02, 0x03, 0xE8]) { port in
            var options = ClientOptions()
            options.connection.closeTimeout = .milliseconds(200)
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/", options: options)
            let texts = try await withTimeout("messages") {
                var texts: [String] = []
                for try await message in ws.messages { texts.append(message.text) }
                return texts
            }
            #expect(texts == ["hello"])
        }
    }

    @Test func oversizedHeadIs431() async throws {
        try await withServer({ $0.maxHandshakeSize = 2048 }) { _, port in
            let peer = try await RawPeer.connect(port: port)
            let padding = "X-Padding: \(String(repeating: "p", count: 4000))\r\n"
            try await peer.send(string: RawPeer.upgradeRequest(extraHeaders: padding))
            let response = try await peer.readResponse()
            #expect(response.status == 431)
            // One answer only, even though the head kept coming.
            #expect(!response.body.contains("HTTP/1.1"))
        }
    }

    @Test func oversizedHeadInManyPiecesGetsOneAnswer() async throws {
        try await withServer({ $0.maxHandshakeSize = 1024 }) { _, port in
            let peer = try await RawPeer.connect(port: port)
            try await peer.send(string: "GET / HTTP/1.1\r\n")
            // Separate writes, so the server sees several reads past its limit.
            for _ in 0..<8 {
                try? await peer.send(string: "X-Padding: \(String(repeating: "p", count: 400))\r\n")
            }
            let response = try await peer.readResponse()
            #expect(response.status == 431)
            #expect(!response.body.contains("HTTP/1.1"), "\(response.body)")
        }
    }

    @Test func subprotocolSelection() async throws {
        try await withServer({ $0.protocols = ["chat.v2", "chat.v1"] }) { _, port in
            var options = ClientOptions()
            options.protocols = ["chat.v1", "chat.v2"]
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/", options: options)
            // The client's preference wins among what the server speaks.
            #expect(ws.handshake.subprotocol == "chat.v1")
            try await withTimeout("close") { try await ws.close() }

            options.protocols = ["mqtt"]
            let other = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/", options: options)
            #expect(other.handshake.subprotocol == nil)
            try await withTimeout("close") { try await other.close() }
        }
    }

    @Test func serverSeesSelectedSubprotocol() async throws {
        let serverHandshake = Waiter<HandshakeInfo>("server handshake")
        try await withServer({ $0.protocols = ["a", "b"] }, onConnection: { ws in
            serverHandshake.fulfill(ws.handshake)
            ws.onMessage { _ in }
        }) { _, port in
            var options = ClientOptions()
            options.protocols = ["b"]
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/", options: options)
            #expect(ws.handshake.subprotocol == "b")
            #expect(try await serverHandshake.value().subprotocol == "b")
            try await withTimeout("close") { try await ws.close() }
        }
    }

    @Test func clientRejectsUnrequestedSubprotocol() async throws {
        _ = try await withFakeServer(respond: { head in
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + "Sec-WebSocket-Accept: \(Handshake.acceptValue(forKey: requestKey(head)))\r\n"
                + "Sec-WebSocket-Protocol: evil\r\n\r\n"
        }) { port in
            var clientOptions = ClientOptions()
            clientOptions.protocols = ["good"]
            let options = clientOptions
            await #expect {
                _ = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/", options: options)
            } throws: { error in
                guard case ConnectError.invalidResponse(let rule) = error else { return false }
                return rule.contains("Sec-WebSocket-Protocol") || rule.contains("subprotocol")
            }
        }
    }

    @Test func clientRejectsBadAccept() async throws {
        _ = try await withFakeServer(respond: { _ in
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + "Sec-WebSocket-Accept: bm90IHRoZSByaWdodCB2YWx1ZQ==\r\n\r\n"
        }) { port in
            await #expect {
                _ = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
            } throws: { error in
                guard case ConnectError.invalidResponse = error else { return false }
                return true
            }
        }
    }

    @Test func clientHandshakeTimeout() async throws {
        _ = try await withFakeServer(respond: { _ in "" }) { port in
            var clientOptions = ClientOptions()
            clientOptions.handshakeTimeout = .milliseconds(200)
            let options = clientOptions
            await #expect {
                _ = try await withTimeout("connect") {
                    try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/", options: options)
                }
            } throws: { error in
                guard case ConnectError.timedOut = error else { return false }
                return true
            }
        }
    }

    @Test func framesSentWithTheRequestAreKept() async throws {
        try await withServer { _, port in
            let peer = try await RawPeer.connect(port: port)
            try await peer.send(Array(RawPeer.upgradeRequest().utf8) + clientFrame(opcode: 0x1, Array("early".utf8)))
            let head = try await peer.readHead()
            #expect(head.hasPrefix("HTTP/1.1 101"))
            let echo = try await peer.readFrame()
            #expect(echo.opcode == 0x1 && echo.text == "early")
            try await peer.send(clientFrame(opcode: 0x8, closePayload(1000)))
            try await peer.expectCloseFrame(1000)
        }
    }
}

extension String {
    func replacingOccurrences(_ target: String, _ replacement: String) -> String {
        var result = ""
        var rest = self[...]
        while let range = rest.firstRange(of: target) {
            result += rest[..<range.lowerBound] + replacement
            rest = rest[range.upperBound...]
        }
        return result + rest
    }

    func replacingVersion(_ version: String) -> String {
        replacingOccurrences("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: \(version)")
    }
}

@Suite struct StoredRequestTests {
    /// The server keeps the upgrade request folded into a few strings; reading it back
    /// gives the same target, headers (in order, with empty values) and origin.
    @Test func serverSideRequestRoundTrips() async throws {
        let seen = Waiter<UpgradeRequest>("server-side request")
        try await withServer(onConnection: { ws in
            if let request = ws.request { seen.fulfill(request) }
            ws.onMessage { _ in }
        }) { _, port in
            var options = ClientOptions()
            options.origin = "https://example.test"
            options.headers = ["X-Empty": "", "X-Forwarded-For": "203.0.113.9, 10.0.0.1", "X-Colon": "a: b"]
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/room?x=1", options: options)
            let request = try await seen.value()
            #expect(request.target == "/room?x=1")
            #expect(request.origin == "https://example.test")
            #expect(request.headers.first("X-Empty") == "")
            #expect(request.headers.first("X-Colon") == "a: b")
            #expect(request.clientAddress == "127.0.0.1")
            #expect(request.remoteAddress?.port != nil)
            try await withTimeout("close") { try await ws.close() }
        }
    }
}
