/// A WebSocket protocol version this library speaks (`Sec-WebSocket-Version`).
/// 13 is RFC 6455; 8 is draft-ietf-hybi-10, the same wire protocol with `Sec-WebSocket-Origin`.
public enum WebSocketVersion: Int, Sendable, Hashable, CaseIterable {
    /// draft-ietf-hybi-10 (`Sec-WebSocket-Origin` instead of `Origin`).
    case v8 = 8
    /// RFC 6455.
    case v13 = 13
}

/// What a valid client opening handshake asked for (RFC 6455 §4.2.1).
public struct ClientRequestInfo: Sendable, Hashable {
    /// The version the client asked for.
    public var version: WebSocketVersion
    /// `Sec-WebSocket-Key` as sent (base64 of 16 bytes); the server's accept value is derived from it.
    public var key: String
    /// `Host` as sent.
    public var host: String
    /// `Origin` (version 13) or `Sec-WebSocket-Origin` (version 8), when sent.
    public var origin: String?
    /// `Sec-WebSocket-Protocol` tokens in the client's order of preference (no duplicates).
    public var protocols: [String]
    /// `Sec-WebSocket-Extensions` offers in the client's order of preference.
    public var extensions: [ExtensionOffer]

    /// A request's settled fields.
    public init(
        version: WebSocketVersion, key: String, host: String, origin: String?,
        protocols: [String], extensions: [ExtensionOffer]
    ) {
        self.version = version
        self.key = key
        self.host = host
        self.origin = origin
        self.protocols = protocols
        self.extensions = extensions
    }
}

/// What a valid server opening handshake response agreed to (RFC 6455 §4.2.2).
public struct ServerResponseInfo: Sendable, Hashable {
    /// The subprotocol the server selected, one of those the client requested.
    public var subprotocol: String?
    /// The extensions the server accepted, with their response parameters, in the order
    /// they apply; each names an extension the client offered, at most once.
    public var extensions: [ExtensionOffer]

    /// A response's settled fields.
    public init(subprotocol: String?, extensions: [ExtensionOffer]) {
        self.subprotocol = subprotocol
        self.extensions = extensions
    }
}

/// The opening handshake (RFC 6455 §4) without I/O: building and checking the upgrade
/// request and the `101 Switching Protocols` response.
public enum Handshake {
    /// The GUID appended to `Sec-WebSocket-Key` before hashing (RFC 6455 §1.3).
    public static let guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    /// The `Sec-WebSocket-Version` value a server lists when it refuses a version (§4.4).
    public static let supportedVersionsHeaderValue = "13, 8"

    /// An HTTP version from a request or status line.
    public struct HTTPVersion: Sendable, Hashable, Comparable, CustomStringConvertible {
        /// The major version (1).
        public var major: Int
        /// The minor version (0 or 1).
        public var minor: Int

        /// Version `major`.`minor`.
        public init(major: Int, minor: Int) {
            self.major = major
            self.minor = minor
        }

        /// HTTP/1.0.
        public static let http1_0 = HTTPVersion(major: 1, minor: 0)
        /// HTTP/1.1.
        public static let http1_1 = HTTPVersion(major: 1, minor: 1)

        /// Orders versions by major, then minor.
        public static func < (lhs: HTTPVersion, rhs: HTTPVersion) -> Bool {
            (lhs.major, lhs.minor) < (rhs.major, rhs.minor)
        }

        /// `HTTP/major.minor`.
        public var description: String { "HTTP/\(major).\(minor)" }
    }

    // MARK: Key and accept value

    /// A fresh `Sec-WebSocket-Key`: base64 of 16 secure random bytes.
    public static func makeKey() -> String {
        var bytes: (UInt64, UInt64) = (0, 0)
        return withUnsafeMutableBytes(of: &bytes) { buffer in
            Crypto.fillRandom(buffer)
            return Crypto.base64Encode(UnsafeRawBufferPointer(buffer))
        }
    }

    /// `Sec-WebSocket-Accept` for `key`: base64(SHA-1(key + GUID)) (RFC 6455 §4.2.2).
    public static func acceptValue(forKey key: String) -> String {
        Crypto.base64Encode(Crypto.sha1((key + guid).utf8))
    }

    // MARK: Server side

    /// Checks a client's opening handshake (RFC 6455 §4.2.1), in this order:
    ///
    /// 1. the method is GET (else 405 with `Allow: GET`);
    /// 2. the HTTP version is 1.1 or later (400);
    /// 3. exactly one non-empty `Host` (400);
    /// 4. `Upgrade` lists `websocket` and `Connection` lists `upgrade`, ASCII case-insensitively (400);
    /// 5. `Sec-WebSocket-Version`: missing or a well-formed number other than 13 or 8 → 426 with
    ///    `Sec-WebSocket-Version: 13, 8`; repeated or not a number 0–255 → 400;
    /// 6. exactly one `Sec-WebSocket-Key`, strict base64 of exactly 16 bytes (400);
    /// 7. at most one `Origin` (v13) or `Sec-WebSocket-Origin` (v8) (400);
    /// 8. `Sec-WebSocket-Protocol` is a token list without duplicates (400);
    /// 9. `Sec-WebSocket-Extensions` follows its grammar (400).
    public static func validateRequest(
        method: String, version: HTTPVersion, headers: HTTPFields
    ) throws(HandshakeError) -> ClientRequestInfo {
        guard method == "GET" else {
            throw HandshakeError(
                rule: .method, status: 405, reason: "method must be GET, not \(excerpt(method))",
                responseHeaders: ["Allow": "GET"])
        }
        guard version >= .http1_1 else {
            throw .badRequest(.httpVersion, "HTTP version must be 1.1 or later, not \(version)")
        }

        let hosts = headers.values(for: "Host")
        guard hosts.count == 1 else { throw .badRequest(.host, "Host must appear exactly once") }
        let host = trimOWS(hosts[0])
        guard !host.isEmpty else { throw .badRequest(.host, "Host must not be empty") }

        guard try listContains(headers, "Upgrade", "websocket", rule: .upgrade, status: 400, protocols: true) else {
            throw .badRequest(.upgrade, "Upgrade must contain websocket")
        }
        guard try listContains(headers, "Connection", "upgrade", rule: .connection, status: 400, protocols: false) else {
            throw .badRequest(.connection, "Connection must contain upgrade")
        }

        let wsVersion = try requestedVersion(headers)

        let keys = headers.values(for: "Sec-WebSocket-Key")
        guard keys.count == 1 else { throw .badRequest(.key, "Sec-WebSocket-Key must appear exactly once") }
        let key = trimOWS(keys[0])
        guard key.utf8.count == 24, Crypto.base64Decode(key)?.count == 16 else {
            throw .badRequest(.key, "Sec-WebSocket-Key must be base64 of 16 bytes")
        }

        let originName = wsVersion == .v13 ? "Origin" : "Sec-WebSocket-Origin"
        let origins = headers.values(for: originName)
        guard origins.count <= 1 else { throw .badRequest(.origin, "\(originName) must appear at most once") }

        let protocols: [String]
        do {
            protocols = try HeaderGrammar.parseTokenList(
                headers.values(for: "Sec-WebSocket-Protocol"), header: "Sec-WebSocket-Protocol", allowDuplicates: false)
        } catch {
            throw .badRequest(.subprotocols, error.description)
        }

        let extensions: [ExtensionOffer]
        do {
            extensions = try ExtensionOffer.parseList(headers.values(for: "Sec-WebSocket-Extensions"))
        } catch {
            throw .badRequest(.extensions, error.description)
        }

        return ClientRequestInfo(
            version: wsVersion, key: key, host: host, origin: origins.first.map(trimOWS),
            protocols: protocols, extensions: extensions)
    }

    private static func requestedVersion(_ headers: HTTPFields) throws(HandshakeError) -> WebSocketVersion {
        let unsupported = { (reason: String) in
            HandshakeError(
                rule: .version, status: 426, reason: reason,
                responseHeaders: ["Sec-WebSocket-Version": supportedVersionsHeaderValue])
        }
        let values = headers.values(for: "Sec-WebSocket-Version")
        guard !values.isEmpty else { throw unsupported("Sec-WebSocket-Version is missing (use 13 or 8)") }
        guard values.count == 1 else { throw .badRequest(.version, "Sec-WebSocket-Version must appear exactly once") }
        // version = DIGIT / (NZDIGIT DIGIT) / ("1" DIGIT DIGIT) / ("2" DIGIT DIGIT), i.e. 0–255 (§4.3).
        let text = trimOWS(values[0])
        let digits = Array(text.utf8)
        guard (1...3).contains(digits.count), digits.allSatisfy({ $0 &- UInt8(ascii: "0") < 10 }),
            digits.count == 1 || digits[0] != UInt8(ascii: "0"), let number = Int(text), number <= 255
        else {
            throw .badRequest(.version, "Sec-WebSocket-Version must be a number from 0 to 255")
        }
        guard let version = WebSocketVersion(rawValue: number) else {
            throw unsupported("Sec-WebSocket-Version \(number) is not supported (use 13 or 8)")
        }
        return version
    }

    /// The headers of the `101 Switching Protocols` answer to a request with `key`.
    /// `protocol` is the selected subprotocol (one the client requested); `extensions` are
    /// the accepted extensions with their response parameters (omitted when empty).
    public static func responseHeaders(
        key: String, protocol subprotocol: String? = nil, extensions: [ExtensionOffer] = []
    ) -> HTTPFields {
        var fields: HTTPFields = [
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Accept": acceptValue(forKey: key),
        ]
        if let subprotocol { fields.add(name: "Sec-WebSocket-Protocol", value: subprotocol) }
        if !extensions.isEmpty { fields.add(name: "Sec-WebSocket-Extensions", value: extensions.headerValue) }
        return fields
    }

    // MARK: Client side

    /// Header names the handshake owns: `extra` cannot override them in `makeRequestHeaders`.
    private static let clientOwnedHeaders = ["Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version"]

    /// The headers of a client's upgrade request (RFC 6455 §4.1), in the order of the
    /// RFC's example: `Host`, `Upgrade`, `Connection`, `Sec-WebSocket-Key`, `Origin` (13) or
    /// `Sec-WebSocket-Origin` (8) and `Sec-WebSocket-Protocol` when given,
    /// `Sec-WebSocket-Version`, `Sec-WebSocket-Extensions` when given, then `extra`. A `Host` in `extra` replaces `host`; `extra` fields named
    /// `Upgrade`, `Connection`, `Sec-WebSocket-Key` or `Sec-WebSocket-Version` are ignored.
    public static func makeRequestHeaders(
        host: String, key: String, origin: String? = nil, protocols: [String] = [],
        extensions: [ExtensionOffer] = [], version: WebSocketVersion = .v13, extra: HTTPFields = HTTPFields()
    ) -> HTTPFields {
        var fields = HTTPFields()
        fields.add(name: "Host", value: extra.first("Host") ?? host)
        fields.add(name: "Upgrade", value: "websocket")
        fields.add(name: "Connection", value: "Upgrade")
        fields.add(name: "Sec-WebSocket-Key", value: key)
        if let origin { fields.add(name: version == .v13 ? "Origin" : "Sec-WebSocket-Origin", value: origin) }
        if !protocols.isEmpty { fields.add(name: "Sec-WebSocket-Protocol", value: protocols.joined(separator: ", ")) }
        fields.add(name: "Sec-WebSocket-Version", value: String(version.rawValue))
        if !extensions.isEmpty { fields.add(name: "Sec-WebSocket-Extensions", value: extensions.headerValue) }
        for field in extra where !HTTPFields.namesEqual(field.name, "Host")
            && !clientOwnedHeaders.contains(where: { HTTPFields.namesEqual($0, field.name) })
        {
            fields.add(name: field.name, value: field.value)
        }
        return fields
    }

    /// Checks the server's answer to our upgrade request (RFC 6455 §4.1, "the client MUST
    /// validate the server's response"): status 101; `Upgrade` lists `websocket`;
    /// `Connection` lists `upgrade`; exactly one `Sec-WebSocket-Accept` equal to
    /// `acceptValue(forKey: key)`; a `Sec-WebSocket-Protocol`, if any, names exactly one of
    /// `requestedProtocols`; `Sec-WebSocket-Extensions`, if any, follows the grammar and names
    /// only extensions in `offeredExtensionNames`, each at most once.
    /// A thrown error's `status` is the status the server answered with.
    public static func validateResponse(
        status: Int, headers: HTTPFields, key: String, requestedProtocols: [String],
        offeredExtensionNames: Set<String>
    ) throws(HandshakeError) -> ServerResponseInfo {
        guard status == 101 else {
            throw .badResponse(.responseStatus, status: status, "server answered \(status) instead of 101 Switching Protocols")
        }
        guard try listContains(headers, "Upgrade", "websocket", rule: .responseUpgrade, status: status, protocols: true) else {
            throw .badResponse(.responseUpgrade, status: status, "Upgrade must contain websocket")
        }
        guard try listContains(headers, "Connection", "upgrade", rule: .responseConnection, status: status, protocols: false) else {
            throw .badResponse(.responseConnection, status: status, "Connection must contain upgrade")
        }

        let accepts = headers.values(for: "Sec-WebSocket-Accept")
        guard accepts.count == 1 else {
            throw .badResponse(.responseAccept, status: status, "Sec-WebSocket-Accept must appear exactly once")
        }
        guard trimOWS(accepts[0]) == acceptValue(forKey: key) else {
            throw .badResponse(.responseAccept, status: status, "Sec-WebSocket-Accept does not match the key")
        }

        var subprotocol: String?
        let protocolValues = headers.values(for: "Sec-WebSocket-Protocol")
        if !protocolValues.isEmpty {
            let names: [String]
            do {
                names = try HeaderGrammar.parseTokenList(protocolValues, header: "Sec-WebSocket-Protocol")
            } catch {
                throw .badResponse(.responseSubprotocol, status: status, error.description)
            }
            guard names.count == 1 else {
                throw .badResponse(.responseSubprotocol, status: status, "Sec-WebSocket-Protocol must name exactly one subprotocol")
            }
            guard requestedProtocols.contains(names[0]) else {
                throw .badResponse(
                    .responseSubprotocol, status: status,
                    requestedProtocols.isEmpty
                        ? "Sec-WebSocket-Protocol \(excerpt(names[0])) was sent but no subprotocol was requested"
                        : "Sec-WebSocket-Protocol \(excerpt(names[0])) was not requested")
            }
            subprotocol = names[0]
        }

        let extensions: [ExtensionOffer]
        do {
            extensions = try ExtensionOffer.parseList(headers.values(for: "Sec-WebSocket-Extensions"))
        } catch {
            throw .badResponse(.responseExtensions, status: status, error.description)
        }
        var seen = Set<String>()
        for accepted in extensions {
            guard offeredExtensionNames.contains(accepted.name) else {
                throw .badResponse(
                    .responseExtensions, status: status, "Sec-WebSocket-Extensions \(excerpt(accepted.name)) was not offered")
            }
            guard seen.insert(accepted.name).inserted else {
                throw .badResponse(
                    .responseExtensions, status: status, "Sec-WebSocket-Extensions names \(excerpt(accepted.name)) more than once")
            }
        }
        return ServerResponseInfo(subprotocol: subprotocol, extensions: extensions)
    }

    // MARK: Helpers

    /// Whether the list header `name` has an element equal to `token` (ASCII case-insensitive).
    /// With `protocols`, elements may carry a `/version` (Upgrade), which must then not be present
    /// on the match. A malformed list is an error naming the grammar rule.
    private static func listContains(
        _ headers: HTTPFields, _ name: String, _ token: String, rule: HandshakeError.Rule, status: Int, protocols: Bool
    ) throws(HandshakeError) -> Bool {
        let values = headers.values(for: name)
        if values.isEmpty { return false }
        do {
            return try HeaderGrammar.listContains(values, token: token, header: name, protocolElements: protocols)
        } catch {
            throw HandshakeError(rule: rule, status: status, reason: error.description)
        }
    }

    /// `value` without leading and trailing SP/HTAB.
    static func trimOWS(_ value: String) -> String {
        let utf8 = value.utf8
        guard let first = utf8.firstIndex(where: { $0 != 0x20 && $0 != 0x09 }),
            let last = utf8.lastIndex(where: { $0 != 0x20 && $0 != 0x09 })
        else { return "" }
        if first == utf8.startIndex && last == utf8.index(before: utf8.endIndex) { return value }
        return String(decoding: utf8[first...last], as: UTF8.self)
    }

    /// A peer-supplied value fit for a one-line reason: quoted, printable ASCII only, at most 40 characters.
    static func excerpt(_ value: String) -> String {
        var out = "'"
        for (index, byte) in value.utf8.enumerated() {
            if index == 40 { out += "…"; break }
            out.unicodeScalars.append(Unicode.Scalar((0x20..<0x7F).contains(byte) ? byte : UInt8(ascii: "?")))
        }
        return out + "'"
    }
}
