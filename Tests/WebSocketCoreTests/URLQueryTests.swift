import Testing
import WebSocketCore

/// `URLQuery` and `PercentEncoding`: the documented rules, one by one.
@Suite struct URLQueryTests {
    func items(_ query: String) -> [String] {
        URLQuery(query).items.map { "\($0.name)=\($0.value)" }
    }

    @Test func splitting() {
        #expect(items("") == [])
        #expect(items("&&&") == [])
        #expect(items("a=1&&b=2&") == ["a=1", "b=2"])
        #expect(items("=") == ["="])
        #expect(items("=x") == ["=x"])
        #expect(items("flag") == ["flag="])
        #expect(items("x=a=b") == ["x=a=b"])
        // Bytes, not Characters: a combining mark after '&' or '=' does not hide it.
        #expect(items("a=1&\u{301}b=2") == ["a=1", "\u{301}b=2"])
        #expect(items("a=\u{301}") == ["a=\u{301}"])
    }

    @Test func decoding() {
        #expect(items("a+b=c+d") == ["a b=c d"])
        #expect(items("x=%2B%20%41%e9") == ["x=+ A\u{FFFD}"])
        #expect(items("x=%zz") == ["x=%zz"])
        #expect(items("x=%4") == ["x=%4"])
        #expect(items("x=%") == ["x=%"])
        #expect(items("x=%%41") == ["x=%A"])
        #expect(items("x=%C3%A9") == ["x=é"])
        #expect(items("x=%C3") == ["x=\u{FFFD}"])
        #expect(items("x=%00") == ["x=\u{0}"])
        #expect(PercentEncoding.decode("a+b%40c", plusAsSpace: false) == "a+b@c")
        #expect(PercentEncoding.decode("a+b%40c", plusAsSpace: true) == "a b@c")
    }

    @Test func repeatedNamesFirstWins() {
        let query = URLQuery("a=1&b=2&a=3")
        #expect(query.first("a") == "1")
        #expect(query.first("c") == nil)
        #expect(query.dictionary == ["a": "1", "b": "2"])
        #expect(query.items.count == 3)
    }

    @Test func fromTarget() {
        #expect(URLQuery(target: "/path").items.isEmpty)
        #expect(URLQuery(target: "/path?").items.isEmpty)
        #expect(URLQuery(target: "/p?a=1?b=2").dictionary == ["a": "1?b=2"])
    }
}
