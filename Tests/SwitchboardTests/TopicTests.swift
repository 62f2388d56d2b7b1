import AsyncTestSupport
import Testing

@_spi(Fuzzing) @testable import Switchboard

@Suite struct TopicTests {
    @Test(arguments: ["chat", "chat.room1", "a.b.c", "A-Z_09:x", "x:y.z-w", String(repeating: "a", count: 255)])
    func validTopics(_ name: String) throws {
        let topic = try Topic(name)
        #expect(topic.name == name)
        #expect(topic.segments.joined(separator: ".") == name)
    }

    @Test(arguments: [
        ("", TopicError.Code.empty),
        (".", .emptySegment), ("a.", .emptySegment), (".a", .emptySegment), ("a..b", .emptySegment),
        ("a b", .invalidCharacter), ("a/b", .invalidCharacter), ("é", .invalidCharacter), ("a\"b", .invalidCharacter),
        ("a.*", .wildcardNotAllowed), ("a.>", .wildcardNotAllowed), ("a*", .wildcardNotAllowed),
        (String(repeating: "a", count: 256), .tooLong),
        (Array(repeating: "a", count: 33).joined(separator: "."), .tooManySegments),
    ])
    func invalidTopics(_ name: String, _ code: TopicError.Code) {
        #expect(throws: TopicError.self) { try Topic(name) }
        do { _ = try Topic(name) } catch { #expect(error.code == code, "\(name): \(error)") }
    }

    @Test func maxSegmentsIsAllowed() throws {
        #expect(try Topic(Array(repeating: "a", count: 32).joined(separator: ".")).segments.count == 32)
    }

    @Test(arguments: [
        ("a*", TopicError.Code.partialWildcard), ("a.*b", .partialWildcard), ("a.b>", .partialWildcard),
        (">.a", .misplacedFullWildcard), ("a.>.b", .misplacedFullWildcard), ("a.>>", .partialWildcard),
        ("a..*", .emptySegment),
    ])
    func invalidPatterns(_ name: String, _ code: TopicError.Code) {
        do {
            _ = try TopicPattern(name)
            Issue.record("\(name) accepted")
        } catch {
            #expect(error.code == code, "\(name): \(error)")
        }
    }

    @Test(arguments: [
        ("chat.*", "chat.room1", true), ("chat.*", "chat", false), ("chat.*", "chat.a.b", false),
        ("chat.>", "chat.a", true), ("chat.>", "chat.a.b.c", true), ("chat.>", "chat", false),
        (">", "a", true), (">", "a.b", true), ("*", "a", true), ("*", "a.b", false),
        ("*.b.*", "a.b.c", true), ("*.b.*", "a.c.c", false), ("a.b", "a.b", true), ("a.b", "a.bc", false),
        ("*.>", "a", false), ("*.>", "a.b", true),
    ])
    func matching(_ pattern: String, _ topic: String, _ expected: Bool) throws {
        #expect(try TopicPattern(pattern).matches(Topic(topic)) == expected)
    }

    @Test(arguments: [
        (">", "a.*", true), (">", ">", true), ("chat.>", "chat.*", true), ("chat.>", "chat.>", true),
        ("chat.>", "chat", false), ("chat.*", "chat.>", false), ("chat.*", "chat.*", true),
        ("chat.*", "chat.room1", true), ("chat.room1", "chat.*", false), ("*.*", "a.*", true),
        ("*", ">", false), ("a.*.c", "a.b.c", true), ("a.*.c", "a.b.d", false), ("a.>", "a.*.>", true),
        ("a.*", "a.*.>", false),
    ])
    func covering(_ permission: String, _ requested: String, _ expected: Bool) throws {
        #expect(try TopicPattern(permission).covers(TopicPattern(requested)) == expected)
    }

    @Test func patternFromTopicIsConcrete() throws {
        let pattern = TopicPattern(try Topic("a.b"))
        #expect(pattern.isConcrete)
        #expect(try !TopicPattern("a.*").isConcrete)
        #expect(pattern == (try TopicPattern("a.b")))
    }
}
