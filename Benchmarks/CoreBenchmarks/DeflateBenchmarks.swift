import NIOCore
import WebSocketCore

/// permessage-deflate on 64 KiB of text, one whole message per iteration. Both directions
/// use no_context_takeover, so every iteration does the same work (with context takeover,
/// compressing the same text again would only find back-references to the last message).
func deflateBenchmarks() -> [Benchmark] {
    let allocator = ByteBufferAllocator()
    let text = makeChatLog(size: 65536)
    let message = allocator.buffer(bytes: text)
    let parameters = PerMessageDeflateParameters(serverNoContextTakeover: true, clientNoContextTakeover: true)
    let compressor = PerMessageDeflate(role: .server, parameters: parameters)
    // The client's decompressor inflates what the server sent.
    let decompressor = PerMessageDeflate(role: .client, parameters: parameters)

    let compressed: ByteBuffer
    do {
        compressed = try compressor.compress(message, allocator: allocator)
        var check = allocator.buffer(capacity: text.count)
        try decompressor.decompress(compressed, isFinal: true, into: &check, limit: 1 << 20)
        precondition(check.readableBytesView.elementsEqual(text), "round trip changed the text")
    } catch {
        fatalError("deflate set-up failed: \(error)")
    }
    print("deflate: 64 KiB of chat-like JSON compresses to \(compressed.readableBytes) bytes"
        + " (\(fixed(Double(compressed.readableBytes) / Double(text.count) * 100, 1)) %)")

    var output = allocator.buffer(capacity: 65536 + 1024)
    return [
        Benchmark("deflate/compress/64KiB-text", .bytes(text.count)) {
            output.clear()
            do { try compressor.compress(identity(message), isFinal: true, into: &output) } catch { fatalError("\(error)") }
            blackHole(output.readableBytes)
        },
        Benchmark("deflate/decompress/64KiB-text", .bytes(text.count)) {
            output.clear()
            do {
                try decompressor.decompress(identity(compressed), isFinal: true, into: &output, limit: 1 << 20)
            } catch {
                fatalError("\(error)")
            }
            blackHole(output.readableBytes)
        },
    ]
}

/// JSON chat messages with varying users, rooms, numbers and words (a deterministic
/// pseudo-random sequence), so the text compresses like real traffic, not like one
/// sentence repeated.
func makeChatLog(size: Int) -> [UInt8] {
    let words = ["hello", "world", "meeting", "at", "noon", "deploy", "failed", "again", "coffee", "anyone",
                 "the", "build", "is", "green", "now", "lunch", "review", "please", "merged", "thanks",
                 "Grüße", "schön", "naïve", "🎉", "ok", "see", "you", "tomorrow", "latency", "spike"]
    var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    func next(_ bound: Int) -> Int {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Int((state >> 33) % UInt64(bound))
    }
    var out: [UInt8] = []
    out.reserveCapacity(size + 256)
    var id = 1000
    while out.count < size {
        id += 1 + next(5)
        var line = "{\"id\":\(id),\"user\":\"user\(next(500))\",\"room\":\"chat.room\(next(40))\",\"text\":\""
        for w in 0 ..< 3 + next(12) { line += (w == 0 ? "" : " ") + words[next(words.count)] }
        line += "\",\"ts\":\(1_700_000_000_000 + id * 137 + next(1000))}\n"
        out += line.utf8
    }
    // Cut at `size`, back to a character boundary, and pad with spaces.
    out.removeLast(out.count - size)
    while let last = out.last, last & 0xC0 == 0x80 || last >= 0xC0 { out.removeLast() }
    out += [UInt8](repeating: 0x20, count: size - out.count)
    return out
}
