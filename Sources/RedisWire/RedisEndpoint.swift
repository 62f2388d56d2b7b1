/// Where Redis is: `redis://HOST[:PORT][/DB]`. Only plain TCP without credentials: the
/// broker talks to a Redis on its own network, as the cluster design says.
public struct RedisEndpoint: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var database: Int

    public init(host: String, port: Int = 6379, database: Int = 0) {
        self.host = host
        self.port = port
        self.database = database
    }

    /// Parses a `redis://` URL; the error names what is wrong with it on one line (echoed text
/// is shown escaped, since the URL comes from a config file or the environment).
    public init(url: String) throws(RedisEndpointError) {
        guard url.hasPrefix("redis://") else { throw RedisEndpointError("must start with redis://") }
        var rest = Substring(url.dropFirst("redis://".count))
        var database = 0
        if let slash = rest.firstIndex(of: "/") {
            let path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
            if !path.isEmpty {
                guard let number = Int(path), (0...1_000_000).contains(number) else {
                    throw RedisEndpointError("database \(String(path).debugDescription) is not a number")
                }
                database = number
            }
        }
        guard !rest.contains("@") else { throw RedisEndpointError("credentials are not supported") }
        var host = rest
        var port = 6379
        if let colon = rest.lastIndex(of: ":") {
            host = rest[..<colon]
            let portText = rest[rest.index(after: colon)...]
            guard let number = Int(portText), (1...65535).contains(number) else {
                throw RedisEndpointError("port \(String(portText).debugDescription) is not in 1...65535")
            }
            port = number
        }
        guard !host.isEmpty else { throw RedisEndpointError("no host") }
        self.init(host: String(host), port: port, database: database)
    }

    public var description: String { "redis://\(host):\(port)/\(database)" }
}

public struct RedisEndpointError: Error, Sendable, Equatable, CustomStringConvertible {
    public var reason: String
    init(_ reason: String) { self.reason = reason }
    public var description: String { "bad redis URL: \(reason)" }
}
