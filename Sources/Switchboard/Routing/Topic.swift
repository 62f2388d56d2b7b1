/// Topic names and subscription patterns (NATS-style).
///
/// Grammar (ASCII only; see docs/protocol.md "Topics"):
///
///     topic    = segment *( "." segment )
///     segment  = 1*( ALPHA / DIGIT / "_" / "-" / ":" )
///     pattern  = token *( "." token )        ; ">" only as the last token
///     token    = segment / "*" / ">"
///
/// - `*` matches exactly one segment: `chat.*` matches `chat.room1`, not `chat` nor `chat.a.b`.
/// - `>` matches one or more trailing segments: `chat.>` matches `chat.a` and `chat.a.b`, not `chat`.
/// - At most `Topic.maxLength` (255) bytes and `Topic.maxSegments` (32) segments, patterns too.
///
/// Invariants relied on elsewhere:
/// - A valid name or pattern contains only bytes in `[A-Za-z0-9_\-:.*>]`, so it is written
///   into a JSON string without any escaping and fits a 1-byte length prefix (binary frames).
/// - `Topic.segments` and `TopicPattern.tokens` are slices of `name`; no empty segment.
public struct TopicError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Stable, machine-readable reasons; all map to the wire error code `bad_topic`.
    public enum Code: String, Sendable, Hashable {
        case empty = "empty"
        case tooLong = "too_long"
        case tooManySegments = "too_many_segments"
        case emptySegment = "empty_segment"
        case invalidCharacter = "invalid_character"
        /// `*` or `>` in a name that must be concrete (publish).
        case wildcardNotAllowed = "wildcard_not_allowed"
        /// `>` somewhere other than the last token.
        case misplacedFullWildcard = "misplaced_full_wildcard"
        /// A wildcard sharing a segment with other characters (`chat*`, `a.>b`).
        case partialWildcard = "partial_wildcard"
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }
}

/// A concrete topic name: what a message is published to.
public struct Topic: Sendable, Hashable, CustomStringConvertible {
    public static let maxLength = 255
    public static let maxSegments = 32

    public let name: String
    /// The dot-separated segments, as slices of `name`.
    public let segments: [Substring]

    /// Validates `name` as a concrete topic (no wildcards).
    public init(_ name: String) throws(TopicError) {
        let tokens = try TopicSyntax.split(name, allowWildcards: false)
        self.name = name
        self.segments = tokens
    }

    /// Validates UTF-8 bytes as a concrete topic.
    public init(bytes: UnsafeRawBufferPointer) throws(TopicError) {
        try self.init(String(decoding: bytes, as: UTF8.self))
    }

    public var description: String { name }

    public static func == (a: Topic, b: Topic) -> Bool { a.name == b.name }
    public func hash(into hasher: inout Hasher) { hasher.combine(name) }
}

/// A subscription pattern: a topic name that may contain `*` and a final `>`.
/// Every concrete topic is also a valid pattern that matches only itself.
public struct TopicPattern: Sendable, Hashable, CustomStringConvertible, Codable {
    public enum Token: Sendable, Hashable {
        case literal(Substring)
        /// `*`: exactly one segment.
        case single
        /// `>`: one or more segments; only ever the last token.
        case rest
    }

    public let name: String
    public let tokens: [Token]

    /// True when the pattern has no wildcard (it names one topic).
    public var isConcrete: Bool {
        tokens.allSatisfy { if case .literal = $0 { true } else { false } }
    }

    public init(_ name: String) throws(TopicError) {
        self.init(name: name, parts: try TopicSyntax.split(name, allowWildcards: true))
    }

    /// The pattern named `name`, which a pattern made before had (so it is valid): a session
    /// keeps only its subscriptions' names (see `Session.subscriptions`).
    init(checked name: String) {
        self.init(name: name, parts: TopicSyntax.segments(of: name))
    }

    private init(name: String, parts: [Substring]) {
        self.name = name
        self.tokens = parts.map { part in
            switch part {
            case "*": .single
            case ">": .rest
            default: .literal(part)
            }
        }
    }

    public init(bytes: UnsafeRawBufferPointer) throws(TopicError) {
        try self.init(String(decoding: bytes, as: UTF8.self))
    }

    /// The pattern that matches exactly `topic`.
    public init(_ topic: Topic) {
        self.name = topic.name
        self.tokens = topic.segments.map { .literal($0) }
    }

    /// Whether `topic` matches this pattern. O(segments), no allocation.
    public func matches(_ topic: Topic) -> Bool {
        let segments = topic.segments
        var i = 0
        for token in tokens {
            switch token {
            case .rest:
                return i < segments.count
            case .single:
                guard i < segments.count else { return false }
            case .literal(let literal):
                guard i < segments.count, segments[i] == literal else { return false }
            }
            i += 1
        }
        return i == segments.count
    }

    /// Whether every topic matched by `other` is also matched by `self`: the check for
    /// "may this principal subscribe to `other`" given a permission pattern `self`.
    public func covers(_ other: TopicPattern) -> Bool {
        let theirs = other.tokens
        var i = 0
        for token in tokens {
            switch token {
            case .rest:
                // `>` covers one or more of anything, including their `*` or `>`.
                return i < theirs.count
            case .single:
                // `*` covers a literal or `*`, never `>` (which may span several segments).
                guard i < theirs.count, theirs[i] != .rest else { return false }
            case .literal(let literal):
                guard i < theirs.count, theirs[i] == .literal(literal) else { return false }
            }
            i += 1
        }
        return i == theirs.count
    }

    public var description: String { name }

    public static func == (a: TopicPattern, b: TopicPattern) -> Bool { a.name == b.name }
    public func hash(into hasher: inout Hasher) { hasher.combine(name) }

    public init(from decoder: any Decoder) throws {
        let name = try decoder.singleValueContainer().decode(String.self)
        do {
            try self.init(name)
        } catch {
            throw DecodingError.dataCorrupted(
                .init(codingPath: decoder.codingPath, debugDescription: "invalid topic pattern: \(error.message)")
            )
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(name)
    }
}

/// The shared validator behind `Topic` and `TopicPattern`.
enum TopicSyntax {
    /// 1 for `[A-Za-z0-9_\-:]`, 0 otherwise.
    static let segmentByte: [Bool] = (0..<256).map { b in
        switch UInt8(b) {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "-"), UInt8(ascii: ":"):
            true
        default: false
        }
    }

    /// Byte-level check (length, charset, wildcard placement), before any String is made.
    static func checkBytes(_ bytes: UnsafeRawBufferPointer, allowWildcards: Bool) throws(TopicError) {
        if bytes.isEmpty { throw TopicError(.empty, "topic is empty") }
        if bytes.count > Topic.maxLength {
            throw TopicError(.tooLong, "topic is \(bytes.count) bytes; at most \(Topic.maxLength)")
        }
        var segments = 1
        var segmentStart = 0
        var segmentHasWildcard = false
        for i in 0...bytes.count {
            let atEnd = i == bytes.count
            let byte = atEnd ? UInt8(ascii: ".") : bytes[i]
            if byte == UInt8(ascii: ".") {
                let length = i - segmentStart
                if length == 0 {
                    throw TopicError(.emptySegment, "topic has an empty segment at byte \(i) (leading, trailing or double dot)")
                }
                if segmentHasWildcard {
                    let first = bytes[segmentStart]
                    if length != 1 {
                        throw TopicError(.partialWildcard, "a wildcard must be a whole segment, at byte \(segmentStart)")
                    }
                    if first == UInt8(ascii: ">") && !atEnd {
                        throw TopicError(.misplacedFullWildcard, "'>' may only be the last segment")
                    }
                }
                if !atEnd {
                    segments += 1
                    if segments > Topic.maxSegments {
                        throw TopicError(.tooManySegments, "topic has more than \(Topic.maxSegments) segments")
                    }
                }
                segmentStart = i + 1
                segmentHasWildcard = false
                continue
            }
            if segmentByte[Int(byte)] { continue }
            if byte == UInt8(ascii: "*") || byte == UInt8(ascii: ">") {
                if !allowWildcards {
                    throw TopicError(.wildcardNotAllowed, "wildcards (* and >) are only allowed in subscriptions; publish to a concrete topic")
                }
                segmentHasWildcard = true
                continue
            }
            throw TopicError(
                .invalidCharacter,
                "invalid byte 0x\(String(byte, radix: 16)) at \(i); segments use A-Z a-z 0-9 _ - :"
            )
        }
    }

    static func split(_ name: String, allowWildcards: Bool) throws(TopicError) -> [Substring] {
        var copy = name
        let result: Result<Void, TopicError> = copy.withUTF8 { bytes in
            Result { () throws(TopicError) in try checkBytes(UnsafeRawBufferPointer(bytes), allowWildcards: allowWildcards) }
        }
        try result.get()
        return segments(of: name)
    }

    /// The segments of a checked (so ASCII) name, split on its UTF-8 view: `String.split`
    /// works on Characters (grapheme breaking), which cost more than the rest of parsing a publish.
    static func segments(of name: String) -> [Substring] {
        let utf8 = name.utf8
        var segments: [Substring] = []
        var start = utf8.startIndex
        var index = start
        while index != utf8.endIndex {
            if utf8[index] == UInt8(ascii: ".") {
                segments.append(name[start..<index])
                start = utf8.index(after: index)
            }
            index = utf8.index(after: index)
        }
        segments.append(name[start..<utf8.endIndex])
        return segments
    }
}
