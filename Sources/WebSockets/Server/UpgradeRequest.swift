import NIOCore
import WebSocketCore

/// A client's upgrade request as the server's hooks see it, already checked against
/// RFC 6455 §4.2.1.
public struct UpgradeRequest: Sendable {
    /// Path and query as the client sent them.
    public var target: String
    /// The request's headers, in order.
    public var headers: HTTPFields
    /// The client's socket address (a proxy's, behind one: see `clientAddress`).
    public var remoteAddress: SocketAddress?
    /// `Origin` (version 13) or `Sec-WebSocket-Origin` (version 8).
    public var origin: String?
    /// Subprotocols the client offered, in its order of preference.
    public var protocols: [String]
    /// The protocol version the client asked for (13, or 8 when the server accepts it).
    public var version: WebSocketVersion

    /// The target without its query.
    public var path: String { HandshakeInfo(target: target).path }
    /// The query parameters, by the rules of `URLQuery` (the first of a repeated name wins).
    public var query: [String: String] { URLQuery(target: target).dictionary }

    /// The server's `Options.trustedProxies`: the peers whose `X-Forwarded-For` `clientAddress` believes.
    var trustedProxies: [String] = []

    /// The client's IP address. The socket's peer address, unless that peer is one of the
    /// server's `Options.trustedProxies`: then the last address in `X-Forwarded-For` that is
    /// not a trusted proxy (each proxy appends the address it saw, so the entries before
    /// that one are what the client itself sent), or the first entry when every one is a
    /// trusted proxy. With no trusted proxies (the default) the header is ignored, since a
    /// client can send it itself. Nil when the peer has no IP address (a unix socket).
    public var clientAddress: String? {
        guard let direct = remoteAddress?.ipAddress else { return nil }
        guard trustedProxies.contains(direct) else { return direct }
        let hops = headers.values(for: "X-Forwarded-For")
            .flatMap { $0.split(separator: ",") }
            .map { $0.trimmingCharacters(in: " \t") }
            .filter { !$0.isEmpty }
        return hops.last { !trustedProxies.contains($0) } ?? hops.first ?? direct
    }
}

/// What a server's `verifyClient` hook decides about an upgrade request.
public enum UpgradeDecision: Sendable {
    /// Upgrade; `headers` are added to the 101 response, and `userInfo` (what the hook
    /// learned, e.g. the authenticated principal) is kept as the connection's `userInfo`.
    case accept(headers: HTTPFields = HTTPFields(), userInfo: ConnectionUserInfo = ConnectionUserInfo())
    /// Answer with this status (401, 403, …), a one-line body and extra headers, and close.
    case reject(status: Int, body: String, headers: HTTPFields = HTTPFields())
}

extension Substring {
    func trimmingCharacters(in set: String) -> String {
        let trimmedStart = drop { set.contains($0) }
        return String(trimmedStart.reversed().drop { set.contains($0) }.reversed())
    }
}
