import AsyncTestSupport
import Foundation
import NIOCore
import Testing
import WebSocketCore

@_spi(Fuzzing) @testable import Switchboard

@Suite struct MessageEncoderTests {
    /// Decodes `frame` as a client would and returns the single event in it.
    func decode(_ frame: ByteBuffer) throws -> ReceivedEvent? {
        var receiver = Receiver(configuration: .init(role: .client))
        receiver.append(frame)
        let event = try receiver.next()
        #expect(receiver.bufferedBytes == 0, "exactly one frame")
        return event
    }

    @Test func msgEnvelopeBytesAreExact() throws {
        let data = #"{"text":"hi","n":[1,2.5]}"#
        let body = MessageEncoder.body(
            topic: try Topic("chat.room1"), sequence: 17, time: 1_700_000_000_123,
            payload: ByteBuffer(string: data), format: .json
        )
        #expect(String(buffer: body) == #"{"op":"msg","topic":"chat.room1","seq":17,"time":1700000000123,"data":{"text":"hi","n":[1,2.5]}}"#)
    }

    @Test(arguments: [0, 1, 100, 125, 126, 200, 65_535, 65_536, 200_000])
    func msgFrameDecodesAsText(_ size: Int) throws {
        let data = "\"" + String(repeating: "x", count: size) + "\""
        let publish = try RequestDecoder.parse(text: ByteBuffer(string: #"{"op":"pub","topic":"a.b","data":"# + data + "}"))
        guard case .publish(let p) = publish else { Issue.record("not a publish"); return }
        let frame = MessageEncoder.encodeFrame(p, sequence: UInt64.max, time: 0)
        guard case .text(let text) = try decode(frame) else { Issue.record("not text"); return }
        let expected = #"{"op":"msg","topic":"a.b","seq":18446744073709551615,"time":0,"data":"# + data + "}"
        #expect(String(buffer: text) == expected)
        // And it is JSON any client can parse.
        let object = try JSONSerialization.jsonObject(with: Data(expected.utf8)) as? [String: Any]
        #expect(object?["topic"] as? String == "a.b")
    }

    @Test func binaryMsgFrame() throws {
        let payload: [UInt8] = [0, 0xFF, 1, 2]
        let frame = MessageEncoder.encodeFrame(
            topic: try Topic("img.cam1"), sequence: 0x0102_0304_0506_0708, time: 1_700_000_000_000,
            payload: ByteBuffer(bytes: payload), format: .binary
        )
        guard case .binary(var body) = try decode(frame) else { Issue.record("not binary"); return }
        #expect(body.readInteger(as: UInt8.self) == 0x12)
        #expect(body.readInteger(as: UInt8.self) == 8)
        #expect(body.readString(length: 8) == "img.cam1")
        #expect(body.readInteger(as: UInt64.self) == 0x0102_0304_0506_0708)
        #expect(body.readInteger(as: Int64.self) == 1_700_000_000_000)
        #expect(Array(body.readableBytesView) == payload)
    }

    @Test func sameFrameForEverySubscriber() throws {
        let frame = MessageEncoder.encodeFrame(
            topic: try Topic("t"), sequence: 1, time: 2, payload: ByteBuffer(string: "3"), format: .json
        )
        // Writing the frame to N channels hands out the same storage: decoding copies never change it.
        for _ in 0..<3 {
            guard case .text(let text) = try decode(frame) else { Issue.record("not text"); return }
            #expect(String(buffer: text) == #"{"op":"msg","topic":"t","seq":1,"time":2,"data":3}"#)
        }
    }

    @Test func controlMessages() throws {
        func text(_ message: ServerMessage) throws -> String {
            guard case .text(let body) = try decode(message.frame()) else { return "<not text>" }
            #expect(String(buffer: body) == String(buffer: message.json()))
            return String(buffer: body)
        }
        let id = RequestID(json: ByteBuffer(string: #""1""#))
        #expect(try text(.subscribed(id: id, pattern: TopicPattern("chat.*"))) == #"{"op":"subscribed","id":"1","topic":"chat.*"}"#)
        #expect(try text(.subscribed(id: nil, pattern: TopicPattern("a"))) == #"{"op":"subscribed","topic":"a"}"#)
        #expect(try text(.unsubscribed(id: RequestID(json: ByteBuffer(string: "5")), pattern: TopicPattern("a.>"))) == #"{"op":"unsubscribed","id":5,"topic":"a.>"}"#)
        #expect(try text(.ack(id: RequestID(string: "7"), sequence: 17)) == #"{"op":"ack","id":"7","seq":17}"#)
        #expect(
            try text(.error(ProtocolError(.forbidden, "no \"publish\" right on a.b\n", id: id)))
                == #"{"op":"error","id":"1","code":"forbidden","message":"no \"publish\" right on a.b\n"}"#
        )
        #expect(try text(.error(ProtocolError(.badJSON, "x\u{01}"))) == #"{"op":"error","code":"bad_json","message":"x\u0001"}"#)
    }

    @Test func errorJSONIsParseable() throws {
        for code in ErrorCode.allCases {
            let json = ServerMessage.error(ProtocolError(code, "m \\ \" \t é")).json()
            let object = try JSONSerialization.jsonObject(with: Data(json.readableBytesView)) as? [String: Any]
            #expect(object?["code"] as? String == code.rawValue)
            #expect(object?["message"] as? String == "m \\ \" \t é")
        }
    }

    @Test func roundTripThroughParser() throws {
        // A client publish → broker msg: the data bytes survive untouched, whitespace included.
        let data = "  {\"a\" :\t[ 1 ,2 ] }"
        guard case .publish(let p) = try RequestDecoder.parse(text: ByteBuffer(string: #"{"op":"pub","topic":"x","data":"# + data + "}")) else {
            Issue.record("not a publish")
            return
        }
        let frame = MessageEncoder.encodeFrame(p, sequence: 5, time: 6)
        guard case .text(let body) = try decode(frame) else { Issue.record("not text"); return }
        #expect(String(buffer: body) == #"{"op":"msg","topic":"x","seq":5,"time":6,"data":"# + "{\"a\" :\t[ 1 ,2 ] }" + "}")
    }
}
