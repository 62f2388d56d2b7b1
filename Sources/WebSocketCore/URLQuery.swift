/// The query of a request target, parsed the way browsers parse `URLSearchParams`
/// (WHATWG URL Standard, "application/x-www-form-urlencoded parsing"), so that what a
/// browser encodes with `encodeURIComponent` or `URLSearchParams` comes back unchanged.
/// Every input parses; nothing here throws or traps.
///
/// Rules:
/// - The query is everything after the first `?` of the target (none: no items).
/// - It is split on `&`; empty pieces (`a=1&&b=2`, a trailing `&`) are skipped.
/// - Each piece splits at its first `=` into name and value; a piece without `=` is a
///   name with the value "". An empty name is kept: `?=x` is the item ("", "x").
/// - In names and values `+` is a space, then `%XX` (two hex digits, either case) is the
///   byte XX; so `%2B` is a literal `+`. A `%` not followed by two hex digits stays as it is
///   (`%zz` is the three characters `%zz`).
/// - The decoded bytes are read as UTF-8; an invalid sequence becomes U+FFFD.
/// - Repeated names are all kept in `items`, in order; `first(_:)` and `dictionary` give
///   the first occurrence.
public struct URLQuery: Sendable, Hashable {
    /// One `name=value` pair, decoded.
    public struct Item: Sendable, Hashable {
        /// The decoded name.
        public var name: String
        /// The decoded value ("" when the piece had no `=`).
        public var value: String

        /// An item `name`=`value`.
        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    /// Every item, in the order written.
    public var items: [Item]

    /// Parses a raw query (what follows `?`, without it). Splits on bytes, not Characters,
    /// as browsers do (a combining mark after `&` does not hide it).
    public init(_ query: Substring) {
        items = []
        for piece in query.utf8.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true) {
            if let equals = piece.firstIndex(of: UInt8(ascii: "=")) {
                items.append(
                    Item(
                        name: PercentEncoding.decode(bytes: piece[..<equals], plusAsSpace: true),
                        value: PercentEncoding.decode(bytes: piece[piece.index(after: equals)...], plusAsSpace: true)))
            } else {
                items.append(Item(name: PercentEncoding.decode(bytes: piece, plusAsSpace: true), value: ""))
            }
        }
    }

    /// Parses a raw query (what follows `?`, without it).
    public init(_ query: String) { self.init(query[...]) }

    /// The query of a request target (`/path?query`); no items when it has no `?`.
    public init(target: String) {
        guard let mark = target.firstIndex(of: "?") else {
            self.init(""[...])
            return
        }
        self.init(target[target.index(after: mark)...])
    }

    /// The value of the first item named `name`.
    public func first(_ name: String) -> String? {
        items.first { $0.name == name }?.value
    }

    /// Name → value, the first occurrence of a repeated name winning.
    public var dictionary: [String: String] {
        var result: [String: String] = [:]
        for item in items where result[item.name] == nil { result[item.name] = item.value }
        return result
    }
}

/// Percent-decoding (RFC 3986 §2.1) with the lenient rules of `URLQuery`: `%XX` is the byte
/// XX, a `%` without two hex digits after it stays literal, invalid UTF-8 becomes U+FFFD.
public enum PercentEncoding {
    /// Decodes `text`; with `plusAsSpace` (query strings) `+` is first read as a space. URL
    /// user information (`user:password@`) is decoded without it, where `+` is itself.
    public static func decode(_ text: Substring, plusAsSpace: Bool) -> String {
        decode(bytes: text.utf8, plusAsSpace: plusAsSpace)
    }

    static func decode(bytes utf8: Substring.UTF8View, plusAsSpace: Bool) -> String {
        guard utf8.contains(where: { $0 == UInt8(ascii: "%") || (plusAsSpace && $0 == UInt8(ascii: "+")) }) else {
            return String(decoding: utf8, as: UTF8.self)
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(utf8.count)
        var index = utf8.startIndex
        while index != utf8.endIndex {
            let byte = utf8[index]
            index = utf8.index(after: index)
            if byte == UInt8(ascii: "+"), plusAsSpace {
                bytes.append(UInt8(ascii: " "))
            } else if byte == UInt8(ascii: "%"), index != utf8.endIndex,
                let high = hexValue(utf8[index]),
                case let next = utf8.index(after: index), next != utf8.endIndex,
                let low = hexValue(utf8[next])
            {
                bytes.append(high << 4 | low)
                index = utf8.index(after: next)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
