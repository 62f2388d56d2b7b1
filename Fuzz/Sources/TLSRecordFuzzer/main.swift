// libFuzzer entry point for the TLS record path of `WebSockets`: our `TLSHandler` (made with
// the public `TLSContext.makeHandler()`, over the system OpenSSL) in a NIO `EmbeddedChannel`,
// talking to a real OpenSSL peer over memory BIOs (`Peer`). The input is a script of what
// the peer, the application and the network do, so that the fuzzer reaches close_notify at
// any point, renegotiation and key updates mid-stream, records cut into short reads, and
// tampered or invented ciphertext.
//
// Input layout:
//   byte 0   bit 0: the handler's role (0 server, 1 client); bit 1: the peer speaks at most
//            TLS 1.2 (renegotiation) instead of 1.3 (key updates)
//   then operations, one byte each (value % 16), some followed by an argument byte `a`:
//     0 a  peer writes a + 1 bytes            1 a  peer writes (a + 1) × 300 bytes
//     2 a  handler side writes a + 1 bytes    3 a  handler side writes (a + 1) × 300 bytes
//          and flushes                              and flushes
//     4 a  handler side writes a + 1 bytes, no flush    5  handler side flushes
//     6 a  hand the peer's ciphertext to the handler: all of it (a = 0) or its next a bytes
//     7    hand the handler's ciphertext to the peer; the peer reads, writes what waits
//     8    peer sends close_notify             9 a  peer renegotiates (1.2) or updates its
//                                                   keys (1.3, asking the handler to when a is odd)
//    10 a b  flip bit b % 8 of the peer's pending ciphertext at byte a (if there is one)
//    11 a  the next a bytes of the input join the peer's pending ciphertext
//    12    handler side closes                13    2 × the handshake timeout passes
//    14    the peer moves its handshake on    15 a  hand the handler the next a bytes one by one
//   Each side writes at most 1 MiB per input (later writes are skipped). Then both sides
//   exchange everything they have until nothing moves, and the channel closes.
//
// Properties checked (a violation traps with a message):
// - plaintext either side reads is exactly the other side's stream so far: nothing
//   invented, repeated or reordered, even from tampered ciphertext (`Pattern`);
// - the handler passes no plaintext up before `TLSHandshakeCompleted` (announced once)
//   or after `channelInactive`;
// - errors reach the pipeline as `TLSError`, at most one per connection, and only if the
//   ciphertext was tampered with, the handshake timed out, or the peer failed or refused;
// - a close_notify from the peer that arrives intact closes the channel; closing an open
//   connection on the handler's side sends close_notify and closes the channel;
// - when neither side closed nor failed, everything written arrives at the end;
// - every write promise completes once the channel is closed.
import FuzzerSupport
import NIOCore
import NIOEmbedded
import WebSockets

runFuzzer(fuzz)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = Input(bytes: size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size)))
    let flags = input.next()
    let session = Session(handlerIsServer: flags & 1 == 0, tls12: flags & 2 != 0)
    while !input.isEmpty {
        session.perform(input.next(), &input)
    }
    session.settle()
    session.finish()
    return 0
}

struct Input {
    var bytes: [UInt8]
    var offset = 0

    var isEmpty: Bool { offset >= bytes.count }

    /// The next byte, 0 past the end.
    mutating func next() -> UInt8 {
        guard offset < bytes.count else { return 0 }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func take(_ count: Int) -> ArraySlice<UInt8> {
        let end = min(bytes.count, offset + count)
        defer { offset = end }
        return bytes[offset..<end]
    }
}

/// Traps with the message in release builds too (`precondition` drops it under -O), so that a
/// finding says which property broke.
func require(_ condition: Bool, _ message: @autoclosure () -> String = "") {
    if !condition { fatalError(message()) }
}
