import Testing
import WebSocketCore

private func grammarError(_ values: [String]) -> HeaderGrammarError? {
    do {
        _ = try ExtensionOffer.parseList(values)
        return nil
    } catch {
        return error
    }
}

@Suite struct HeaderGrammarTests {
    // MARK: tokens

    @Test func tokenBytesAreExactlyTchar() {
        let tchar = Set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".utf8)
        for byte in UInt8.min...UInt8.max {
            #expect(HeaderGrammar.isTokenByte(byte) == tchar.contains(byte), "byte \(byte)")
        }
        #expect(HeaderGrammar.isToken("permessage-deflate"))
        #expect(!HeaderGrammar.isToken(""))
        #expect(!HeaderGrammar.isToken("a b"))
        #expect(!HeaderGrammar.isToken("föo"))
    }

    // MARK: Sec-WebSocket-Extensions

    @Test func severalOffersWithParameters() throws {
        let offers = try ExtensionOffer.parseList([
            "permessage-deflate; client_max_window_bits, permessage-deflate; client_max_window_bits=10; server_no_context_takeover"
        ])
        #expect(offers == [
            ExtensionOffer(name: "permessage-deflate", parameters: [.init("client_max_window_bits")]),
            ExtensionOffer(name: "permessage-deflate", parameters: [
                .init("client_max_window_bits", "10"), .init("server_no_context_takeover"),
            ]),
        ])
    }

    @Test func quotedValuesAreUnquotedAndQuotedPairsUnescaped() throws {
        let offers = try ExtensionOffer.parseList([#"x; a="10"; b="1\0"; c="\t\o\k\e\n""#])
        #expect(offers == [ExtensionOffer(name: "x", parameters: [.init("a", "10"), .init("b", "10"), .init("c", "token")])])
    }

    @Test func whitespaceAroundEverything() throws {
        let offers = try ExtensionOffer.parseList(["  foo ;\ta = 1 ,bar;b  =\t\"2\"\t, baz  "])
        #expect(offers == [
            ExtensionOffer(name: "foo", parameters: [.init("a", "1")]),
            ExtensionOffer(name: "bar", parameters: [.init("b", "2")]),
            ExtensionOffer(name: "baz"),
        ])
    }

    @Test func emptyListElementsAreSkipped() throws {
        #expect(try ExtensionOffer.parseList([", foo,, ,\tbar,"]).map(\.name) == ["foo", "bar"])
        #expect(try ExtensionOffer.parseList([""]).isEmpty)
        #expect(try ExtensionOffer.parseList([" , ,"]).isEmpty)
        #expect(try ExtensionOffer.parseList([]).isEmpty)
    }

    @Test func severalHeaderLinesAreConcatenated() throws {
        let offers = try ExtensionOffer.parseList(["foo", "bar; x=1", ""])
        #expect(offers == [ExtensionOffer(name: "foo"), ExtensionOffer(name: "bar", parameters: [.init("x", "1")])])
    }

    @Test func errorMessageNamesHeaderRuleAndOffset() {
        #expect(grammarError(["permessage-deflate; =10"])?.description
            == "Sec-WebSocket-Extensions: expected token at offset 20")
        // Offsets count in the values joined with ", ".
        #expect(grammarError(["foo", "bar baz"]) == HeaderGrammarError(
            header: "Sec-WebSocket-Extensions", problem: "expected ',' or ';'", offset: 9))
    }

    @Test(arguments: [
        // (input, problem, offset)
        ("; a", "expected token", 0),  // missing extension name
        ("foo; ", "expected token", 5),  // missing parameter name
        ("foo;;a", "expected token", 4),
        ("foo; a=", "expected token or quoted-string", 7),  // `=` with no value
        ("foo; a= ,bar", "expected token or quoted-string", 8),
        ("foo; a==1", "expected token or quoted-string", 7),
        ("foo bar", "expected ',' or ';'", 4),
        ("fo@o", "expected ',' or ';'", 2),
        ("föo", "expected ',' or ';'", 1),
        ("foo; a=b c", "expected ',' or ';'", 9),
        ("foo; a=\"abc", "unterminated quoted-string", 7),
        ("foo; a=\"ab\\", "unterminated quoted-string", 7),
        ("foo; a=\"a b\"", "quoted parameter value must be a token", 7),
        ("foo; a=\"\"", "quoted parameter value must be a token", 7),
        ("foo; a=\"a\u{1}\"", "invalid character in quoted-string", 9),
        ("foo; a=\"a\\\u{1}\"", "invalid quoted-pair", 9),
        ("foo; a=\"1\"x", "expected ',' or ';'", 10),
        ("\"foo\"", "expected token", 0),
        ("foo; a=1;", "expected token", 9),
    ])
    func badExtensionValues(input: String, problem: String, offset: Int) {
        #expect(grammarError([input]) == HeaderGrammarError(header: "Sec-WebSocket-Extensions", problem: problem, offset: offset))
    }

    @Test func serializesOffers() throws {
        let offers = [
            ExtensionOffer(name: "permessage-deflate", parameters: [.init("client_max_window_bits", "10")]),
            ExtensionOffer(name: "x-foo"),
        ]
        #expect(offers.headerValue == "permessage-deflate; client_max_window_bits=10, x-foo")
        #expect(ExtensionOffer.headerValue(offers) == offers.headerValue)
        #expect(try ExtensionOffer.parseList([offers.headerValue]) == offers)
        #expect(ExtensionOffer(name: "a", parameters: [.init("b"), .init("c", "d")]).headerValue == "a; b; c=d")
    }

    @Test func serializesNonTokenValuesQuoted() {
        let offer = ExtensionOffer(name: "x", parameters: [.init("v", "a b\"c\\d\r\n")])
        #expect(offer.headerValue == #"x; v="a b\"c\\d""#)
        #expect(HeaderGrammar.quotedIfNeeded("") == "\"\"")
    }

    // MARK: token lists

    @Test func subprotocolList() throws {
        #expect(try HeaderGrammar.parseTokenList(["chat, superchat"], header: "Sec-WebSocket-Protocol") == ["chat", "superchat"])
        #expect(try HeaderGrammar.parseTokenList([",chat ,, v2.json.example.com ,", "mqtt"], header: "P") == ["chat", "v2.json.example.com", "mqtt"])
        #expect(try HeaderGrammar.parseTokenList(["a, a"], header: "P") == ["a", "a"])
    }

    @Test func subprotocolListRejectsDuplicatesAndBadCharacters() {
        #expect(throws: HeaderGrammarError(header: "Sec-WebSocket-Protocol", problem: "duplicate value 'chat'", offset: 6)) {
            try HeaderGrammar.parseTokenList(["chat", "chat"], header: "Sec-WebSocket-Protocol", allowDuplicates: false)
        }
        #expect(throws: HeaderGrammarError(header: "P", problem: "expected ','", offset: 5)) {
            try HeaderGrammar.parseTokenList(["chat superchat"], header: "P")
        }
        #expect(throws: HeaderGrammarError(header: "P", problem: "expected token", offset: 0)) {
            try HeaderGrammar.parseTokenList(["/chat"], header: "P")
        }
        #expect(throws: HeaderGrammarError(header: "P", problem: "expected ','", offset: 4)) {
            try HeaderGrammar.parseTokenList(["chat;q=1"], header: "P")
        }
    }

    @Test func upgradeProtocolList() throws {
        #expect(try HeaderGrammar.parseProtocolList(["websocket, h2c"]) == ["websocket", "h2c"])
        #expect(try HeaderGrammar.parseProtocolList(["HTTP/2.0, SHTTP/1.3, IRC/6.9, RTA/x11"])
            == ["HTTP/2.0", "SHTTP/1.3", "IRC/6.9", "RTA/x11"])
        #expect(throws: HeaderGrammarError(header: "Upgrade", problem: "expected token", offset: 10)) {
            try HeaderGrammar.parseProtocolList(["websocket/"])
        }
        #expect(throws: HeaderGrammarError(header: "Upgrade", problem: "expected ','", offset: 10)) {
            try HeaderGrammar.parseProtocolList(["websocket 13"])
        }
    }

    @Test func listContainsIsCaseInsensitive() throws {
        #expect(try HeaderGrammar.listContains(["keep-alive, UPGRADE"], token: "upgrade", header: "Connection"))
        #expect(try !HeaderGrammar.listContains(["keep-alive"], token: "upgrade", header: "Connection"))
        #expect(try HeaderGrammar.listContains(["h2c", "WebSocket"], token: "websocket", header: "Upgrade", protocolElements: true))
        #expect(try !HeaderGrammar.listContains(["websocket/13"], token: "websocket", header: "Upgrade", protocolElements: true))
        #expect(throws: HeaderGrammarError.self) {
            try HeaderGrammar.listContains(["websocket/13"], token: "websocket", header: "Connection")
        }
    }

    // MARK: HTTPFields

    @Test func fieldLookupIsCaseInsensitiveAndOrdered() {
        var fields: HTTPFields = ["Host": "a", "X-Two": "1", "x-two": "2"]
        fields.add(name: "X-TWO", value: "3")
        #expect(fields.values(for: "x-Two") == ["1", "2", "3"])
        #expect(fields.first("HOST") == "a")
        #expect(fields.first("Missing") == nil)
        #expect(fields.contains("host"))
        fields.replaceOrAdd(name: "x-two", value: "4")
        #expect(fields.values(for: "X-Two") == ["4"])
        fields.remove("HOST")
        #expect(!fields.contains("Host"))
        #expect(fields.count == 1)
        #expect(HTTPFields.namesEqual("Sec-WebSocket-Key", "sec-websocket-key"))
        #expect(!HTTPFields.namesEqual("a", "ab"))
        #expect(!HTTPFields.namesEqual("[", "{"))  // 0x5B and 0x7B differ by 0x20 but are not letters
    }
}
