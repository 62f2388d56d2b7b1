import NIOCore
import WebSocketCore

extension ClientOptions {
    /// `transport`, unless it is the default `TCPTransport`: then the transport chosen by
    /// the URL (TLS for wss://, unix sockets, the proxy).
    var resolvedTransport: any ClientTransport {
        transport is TCPTransport ? DefaultTransport(tls: tls, proxy: proxy) : transport
    }
}

extension WebSocket {
    static let redirectStatuses: Set<Int> = [301, 302, 303, 307, 308]

    /// Connects, following up to `maxRedirects` redirects when `followRedirects` is on.
    /// A redirect to another host (or port, scheme or socket) does not take the
    /// credentials along: the URL's user info and `Authorization`/`Cookie` headers are dropped.
    static func connectFollowingRedirects(
        to url: WebSocketURL, options: ClientOptions, group: any EventLoopGroup
    ) async throws -> WebSocket {
        var url = url
        var options = options
        var redirects = 0
        while true {
            do {
                return try await connectOnce(to: url, options: options, group: group)
            } catch ConnectError.unexpectedResponse(let status, let headers, _)
                where options.followRedirects && redirectStatuses.contains(status)
            {
                guard redirects < options.maxRedirects else { throw ConnectError.tooManyRedirects(options.maxRedirects) }
                redirects += 1
                guard let location = headers.first("Location"), !location.isEmpty else {
                    throw ConnectError.invalidRedirect("\(status) without a Location header")
                }
                let next = try redirectTarget(location, from: url)
                if next.host.lowercased() != url.host.lowercased() || next.port != url.port
                    || next.scheme != url.scheme || next.socketPath != url.socketPath
                {
                    var stripped = HTTPFields()
                    for field in options.headers
                    where field.name.lowercased() != "authorization" && field.name.lowercased() != "cookie" {
                        stripped.add(name: field.name, value: field.value)
                    }
                    options.headers = stripped
                    url = next
                    url.user = nil
                    url.password = nil
                } else {
                    let (user, password) = (url.user, url.password)
                    url = next
                    if url.user == nil { (url.user, url.password) = (user, password) }
                }
            }
        }
    }

    /// Resolves a `Location` against the URL that was redirected: absolute (ws, wss, http,
    /// https), scheme-relative (`//host/path`) or a path.
    static func redirectTarget(_ location: String, from url: WebSocketURL) throws -> WebSocketURL {
        do {
            if location.contains("://") { return try WebSocketURL(location) }
            if location.hasPrefix("//") { return try WebSocketURL("\(url.scheme.rawValue):\(location)") }
        } catch {
            throw ConnectError.invalidRedirect("Location \(location): \(error.problem)")
        }
        var next = url
        if location.hasPrefix("/") {
            next.target = location
        } else if location.hasPrefix("?") {
            next.target = url.handshakePath + location
        } else {
            let directory = url.handshakePath.split(separator: "/", omittingEmptySubsequences: false).dropLast()
                .joined(separator: "/")
            next.target = directory + "/" + location
        }
        return next
    }
}

extension WebSocketURL {
    fileprivate var handshakePath: String { String(target.prefix { $0 != "?" }) }
}
