import NIOCore
import WebSocketCore

/// A request on a server's port that is not a WebSocket upgrade (it has no `Upgrade`
/// header), read whole and handed to `WebSocketServer.Options.plainHTTP`.
public struct PlainHTTPRequest: Sendable {
    /// `GET`, `POST`, … as the client sent it.
    public var method: String
    /// Path and query as the client sent them.
    public var target: String
    /// The request's headers, in order.
    public var headers: HTTPFields
    /// At most `Options.maxPlainHTTPBody` bytes.
    public var body: ByteBuffer
    /// The client's socket address.
    public var remoteAddress: SocketAddress?

    /// A request as the server hands it over (for tests of a `plainHTTP` function).
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
    /// The status code (200, 404, …).
    public var status: Int
    /// Headers to send; `Content-Length` and `Connection: close` are added.
    public var headers: HTTPFields
    /// The body. Default empty.
    public var body: ByteBuffer

    /// An answer with `status`, `headers` and `body`.
    public init(status: Int, headers: HTTPFields = HTTPFields(), body: ByteBuffer = ByteBuffer()) {
        self.status = status
        self.headers = headers
        self.body = body
    }
}
