// libFuzzer entry point for the frame decoder: `Receiver` in both roles, with and without
// permessage-deflate, fed the same bytes whole and in pieces.
//
// Input layout (so that the fuzzer explores configurations and chunking):
//   byte 0   bit 0: role (0 server, 1 client); bit 1: permessage-deflate;
//            bit 2: peer resets its compressor (no_context_takeover); bits 3-5: peer window bits 8+n;
//            bit 6: the stream is a script of messages that the peer's `Sender` and
//            `PerMessageDeflate` encode (see `encodeScript`), so compressed, fragmented
//            traffic is reached; unless the script flips a byte, the messages must come back.
//   byte 1   bits 0-1: number of split points (0-3); bits 2-3: maxPayload (64 KiB, 1000, 125, 64 KiB)
//            bit 4: also feed the stream one byte at a time (inputs ≤ 2 KiB)
//   then 2 bytes (big endian) per split point, taken modulo the stream's length + 1
//   the rest: the byte stream.
//
// Properties checked (a violation traps with a message):
// - a thrown error's close code is 1002, 1007 or 1009 (1011 only from zlib, which counts
//   as a finding too: it means the engine drove zlib into a state it does not expect);
// - after a throw or a close event, `next()` returns nil, even after more bytes;
// - every text event is valid UTF-8 (`String(validating:)`);
// - no data event exceeds maxPayload, no control event exceeds 125 bytes;
// - the events and the close code are the same whole, split and byte by byte.
import FuzzerSupport
import NIOCore
import WebSocketCore

runFuzzer(fuzz)

struct Outcome: Equatable {
    var events: [ReceivedEvent] = []
    var closeCode: UInt16?
    var reason = ""
}

struct Setup {
    var role: Role
    var deflate: Bool
    var noContextTakeover: Bool
    var windowBits: Int
    var maxPayload: Int

    func makeReceiver() -> Receiver {
        let compression: PerMessageDeflate?
        if deflate {
            // The peer's parameters are what matters for our decompressor.
            var parameters = PerMessageDeflateParameters()
            if role == .server {
                parameters.clientNoContextTakeover = noContextTakeover
                parameters.clientMaxWindowBits = windowBits
            } else {
                parameters.serverNoContextTakeover = noContextTakeover
                parameters.serverMaxWindowBits = windowBits
            }
            compression = PerMessageDeflate(role: role, parameters: parameters)
        } else {
            compression = nil
        }
        return Receiver(configuration: .init(role: role, maxPayload: maxPayload), compression: compression)
    }
}

func check(_ event: ReceivedEvent, _ setup: Setup) {
    switch event {
    case .text(let buffer):
        require(buffer.readableBytes <= setup.maxPayload, "text event of \(buffer.readableBytes) bytes > maxPayload \(setup.maxPayload)")
        require(String(validating: buffer.readableBytesView, as: UTF8.self) != nil, "text event is not valid UTF-8: \(Array(buffer.readableBytesView.prefix(64)))")
    case .binary(let buffer):
        require(buffer.readableBytes <= setup.maxPayload, "binary event of \(buffer.readableBytes) bytes > maxPayload \(setup.maxPayload)")
    case .ping(let buffer), .pong(let buffer):
        require(buffer.readableBytes <= 125, "control event of \(buffer.readableBytes) bytes")
    case .close(_, let reason):
        require(reason.utf8.count <= 123, "close reason of \(reason.utf8.count) bytes")
    }
}

/// Feeds `stream` in pieces ending at `ends` (ascending, last = stream.count).
func run(_ stream: ArraySlice<UInt8>, _ ends: [Int], _ setup: Setup) -> Outcome {
    var receiver = setup.makeReceiver()
    var outcome = Outcome()
    var start = stream.startIndex
    var stopped = false
    for end in ends {
        let upper = stream.startIndex + end
        receiver.append(ByteBuffer(bytes: stream[start..<upper]))
        start = upper
        do {
            while let event = try receiver.next() {
                check(event, setup)
                outcome.events.append(event)
                if case .close = event {
                    stopped = true
                    break
                }
            }
        } catch {
            let code = error.closeCode.rawValue
            require([1002, 1007, 1009].contains(code), "unexpected close code \(code): \(error.reason)")
            require(!error.reason.contains("\n") && error.reason.utf8.count <= 123, "bad reason: \(error.reason)")
            outcome.closeCode = code
            outcome.reason = error.reason
            stopped = true
        }
        if stopped { break }
    }
    if stopped {
        require(receiver.isFinished, "stopped but not finished")
        require((try? receiver.next()) == .some(nil), "next() after a throw/close did not return nil")
        receiver.append(ByteBuffer(bytes: [0x81, 0x00, 0x89, 0x80, 0, 0, 0, 0]))
        require((try? receiver.next()) == .some(nil), "next() after a throw/close + more bytes did not return nil")
    }
    return outcome
}

func describe(_ outcome: Outcome) -> String {
    "\(outcome.events.count) events \(outcome.events.map { "\($0)".prefix(60) }) close \(outcome.closeCode.map(String.init) ?? "-") \(outcome.reason)"
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard size >= 2, let data else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let config = bytes[0]
    let splitCount = Int(bytes[1] & 0x03)
    let maxPayloads = [64 * 1024, 1000, 125, 64 * 1024]
    let setup = Setup(
        role: config & 1 == 0 ? .server : .client,
        deflate: config & 2 != 0,
        noContextTakeover: config & 4 != 0,
        windowBits: 8 + Int((config >> 3) & 7),
        maxPayload: maxPayloads[Int((bytes[1] >> 2) & 3)]
    )
    let byteByByte = bytes[1] & 0x10 != 0
    let headerLength = 2 + 2 * splitCount
    guard size >= headerLength else { return 0 }
    var stream = bytes[headerLength...]

    var expected: Outcome?
    if config & 0x40 != 0 {
        guard let script = encodeScript(stream, setup) else { return 0 }
        stream = script.bytes[...]
        expected = script.expected
    }
    var ends: [Int] = []
    for index in 0..<splitCount {
        let raw = Int(bytes[2 + 2 * index]) << 8 | Int(bytes[3 + 2 * index])
        ends.append(raw % (stream.count + 1))
    }
    ends = (ends + [stream.count]).sorted()

    let whole = run(stream, [stream.count], setup)
    if let expected {
        require(
            whole.events == expected.events && whole.closeCode == expected.closeCode,
            "encoded messages did not come back:\n  sent: \(describe(expected))\n  got:  \(describe(whole))")
    }
    let split = run(stream, ends, setup)
    require(
        whole.events == split.events && whole.closeCode == split.closeCode,
        "whole and split (at \(ends)) differ:\n  whole: \(describe(whole))\n  split: \(describe(split))")
    if byteByByte, stream.count <= 2048 {
        let single = run(stream, Array(0...stream.count), setup)
        require(
            whole.events == single.events && whole.closeCode == single.closeCode,
            "whole and byte-by-byte differ:\n  whole: \(describe(whole))\n  bytes: \(describe(single))")
    }
    return 0
}

/// Encodes a script with the peer's `Sender` (and `PerMessageDeflate` when configured).
/// Script: [flip offset: 2 bytes][flip mask], then records [kind][length][bytes…] where
/// kind bits 0-1 choose text, binary, ping, pong; bit 2 compresses (data only); bits 3-5
/// the fragment count - 1 (data only). With a zero mask the receiver must hand back every
/// message (text that is not UTF-8 ends in 1007, a message over maxPayload in 1009).
func encodeScript(_ script: ArraySlice<UInt8>, _ setup: Setup) -> (bytes: [UInt8], expected: Outcome?)? {
    guard script.count >= 3 else { return nil }
    let base = script.startIndex
    let flipOffset = Int(script[base]) << 8 | Int(script[base + 1])
    let flipMask = script[base + 2]
    let peerRole: Role = setup.role == .server ? .client : .server
    let peerDeflate: PerMessageDeflate? = setup.deflate ? setup.makeReceiver().compression.map {
        PerMessageDeflate(role: peerRole, parameters: $0.parameters)
    } : nil
    var sender = Sender(role: peerRole)
    var out = ByteBuffer()
    var expected = Outcome()
    var stopped = false
    var index = base + 3
    while index + 2 <= script.endIndex {
        let kind = script[index]
        let length = min(Int(script[index + 1]), script.endIndex - index - 2)
        let payload = Array(script[(index + 2)..<(index + 2 + length)])
        index += 2 + length
        let kindBits = kind & 3
        if kindBits >= 2 {
            let opcode: Opcode = kindBits == 2 ? .ping : .pong
            try! sender.writeControl(opcode, payload: ByteBuffer(bytes: payload.prefix(125)), into: &out)
            if !stopped {
                let body = ByteBuffer(bytes: payload.prefix(125))
                expected.events.append(opcode == .ping ? .ping(body) : .pong(body))
            }
            continue
        }
        let opcode: Opcode = kindBits == 0 ? .text : .binary
        let compress = kind & 4 != 0 && peerDeflate != nil
        let fragments = Int((kind >> 3) & 7) + 1
        let cut = max(1, (payload.count + fragments - 1) / fragments)
        var pieces = stride(from: 0, to: payload.count, by: cut).map { Array(payload[$0..<min($0 + cut, payload.count)]) }
        if pieces.isEmpty { pieces = [[]] }
        // What the receiver must do, fragment by fragment: the frame's header is judged
        // against maxPayload first (wire bytes so far), then an inflated fragment against
        // maxPayload, then the text so far must still be completable UTF-8.
        var wire = 0
        var verdict: UInt16?
        var received = 0
        for (number, piece) in pieces.enumerated() {
            let isFinal = number == pieces.count - 1
            var body = ByteBuffer(bytes: piece)
            if compress {
                body = ByteBuffer()
                try! peerDeflate!.compress(ByteBuffer(bytes: piece), isFinal: isFinal, into: &body)
            }
            wire += body.readableBytes
            received += piece.count
            sender.writeFrame(
                opcode: number == 0 ? opcode : .continuation, fin: isFinal,
                reservedBits: compress && number == 0 ? .rsv1 : [], payload: body, into: &out)
            guard verdict == nil else { continue }
            if wire > setup.maxPayload || received > setup.maxPayload {
                verdict = 1009
            } else if opcode == .text, !isCompletableUTF8(payload[..<received], isFinal: isFinal) {
                verdict = 1007
            }
        }
        if stopped { continue }
        if let verdict {
            expected.closeCode = verdict
            stopped = true
        } else {
            let body = ByteBuffer(bytes: payload)
            expected.events.append(opcode == .text ? .text(body) : .binary(body))
        }
    }
    var bytes = Array(out.readableBytesView)
    if flipMask != 0, !bytes.isEmpty {
        bytes[flipOffset % bytes.count] ^= flipMask
        return (bytes, nil)
    }
    return (bytes, expected)
}

/// Whether `prefix` is valid UTF-8 (`isFinal`) or can still become valid with more bytes.
/// Any incomplete sequence can be completed with at most 3 bytes, the first of which is
/// 80, 90 or A0 (the narrowest second-byte ranges are E0 A0–BF, ED 80–9F, F0 90–BF, F4 80–8F).
func isCompletableUTF8(_ prefix: ArraySlice<UInt8>, isFinal: Bool) -> Bool {
    if String(validating: prefix, as: UTF8.self) != nil { return true }
    if isFinal { return false }
    for length in 1...3 {
        for first: UInt8 in [0x80, 0x90, 0xA0] {
            let completion = [first] + [UInt8](repeating: 0x80, count: length - 1)
            if String(validating: Array(prefix) + completion, as: UTF8.self) != nil { return true }
        }
    }
    return false
}
