import Synchronization

/// The part of a connection's state that any thread may read without hopping to its
/// event loop.
final class ConnectionStatus: Sendable {
    let readyState = Atomic<UInt8>(ReadyState.connecting.rawValue)
}
