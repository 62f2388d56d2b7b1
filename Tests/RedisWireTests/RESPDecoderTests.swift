import NIOCore
import NIOEmbedded
import Testing

@testable import RedisWire

/// Decodes `wire` fed in pieces of `step` bytes and returns every value it produced.
private func decodeAll(_ wire: String, step: Int, limits: RESPLimits = RESPLimits()) throws -> [RESPValue] {
    var decoder = RESPDecoder(limits: limits)
    var pending = ByteBuffer()
    var values: [RESPValue] = []
    let bytes = Array(wire.utf8)
    var offset = 0
    while offset < bytes.count {
        pending.writeBytes(bytes[offset..<min(offset + step, bytes.count)])
        offset += step
        while let value = try decoder.next(from: &pending) { values.append(value) }
    }
    #expect(pending.readableBytes == 0)
    return values
}

private func bulk(_ text: String) -> RESPValue { .bulkString(ByteBuffer(string: text)) }

@Suite struct RESPDecoderTests {
    static let everyType = [
        ("+OK\r\n", RESPValue.simpleString("OK")),
        ("-ERR wrong\r\n", .error("ERR wrong")),
        (":-42\r\n", .integer(-42)),
        ("$5\r\nhe\r\no\r\n", bulk("he\r\no")),
        ("$0\r\n\r\n", bulk("")),
        ("$-1\r\n", .null),
        ("*-1\r\n", .null),
        ("_\r\n", .null),
        (",3.5\r\n", .double(3.5)),
        (",-inf\r\n", .double(-.infinity)),
        ("#t\r\n", .boolean(true)),
        ("#f\r\n", .boolean(false)),
        ("(12345678901234567890\r\n", .bigNumber("12345678901234567890")),
        ("!9\r\nSYNTAX no\r\n", .error("SYNTAX no")),
        ("=8\r\ntxt:abcd\r\n", bulk("abcd")),
        ("*0\r\n", .array([])),
        ("*2\r\n:1\r\n*1\r\n$1\r\nx\r\n", .array([.integer(1), .array([bulk("x")])])),
        ("~2\r\n+a\r\n+b\r\n", .set([.simpleString("a"), .simpleString("b")])),
        ("%1\r\n+k\r\n:7\r\n", .map([RESPPair(key: .simpleString("k"), value: .integer(7))])),
        (">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nhi\r\n", .push([bulk("message"), bulk("c"), bulk("hi")])),
        // An attribute before a value is read and dropped.
        ("|1\r\n+ttl\r\n:3\r\n:9\r\n", .integer(9)),
        ("*2\r\n|1\r\n+a\r\n+b\r\n:1\r\n:2\r\n", .array([.integer(1), .integer(2)])),
    ]

    @Test(arguments: [1, 2, 3, 7, 1000])
    func everyTypeDecodesWhateverTheReadSizes(step: Int) throws {
        let wire = Self.everyType.map(\.0).joined()
        let values = try decodeAll(wire, step: step)
        #expect(values == Self.everyType.map(\.1))
    }

    @Test func aLongArrayInManyReadsIsBuiltOnce() throws {
        let count = 10_000
        let wire = "*\(count)\r\n" + (0..<count).map { "$\(String($0).count)\r\n\($0)\r\n" }.joined()
        let values = try decodeAll(wire, step: 100)
        #expect(values == [.array((0..<count).map { bulk(String($0)) })])
    }

    @Test(arguments: [
        ("$100\r\n", "string length 100"),
        ("*5\r\n", "aggregate count 5"),
        ("*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", "nesting deeper than 3"),
        ("+0123456789abcdef", "line longer than 8"),
        ("?x\r\n", "unknown type byte"),
        (":12a\r\n", "bad integer"),
        ("+OK\n", "line ends without CR"),
        ("$2\r\nabcd\r\n", "not followed by CRLF"),
        ("#x\r\n", "boolean"),
        ("$-2\r\n", "string length -2"),
    ])
    func badOrOversizedInputIsAProtocolViolation(wire: String, expected: String) throws {
        var limits = RESPLimits()
        limits.maxBulkLength = 10
        limits.maxAggregateCount = 4
        limits.maxDepth = 3
        limits.maxLineLength = 8
        #expect {
            _ = try decodeAll(wire, step: 1, limits: limits)
        } throws: { error in
            guard case RedisError.protocolViolation(let why) = error else { return false }
            return why.contains(expected)
        }
    }

    @Test func theHandlerClosesTheConnectionOnAViolation() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(RESPDecoder()))
        #expect(throws: RedisError.self) { try channel.writeInbound(ByteBuffer(string: "?\r\n")) }
        _ = try? channel.finish()
    }

    @Test func commandsAreArraysOfBulkStrings() {
        var buffer = ByteBuffer()
        RESPEncoder.write(["SET", "k€", RESPArgument(12), RESPArgument(ByteBuffer(bytes: [0, 13, 10]))], into: &buffer)
        #expect(
            Array(buffer.readableBytesView)
                == Array("*4\r\n$3\r\nSET\r\n$4\r\nk€\r\n$2\r\n12\r\n$3\r\n".utf8) + [0, 13, 10] + Array("\r\n".utf8))
    }

    @Test(arguments: [
        ("redis://127.0.0.1:6380/2", RedisEndpoint(host: "127.0.0.1", port: 6380, database: 2)),
        ("redis://localhost", RedisEndpoint(host: "localhost")),
        ("redis://h:1/", RedisEndpoint(host: "h", port: 1)),
    ])
    func endpointURLs(url: String, expected: RedisEndpoint) throws {
        #expect(try RedisEndpoint(url: url) == expected)
    }

    @Test(arguments: ["http://h", "redis://", "redis://h:0", "redis://h:x", "redis://h/-1", "redis://u:p@h"])
    func badEndpointURLsAreRefused(url: String) {
        #expect(throws: RedisEndpointError.self) { try RedisEndpoint(url: url) }
    }

    @Test func backoffGrowsToItsCap() {
        let backoff = RedisBackoff(initial: .milliseconds(50), maximum: .seconds(2))
        #expect(backoff.ceiling(attempt: 0) == .zero)
        #expect(backoff.ceiling(attempt: 1) == .milliseconds(50))
        #expect(backoff.ceiling(attempt: 3) == .milliseconds(200))
        #expect(backoff.ceiling(attempt: 40) == .seconds(2))
        for attempt in 1...10 { #expect(backoff.delay(attempt: attempt) <= backoff.ceiling(attempt: attempt)) }
    }
}
