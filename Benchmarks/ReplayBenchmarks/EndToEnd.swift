// End-to-end replay benchmarks: this process is the client(s) of a real `switchboard serve`
// (see Benchmarks/replay.sh, which starts the server on CPU 0 and this on CPU 1).
//
// The client is raw NIO, one event loop, so that it costs far less than the server per
// message: publishes are pre-built masked frames written many per flush, and incoming frames
// are told apart by one byte (`{"op":"a…` ack, `{"op":"m…` msg) with the seq read at a fixed
// offset, never parsed as JSON.
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Switchboard

/// What a benchmark connection does with the server's frames; called on the client's loop.
protocol FrameConsumer: AnyObject {
    /// The upgrade succeeded: start sending.
    func opened(_ context: ChannelHandlerContext)
    /// One complete server frame; its payload is `buffer`'s bytes at `payload`.
    func frame(opcode: UInt8, _ buffer: ByteBuffer, payload: Range<Int>, context: ChannelHandlerContext)
    /// Everything read so far has been handed to `frame`: the moment to write (batched).
    func readComplete(_ context: ChannelHandlerContext)
}

/// HTTP upgrade, then unmasked server frames split out of the byte stream.
final class BenchHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let consumer: any FrameConsumer
    private let opened: EventLoopPromise<Void>
    private var upgraded = false
    /// Bytes of a frame (or response head) split across reads.
    private var pending = ByteBuffer()

    init(consumer: any FrameConsumer, opened: EventLoopPromise<Void>) {
        self.consumer = consumer
        self.opened = opened
    }

    func channelActive(context: ChannelHandlerContext) {
        let request = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            + "Sec-WebSocket-Protocol: switchboard.v1\r\n\r\n"
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: request)), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if pending.readableBytes == 0 {
            parse(&incoming, context)
            if incoming.readableBytes > 0 { pending = incoming }
        } else {
            pending.writeBuffer(&incoming)
            parse(&pending, context)
            if pending.readableBytes == 0 { pending.clear() }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if upgraded { consumer.readComplete(context) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        opened.fail(ChannelError.ioOnClosedChannel)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        opened.fail(error)
        context.close(promise: nil)
    }

    private func parse(_ buffer: inout ByteBuffer, _ context: ChannelHandlerContext) {
        if !upgraded {
            let view = buffer.readableBytesView
            guard let end = view.firstRange(of: [13, 10, 13, 10]) else { return }
            let head = String(decoding: view[..<end.upperBound], as: UTF8.self)
            buffer.moveReaderIndex(to: end.upperBound)
            guard head.hasPrefix("HTTP/1.1 101") else {
                opened.fail(BenchError("upgrade refused: \(head)"))
                context.close(promise: nil)
                return
            }
            upgraded = true
            opened.succeed()
            consumer.opened(context)
        }
        while buffer.readableBytes >= 2 {
            let start = buffer.readerIndex
            let first = buffer.getInteger(at: start, as: UInt8.self)!
            var length = Int(buffer.getInteger(at: start + 1, as: UInt8.self)! & 0x7F)
            var header = 2
            if length == 126 {
                guard buffer.readableBytes >= 4 else { return }
                length = Int(buffer.getInteger(at: start + 2, as: UInt16.self)!)
                header = 4
            } else if length == 127 {
                guard buffer.readableBytes >= 10 else { return }
                length = Int(buffer.getInteger(at: start + 2, as: UInt64.self)!)
                header = 10
            }
            guard buffer.readableBytes >= header + length else { return }
            consumer.frame(opcode: first & 0x0F, buffer, payload: (start + header)..<(start + header + length), context: context)
            buffer.moveReaderIndex(forwardBy: header + length)
        }
    }
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Connects and upgrades; `consumer` is called from then on.
func connectBench(group: any EventLoopGroup, port: Int, consumer: any FrameConsumer & Sendable) throws -> any Channel {
    let loop = group.next()
    let opened = loop.makePromise(of: Void.self)
    let channel = try ClientBootstrap(group: loop)
        .channelOption(.tcpOption(.tcp_nodelay), value: 1)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(BenchHandler(consumer: consumer, opened: opened))
            }
        }
        .connect(host: "127.0.0.1", port: port).wait()
    try opened.futureResult.wait()
    return channel
}

/// A masked client text frame (the mask is fixed: the server unmasks every frame the same way).
func maskedTextFrame(_ text: String, into buffer: inout ByteBuffer) {
    let mask: [UInt8] = [0x5A, 0xC3, 0x3C, 0xA5]
    let payload = Array(text.utf8)
    buffer.writeInteger(UInt8(0x81))
    if payload.count < 126 {
        buffer.writeInteger(UInt8(0x80 | payload.count))
    } else {
        buffer.writeInteger(UInt8(0x80 | 126))
        buffer.writeInteger(UInt16(payload.count))
    }
    buffer.writeBytes(mask)
    for (index, byte) in payload.enumerated() { buffer.writeInteger(byte ^ mask[index & 3]) }
}

/// The `op` of a server text frame by its first letter: `{"op":"` is 7 bytes.
@inline(__always)
func opLetter(_ buffer: ByteBuffer, _ payload: Range<Int>) -> UInt8 {
    payload.count > 7 ? buffer.getInteger(at: payload.lowerBound + 7, as: UInt8.self)! : 0
}

@inline(__always)
func decimal(_ buffer: ByteBuffer, at offset: Int) -> UInt64 {
    var value: UInt64 = 0
    var index = offset
    while let digit = buffer.getInteger(at: index, as: UInt8.self), digit >= 48, digit <= 57 {
        value = value * 10 + UInt64(digit - 48)
        index += 1
    }
    return value
}

/// Seconds of CPU (user + system) `pid` has used, from /proc; nil without a pid.
func cpuSeconds(_ pid: Int32?) -> Double? {
    guard let pid, let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let close = stat.lastIndex(of: ")")
    else { return nil }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    // After the command: state is field 3, utime 14, stime 15 (1-based over the whole line).
    guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// The server's share of its CPU over the window and its CPU time per message: on a machine
/// shared with other work the server may not get all of CPU 0, and µs/msg tells what a whole
/// CPU would do.
func serverCPU(_ used: Double?, elapsed: Double, messages: Int) -> String {
    guard let used, messages > 0 else { return "" }
    let perMessage = used / Double(messages) * 1e6
    return ", server CPU \(Int(used / elapsed * 100))% = \(Double(Int(perMessage * 100)) / 100) µs/msg"
        + " (\(Int(1e6 / perMessage)) msg/s per CPU-second)"
}

// MARK: Ingest

/// One publisher: keeps `window` publishes with ids in flight on its topic, sending one more
/// per answer, until `total` are answered.
final class Publisher: FrameConsumer, @unchecked Sendable {
    let topic: String
    let total: Int
    let window: Int
    let done: EventLoopPromise<Void>
    private var started = false
    private var finished = false
    private var sent = 0
    private var answered = 0
    private var owed = 0
    private(set) var acked = 0
    private(set) var errors = 0
    private(set) var firstError: String?
    private(set) var lastSeq: UInt64 = 0
    private let data = "\"" + String(repeating: "x", count: 62) + "\""  // a 64-byte payload

    init(topic: String, total: Int, window: Int, done: EventLoopPromise<Void>) {
        self.topic = topic
        self.total = total
        self.window = window
        self.done = done
    }

    func opened(_ context: ChannelHandlerContext) {}

    /// On the channel's loop.
    func start(_ channel: any Channel) {
        started = true
        send(min(window, total), channel)
    }

    private func send(_ count: Int, _ channel: any Channel) {
        guard count > 0 else { return }
        var buffer = channel.allocator.buffer(capacity: count * 120)
        for _ in 0..<count {
            sent += 1
            maskedTextFrame(#"{"op":"pub","topic":"\#(topic)","data":\#(data),"id":\#(sent)}"#, into: &buffer)
        }
        channel.writeAndFlush(buffer, promise: nil)
    }

    func frame(opcode: UInt8, _ buffer: ByteBuffer, payload: Range<Int>, context: ChannelHandlerContext) {
        guard opcode == 1 else { return }
        switch opLetter(buffer, payload) {
        case UInt8(ascii: "a"):
            acked += 1
            // `{"op":"ack","id":N,"seq":S}`: the seq follows the last colon.
            let view = buffer.readableBytesView[payload]
            if let colon = view.lastIndex(of: UInt8(ascii: ":")) { lastSeq = decimal(buffer, at: colon + 1) }
        case UInt8(ascii: "e"):
            errors += 1
            if firstError == nil { firstError = buffer.getString(at: payload.lowerBound, length: payload.count) }
        default:
            return
        }
        answered += 1
        owed += 1
    }

    func readComplete(_ context: ChannelHandlerContext) {
        guard started, !finished else { return }
        if answered >= total {
            finished = true
            done.succeed()
            return
        }
        let more = min(owed, total - sent)
        owed = 0
        send(more, context.channel)
    }
}

func endToEndIngest(port: Int, publishers: Int, total: Int, window: Int, serverPID: Int32?) throws {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    defer { try? group.syncShutdownGracefully() }
    let loop = group.next()
    let perPublisher = total / publishers
    let connections = try (0..<publishers).map { index in
        let publisher = Publisher(topic: "bench.p\(index)", total: perPublisher, window: window, done: loop.makePromise())
        return (publisher, try connectBench(group: group, port: port, consumer: publisher))
    }
    let cpuBefore = cpuSeconds(serverPID)
    let start = Date()
    try loop.submit { for (publisher, channel) in connections { publisher.start(channel) } }.wait()
    for (publisher, _) in connections { try publisher.done.futureResult.wait() }
    let elapsed = Date().timeIntervalSince(start)
    let cpuUsed = cpuSeconds(serverPID).map { $0 - (cpuBefore ?? 0) }
    let (acked, errors, firstError, lastSeq) = try loop.submit {
        (
            connections.reduce(0) { $0 + $1.0.acked }, connections.reduce(0) { $0 + $1.0.errors },
            connections.compactMap { $0.0.firstError }.first, connections.map { $0.0.lastSeq }.min() ?? 0
        )
    }.wait()
    for (_, channel) in connections { try? channel.close().wait() }
    let rate = Int(Double(acked) / elapsed)
    print(
        "ingest: \(publishers) publishers × \(perPublisher), window \(window): \(acked) acked, \(errors) errors in "
            + "\(seconds(elapsed)) s = \(rate) acked msg/s" + serverCPU(cpuUsed, elapsed: elapsed, messages: acked))
    if let firstError { print("first error: \(firstError)") }
    print(
        #"RESULT {"mode":"ingest","publishers":\#(publishers),"window":\#(window),"acked":\#(acked),"errors":\#(errors),"#
            + #""min_last_seq":\#(lastSeq),"seconds":\#(elapsed),"rate":\#(rate),"#
            + #""server_cpu_s":\#(cpuUsed ?? -1),"server_cpu_pct":\#((cpuUsed ?? -1) / elapsed * 100)}"#)
}

// MARK: Replay

/// One subscriber resuming with `since`: counts `msg` frames of its topic, checks their seqs
/// are contiguous, and finishes when `last` has arrived.
final class Resumer: FrameConsumer, @unchecked Sendable {
    let topic: String
    let since: UInt64
    let last: UInt64
    let done: EventLoopPromise<Void>
    /// Bytes from the start of a `msg` payload to its seq: `{"op":"msg","topic":"T","seq":`.
    private let seqOffset: Int
    private(set) var expected: UInt64
    private(set) var received = 0
    private(set) var firstMessageAt: Date?
    private(set) var failure: String?
    private var finished = false

    init(topic: String, since: UInt64, last: UInt64, done: EventLoopPromise<Void>) {
        self.topic = topic
        self.since = since
        self.last = last
        self.done = done
        self.expected = since + 1
        self.seqOffset = #"{"op":"msg","topic":""#.utf8.count + topic.utf8.count + #"","seq":"#.utf8.count
    }

    func opened(_ context: ChannelHandlerContext) {}

    func subscribe(_ channel: any Channel) {
        var buffer = channel.allocator.buffer(capacity: 128)
        maskedTextFrame(#"{"op":"sub","topic":"\#(topic)","since":\#(since)}"#, into: &buffer)
        channel.writeAndFlush(buffer, promise: nil)
    }

    func frame(opcode: UInt8, _ buffer: ByteBuffer, payload: Range<Int>, context: ChannelHandlerContext) {
        guard opcode == 1, !finished else { return }
        switch opLetter(buffer, payload) {
        case UInt8(ascii: "m"):
            let seq = decimal(buffer, at: payload.lowerBound + seqOffset)
            if received == 0 { firstMessageAt = Date() }
            received += 1
            guard seq == expected else {
                fail("expected seq \(expected), got \(seq)")
                return
            }
            expected += 1
            if seq == last {
                finished = true
                done.succeed()
            }
        case UInt8(ascii: "s"):
            break  // subscribed
        default:
            fail("unexpected: \(buffer.getString(at: payload.lowerBound, length: payload.count) ?? "?")")
        }
    }

    private func fail(_ reason: String) {
        finished = true
        failure = reason
        done.fail(BenchError(reason))
    }

    func readComplete(_ context: ChannelHandlerContext) {}
}

func endToEndReplay(port: Int, topic: String, since: UInt64, last: UInt64, serverPID: Int32?) throws {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    defer { try? group.syncShutdownGracefully() }
    let loop = group.next()
    let resumer = Resumer(topic: topic, since: since, last: last, done: loop.makePromise())
    let channel = try connectBench(group: group, port: port, consumer: resumer)
    let cpuBefore = cpuSeconds(serverPID)
    let start = Date()
    try loop.submit { resumer.subscribe(channel) }.wait()
    try resumer.done.futureResult.wait()
    let elapsed = Date().timeIntervalSince(start)
    let cpuUsed = cpuSeconds(serverPID).map { $0 - (cpuBefore ?? 0) }
    let (received, firstAt) = try loop.submit { (resumer.received, resumer.firstMessageAt) }.wait()
    try? channel.close().wait()
    let rate = Int(Double(received) / elapsed)
    let firstMilliseconds = firstAt.map { Int($0.timeIntervalSince(start) * 1000) } ?? -1
    print(
        "replay: since \(since) → \(received) messages of \(topic), contiguous, in \(seconds(elapsed)) s = \(rate) msg/s "
            + "(first after \(firstMilliseconds) ms)" + serverCPU(cpuUsed, elapsed: elapsed, messages: received))
    print(
        #"RESULT {"mode":"replay","received":\#(received),"seconds":\#(elapsed),"rate":\#(rate),"#
            + #""first_ms":\#(firstMilliseconds),"server_cpu_s":\#(cpuUsed ?? -1),"#
            + #""server_cpu_pct":\#((cpuUsed ?? -1) / elapsed * 100)}"#)
}

/// Writes `count` messages of `topic` (seqs 1…count, 64-byte JSON payloads) straight into the
/// replay log at `path`, as the broker would have stored them.
func prefill(path: String, topic: Topic, count: Int) {
    let log = openLog(path)
    let start = now()
    let done = DispatchSemaphore(value: 0)
    let credits = DispatchSemaphore(value: 8192)
    let first = (log.retainedTopics()[topic]?.sequence ?? 0) + 1
    let data = ByteBuffer(string: "\"" + String(repeating: "x", count: 62) + "\"")
    for seq in first..<(first + UInt64(count)) {
        credits.wait()
        let message = StoredMessage(
            topic: topic, sequence: seq, time: Int64(now() * 1000), format: .json, payload: data, publisher: "prefill")
        _ = append(log, message) { _ in
            credits.signal()
            if seq == first + UInt64(count) - 1 { done.signal() }
        }
    }
    done.wait()
    log.close()
    print("prefill: \(count) messages of \(topic.name) (seqs \(first)…\(first + UInt64(count) - 1)) in \(seconds(now() - start)) s")
}
