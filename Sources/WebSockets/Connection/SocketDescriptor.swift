#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore

/// The file descriptor under a NIO socket channel, for `WebSocketHandler`'s direct writes.
/// NIO does not publish it, so it is read from the channel's stored properties (its
/// `socket`, and that socket's `descriptor`) once per connection, and accepted only if it
/// is a socket connected to the channel's peer from the channel's address: with another
/// channel type, or should NIO's layout change, there is none and every write goes
/// through NIO as before.
enum SocketDescriptor {
    static func of(_ channel: any Channel) -> CInt? {
        guard let socket = stored("socket", of: channel),
            let descriptor = stored("descriptor", of: socket) as? CInt, descriptor >= 0,
            let local = channel.localAddress, let remote = channel.remoteAddress,
            address(of: descriptor, getsockname) == local, address(of: descriptor, getpeername) == remote
        else { return nil }
        return descriptor
    }

    /// Sends without blocking and without SIGPIPE; the bytes taken, or -1 (errno says why).
    @inline(__always)
    static func sendNow(_ descriptor: CInt, _ bytes: UnsafeRawBufferPointer) -> Int {
        #if canImport(Darwin)
        // Darwin has no MSG_NOSIGNAL; NIO sets SO_NOSIGPIPE on its sockets.
        return send(descriptor, bytes.baseAddress, bytes.count, MSG_DONTWAIT)
        #else
        return send(descriptor, bytes.baseAddress, bytes.count, CInt(MSG_DONTWAIT) | CInt(MSG_NOSIGNAL))
        #endif
    }

    /// The stored property `label` of `subject` or of one of its superclasses.
    private static func stored(_ label: String, of subject: Any) -> Any? {
        var mirror: Mirror? = Mirror(reflecting: subject)
        while let current = mirror {
            if let child = current.children.first(where: { $0.label == label }) { return child.value }
            mirror = current.superclassMirror
        }
        return nil
    }

    private static func address(
        of descriptor: CInt, _ query: (CInt, UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<socklen_t>) -> CInt
    ) -> SocketAddress? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { query(descriptor, $0, &length) }
        }
        guard result == 0 else { return nil }
        switch Int32(storage.ss_family) {
        case AF_INET:
            return withUnsafeBytes(of: &storage) { raw in
                SocketAddress(raw.load(as: sockaddr_in.self), host: "")
            }
        case AF_INET6:
            return withUnsafeBytes(of: &storage) { raw in
                SocketAddress(raw.load(as: sockaddr_in6.self), host: "")
            }
        default:
            return nil
        }
    }
}
