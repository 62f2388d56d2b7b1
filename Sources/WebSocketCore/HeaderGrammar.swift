/// A header value that does not follow its grammar. `offset` is the UTF-8 byte offset of
/// the problem in the field value; when a header appeared on several lines the values are
/// joined with ", " first (RFC 7230 §3.2.2) and the offset is into that joined value.
public struct HeaderGrammarError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The header whose value is malformed, e.g. `Sec-WebSocket-Extensions`.
    public var header: String
    /// What went wrong, e.g. `expected token`.
    public var problem: String
    /// The UTF-8 byte offset of the problem in the value.
    public var offset: Int

    /// A problem in `header`'s value at `offset`.
    public init(header: String, problem: String, offset: Int) {
        self.header = header
        self.problem = problem
        self.offset = offset
    }

    /// `Sec-WebSocket-Extensions: expected token at offset 12`
    public var description: String { "\(header): \(problem) at offset \(offset)" }
}

/// The pieces of HTTP header grammar the opening handshake needs (RFC 7230 §3.2.6 and §7,
/// RFC 6455 §4 and §9.1): tokens, quoted-strings with quoted-pairs, optional whitespace
/// and comma-separated lists, in which empty elements (`a, , b`, `, a`) are accepted.
public enum HeaderGrammar {
    /// Whether `byte` is a `tchar`: ALPHA, DIGIT, a backtick or one of `!#$%&'*+-.^_|~`.
    @inlinable
    public static func isTokenByte(_ byte: UInt8) -> Bool {
        // Bit n of the word (n >> 6) is set when byte n is a tchar.
        let word: UInt64
        switch byte >> 6 {
        case 0: word = 0x03FF_6CFA_0000_0000  // ! # $ % & ' * + - . 0-9
        case 1: word = 0x57FF_FFFF_C7FF_FFFE  // A-Z ^ _ ` a-z | ~
        default: return false
        }
        return word >> UInt64(byte & 63) & 1 == 1
    }

    /// Whether `string` is a non-empty token.
    public static func isToken(_ string: String) -> Bool {
        !string.isEmpty && string.utf8.allSatisfy(isTokenByte)
    }

    /// `value` as it may appear as a parameter value: as it is when it is a token, else as
    /// a quoted-string with `"` and `\` escaped. Control characters other than HTAB, which
    /// no header value may hold, are dropped.
    public static func quotedIfNeeded(_ value: String) -> String {
        if isToken(value) { return value }
        var out = "\""
        for scalar in value.unicodeScalars {
            switch scalar.value {
            case 0x22, 0x5C: out.append("\\"); out.unicodeScalars.append(scalar)
            case 0x09: out.unicodeScalars.append(scalar)
            case 0x00..<0x20, 0x7F: continue
            default: out.unicodeScalars.append(scalar)
            }
        }
        out.append("\"")
        return out
    }

    /// The tokens of a `#token` list such as `Connection` or `Sec-WebSocket-Protocol`, in order.
    /// With `allowDuplicates: false` a token that appears twice (compared exactly) is an error.
    public static func parseTokenList(
        _ values: [String], header: String, allowDuplicates: Bool = true
    ) throws(HeaderGrammarError) -> [String] {
        var result: [String] = []
        try withScanner(values, header: header) { (scanner: inout Scanner) throws(HeaderGrammarError) in
            try scanner.list(separatorExpectation: "expected ','") { (scanner: inout Scanner) throws(HeaderGrammarError) in
                let start = scanner.index
                let token = try scanner.token()
                if !allowDuplicates && result.contains(token) {
                    throw scanner.error("duplicate value '\(token)'", at: start)
                }
                result.append(token)
            }
        }
        return result
    }

    /// The elements of an `Upgrade` header (RFC 7230 §6.7: `1#protocol`, where
    /// `protocol = protocol-name ["/" protocol-version]`), each as written (`h2c`, `websocket`, `HTTP/2.0`).
    public static func parseProtocolList(_ values: [String], header: String = "Upgrade") throws(HeaderGrammarError) -> [String] {
        var result: [String] = []
        try withScanner(values, header: header) { (scanner: inout Scanner) throws(HeaderGrammarError) in
            try scanner.list(separatorExpectation: "expected ','") { (scanner: inout Scanner) throws(HeaderGrammarError) in
                var element = try scanner.token()
                if scanner.peek() == UInt8(ascii: "/") {
                    scanner.index += 1
                    element += "/" + (try scanner.token())
                }
                result.append(element)
            }
        }
        return result
    }

    /// Whether a list header has an element equal to `token`, ASCII case-insensitively:
    /// `Connection` (a `#token` list) contains `upgrade`, `Upgrade` contains `websocket`.
    /// With `protocolElements`, elements follow the `Upgrade` grammar (`name["/"version]`) and
    /// an element with a version (`websocket/13`) does not match a bare `token`.
    /// A list that breaks its grammar is an error, not `false`.
    public static func listContains(
        _ values: [String], token: String, header: String, protocolElements: Bool = false
    ) throws(HeaderGrammarError) -> Bool {
        let elements = protocolElements
            ? try parseProtocolList(values, header: header)
            : try parseTokenList(values, header: header)
        return elements.contains { HTTPFields.namesEqual($0, token) }
    }

    /// Runs `body` on a scanner over the values joined with ", ".
    static func withScanner(
        _ values: [String], header: String, _ body: (inout Scanner) throws(HeaderGrammarError) -> Void
    ) throws(HeaderGrammarError) {
        var joined = values.count == 1 ? values[0] : values.joined(separator: ", ")
        let result: HeaderGrammarError? = joined.withUTF8 { bytes in
            var scanner = Scanner(bytes: bytes, header: header)
            do throws(HeaderGrammarError) {
                try body(&scanner)
                return nil
            } catch {
                return error
            }
        }
        if let result { throw result }
    }

    /// A cursor over one header value.
    struct Scanner {
        let bytes: UnsafeBufferPointer<UInt8>
        let header: String
        var index = 0

        init(bytes: UnsafeBufferPointer<UInt8>, header: String) {
            self.bytes = bytes
            self.header = header
        }

        var atEnd: Bool { index >= bytes.count }

        func peek() -> UInt8? { index < bytes.count ? bytes[index] : nil }

        func error(_ problem: String, at offset: Int? = nil) -> HeaderGrammarError {
            HeaderGrammarError(header: header, problem: problem, offset: offset ?? index)
        }

        /// OWS = *( SP / HTAB )
        mutating func skipOWS() {
            while index < bytes.count, bytes[index] == 0x20 || bytes[index] == 0x09 { index += 1 }
        }

        /// token = 1*tchar
        mutating func token(_ expectation: String = "expected token") throws(HeaderGrammarError) -> String {
            let start = index
            while index < bytes.count, HeaderGrammar.isTokenByte(bytes[index]) { index += 1 }
            guard index > start else { throw error(expectation) }
            return String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
        }

        /// quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE, returned unquoted.
        mutating func quotedString() throws(HeaderGrammarError) -> String {
            let start = index
            guard peek() == UInt8(ascii: "\"") else { throw error("expected quoted-string") }
            index += 1
            var value: [UInt8] = []
            while true {
                guard index < bytes.count else { throw error("unterminated quoted-string", at: start) }
                let byte = bytes[index]
                switch byte {
                case UInt8(ascii: "\""):
                    index += 1
                    return String(decoding: value, as: UTF8.self)
                case UInt8(ascii: "\\"):
                    // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
                    guard index + 1 < bytes.count else { throw error("unterminated quoted-string", at: start) }
                    let escaped = bytes[index + 1]
                    guard escaped == 0x09 || (escaped >= 0x20 && escaped != 0x7F) else {
                        throw error("invalid quoted-pair", at: index)
                    }
                    value.append(escaped)
                    index += 2
                case 0x09, 0x20...0x7E, 0x80...0xFF:
                    // qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
                    value.append(byte)
                    index += 1
                default:
                    throw error("invalid character in quoted-string")
                }
            }
        }

        /// `#element` (RFC 7230 §7): elements separated by commas and OWS; empty elements
        /// are skipped. `element` parses one element starting at a non-empty, non-comma position.
        mutating func list(
            separatorExpectation: String, _ element: (inout Scanner) throws(HeaderGrammarError) -> Void
        ) throws(HeaderGrammarError) {
            while true {
                skipOWS()
                guard let byte = peek() else { return }
                if byte == UInt8(ascii: ",") {
                    index += 1
                    continue
                }
                try element(&self)
                skipOWS()
                guard let next = peek() else { return }
                guard next == UInt8(ascii: ",") else { throw error(separatorExpectation) }
                index += 1
            }
        }
    }
}

// MARK: - Sec-WebSocket-Extensions

extension ExtensionOffer {
    /// Parses `Sec-WebSocket-Extensions` values (RFC 6455 §9.1), several lines joined with ", ":
    ///
    ///     extension-list  = #extension
    ///     extension       = extension-token *( OWS ";" OWS extension-param )
    ///     extension-param = token [ OWS "=" OWS ( token / quoted-string ) ]
    ///
    /// A quoted value must itself be a token once unquoted. Empty list elements are skipped,
    /// so an empty value yields no offers. Parameter names and values are not interpreted
    /// (repeated or unknown parameters are the extension's business).
    public static func parseList(_ headerValues: [String]) throws(HeaderGrammarError) -> [ExtensionOffer] {
        try parseList(headerValues, header: "Sec-WebSocket-Extensions")
    }

    /// `parseList(_:)` with the header name errors should carry.
    public static func parseList(_ headerValues: [String], header: String) throws(HeaderGrammarError) -> [ExtensionOffer] {
        var offers: [ExtensionOffer] = []
        try HeaderGrammar.withScanner(headerValues, header: header) { (scanner: inout HeaderGrammar.Scanner) throws(HeaderGrammarError) in
            try scanner.list(separatorExpectation: "expected ',' or ';'") { (scanner: inout HeaderGrammar.Scanner) throws(HeaderGrammarError) in
                var offer = ExtensionOffer(name: try scanner.token())
                while true {
                    let beforeOWS = scanner.index
                    scanner.skipOWS()
                    guard scanner.peek() == UInt8(ascii: ";") else {
                        scanner.index = beforeOWS
                        break
                    }
                    scanner.index += 1
                    scanner.skipOWS()
                    let name = try scanner.token()
                    let beforeEquals = scanner.index
                    scanner.skipOWS()
                    guard scanner.peek() == UInt8(ascii: "=") else {
                        scanner.index = beforeEquals
                        offer.parameters.append(.init(name))
                        continue
                    }
                    scanner.index += 1
                    scanner.skipOWS()
                    let value: String
                    if scanner.peek() == UInt8(ascii: "\"") {
                        let start = scanner.index
                        value = try scanner.quotedString()
                        guard HeaderGrammar.isToken(value) else {
                            throw scanner.error("quoted parameter value must be a token", at: start)
                        }
                    } else {
                        value = try scanner.token("expected token or quoted-string")
                    }
                    offer.parameters.append(.init(name, value))
                }
                offers.append(offer)
            }
        }
        return offers
    }

    /// This offer as one `Sec-WebSocket-Extensions` element:
    /// `permessage-deflate; client_max_window_bits=10; server_no_context_takeover`.
    /// A value that is not a token is written as a quoted-string.
    public var headerValue: String {
        var out = name
        for parameter in parameters {
            out += "; " + parameter.name
            if let value = parameter.value { out += "=" + HeaderGrammar.quotedIfNeeded(value) }
        }
        return out
    }

    /// A whole `Sec-WebSocket-Extensions` value: the offers' `headerValue`s joined with ", ".
    public static func headerValue(_ offers: [ExtensionOffer]) -> String {
        offers.map(\.headerValue).joined(separator: ", ")
    }
}

extension Array where Element == ExtensionOffer {
    /// A whole `Sec-WebSocket-Extensions` value: `permessage-deflate; client_max_window_bits=10, x-foo`.
    public var headerValue: String { ExtensionOffer.headerValue(self) }
}
