import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A TCP relay on 127.0.0.1 between clients and a broker, for resume tests: it can cut every
/// connection through it at a moment the test picks, refuse new ones for a while, drop every
/// byte both ways while keeping the connections open (a dead path: no FIN, no RST), follow the
/// broker to a new port after a restart, and can keep what the broker sent (to read the wire).
public final class CuttingRelay: Sendable {
    private struct State {
        var target: Int
        var refusing = false
        var blackholed = false
        var fronts: [ObjectIdentifier: any Channel] = [:]
        var cuts = 0
        var accepted = 0
        var recording: Bool
        var fromBroker: [UInt8] = []
    }
    private let state: NIOLockedValueBox<State>
    private let channel: any Channel
    public var port: Int { channel.localAddress!.port! }

    /// `recording`: keep every byte the broker sends (`fromBroker`).
    public init(
        target: Int, recording: Bool = false, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws {
        let state = NIOLockedValueBox(State(target: target, recording: recording))
        self.state = state
        channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.autoRead, value: false)
            .childChannelInitializer { front in
                let admitted = state.withLockedValue { state -> Int? in
                    guard !state.refusing else { return nil }
                    state.fronts[ObjectIdentifier(front)] = front
                    state.accepted += 1
                    return state.target
                }
                guard let target = admitted else { return front.close() }
                front.closeFuture.whenComplete { _ in
                    state.withLockedValue { _ = $0.fronts.removeValue(forKey: ObjectIdentifier(front)) }
                }
                return ClientBootstrap(group: front.eventLoop)
                    .channelInitializer { back in
                        back.eventLoop.makeCompletedFuture {
                            try back.pipeline.syncOperations.addHandler(Pipe(to: front, state: state, fromBroker: true))
                        }
                    }
                    .connect(host: "127.0.0.1", port: target)
                    .flatMap { back in
                        back.closeFuture.whenComplete { _ in front.close(promise: nil) }
                        front.closeFuture.whenComplete { _ in back.close(promise: nil) }
                        return front.eventLoop.makeCompletedFuture {
                            try front.pipeline.syncOperations.addHandler(Pipe(to: back, state: state, fromBroker: false))
                        }.flatMap { front.setOption(.autoRead, value: true) }
                    }
                    .flatMapErrorThrowing { _ in front.close(promise: nil) }
            }
            .bind(host: "127.0.0.1", port: 0).get()
    }

    /// Drops every connection through the relay (both sides see TCP end without a close frame).
    public func cutAll() {
        let fronts = state.withLockedValue { state in
            state.cuts += 1
            return Array(state.fronts.values)
        }
        for front in fronts { front.close(promise: nil) }
    }

    /// Refuses (closes at once) new connections while true.
    public func setRefusing(_ refusing: Bool) {
        state.withLockedValue { $0.refusing = refusing }
    }

    /// While true, every byte read on either side of every connection (open or new) is
    /// dropped and nothing is closed: only a heartbeat notices. Bytes dropped stay dropped.
    public func setBlackholed(_ blackholed: Bool) {
        state.withLockedValue { $0.blackholed = blackholed }
    }

    /// New connections go to this port from now on.
    public func retarget(_ port: Int) {
        state.withLockedValue { $0.target = port }
    }

    /// Connections accepted so far.
    public var accepted: Int { state.withLockedValue { $0.accepted } }

    /// Every byte the broker sent through the relay so far (with `recording`).
    public var fromBroker: [UInt8] { state.withLockedValue { $0.fromBroker } }

    public func close() async {
        cutAll()
        try? await channel.close()
    }

    /// Copies what one side reads to the other (unbounded: the tests' clients keep reading).
    private final class Pipe: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let peer: any Channel
        let state: NIOLockedValueBox<State>
        let fromBroker: Bool

        init(to peer: any Channel, state: NIOLockedValueBox<State>, fromBroker: Bool) {
            self.peer = peer
            self.state = state
            self.fromBroker = fromBroker
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let buffer = unwrapInboundIn(data)
            let forward = state.withLockedValue { state in
                guard !state.blackholed else { return false }
                if fromBroker, state.recording { state.fromBroker.append(contentsOf: buffer.readableBytesView) }
                return true
            }
            guard forward else { return }
            peer.writeAndFlush(buffer, promise: nil)
        }
    }
}
