import Foundation
import NIOConcurrencyHelpers
import NIOCore
import SwitchboardClient
import WebSockets

/// `window` tasks, each publishing and awaiting its ack in turn, `total` publishes in all.
func publishSDK(url: String, topic: String, total: Int, window: Int) async throws {
    let client = try SwitchboardClient(url: url)
    for await state in client.states where state == .connected { break }
    try await measure("publish", .sdk) {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0..<window {
                let share = total / window + (task < total % window ? 1 : 0)
                group.addTask {
                    for _ in 0..<share { try await client.publish(topic, text: payloadText) }
                }
            }
            try await group.waitForAll()
        }
        return total
    }
    await client.close()
}

/// The same by hand: `pub`s with ids, one more sent for each answer, until `total` are acked.
func publishRaw(url: String, topic: String, total: Int, window: Int) async throws {
    let ws = try await WebSocket.connect(to: url)
    let sent = NIOLockedValueBox(0)
    @Sendable func sendNext() {
        let id = sent.withLockedValue { sent -> Int? in
            guard sent < total else { return nil }
            sent += 1
            return sent
        }
        guard let id else { return }
        ws.sendWithoutWaiting(.text(#"{"op":"pub","topic":"\#(topic)","data":"\#(payloadText)","id":"\#(id)"}"#))
    }
    try await measure("publish", .raw) {
        let messages = ws.messages
        for _ in 0..<window { sendNext() }
        var acked = 0
        for try await message in messages {
            let data = message.data
            guard data.getInteger(at: data.readerIndex + 7, as: UInt8.self) == UInt8(ascii: "a") else {
                throw BenchError("not an ack: \(String(buffer: data))")
            }
            acked += 1
            if acked == total { break }
            sendNext()
        }
        return acked
    }
    try? await ws.close()
}
