import WebSocketCore

/// A `ws://` or `wss://` URL taken apart (RFC 6455 §3), with the user info kept for basic auth.
public struct WebSocketURL: Sendable, Hashable, CustomStringConvertible {
    /// The URL's scheme (`http` and `https` are taken as `ws` and `wss`).
    public enum Scheme: String, Sendable, Hashable {
        /// Plain WebSocket, default port 80.
        case ws
        /// WebSocket over TLS, default port 443.
        case wss

        /// 80 for `ws`, 443 for `wss`.
        public var defaultPort: Int { self == .ws ? 80 : 443 }
    }

    /// `ws` or `wss`.
    public var scheme: Scheme
    /// The host as written, without brackets for an IPv6 literal.
    public var host: String
    /// The port, the scheme's default when the URL has none.
    public var port: Int
    /// Path and query, never empty ("/" at least); fragments are not allowed.
    public var target: String
    /// The user of the URL's user info, sent as basic auth. Default none.
    public var user: String?
    /// The password of the URL's user info. Default none.
    public var password: String?
    /// For `ws+unix:`/`wss+unix:` URLs: the unix socket to connect to (`host` is then "localhost").
    public var socketPath: String? = nil

    /// The `Host` header value: the host, bracketed if IPv6, with the port unless it is the default.
    public var hostHeader: String {
        let hostPart = host.contains(":") ? "[\(host)]" : host
        return port == scheme.defaultPort ? hostPart : "\(hostPart):\(port)"
    }

    /// The URL written back, without the user info.
    public var description: String {
        if let socketPath { return "\(scheme.rawValue)+unix://\(socketPath):\(target)" }
        return "\(scheme.rawValue)://\(hostHeader)\(target)"
    }

    /// Why a string is not a usable WebSocket URL.
    public struct ParseError: Error, Sendable, Hashable, CustomStringConvertible {
        /// The string as given.
        public var url: String
        /// What is wrong with it.
        public var problem: String
        /// One line quoting the URL and the problem.
        public var description: String { "invalid WebSocket URL \"\(url)\": \(problem)" }
    }

    /// Parses `ws://host[:port][/path][?query]` and `wss://…`; `http`/`https` are taken as
    /// `ws`/`wss`, as browsers and `ws` do.
    ///
    /// `ws+unix:///path/to/socket:/request/path` (and `wss+unix:`) reach a unix socket, as
    /// `ws` spells it: the socket path, then `:` and the request target (default "/").
    public init(_ string: String) throws(ParseError) {
        func fail(_ problem: String) -> ParseError { ParseError(url: string, problem: problem) }
        if let unix = try Self.parseUnix(string) {
            self = unix
            return
        }
        guard let colon = string.firstIndex(of: ":"), string[colon...].hasPrefix("://") else {
            throw fail("missing scheme")
        }
        switch string[..<colon].lowercased() {
        case "ws", "http": scheme = .ws
        case "wss", "https": scheme = .wss
        case let other: throw fail("scheme must be ws or wss, not \(other)")
        }
        let rest = string[string.index(colon, offsetBy: 3)...]
        guard !rest.contains("#") else { throw fail("fragments are not allowed") }
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" } ?? rest.endIndex
        var authority = rest[..<authorityEnd]
        let targetPart = rest[authorityEnd...]
        target = targetPart.isEmpty ? "/" : (targetPart.first == "?" ? "/" + targetPart : String(targetPart))
        user = nil
        password = nil
        if let at = authority.lastIndex(of: "@") {
            let userInfo = authority[..<at]
            authority = authority[authority.index(after: at)...]
            if let colon = userInfo.firstIndex(of: ":") {
                user = PercentEncoding.decode(userInfo[..<colon], plusAsSpace: false)
                password = PercentEncoding.decode(userInfo[userInfo.index(after: colon)...], plusAsSpace: false)
            } else {
                user = PercentEncoding.decode(userInfo, plusAsSpace: false)
            }
        }
        var portPart: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw fail("unterminated IPv6 address") }
            host = String(authority[authority.index(after: authority.startIndex)..<close])
            let afterBracket = authority[authority.index(after: close)...]
            if afterBracket.hasPrefix(":") {
                portPart = afterBracket.dropFirst()
            } else if !afterBracket.isEmpty {
                throw fail("unexpected text after IPv6 address")
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = String(authority[..<colon])
            portPart = authority[authority.index(after: colon)...]
        } else {
            host = String(authority)
        }
        guard !host.isEmpty else { throw fail("missing host") }
        if let portPart {
            guard let value = Int(portPart), (1...65535).contains(value) else { throw fail("invalid port \(portPart)") }
            port = value
        } else {
            port = scheme.defaultPort
        }
    }

    private init(unixScheme scheme: Scheme, socketPath: String, target: String) {
        self.scheme = scheme
        self.host = "localhost"
        self.port = scheme.defaultPort
        self.target = target
        self.socketPath = socketPath
    }

    private static func parseUnix(_ string: String) throws(ParseError) -> WebSocketURL? {
        let lowered = string.prefix(12).lowercased()
        let scheme: Scheme
        let rest: Substring
        if lowered.hasPrefix("ws+unix:") {
            scheme = .ws
            rest = string.dropFirst("ws+unix:".count)
        } else if lowered.hasPrefix("wss+unix:") {
            scheme = .wss
            rest = string.dropFirst("wss+unix:".count)
        } else {
            return nil
        }
        var body = rest
        if body.hasPrefix("//") { body = body.dropFirst(2) }
        guard !body.contains("#") else { throw ParseError(url: string, problem: "fragments are not allowed") }
        let path: Substring
        var target = "/"
        if let colon = body.firstIndex(of: ":") {
            path = body[..<colon]
            let after = body[body.index(after: colon)...]
            if !after.isEmpty { target = after.first == "/" ? String(after) : "/" + after }
        } else {
            path = body
        }
        guard !path.isEmpty else { throw ParseError(url: string, problem: "missing socket path") }
        return WebSocketURL(unixScheme: scheme, socketPath: String(path), target: target)
    }
}
