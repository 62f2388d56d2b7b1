extension Handshake {
    /// A parsed HTTP/1.x request head.
    public struct RequestHead: Sendable, Hashable {
        /// The method, e.g. `GET`.
        public var method: String
        /// The request target (path and query).
        public var target: String
        /// The HTTP version of the request line.
        public var version: HTTPVersion
        /// The header fields, in order.
        public var headers: HTTPFields
        /// Bytes the head took, through the empty line: anything after it is not part of the head.
        public var length: Int

        /// A request head with these fields.
        public init(method: String, target: String, version: HTTPVersion, headers: HTTPFields, length: Int) {
            self.method = method
            self.target = target
            self.version = version
            self.headers = headers
            self.length = length
        }
    }

    /// The default limit of `parseRequestHead`.
    public static let defaultMaxRequestHeadSize = 16 * 1024

    /// Parses an HTTP/1.x request head strictly (RFC 7230 §3), for tests, tools and fuzzing;
    /// the server itself parses with NIOHTTP1.
    ///
    ///     request-line = token SP 1*( %x21-7E ) SP "HTTP/" DIGIT "." DIGIT CRLF
    ///     header-field = token ":" OWS *( VCHAR / obs-text / SP / HTAB ) CRLF   (value trimmed of OWS)
    ///     empty line   = CRLF
    ///
    /// Bare CR or LF, whitespace before the colon, obsolete line folding, control characters
    /// and empty lines before the request line are rejected (400). A head that does not end
    /// within `maxSize` bytes is 431; one that ends before its empty line is 400.
    /// Non-ASCII bytes in values (obs-text) are decoded as UTF-8, invalid sequences replaced.
    public static func parseRequestHead(
        _ bytes: [UInt8], maxSize: Int = defaultMaxRequestHeadSize
    ) throws(HandshakeError) -> RequestHead {
        var parser = RequestHeadParser(bytes: bytes)
        guard let end = parser.findEnd(limit: maxSize) else {
            if bytes.count >= maxSize {
                throw HandshakeError(rule: .requestHead, status: 431, reason: "request head exceeds \(maxSize) bytes")
            }
            throw .badRequest(.requestHead, "request head is incomplete: no empty line")
        }
        return try parser.parse(end: end)
    }
}

extension Handshake {
    /// A parsed HTTP/1.x response head.
    public struct ResponseHead: Sendable, Hashable {
        /// The HTTP version of the status line.
        public var version: HTTPVersion
        /// The status code.
        public var status: Int
        /// The reason phrase.
        public var reason: String
        /// The header fields, in order.
        public var headers: HTTPFields
        /// Bytes the head took, through the empty line.
        public var length: Int
    }

    /// Finds and parses a response head at the start of `bytes`, with the same strictness as
    /// `parseRequestHead`; nil when the empty line has not arrived yet (and `bytes` is
    /// still within `maxSize`). Errors carry the rule `responseStatus`.
    public static func parseResponseHead(
        _ bytes: [UInt8], maxSize: Int = defaultMaxRequestHeadSize
    ) throws(HandshakeError) -> ResponseHead? {
        var parser = RequestHeadParser(bytes: bytes)
        guard let end = parser.findEnd(limit: maxSize) else {
            if bytes.count >= maxSize {
                throw .badResponse(.responseStatus, status: 0, "response head exceeds \(maxSize) bytes")
            }
            return nil
        }
        do {
            return try parser.parseResponse(end: end)
        } catch {
            throw .badResponse(.responseStatus, status: 0, error.reason.replacingFirst("request head", with: "response head"))
        }
    }
}

extension String {
    fileprivate func replacingFirst(_ target: String, with replacement: String) -> String {
        guard hasPrefix(target) else { return self }
        return replacement + dropFirst(target.count)
    }
}

/// The cursor behind `Handshake.parseRequestHead` and `parseResponseHead`.
private struct RequestHeadParser {
    let bytes: [UInt8]
    var index = 0

    init(bytes: [UInt8]) { self.bytes = bytes }

    static let cr = UInt8(ascii: "\r"), lf = UInt8(ascii: "\n"), sp = UInt8(ascii: " "), tab = UInt8(ascii: "\t")

    /// The index just past the first CRLF CRLF that ends within `limit` bytes.
    func findEnd(limit: Int) -> Int? {
        let count = min(bytes.count, limit)
        var i = 0
        while i + 3 < count {
            if bytes[i + 3] == Self.lf, bytes[i + 2] == Self.cr, bytes[i + 1] == Self.lf, bytes[i] == Self.cr {
                return i + 4
            }
            i += 1
        }
        return nil
    }

    func error(_ problem: String) -> HandshakeError {
        .badRequest(.requestHead, "request head: \(problem) at offset \(index)")
    }

    mutating func expect(_ byte: UInt8, _ what: String) throws(HandshakeError) {
        guard index < bytes.count, bytes[index] == byte else { throw error("expected \(what)") }
        index += 1
    }

    mutating func expectCRLF() throws(HandshakeError) {
        guard index < bytes.count, bytes[index] == Self.cr else { throw error("expected CRLF") }
        guard index + 1 < bytes.count, bytes[index + 1] == Self.lf else {
            index += 1
            throw error("expected LF after CR")
        }
        index += 2
    }

    mutating func token(_ what: String) throws(HandshakeError) -> String {
        let start = index
        while index < bytes.count, HeaderGrammar.isTokenByte(bytes[index]) { index += 1 }
        guard index > start else { throw error("expected \(what)") }
        return String(decoding: bytes[start..<index], as: UTF8.self)
    }

    mutating func digit() throws(HandshakeError) -> Int {
        guard index < bytes.count, bytes[index] &- UInt8(ascii: "0") < 10 else { throw error("expected digit") }
        index += 1
        return Int(bytes[index - 1] &- UInt8(ascii: "0"))
    }

    mutating func parse(end: Int) throws(HandshakeError) -> Handshake.RequestHead {
        // Request line.
        let method = try token("method")
        try expect(Self.sp, "SP after method")
        let targetStart = index
        while index < end, (0x21...0x7E).contains(bytes[index]) { index += 1 }
        guard index > targetStart else { throw error("expected request target") }
        let target = String(decoding: bytes[targetStart..<index], as: UTF8.self)
        try expect(Self.sp, "SP after request target")
        for byte in "HTTP/".utf8 { try expect(byte, "HTTP-version") }
        let major = try digit()
        try expect(UInt8(ascii: "."), "'.' in HTTP-version")
        let minor = try digit()
        try expectCRLF()
        let headers = try headerFields(end: end)
        return Handshake.RequestHead(
            method: method, target: target, version: .init(major: major, minor: minor), headers: headers, length: index)
    }

    /// Parses a status line (`HTTP/1.1 101 Switching Protocols`) and the header fields.
    mutating func parseResponse(end: Int) throws(HandshakeError) -> Handshake.ResponseHead {
        for byte in "HTTP/".utf8 { try expect(byte, "HTTP-version") }
        let major = try digit()
        try expect(UInt8(ascii: "."), "'.' in HTTP-version")
        let minor = try digit()
        try expect(Self.sp, "SP after HTTP-version")
        let status = try digit() * 100 + digit() * 10 + digit()
        try expect(Self.sp, "SP after status code")
        let reasonStart = index
        while index < end, bytes[index] == Self.tab || (0x20...0x7E).contains(bytes[index]) || bytes[index] >= 0x80 {
            index += 1
        }
        let reason = String(decoding: bytes[reasonStart..<index], as: UTF8.self)
        try expectCRLF()
        let headers = try headerFields(end: end)
        return Handshake.ResponseHead(
            version: .init(major: major, minor: minor), status: status, reason: reason, headers: headers, length: index)
    }

    /// Header fields up to and including the empty line that ends the head.
    mutating func headerFields(end: Int) throws(HandshakeError) -> HTTPFields {
        var headers = HTTPFields()
        while index < end - 2 {
            if bytes[index] == Self.sp || bytes[index] == Self.tab { throw error("obsolete line folding") }
            let name = try token("header field name")
            if index < bytes.count, bytes[index] == Self.sp || bytes[index] == Self.tab {
                throw error("whitespace between header field name and colon")
            }
            try expect(UInt8(ascii: ":"), "':' after header field name")
            while index < end, bytes[index] == Self.sp || bytes[index] == Self.tab { index += 1 }
            let valueStart = index
            var valueEnd = index
            while index < end {
                let byte = bytes[index]
                if byte == Self.sp || byte == Self.tab {
                    index += 1
                } else if byte > 0x20 && byte != 0x7F {
                    index += 1
                    valueEnd = index
                } else {
                    break
                }
            }
            if index < end, bytes[index] != Self.cr {
                throw error(bytes[index] == Self.lf ? "expected CRLF" : "invalid character in header field value")
            }
            try expectCRLF()
            headers.add(name: name, value: String(decoding: bytes[valueStart..<valueEnd], as: UTF8.self))
        }
        try expectCRLF()
        return headers
    }
}
