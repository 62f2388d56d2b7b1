import NIOCore
import WebSocketCore

/// Decoding masked client frames through `Receiver` (server role: streaming unmask,
/// UTF-8 validation of text, header checks) and encoding through `Sender` in both roles.
func frameBenchmarks() -> [Benchmark] {
    let allocator = ByteBufferAllocator()
    let small = [UInt8](repeating: UInt8(ascii: "x"), count: 64)
    let large = (0 ..< 65536).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
    let largeText = makeText(size: 65536, from: ["The quick brown fox jumps over the lazy dog. "])

    /// `count` masked client frames back to back, as one read from the socket would hold them.
    func clientFrames(_ opcode: Opcode, _ payload: [UInt8], count: Int) -> ByteBuffer {
        var sender = Sender(role: .client)
        var buffer = allocator.buffer(capacity: count * (payload.count + 14))
        payload.withUnsafeBytes { bytes in
            for _ in 0 ..< count { sender.writeFrame(opcode: opcode, payload: bytes, into: &buffer) }
        }
        return buffer
    }

    /// Takes every event `receiver` has; how many there were.
    func drain(_ receiver: inout Receiver) -> Int {
        var events = 0
        do {
            while let event = try receiver.next() {
                blackHole(event)
                events += 1
            }
        } catch {
            fatalError("decode failed: \(error)")
        }
        return events
    }

    /// Feeds `input` to a fresh server-role receiver and drains every event.
    func decodeAll(_ input: ByteBuffer, expecting count: Int) {
        var receiver = Receiver(configuration: .init(role: .server))
        receiver.append(identity(input))
        precondition(drain(&receiver) == count)
    }

    /// Feeds `reads` one after another to a fresh server-role receiver, draining after each.
    func decodeAll(_ reads: [ByteBuffer], expecting count: Int) {
        var receiver = Receiver(configuration: .init(role: .server))
        var events = 0
        for read in reads {
            receiver.append(identity(read))
            events += drain(&receiver)
        }
        precondition(events == count)
    }

    // 64 frames of 64 B in one read: what an echo server with many small messages sees.
    let smallBatch = 64
    let smallText = clientFrames(.text, small, count: smallBatch)
    let smallBinary = clientFrames(.binary, small, count: smallBatch)
    let largeBinary = clientFrames(.binary, large, count: 1)
    let largeTextFrame = clientFrames(.text, largeText, count: 1)
    // A 64 KiB frame arriving in 4 KiB reads, as from a socket.
    let largePieces: [ByteBuffer] = stride(from: 0, to: largeBinary.readableBytes, by: 4096).map {
        largeBinary.getSlice(at: $0, length: min(4096, largeBinary.readableBytes - $0))!
    }

    // 64 KiB frames pipelined, read 64 KiB at a time: each read ends one frame and begins
    // the next, as an echo of large messages at depth 4 sees them.
    let pipelinedCount = 8
    let pipelined = clientFrames(.binary, large, count: pipelinedCount)
    let pipelinedReads: [ByteBuffer] = stride(from: 0, to: pipelined.readableBytes, by: 65536).map {
        pipelined.getSlice(at: $0, length: min(65536, pipelined.readableBytes - $0))!
    }

    var clientSender = Sender(role: .client)
    var serverSender = Sender(role: .server)
    var output = allocator.buffer(capacity: 65536 + 64)

    return [
        Benchmark("frame/decode/64B-text/x64-per-read", .items(smallBatch, unit: "frames")) {
            decodeAll(smallText, expecting: smallBatch)
        },
        Benchmark("frame/decode/64B-binary/x64-per-read", .items(smallBatch, unit: "frames")) {
            decodeAll(smallBinary, expecting: smallBatch)
        },
        Benchmark("frame/decode/64B-text/one-per-read", .items(1, unit: "frames")) {
            decodeAll(smallText.getSlice(at: 0, length: 64 + 6)!, expecting: 1)
        },
        Benchmark("frame/decode/64KiB-binary", .bytes(65536)) {
            decodeAll(largeBinary, expecting: 1)
        },
        Benchmark("frame/decode/64KiB-text", .bytes(65536)) {
            decodeAll(largeTextFrame, expecting: 1)
        },
        Benchmark("frame/decode/64KiB-binary/pipelined-64KiB-reads", .bytes(65536 * pipelinedCount)) {
            decodeAll(pipelinedReads, expecting: pipelinedCount)
        },
        Benchmark("frame/decode/64KiB-binary/4KiB-reads", .bytes(65536)) {
            decodeAll(largePieces, expecting: 1)
        },
        Benchmark("frame/encode/64B/client-masked", .items(1, unit: "frames")) {
            output.clear()
            small.withUnsafeBytes { clientSender.writeFrame(opcode: .text, payload: identity($0), into: &output) }
            blackHole(output.readableBytes)
        },
        Benchmark("frame/encode/64B/server", .items(1, unit: "frames")) {
            output.clear()
            small.withUnsafeBytes { serverSender.writeFrame(opcode: .text, payload: identity($0), into: &output) }
            blackHole(output.readableBytes)
        },
        Benchmark("frame/encode/64KiB/client-masked", .bytes(65536)) {
            output.clear()
            large.withUnsafeBytes { clientSender.writeFrame(opcode: .binary, payload: identity($0), into: &output) }
            blackHole(output.readableBytes)
        },
        Benchmark("frame/encode/64KiB/server", .bytes(65536)) {
            output.clear()
            large.withUnsafeBytes { serverSender.writeFrame(opcode: .binary, payload: identity($0), into: &output) }
            blackHole(output.readableBytes)
        },
    ]
}
