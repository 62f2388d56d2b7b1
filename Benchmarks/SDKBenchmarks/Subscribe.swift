import Foundation
import NIOCore
import SwitchboardClient
import WebSockets

/// One SDK subscription from the beginning: every event must be the next seq.
func subscribeSDK(url: String, topic: String, count: UInt64) async throws {
    let client = try SwitchboardClient(url: url)
    for await state in client.states where state == .connected { break }
    try await measure("subscribe", .sdk) {
        let subscription = try await client.subscribe(topic, from: .beginning)
        var expected: UInt64 = 1
        for try await event in subscription {
            guard case .message(let message) = event, message.seq == expected else {
                throw BenchError("expected seq \(expected), got \(event)")
            }
            if expected == count { break }
            expected += 1
        }
        return Int(count)
    }
    await client.close()
}

/// The same by hand: `sub` with `since: 0`, then each `msg`'s seq read at its known offset.
func subscribeRaw(url: String, topic: String, count: UInt64) async throws {
    let ws = try await WebSocket.connect(to: url)
    // `{"op":"msg","topic":"T","seq":` comes before every message's seq.
    let seqOffset = #"{"op":"msg","topic":""#.utf8.count + topic.utf8.count + #"","seq":"#.utf8.count
    try await measure("subscribe", .raw) {
        try await ws.send(text: #"{"op":"sub","topic":"\#(topic)","since":0}"#)
        var expected: UInt64 = 1
        for try await message in ws.messages {
            let data = message.data
            // `{"op":"` is 7 bytes: the op's first letter follows.
            guard data.getInteger(at: data.readerIndex + 7, as: UInt8.self) == UInt8(ascii: "m") else { continue }
            let digits = data.readableBytesView.dropFirst(seqOffset).prefix { $0 &- UInt8(ascii: "0") < 10 }
            let seq = digits.reduce(UInt64(0)) { $0 * 10 + UInt64($1 &- UInt8(ascii: "0")) }
            guard seq == expected else { throw BenchError("expected seq \(expected), got \(seq)") }
            if expected == count { break }
            expected += 1
        }
        return Int(count)
    }
    try? await ws.close()
}
