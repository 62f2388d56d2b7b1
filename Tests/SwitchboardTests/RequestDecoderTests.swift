import AsyncTestSupport
import Foundation
import NIOCore
import Testing
import WebSocketCore

@_spi(Fuzzing) @testable import Switchboard

@Suite struct RequestDecoderTests {
    func parse(_ text: String, limits: RequestDecoder.Limits = .init()) throws(ProtocolError) -> ClientRequest {
        try RequestDecoder.parse(text: ByteBuffer(string: text), limits: limits)
    }

    func error(_ text: String, limits: RequestDecoder.Limits = .init()) -> ProtocolError? {
        do {
            _ = try parse(text, limits: limits)
            return nil
        } catch {
            return error
        }
    }

    @Test func subprotocolChoice() {
        #expect(WireProtocol.chooseSubprotocol(offered: []) == .v1(header: nil))
        #expect(WireProtocol.chooseSubprotocol(offered: ["x", "switchboard.v1"]) == .v1(header: "switchboard.v1"))
        guard case .unsupported = WireProtocol.chooseSubprotocol(offered: ["switchboard.v2"]) else {
            Issue.record("v2 accepted")
            return
        }
    }

    @Test func subscribe() throws {
        guard case .subscribe(let id, let pattern, let since, _) = try parse(#"{"op":"sub","topic":"chat.*","id":"1","since":42}"#) else {
            Issue.record("not a subscribe")
            return
        }
        #expect(id?.description == #""1""#)
        #expect(pattern.name == "chat.*")
        #expect(since == .sequence(42))
    }

    @Test func subscribeSinceVariants() throws {
        guard case .subscribe(_, _, let since, _) = try parse(#"{"op":"sub","topic":"chat.>","since":{"chat.a":3, "chat.b.c" : 7}}"#) else {
            Issue.record("not a subscribe")
            return
        }
        #expect(since == .perTopic([try Topic("chat.a"): 3, try Topic("chat.b.c"): 7]))
        guard case .subscribe(_, _, let time, _) = try parse(#"{"op":"sub","topic":"a","since_time":1700000000000}"#) else {
            Issue.record("not a subscribe")
            return
        }
        #expect(time == .time(unixMilliseconds: 1_700_000_000_000))
        guard case .subscribe(nil, _, nil, nil) = try parse(#"{"topic":"a","op":"sub"}"#) else {
            Issue.record("id/since should be absent")
            return
        }
        #expect(try parse(#"{"op":"sub","topic":"a","since":{}}"#).id == nil)
    }

    @Test func unsubscribe() throws {
        guard case .unsubscribe(let id, let pattern) = try parse(#" { "op" : "unsub" , "topic" : "a.>" , "id" : 9 } "#) else {
            Issue.record("not an unsubscribe")
            return
        }
        #expect(id?.description == "9")
        #expect(pattern.name == "a.>")
    }

    @Test func publishCarriesDataBytesVerbatim() throws {
        let data = #"{"text": "hi \"there\"", "n": [1, 2.5e3, null], "nested": {"}": "]"}}"#
        let frame = #"{"op":"pub","topic":"chat.room1","data":"# + data + #","id":"7","extra":[1,{"x":2}]}"#
        guard case .publish(let publish) = try parse(frame) else {
            Issue.record("not a publish")
            return
        }
        #expect(publish.topic.name == "chat.room1")
        #expect(publish.id?.description == #""7""#)
        #expect(publish.format == .json)
        #expect(String(buffer: publish.payload) == data)
    }

    @Test(arguments: [#""just a string""#, "42", "null", "true", "[1]", #""""#, "{}"])
    func publishScalarData(_ data: String) throws {
        guard case .publish(let publish) = try parse(#"{"op":"pub","topic":"t","data":"# + data + "}") else {
            Issue.record("not a publish")
            return
        }
        #expect(String(buffer: publish.payload) == data)
        #expect(publish.id == nil)
    }

    @Test func escapedKeysAndValuesAreUnderstood() throws {
        guard case .publish(let publish) = try parse(#"{"o\u0070":"p\u0075b","topic":"chat\u002eroom1","data":1}"#) else {
            Issue.record("not a publish")
            return
        }
        #expect(publish.topic.name == "chat.room1")
    }

    @Test(arguments: [
        ("", ErrorCode.badJSON), ("{", .badJSON), (#"{"op":"pub","topic":"a","data":}"#, .badJSON),
        (#"{"op":"pub","topic":"a","data":1,}"#, .badJSON), (#"{"op":"pub","topic":"a","data":[1,]}"#, .badJSON),
        (#"{"op":"sub","topic":"a"} x"#, .badJSON), ("[]", .badRequest), ("1", .badRequest),
        (#"{"topic":"a"}"#, .badRequest), (#"{"op":1,"topic":"a"}"#, .badRequest),
        (#"{"op":"nope","topic":"a"}"#, .unknownOp), (#"{"op":"sub"}"#, .badRequest),
        (#"{"op":"sub","topic":7}"#, .badRequest), (#"{"op":"sub","topic":"a..b"}"#, .badTopic),
        (#"{"op":"pub","topic":"a.*","data":1}"#, .badTopic), (#"{"op":"pub","topic":"a"}"#, .badRequest),
        (#"{"op":"sub","topic":"a","data":1}"#, .badRequest), (#"{"op":"sub","topic":"a","since":-1}"#, .badRequest),
        (#"{"op":"sub","topic":"a","since":1.5}"#, .badRequest), (#"{"op":"sub","topic":"a","since":"x"}"#, .badRequest),
        (#"{"op":"sub","topic":"a","since":{"a..b":1}}"#, .badTopic), (#"{"op":"sub","topic":"a","since":{"a":"1"}}"#, .badRequest),
        (#"{"op":"sub","topic":"a","since":1,"since_time":2}"#, .badRequest), (#"{"op":"pub","topic":"a","data":1,"since":3}"#, .badRequest),
        (#"{"op":"sub","op":"sub","topic":"a"}"#, .badRequest), (#"{"op":"sub","topic":"a","id":[1]}"#, .badRequest),
        (#"{"op":"unsub","topic":"a","since":1}"#, .badRequest),
    ])
    func errors(_ text: String, _ code: ErrorCode) {
        let error = error(text)
        #expect(error?.code == code, "\(text): \(String(describing: error))")
    }

    @Test func errorsCarryTheID() {
        #expect(error(#"{"op":"pub","topic":"a.*","data":1,"id":"x1"}"#)?.id?.description == #""x1""#)
        #expect(error(#"{"id":"x2","op":"what"}"#)?.id?.description == #""x2""#)
        #expect(error(#"{"id":"x3","op":"sub","topic":"a","broken":}"#)?.id == nil, "broken JSON: the id is not trusted")
    }

    /// An unknown op written with escapes is shown escaped, so the error stays one line
    /// (WireRequestFuzzer checks every error).
    @Test func unknownOpWithALineBreakIsOneLine() throws {
        let refusal = try #require(error(#"{"op":"p\u0075b\n\r","topic":"a"}"#))
        #expect(refusal.code == .unknownOp)
        let lines = refusal.message.split(whereSeparator: \.isNewline).count
        #expect(lines == 1, "\(refusal.message)")
        #expect(refusal.message.contains(#""pub\n\r""#), "\(refusal.message)")
    }

    @Test func limits() {
        let limits = RequestDecoder.Limits(maxPayloadBytes: 10, maxIDBytes: 6)
        #expect(error(#"{"op":"pub","topic":"a","data":"0123456789"}"#, limits: limits)?.code == .tooLarge)
        #expect(error(#"{"op":"pub","topic":"a","data":"01234567"}"#, limits: limits) == nil)
        #expect(error(#"{"op":"pub","topic":"a","data":1,"id":"123456"}"#, limits: limits)?.code == .badRequest)
    }

    @Test func payloadIsASliceOfTheFrame() throws {
        var buffer = ByteBuffer(string: "xxxx")
        buffer.writeString(#"{"op":"pub","topic":"a","data":[1,2]}"#)
        buffer.moveReaderIndex(forwardBy: 4)
        guard case .publish(let publish) = try RequestDecoder.parse(text: buffer) else {
            Issue.record("not a publish")
            return
        }
        #expect(String(buffer: publish.payload) == "[1,2]")
    }

    // MARK: Binary

    func binaryPublish(topic: String, id: String, payload: [UInt8]) -> ByteBuffer {
        var b = ByteBuffer()
        b.writeInteger(WireProtocol.binaryPublish)
        b.writeInteger(UInt8(topic.utf8.count))
        b.writeString(topic)
        b.writeInteger(UInt8(id.utf8.count))
        b.writeString(id)
        b.writeBytes(payload)
        return b
    }

    @Test func binaryPublishParses() throws {
        let payload: [UInt8] = [0, 1, 2, 0xFF, 0x7B]
        guard case .publish(let publish) = try RequestDecoder.parse(binary: binaryPublish(topic: "img.cam1", id: "a\"b", payload: payload)) else {
            Issue.record("not a publish")
            return
        }
        #expect(publish.topic.name == "img.cam1")
        #expect(publish.id?.description == #""a\"b""#)
        #expect(publish.format == .binary)
        #expect(Array(publish.payload.readableBytesView) == payload)
        guard case .publish(let noID) = try RequestDecoder.parse(binary: binaryPublish(topic: "t", id: "", payload: [])) else {
            Issue.record("not a publish")
            return
        }
        #expect(noID.id == nil)
        #expect(noID.payload.readableBytes == 0)
    }

    @Test func documentedBinaryExample() throws {
        let bytes: [UInt8] = [0x11, 0x03, 0x61, 0x2E, 0x62, 0x01, 0x39, 0x01, 0x02]
        guard case .publish(let publish) = try RequestDecoder.parse(binary: ByteBuffer(bytes: bytes)) else {
            Issue.record("not a publish")
            return
        }
        #expect(publish.topic.name == "a.b")
        #expect(publish.id?.description == #""9""#)
        #expect(Array(publish.payload.readableBytesView) == [1, 2])
    }

    @Test func everyErrorCodeIsDocumented() throws {
        let doc = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/protocol.md")
        let text = try String(contentsOf: doc, encoding: .utf8)
        for code in ErrorCode.allCases {
            #expect(text.contains("| `\(code.rawValue)` |"), "docs/protocol.md lacks \(code.rawValue)")
        }
        #expect(text.contains(WireProtocol.subprotocol))
    }

    @Test func binaryErrors() {
        func code(_ bytes: [UInt8]) -> ErrorCode? {
            do {
                _ = try RequestDecoder.parse(binary: ByteBuffer(bytes: bytes))
                return nil
            } catch { return error.code }
        }
        #expect(code([]) == .badRequest)
        #expect(code([0x21, 1, 0x61, 0]) == .badRequest, "version 2")
        #expect(code([0x12, 1, 0x61, 0]) == .unknownOp, "msg is broker → client only")
        #expect(code([0x11, 5, 0x61]) == .badRequest, "truncated topic")
        #expect(code([0x11, 1, 0x61]) == .badRequest, "missing id length")
        #expect(code([0x11, 1, 0x2A, 0]) == .badTopic, "wildcard")
        #expect(code([0x11, 1, 0x61, 1, 0xFF]) == .badRequest, "id not UTF-8")
        #expect(code([0x11, 1, 0x61, 0]) == nil)
    }
}
