import NIOCore
import Testing

@testable import WebSockets

/// What the gatherer keeps, copies and hands out for writing, and how it counts it.
@Suite struct OutboundGathererTests {
    private let allocator = ByteBufferAllocator()

    private func bytes(_ count: Int, _ value: UInt8 = 7) -> ByteBuffer {
        ByteBuffer(repeating: value, count: count)
    }

    private func baseAddress(_ buffer: ByteBuffer) -> UInt? {
        buffer.withUnsafeReadableBytes { $0.baseAddress.map { UInt(bitPattern: $0) } }
    }

    @Test func theFirstFrameIsKeptItselfAndALoneOneGoesAsOneWriteAndFlush() {
        var gatherer = OutboundGatherer(maxBufferedAmount: 1 << 20)
        let frame = bytes(100)
        gatherer.gather(frame)
        #expect(gatherer.gatheredBytes == 100)
        // The same storage: a retain, not a copy.
        #expect(gatherer.gathered.flatMap(baseAddress) == baseAddress(frame))
        guard case .writeAndFlush(let written) = gatherer.takeForFlush(forPromise: false) else {
            Issue.record("a lone gathered frame did not go as one writeAndFlush")
            return
        }
        #expect(baseAddress(written) == baseAddress(frame))
        #expect(gatherer.gatheredBytes == 0)
        #expect(!gatherer.needsFlush)
        #expect(gatherer.takeForFlush(forPromise: false) == .nothing)
    }

    @Test func laterFramesAreCopiedBehindAndTheSharedFrameIsLeftAlone() {
        var gatherer = OutboundGatherer(maxBufferedAmount: 1 << 20)
        let shared = bytes(10, 1)
        gatherer.gather(shared)
        gatherer.gather(bytes(20, 2))
        gatherer.gather(bytes(30, 3))
        #expect(gatherer.gatheredBytes == 60)
        #expect(shared == bytes(10, 1))
        var expected = bytes(10, 1)
        expected.writeImmutableBuffer(bytes(20, 2))
        expected.writeImmutableBuffer(bytes(30, 3))
        #expect(gatherer.takeForFlush(forPromise: false) == .writeAndFlush(expected))
    }

    @Test func framesUpToTheThresholdAreGatheredLargerOnesGoOnTheirOwn() {
        #expect(OutboundGatherer.gathers(byteCount: OutboundGatherer.copyThreshold))
        #expect(!OutboundGatherer.gathers(byteCount: OutboundGatherer.copyThreshold + 1))
    }

    @Test func encodingAllocatesOnceAndAppends() {
        var gatherer = OutboundGatherer(maxBufferedAmount: 1 << 20)
        gatherer.gather(capacity: 10, allocator: allocator) { $0.writeBytes([1, 2]) }
        #expect((gatherer.gathered?.capacity ?? 0) >= 1024)
        let first = gatherer.gathered.flatMap(baseAddress)
        gatherer.gather(capacity: 10, allocator: allocator) { $0.writeBytes([3]) }
        #expect(gatherer.gathered == ByteBuffer(bytes: [1, 2, 3]))
        #expect(gatherer.gathered.flatMap(baseAddress) == first)
    }

    @Test func theAllocatorIsReachedOnlyForANewBuffer() {
        var gatherer = OutboundGatherer(maxBufferedAmount: 1 << 20)
        var asked = 0
        func counting() -> ByteBufferAllocator {
            asked += 1
            return allocator
        }
        gatherer.gather(capacity: 10, allocator: counting()) { $0.writeBytes([1]) }
        gatherer.gather(capacity: 10, allocator: counting()) { $0.writeBytes([2]) }
        #expect(asked == 1)
    }

    @Test func whatWasGatheredGoesBeforeABufferWrittenOnItsOwn() {
        var gatherer = OutboundGatherer(maxBufferedAmount: 1 << 20)
        gatherer.gather(bytes(5))
        #expect(gatherer.takeBeforeOwnWrite() == bytes(5))
        #expect(gatherer.needsFlush)
        // Frames gathered after it go in a write of their own, then one flush covers both.
        gatherer.gather(bytes(6))
        #expect(gatherer.takeForFlush(forPromise: false) == .writeThenFlush(bytes(6)))
        #expect(!gatherer.needsFlush)
    }

    @Test func anOwnWriteWithNothingGatheredLeavesOnlyAFlush() {
        var gatherer = OutboundGatherer(maxBufferedAmount: 1 << 20)
        #expect(gatherer.takeBeforeOwnWrite() == nil)
        #expect(gatherer.takeForFlush(forPromise: false) == .flush)
        #expect(gatherer.takeForFlush(forPromise: false) == .nothing)
    }

    @Test func aPromiseWithNothingGatheredRidesAnEmptyWrite() {
        var gatherer = OutboundGatherer(maxBufferedAmount: 1 << 20)
        #expect(gatherer.takeForWrite(forPromise: false) == nil)
        #expect(!gatherer.needsFlush)
        #expect(gatherer.takeForWrite(forPromise: true) == ByteBuffer())
        #expect(gatherer.needsFlush)
        var idle = OutboundGatherer(maxBufferedAmount: 1 << 20)
        #expect(idle.takeForFlush(forPromise: true) == .writeThenFlush(ByteBuffer()))
        #expect(!idle.needsFlush)
    }

    @Test func aWriteCarryingAPromiseTakesTheGatheredFrames() {
        var gatherer = OutboundGatherer(maxBufferedAmount: 1 << 20)
        gatherer.gather(bytes(8))
        #expect(gatherer.takeForWrite(forPromise: true) == bytes(8))
        #expect(gatherer.gatheredBytes == 0)
        #expect(gatherer.takeForFlush(forPromise: false) == .flush)
    }

    @Test func roomIsCountedAgainstTheLimitLessTheWatermark() {
        // 100_000 less NIO's default high watermark (65_536): 34_464 bytes may be gathered.
        var gatherer = OutboundGatherer(maxBufferedAmount: 100_000)
        #expect(gatherer.hasRoom)
        gatherer.gather(bytes(34_464))
        #expect(gatherer.hasRoom)
        gatherer.gather(bytes(1))
        #expect(!gatherer.hasRoom)
        #expect(gatherer.bufferedAmount(channelBytes: 0) == 34_465)
        #expect(gatherer.bufferedAmount(channelBytes: 1_000) == 35_465)
        _ = gatherer.takeForFlush(forPromise: false)
        #expect(gatherer.hasRoom)
        #expect(gatherer.bufferedAmount(channelBytes: 1_000) == 1_000)
    }

    @Test func theChannelsWatermarkSetsTheLimit() {
        var gatherer = OutboundGatherer(maxBufferedAmount: 100_000)
        gatherer.setWriteHighWatermark(90_000, maxBufferedAmount: 100_000)
        gatherer.gather(bytes(10_000))
        #expect(gatherer.hasRoom)
        gatherer.gather(bytes(1))
        #expect(!gatherer.hasRoom)
    }

    @Test func anUnwritableChannelLeavesNoRoomWithoutAsking() {
        var gatherer = OutboundGatherer(maxBufferedAmount: 1 << 20)
        gatherer.channelIsWritable = false
        #expect(!gatherer.hasRoom)
        gatherer.channelIsWritable = true
        #expect(gatherer.hasRoom)
    }
}
