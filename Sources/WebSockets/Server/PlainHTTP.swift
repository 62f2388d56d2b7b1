import NIOCore
import WebSocketCore

/// A request on a server's port that is not a WebSocket upgrade (it has no `Upgrade`
/// header), read whole and handed to `WebSocketServer.Options.plainHTTP`.
public struct PlainHTTPRequest: Sendable {
    /// `GET`, `POST`, … as the client sent it.
    public var method: String
    /// Path and query as the client sent them.
    public var target: String
    public var headers: HTTPFields
    /// At most `Options.maxPlainHTTPBody` bytes.
    public var body: ByteBuffer
    public var remoteAddress: SocketAddress?

    public init(
        method: String, target: String, headers: HTTPFields = HTTPFields(), body: ByteBuffer = ByteBuffer(),
        remoteAddress: SocketAddress? = nil
    ) {
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
        self.remoteAddress = remoteAddress
    }

    /// The target without its query.
    public var path: String { HandshakeInfo(target: target).path }
    /// The query parameters, by the rules of `URLQuery` (the first of a repeated name wins).
    public var query: [String: String] { URLQuery(target: target).dictionary }
}

/// The answer to a `PlainHTTPRequest`. The server adds `Content-Length` and
/// `Connection: close`: one request per connection.
public struct PlainHTTPResponse: Sendable {
    public var status: Int
    public var headers: HTTPFields
    public var body: ByteBuffer

    public init(status: Int, headers: HTTPFields = HTTPFields(), body: ByteBuffer = ByteBuffer()) {
        self.status = status
        self.headers = headers
        self.body = body
    }
}
