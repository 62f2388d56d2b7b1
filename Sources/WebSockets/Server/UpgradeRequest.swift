import NIOCore
import WebSocketCore

/// A client's upgrade request as the server's hooks see it, already checked against
/// RFC 6455 §4.2.1.
public struct UpgradeRequest: Sendable {
    /// Path and query as the client sent them.
    public var target: String
    /// The request's headers, in order.
    public var headers: HTTPFields
    /// The client's socket address (a proxy's, behind one: see `forwardedFor`).
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

    /// The client's address as proxies reported it: the first entry of `X-Forwarded-For`
    /// (the original client), else the socket's peer address. Trust it only behind a
    /// proxy you run, since a client can send the header itself.
    public var forwardedFor: String? {
        if let header = headers.values(for: "X-Forwarded-For").first,
            let first = header.split(separator: ",").first
        {
            let trimmed = first.trimmingCharacters(in: " \t")
            if !trimmed.isEmpty { return trimmed }
        }
        return remoteAddress?.ipAddress
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
