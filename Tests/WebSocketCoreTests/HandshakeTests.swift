import Testing
import WebSocketCore

/// The client handshake of RFC 6455 §1.2, byte for byte.
private let rfcRequest = """
    GET /chat HTTP/1.1\r
    Host: server.example.com\r
    Upgrade: websocket\r
    Connection: Upgrade\r
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r
    Origin: http://example.com\r
    Sec-WebSocket-Protocol: chat, superchat\r
    Sec-WebSocket-Version: 13\r
    \r

    """

/// The server handshake of RFC 6455 §1.2, byte for byte.
private let rfcResponse = """
    HTTP/1.1 101 Switching Protocols\r
    Upgrade: websocket\r
    Connection: Upgrade\r
    Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r
    Sec-WebSocket-Protocol: chat\r
    \r

    """

private let rfcKey = "dGhlIHNhbXBsZSBub25jZQ=="

private func validHeaders() -> HTTPFields {
    [
        "Host": "server.example.com",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": rfcKey,
        "Sec-WebSocket-Version": "13",
    ]
}

private func with(_ changes: (inout HTTPFields) -> Void) -> HTTPFields {
    var headers = validHeaders()
    changes(&headers)
    return headers
}

private func rejection(
    method: String = "GET", version: Handshake.HTTPVersion = .http1_1, _ headers: HTTPFields
) -> HandshakeError? {
    do {
        _ = try Handshake.validateRequest(method: method, version: version, headers: headers)
        return nil
    } catch {
        return error
    }
}

private func responseRejection(
    status: Int = 101, _ headers: HTTPFields, requested: [String] = [], offered: Set<String> = []
) -> HandshakeError? {
    do {
        _ = try Handshake.validateResponse(
            status: status, headers: headers, key: rfcKey, requestedProtocols: requested, offeredExtensionNames: offered)
        return nil
    } catch {
        return error
    }
}

private func serialize(_ startLine: String, _ fields: HTTPFields) -> String {
    startLine + "\r\n" + fields.map { "\($0.name): \($0.value)\r\n" }.joined() + "\r\n"
}

@Suite struct HandshakeTests {
    // MARK: RFC examples

    @Test func rfcAcceptValue() {
        #expect(Handshake.acceptValue(forKey: rfcKey) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    }

    @Test func rfcClientRequestIsAcceptedByteForByte() throws {
        let head = try Handshake.parseRequestHead(Array(rfcRequest.utf8))
        #expect(head.method == "GET" && head.target == "/chat" && head.version == .http1_1)
        #expect(head.length == rfcRequest.utf8.count)
        let info = try Handshake.validateRequest(method: head.method, version: head.version, headers: head.headers)
        #expect(info == ClientRequestInfo(
            version: .v13, key: rfcKey, host: "server.example.com", origin: "http://example.com",
            protocols: ["chat", "superchat"], extensions: []))
    }

    @Test func rfcClientRequestIsBuiltByteForByte() {
        let fields = Handshake.makeRequestHeaders(
            host: "server.example.com", key: rfcKey, origin: "http://example.com", protocols: ["chat", "superchat"])
        #expect(serialize("GET /chat HTTP/1.1", fields) == rfcRequest)
    }

    @Test func rfcServerResponseIsBuiltByteForByte() {
        let fields = Handshake.responseHeaders(key: rfcKey, protocol: "chat")
        #expect(serialize("HTTP/1.1 101 Switching Protocols", fields) == rfcResponse)
    }

    @Test func rfcServerResponseIsAccepted() throws {
        let fields = Handshake.responseHeaders(key: rfcKey, protocol: "chat")
        let info = try Handshake.validateResponse(
            status: 101, headers: fields, key: rfcKey, requestedProtocols: ["chat", "superchat"], offeredExtensionNames: [])
        #expect(info == ServerResponseInfo(subprotocol: "chat", extensions: []))
    }

    @Test func unsupportedVersionAnswerOfSection4_4() {
        let error = rejection(with { $0.replaceOrAdd(name: "Sec-WebSocket-Version", value: "25") })
        #expect(error?.status == 426)
        #expect(error?.rule == .version)
        #expect(error?.responseHeaders == ["Sec-WebSocket-Version": "13, 8"])
        #expect(error?.description == "426: Sec-WebSocket-Version 25 is not supported (use 13 or 8)")
    }

    // MARK: keys

    @Test func makeKeyIsBase64Of16RandomBytes() {
        let a = Handshake.makeKey(), b = Handshake.makeKey()
        #expect(a.utf8.count == 24 && Crypto.base64Decode(a)?.count == 16)
        #expect(a != b)
        #expect(throws: Never.self) {
            try Handshake.validateRequest(method: "GET", version: .http1_1, headers: with { $0.replaceOrAdd(name: "Sec-WebSocket-Key", value: a) })
        }
    }

    // MARK: server: every rule on its own

    @Test func validMinimalRequest() throws {
        let info = try Handshake.validateRequest(method: "GET", version: .http1_1, headers: validHeaders())
        #expect(info.origin == nil && info.protocols.isEmpty && info.extensions.isEmpty && info.version == .v13)
        #expect(try Handshake.validateRequest(method: "GET", version: .init(major: 2, minor: 0), headers: validHeaders()).key == rfcKey)
    }

    @Test func methodMustBeGET() {
        let error = rejection(method: "POST", validHeaders())
        #expect(error == HandshakeError(rule: .method, status: 405, reason: "method must be GET, not 'POST'", responseHeaders: ["Allow": "GET"]))
        #expect(rejection(method: "get", validHeaders())?.rule == .method)
    }

    @Test func httpVersionMustBe1_1OrLater() {
        #expect(rejection(version: .http1_0, validHeaders())
            == HandshakeError(rule: .httpVersion, status: 400, reason: "HTTP version must be 1.1 or later, not HTTP/1.0"))
        #expect(rejection(version: .init(major: 0, minor: 9), validHeaders())?.rule == .httpVersion)
    }

    @Test(arguments: [
        (HTTPFields.Field?.none, "Host must appear exactly once"),
        (HTTPFields.Field(name: "Host", value: "other.example.com"), "Host must appear exactly once"),
    ])
    func hostMustAppearOnce(extra: HTTPFields.Field?, reason: String) {
        var headers = validHeaders()
        if let extra { headers.add(name: extra.name, value: extra.value) } else { headers.remove("Host") }
        #expect(rejection(headers) == HandshakeError(rule: .host, status: 400, reason: reason))
        #expect(rejection(with { $0.replaceOrAdd(name: "Host", value: " ") })
            == HandshakeError(rule: .host, status: 400, reason: "Host must not be empty"))
    }

    @Test(arguments: [nil, "h2c", "websocket2", "websocket/13", "web socket"])
    func upgradeMustContainWebsocket(value: String?) {
        let error = rejection(with { headers in
            headers.remove("Upgrade")
            if let value { headers.add(name: "Upgrade", value: value) }
        })
        #expect(error?.rule == .upgrade)
        #expect(error?.status == 400)
        if value == "web socket" {
            #expect(error?.reason == "Upgrade: expected ',' at offset 4")
        } else {
            #expect(error?.reason == "Upgrade must contain websocket")
        }
    }

    @Test(arguments: [nil, "keep-alive", "upgraded", "close;upgrade"])
    func connectionMustContainUpgrade(value: String?) {
        let error = rejection(with { headers in
            headers.remove("Connection")
            if let value { headers.add(name: "Connection", value: value) }
        })
        #expect(error?.rule == .connection)
        #expect(error?.status == 400)
        #expect(error?.reason == (value == "close;upgrade" ? "Connection: expected ',' at offset 5" : "Connection must contain upgrade"))
    }

    @Test func missingVersionIs426() {
        let error = rejection(with { $0.remove("Sec-WebSocket-Version") })
        #expect(error == HandshakeError(
            rule: .version, status: 426, reason: "Sec-WebSocket-Version is missing (use 13 or 8)",
            responseHeaders: ["Sec-WebSocket-Version": "13, 8"]))
    }

    @Test(arguments: ["0", "7", "12", "14", "255"])
    func unsupportedVersionIs426(value: String) {
        let error = rejection(with { $0.replaceOrAdd(name: "Sec-WebSocket-Version", value: value) })
        #expect(error?.status == 426)
        #expect(error?.rule == .version)
        #expect(error?.reason == "Sec-WebSocket-Version \(value) is not supported (use 13 or 8)")
        #expect(error?.responseHeaders.first("sec-websocket-version") == "13, 8")
    }

    @Test(arguments: ["", "013", "256", "1000", "13, 8", "+13", "-1", "13a", "thirteen", "١٣"])
    func malformedVersionIs400(value: String) {
        #expect(rejection(with { $0.replaceOrAdd(name: "Sec-WebSocket-Version", value: value) })
            == HandshakeError(rule: .version, status: 400, reason: "Sec-WebSocket-Version must be a number from 0 to 255"))
    }

    @Test func repeatedVersionIs400() {
        #expect(rejection(with { $0.add(name: "Sec-WebSocket-Version", value: "13") })
            == HandshakeError(rule: .version, status: 400, reason: "Sec-WebSocket-Version must appear exactly once"))
    }

    @Test func keyMustAppearOnce() {
        let once = HandshakeError(rule: .key, status: 400, reason: "Sec-WebSocket-Key must appear exactly once")
        #expect(rejection(with { $0.remove("Sec-WebSocket-Key") }) == once)
        #expect(rejection(with { $0.add(name: "Sec-WebSocket-Key", value: rfcKey) }) == once)
    }

    @Test(arguments: [
        "",
        "dGhlIHNhbXBsZSBub25jZQ",  // no padding
        "dGhlIHNhbXBsZSBub25j",  // 15 bytes
        "AAAAAAAAAAAAAAAAAAAAAAA=",  // 17 bytes
        "dGhlIHNhbXBsZSBub25jZR==",  // non-canonical trailing bits
        "dGhlIHNhbXBsZSBub25jZQ==AAAA",
        "dGhlIHNhbXBsZSBub25jZQ-=",
        "!GhlIHNhbXBsZSBub25jZQ==",
        "the sample nonce",
    ])
    func keyMustBeBase64Of16Bytes(key: String) {
        #expect(rejection(with { $0.replaceOrAdd(name: "Sec-WebSocket-Key", value: key) })
            == HandshakeError(rule: .key, status: 400, reason: "Sec-WebSocket-Key must be base64 of 16 bytes"))
    }

    @Test func originIsCapturedPerVersion() throws {
        let v13 = try Handshake.validateRequest(method: "GET", version: .http1_1, headers: with {
            $0.add(name: "origin", value: "https://a.example")
            $0.add(name: "Sec-WebSocket-Origin", value: "https://b.example")
        })
        #expect(v13.origin == "https://a.example")
        let v8 = try Handshake.validateRequest(method: "GET", version: .http1_1, headers: with {
            $0.replaceOrAdd(name: "Sec-WebSocket-Version", value: "8")
            $0.add(name: "Origin", value: "https://a.example")
            $0.add(name: "SEC-WEBSOCKET-ORIGIN", value: "https://b.example")
        })
        #expect(v8.version == .v8)
        #expect(v8.origin == "https://b.example")
    }

    @Test func originMayAppearAtMostOnce() {
        #expect(rejection(with {
            $0.add(name: "Origin", value: "https://a.example")
            $0.add(name: "Origin", value: "https://evil.example")
        }) == HandshakeError(rule: .origin, status: 400, reason: "Origin must appear at most once"))
    }

    @Test func subprotocolsAreParsedAcrossLines() throws {
        let info = try Handshake.validateRequest(method: "GET", version: .http1_1, headers: with {
            $0.add(name: "Sec-WebSocket-Protocol", value: "chat, , superchat")
            $0.add(name: "sec-websocket-protocol", value: "mqtt")
        })
        #expect(info.protocols == ["chat", "superchat", "mqtt"])
    }

    @Test func subprotocolErrors() {
        #expect(rejection(with { $0.add(name: "Sec-WebSocket-Protocol", value: "chat, chat") })
            == .init(rule: .subprotocols, status: 400, reason: "Sec-WebSocket-Protocol: duplicate value 'chat' at offset 6"))
        #expect(rejection(with { $0.add(name: "Sec-WebSocket-Protocol", value: "chat superchat") })
            == .init(rule: .subprotocols, status: 400, reason: "Sec-WebSocket-Protocol: expected ',' at offset 5"))
    }

    @Test func extensionsAreParsed() throws {
        let info = try Handshake.validateRequest(method: "GET", version: .http1_1, headers: with {
            $0.add(name: "Sec-WebSocket-Extensions", value: "permessage-deflate; client_max_window_bits")
            $0.add(name: "Sec-WebSocket-Extensions", value: "permessage-deflate")
        })
        #expect(info.extensions == [
            ExtensionOffer(name: "permessage-deflate", parameters: [.init("client_max_window_bits")]),
            ExtensionOffer(name: "permessage-deflate"),
        ])
    }

    @Test func extensionGrammarErrorIs400() {
        let error = rejection(with { $0.add(name: "Sec-WebSocket-Extensions", value: "permessage-deflate; =10") })
        #expect(error == .init(rule: .extensions, status: 400, reason: "Sec-WebSocket-Extensions: expected token at offset 20"))
        #expect(error?.description == "400: Sec-WebSocket-Extensions: expected token at offset 20")
    }

    @Test func headerNamesAndTokenValuesAreCaseInsensitive() throws {
        let headers: HTTPFields = [
            "HOST": "server.example.com",
            "upgrade": "WebSocket",
            "CONNECTION": "keep-alive, UPGRADE",
            "sec-websocket-key": rfcKey,
            "SEC-WEBSOCKET-VERSION": "13",
            "sEc-WeBsOcKeT-pRoToCoL": "chat",
        ]
        let info = try Handshake.validateRequest(method: "GET", version: .http1_1, headers: headers)
        #expect(info.protocols == ["chat"])
    }

    @Test func upgradeMayListOtherProtocolsAndVersions() throws {
        for value in ["websocket, h2c", "h2c, WEBSOCKET", "HTTP/2.0, websocket", ", websocket ,"] {
            #expect(throws: Never.self) {
                try Handshake.validateRequest(method: "GET", version: .http1_1, headers: with { $0.replaceOrAdd(name: "Upgrade", value: value) })
            }
        }
        // Several Upgrade and Connection lines are one list each.
        #expect(throws: Never.self) {
            try Handshake.validateRequest(method: "GET", version: .http1_1, headers: with {
                $0.replaceOrAdd(name: "Upgrade", value: "h2c")
                $0.add(name: "Upgrade", value: "websocket")
                $0.replaceOrAdd(name: "Connection", value: "keep-alive")
                $0.add(name: "Connection", value: "Upgrade")
            })
        }
    }

    @Test func serverResponseWithExtensions() {
        let fields = Handshake.responseHeaders(
            key: rfcKey,
            extensions: [ExtensionOffer(name: "permessage-deflate", parameters: [.init("server_no_context_takeover")])])
        #expect(fields == [
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Accept": "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
            "Sec-WebSocket-Extensions": "permessage-deflate; server_no_context_takeover",
        ])
    }

    // MARK: client side

    @Test func clientRequestVersion8AndExtras() {
        let fields = Handshake.makeRequestHeaders(
            host: "example.com:8080", key: rfcKey, origin: "http://example.com",
            extensions: [ExtensionOffer(name: "permessage-deflate", parameters: [.init("client_max_window_bits")])],
            version: .v8,
            extra: ["host": "proxy.example", "Authorization": "Bearer t", "Upgrade": "h2c", "sec-websocket-key": "x"])
        #expect(fields == [
            "Host": "proxy.example",
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": rfcKey,
            "Sec-WebSocket-Origin": "http://example.com",
            "Sec-WebSocket-Version": "8",
            "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits",
            "Authorization": "Bearer t",
        ])
    }

    @Test func clientRequestRoundTripsThroughServerValidation() throws {
        let key = Handshake.makeKey()
        let offers = [ExtensionOffer(name: "permessage-deflate", parameters: [.init("client_max_window_bits")])]
        let fields = Handshake.makeRequestHeaders(
            host: "h", key: key, origin: "o", protocols: ["a", "b"], extensions: offers, version: .v8)
        let info = try Handshake.validateRequest(method: "GET", version: .http1_1, headers: fields)
        #expect(info == ClientRequestInfo(version: .v8, key: key, host: "h", origin: "o", protocols: ["a", "b"], extensions: offers))
        let response = Handshake.responseHeaders(key: info.key, protocol: "b", extensions: offers)
        let accepted = try Handshake.validateResponse(
            status: 101, headers: response, key: key, requestedProtocols: ["a", "b"], offeredExtensionNames: ["permessage-deflate"])
        #expect(accepted == ServerResponseInfo(subprotocol: "b", extensions: offers))
    }

    private var goodResponse: HTTPFields { Handshake.responseHeaders(key: rfcKey) }

    @Test func responseStatusMustBe101() {
        let error = responseRejection(status: 403, goodResponse)
        #expect(error == .init(rule: .responseStatus, status: 403, reason: "server answered 403 instead of 101 Switching Protocols"))
        #expect(error?.rule.isClientSide == true)
        #expect(error?.description == "handshake response rejected: server answered 403 instead of 101 Switching Protocols")
        #expect(responseRejection(status: 200, goodResponse)?.status == 200)
    }

    @Test func responseUpgradeAndConnection() {
        var headers = goodResponse
        headers.remove("Upgrade")
        #expect(responseRejection(headers) == .init(rule: .responseUpgrade, status: 101, reason: "Upgrade must contain websocket"))
        headers = goodResponse
        headers.replaceOrAdd(name: "upgrade", value: "WebSocket")
        headers.replaceOrAdd(name: "connection", value: "UPGRADE")
        #expect(responseRejection(headers) == nil)
        headers.replaceOrAdd(name: "Connection", value: "close")
        #expect(responseRejection(headers) == .init(rule: .responseConnection, status: 101, reason: "Connection must contain upgrade"))
    }

    @Test func responseAcceptMustMatch() {
        var headers = goodResponse
        headers.replaceOrAdd(name: "Sec-WebSocket-Accept", value: Handshake.acceptValue(forKey: Handshake.makeKey()))
        #expect(responseRejection(headers) == .init(rule: .responseAccept, status: 101, reason: "Sec-WebSocket-Accept does not match the key"))
        headers.replaceOrAdd(name: "Sec-WebSocket-Accept", value: "S3PPLMBITXAQ9KYGJRZK+XOO4PM=")
        #expect(responseRejection(headers)?.reason == "Sec-WebSocket-Accept does not match the key")
        headers.remove("Sec-WebSocket-Accept")
        #expect(responseRejection(headers) == .init(rule: .responseAccept, status: 101, reason: "Sec-WebSocket-Accept must appear exactly once"))
        headers = goodResponse
        headers.add(name: "Sec-WebSocket-Accept", value: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        #expect(responseRejection(headers)?.reason == "Sec-WebSocket-Accept must appear exactly once")
    }

    @Test func responseSubprotocolRules() {
        func withProtocol(_ values: String...) -> HTTPFields {
            var headers = goodResponse
            for value in values { headers.add(name: "Sec-WebSocket-Protocol", value: value) }
            return headers
        }
        // None chosen although some were requested is allowed (RFC 6455 §4.1).
        #expect(responseRejection(goodResponse, requested: ["chat"]) == nil)
        #expect(responseRejection(withProtocol("chat"))
            == .init(rule: .responseSubprotocol, status: 101, reason: "Sec-WebSocket-Protocol 'chat' was sent but no subprotocol was requested"))
        #expect(responseRejection(withProtocol("mqtt"), requested: ["chat"])
            == .init(rule: .responseSubprotocol, status: 101, reason: "Sec-WebSocket-Protocol 'mqtt' was not requested"))
        #expect(responseRejection(withProtocol("Chat"), requested: ["chat"])?.rule == .responseSubprotocol)
        #expect(responseRejection(withProtocol("chat, superchat"), requested: ["chat", "superchat"])
            == .init(rule: .responseSubprotocol, status: 101, reason: "Sec-WebSocket-Protocol must name exactly one subprotocol"))
        #expect(responseRejection(withProtocol("chat", "chat"), requested: ["chat"])?.reason
            == "Sec-WebSocket-Protocol must name exactly one subprotocol")
        #expect(responseRejection(withProtocol("ch at"), requested: ["chat"])?.reason
            == "Sec-WebSocket-Protocol: expected ',' at offset 3")
    }

    @Test func responseExtensionRules() throws {
        func withExtensions(_ value: String) -> HTTPFields {
            var headers = goodResponse
            headers.add(name: "Sec-WebSocket-Extensions", value: value)
            return headers
        }
        let offered: Set<String> = ["permessage-deflate"]
        let info = try Handshake.validateResponse(
            status: 101, headers: withExtensions("permessage-deflate; server_max_window_bits=10"), key: rfcKey,
            requestedProtocols: [], offeredExtensionNames: offered)
        #expect(info.extensions == [ExtensionOffer(name: "permessage-deflate", parameters: [.init("server_max_window_bits", "10")])])
        #expect(responseRejection(withExtensions("x-foo"), offered: offered)
            == .init(rule: .responseExtensions, status: 101, reason: "Sec-WebSocket-Extensions 'x-foo' was not offered"))
        #expect(responseRejection(withExtensions("permessage-deflate, permessage-deflate"), offered: offered)
            == .init(rule: .responseExtensions, status: 101, reason: "Sec-WebSocket-Extensions names 'permessage-deflate' more than once"))
        #expect(responseRejection(withExtensions("permessage-deflate;"), offered: offered)
            == .init(rule: .responseExtensions, status: 101, reason: "Sec-WebSocket-Extensions: expected token at offset 19"))
    }

    // MARK: request head parser

    @Test func requestHeadTrimsValuesAndReportsLength() throws {
        let text = "GET /a?b=c HTTP/1.1\r\nHost:x\r\nX-Empty:\r\nX-Pad: \t v a l \t\r\n\r\nBODY"
        let head = try Handshake.parseRequestHead(Array(text.utf8))
        #expect(head.headers == ["Host": "x", "X-Empty": "", "X-Pad": "v a l"])
        #expect(head.target == "/a?b=c")
        #expect(head.length == text.utf8.count - 4)
    }

    @Test(arguments: [
        ("GET / HTTP/1.1\r\nHost: a\r\n", 400, "request head is incomplete: no empty line"),
        ("GET / HTTP/1.1\nHost: a\r\n\r\n", 400, "request head: expected CRLF at offset 14"),
        ("GET / HTTP/1.1\r\nHost: a\n\r\n\r\n", 400, "request head: expected CRLF at offset 23"),
        ("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", 400, "request head: expected LF after CR at offset 24"),
        ("GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n", 400, "request head: obsolete line folding at offset 25"),
        ("GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, "request head: whitespace between header field name and colon at offset 20"),
        ("GET / HTTP/1.1\r\nHo(st: a\r\n\r\n", 400, "request head: expected ':' after header field name at offset 18"),
        ("GET / HTTP/1.1\r\n: a\r\n\r\n", 400, "request head: expected header field name at offset 16"),
        ("GET / HTTP/1.1\r\nHost: a\u{0}b\r\n\r\n", 400, "request head: invalid character in header field value at offset 23"),
        ("GET / HTTP/1.1\r\nHost: a\u{7F}\r\n\r\n", 400, "request head: invalid character in header field value at offset 23"),
        ("\r\nGET / HTTP/1.1\r\n\r\n", 400, "request head: expected method at offset 0"),
        ("GET  / HTTP/1.1\r\n\r\n", 400, "request head: expected request target at offset 4"),
        ("GET / HTTP/1.1 \r\n\r\n", 400, "request head: expected CRLF at offset 14"),
        ("GET / HTTP/11\r\n\r\n", 400, "request head: expected '.' in HTTP-version at offset 12"),
        ("GET / http/1.1\r\n\r\n", 400, "request head: expected HTTP-version at offset 6"),
        ("GET / HTTP/1.x\r\n\r\n", 400, "request head: expected digit at offset 13"),
        ("GET /\u{e9} HTTP/1.1\r\n\r\n", 400, "request head: expected SP after request target at offset 5"),
    ])
    func requestHeadRejects(text: String, status: Int, reason: String) {
        #expect(throws: HandshakeError(rule: .requestHead, status: status, reason: reason)) {
            try Handshake.parseRequestHead(Array(text.utf8))
        }
    }

    @Test func requestHeadSizeLimit() throws {
        let text = "GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: 100) + "\r\n\r\n"
        #expect(throws: HandshakeError(rule: .requestHead, status: 431, reason: "request head exceeds 64 bytes")) {
            try Handshake.parseRequestHead(Array(text.utf8), maxSize: 64)
        }
        #expect(try Handshake.parseRequestHead(Array(text.utf8), maxSize: text.utf8.count).length == text.utf8.count)
    }

    @Test func requestHeadKeepsObsTextAsUTF8() throws {
        let head = try Handshake.parseRequestHead(Array("GET / HTTP/1.1\r\nX: caf\u{e9}\r\n\r\n".utf8))
        #expect(head.headers.first("x") == "caf\u{e9}")
    }
}
