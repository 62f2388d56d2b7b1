import AsyncTestSupport
import NIOCore
import NIOPosix
import TestPeers
import Testing

@testable import WebSockets

/// A server connection writes a lone frame straight to its socket while NIO holds nothing
/// for it, and hands NIO whatever the kernel does not take.
@Suite struct DirectWriteTests {
    /// The server sends a burst of frames in one event-loop task, through a small send
    /// buffer, to a peer with a small receive buffer that reads on a thread of its own:
    /// the kernel soon takes only part of a frame, NIO must get the rest, and since NIO
    /// writes it only after the task, the frames after it must queue behind it in NIO even
    /// when the peer has made room in the socket meanwhile. Every seventh frame carries a promise, which sends it through NIO,
    /// so the two ways interleave. The peer must get every frame whole and in order.
    @Test func framesStayWholeAndInOrderWhenTheSocketFills() async throws {
        let serverSide = Waiter<WebSocket>("server connection")
        let peerGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        try await withServer({
            $0.connection.maxBufferedAmount = 64 << 20
        }, onConnection: { ws in
            ws.onMessage { _ in }
            serverSide.fulfill(ws)
        }) { _, port in
            let peer = try await RawPeer.upgraded(port: port, group: peerGroup, receiveBuffer: 4096)
            let ws = try await serverSide.value()
            // A send buffer of a few KiB (fixed, not grown by the kernel): the burst fills it
            // many times over while the peer empties it.
            try await ws.channel.setOption(.socketOption(.so_sndbuf), value: 4096).get()
            let count = 3000
            @Sendable func payload(_ index: Int) -> ByteBuffer {
                var bytes = pseudoRandomBytes(1500, seed: UInt64(index) + 1)
                bytes.setInteger(UInt32(index), at: 0)
                return bytes
            }
            let nioHeldBytes = try await ws.eventLoop.submit {
                var held = false
                for index in 0..<count {
                    let promise = index % 7 == 0 ? ws.eventLoop.makePromise(of: Void.self) : nil
                    ws.send(.binary(payload(index)), promise: promise)
                    held = held || ws.bufferedAmountOnLoop > 0
                }
                return held
            }.get()
            #expect(nioHeldBytes, "the socket never filled, so NIO took no part of a frame")
            var received = 0
            while received < count {
                for frame in try await peer.readFrames() {
                    #expect(frame.fin && frame.opcode == 0x2)
                    guard frame.payload == Array(payload(received).readableBytesView) else {
                        Issue.record("frame \(received) differs: \(frame)")
                        return
                    }
                    received += 1
                }
            }
            ws.terminate()
        }
        try await peerGroup.shutdownGracefully()
    }

    /// The descriptor is found under this SwiftNIO's channel. NIO does not publish it: should
    /// its layout change, every write would quietly go through NIO again, which only a
    /// benchmark would show.
    @Test func theSocketsDescriptorIsFound() async throws {
        let serverSide = Waiter<WebSocket>("server connection")
        try await withServer({ _ in }, onConnection: { ws in serverSide.fulfill(ws) }) { _, port in
            let peer = try await RawPeer.upgraded(port: port)
            let ws = try await serverSide.value()
            let descriptor = try await ws.eventLoop.submit { SocketDescriptor.of(ws.channel) }.get()
            #expect(descriptor != nil)
            peer.close()
            ws.terminate()
        }
    }
}
