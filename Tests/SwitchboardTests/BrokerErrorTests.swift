import AsyncTestSupport
import Foundation
import Testing
import WebSockets

@_spi(Fuzzing) @testable import Switchboard

/// Every refused request gets its error and the connection stays open; bad frames close
/// that one connection with the right code.
@Suite struct BrokerErrorTests {
    @Test func subscribeOutsidePatternsIsForbidden() async throws {
        try await TestBroker.with { broker in
            let client = try await broker.client(subscribe: ["chat.*", "user.42.>"], publish: [])
            for pattern in ["chat.>", "other", ">", "user.*.x", "chat.a.b"] {
                let answer = try await client.request(#"{"op":"sub","topic":"\#(pattern)","id":"f"}"#)
                #expect(answer["op"] == "error" && answer["code"] == "forbidden" && answer["id"] == "f", "\(pattern): \(answer)")
            }
            // Still open, and covered patterns are allowed.
            for pattern in ["chat.*", "chat.x", "user.42.>", "user.42.*", "user.42.a.b"] {
                try await client.subscribe(pattern)
            }
            await client.close()
        }
    }

    @Test func publishOutsidePatternsIsForbidden() async throws {
        try await TestBroker.with { broker in
            let subscriber = try await broker.client()
            try await subscriber.subscribe(">")
            let client = try await broker.client(subscribe: [], publish: ["chat.*"])
            for topic in ["chat.a.b", "chat", "other.a"] {
                let answer = try await client.request(#"{"op":"pub","topic":"\#(topic)","data":1,"id":"p"}"#)
                #expect(answer["code"] == "forbidden" && answer["id"] == "p", "\(topic): \(answer)")
            }
            // Without an id a refused publish is still answered.
            let answer = try await client.request(#"{"op":"pub","topic":"other","data":1}"#)
            #expect(answer["code"] == "forbidden" && answer["id"] == nil, "\(answer)")
            // Nothing was delivered, and nothing sequenced: the first allowed publish is seq 1.
            #expect(try await client.publish("chat.a", "2") == 1)
            #expect(try await subscriber.nextJSON()["topic"] == "chat.a")
            // Subscribing needs a subscribe right.
            #expect(try await client.request(#"{"op":"sub","topic":"chat.a"}"#)["code"] == "forbidden")
            await client.close()
            await subscriber.close()
        }
    }

    @Test func badRequestsGetTheirCodes() async throws {
        try await TestBroker.with { broker in
            let client = try await broker.client()
            let cases: [(String, String, String?)] = [
                (#"{"op":"pub","topic":"chat.*","data":1,"id":"w"}"#, "bad_topic", "w"),
                (#"{"op":"pub","topic":"chat.>","data":1,"id":"w2"}"#, "bad_topic", "w2"),
                (#"{"op":"pub","topic":"chat..a","data":1,"id":"w3"}"#, "bad_topic", "w3"),
                (#"{"op":"sub","topic":"chat*","id":"w4"}"#, "bad_topic", "w4"),
                (#"{"op":"dance","id":"u"}"#, "unknown_op", "u"),
                (#"{"op":"sub","topic":"a","id":"x""#, "bad_json", nil),
                (#"{"op":"sub",}"#, "bad_json", nil),
                ("not json", "bad_json", nil),
                (#"[1,2]"#, "bad_request", nil),
                (#"{"op":"pub","topic":"a","id":"m"}"#, "bad_request", "m"),
                (#"{"op":"sub","topic":"a","topic":"b","id":"d"}"#, "bad_request", "d"),
            ]
            for (request, code, id) in cases {
                let answer = try await client.request(request)
                #expect(answer["op"] == "error" && answer["code"] == code && answer["id"] == id, "\(request) → \(answer)")
                #expect(answer["message"]?.isEmpty == false)
            }
            // A binary frame with a bad header, and one with an unknown op.
            try await client.send(binary: [0x11, 0x09, 0x61])
            #expect(try await client.nextJSON()["code"] == "bad_request")
            try await client.send(binary: [0x1F, 0x01, 0x61, 0x00])
            #expect(try await client.nextJSON()["code"] == "unknown_op")
            // Still open and working.
            try await client.subscribe("a")
            #expect(try await client.publish("a", "1") == 1)
            await client.close()
        }
    }

    @Test func tooLargePayloadIsAnsweredAndAFarLargerFrameClosesWith1009() async throws {
        try await TestBroker.with({ $0.maxPayload = 1024 }) { broker in
            let client = try await broker.client()
            // Exactly the limit: the envelope around it does not count.
            let fits = String(repeating: "x", count: 1022)
            #expect(try await client.publish("a", #""\#(fits)""#) == 1)
            let tooBig = String(repeating: "x", count: 2000)
            let answer = try await client.request(#"{"op":"pub","topic":"a","data":"\#(tooBig)","id":"big"}"#)
            #expect(answer["code"] == "too_large" && answer["id"] == "big", "\(answer)")
            var binary: [UInt8] = [0x11, 1, UInt8(ascii: "a"), 1, UInt8(ascii: "b")]
            binary += [UInt8](repeating: 7, count: 1025)
            try await client.send(binary: binary)
            let binaryAnswer = try await client.nextJSON()
            #expect(binaryAnswer["code"] == "too_large" && binaryAnswer["id"] == "b", "\(binaryAnswer)")
            #expect(try await client.publish("a", "2") == 2)
            // Past the payload limit plus the envelope allowance the frame itself is refused.
            let huge = String(repeating: "x", count: 1024 + WireProtocol.requestOverhead + 1)
            try? await client.send(#"{"op":"pub","topic":"a","data":"\#(huge)","id":"huge"}"#)
            let info = try await client.waitForClose()
            #expect(info.code == .messageTooBig, "\(info)")
        }
    }

    @Test func malformedRequestsInARowClose1008() async throws {
        try await TestBroker.with { broker in
            let client = try await broker.client()
            // Fifteen broken frames, one good request, fifteen more: the count starts over.
            for _ in 0..<15 { #expect(try await client.request("{oops")["code"] == "bad_json") }
            try await client.subscribe("a")
            for _ in 0..<15 { #expect(try await client.request("{oops")["code"] == "bad_json") }
            try await client.subscribe("b")
            // Sixteen in a row: each answered, then the connection is closed with 1008.
            for _ in 0..<16 { try await client.send("{oops") }
            for _ in 0..<16 { #expect(try await client.nextJSON()["code"] == "bad_json") }
            let info = try await client.waitForClose()
            #expect(info.code == .policyViolation, "\(info)")
        }
    }

    @Test func offeringOnlyOtherSubprotocolsIsRefused() async throws {
        try await TestBroker.with { broker in
            let token = try broker.token().token
            do {
                let client = try await Client.connect(port: broker.port, token: token, protocols: ["chat.v2"])
                client.ws.terminate()
                Issue.record("accepted a client that does not speak switchboard.v1")
            } catch ConnectError.unexpectedResponse(let status, _, let body) {
                #expect(status == 400)
                #expect(body.contains("switchboard.v1"), "\(body)")
            }
            let plain = try await Client.connect(port: broker.port, token: token, protocols: [])
            #expect(plain.ws.handshake.subprotocol == nil)
            await plain.close()
            let v1 = try await Client.connect(port: broker.port, token: token, protocols: ["x", "switchboard.v1"])
            #expect(v1.ws.handshake.subprotocol == "switchboard.v1")
            await v1.close()
        }
    }
}
