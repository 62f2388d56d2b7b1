/// An ordered list of HTTP header fields, as they were received or will be sent.
///
/// Names keep their spelling; lookups compare names ASCII case-insensitively (RFC 7230
/// §3.2). Repeated names are kept as separate fields. The I/O layer converts NIOHTTP1's
/// `HTTPHeaders` to and from this type, so the handshake logic needs no NIO HTTP types.
public struct HTTPFields: Sendable, Hashable, RandomAccessCollection, ExpressibleByDictionaryLiteral,
    CustomStringConvertible
{
    /// One header field.
    public struct Field: Sendable, Hashable {
        /// The name as written.
        public var name: String
        /// The value as received or to be sent.
        public var value: String

        /// A field `name: value`.
        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    /// Every field, in order.
    public private(set) var fields: [Field]

    /// No fields.
    public init() { fields = [] }

    /// These fields, in this order.
    public init(_ fields: [Field]) { self.fields = fields }

    /// Fields in the order given; a name may repeat (`["Cookie": "a", "Cookie": "b"]`).
    public init(dictionaryLiteral elements: (String, String)...) {
        fields = elements.map { Field(name: $0.0, value: $0.1) }
    }

    /// The index of the first field.
    public var startIndex: Int { fields.startIndex }
    /// The index after the last field.
    public var endIndex: Int { fields.endIndex }
    /// The field at `position`.
    public subscript(position: Int) -> Field { fields[position] }

    /// Appends a field (after any with the same name).
    public mutating func add(name: String, value: String) {
        fields.append(Field(name: name, value: value))
    }

    /// Appends every field of `other`.
    public mutating func add(contentsOf other: HTTPFields) {
        fields.append(contentsOf: other.fields)
    }

    /// Removes every field named `name`, then appends one with `value`.
    public mutating func replaceOrAdd(name: String, value: String) {
        remove(name)
        add(name: name, value: value)
    }

    /// Removes every field named `name` (any case).
    public mutating func remove(_ name: String) {
        fields.removeAll { HTTPFields.namesEqual($0.name, name) }
    }

    /// The values of every field named `name` (any case), in order.
    public func values(for name: String) -> [String] {
        fields.compactMap { HTTPFields.namesEqual($0.name, name) ? $0.value : nil }
    }

    /// The value of the first field named `name` (any case).
    public func first(_ name: String) -> String? {
        fields.first { HTTPFields.namesEqual($0.name, name) }?.value
    }

    /// Whether a field named `name` (any case) is present.
    public func contains(_ name: String) -> Bool {
        fields.contains { HTTPFields.namesEqual($0.name, name) }
    }

    /// The fields as they would appear in an HTTP/1.1 head, one `name: value` per line.
    public var description: String {
        fields.map { "\($0.name): \($0.value)" }.joined(separator: "\r\n")
    }

    /// ASCII case-insensitive equality of two header names (or token values).
    public static func namesEqual(_ a: String, _ b: String) -> Bool {
        let a = a.utf8, b = b.utf8
        guard a.count == b.count else { return false }
        for (x, y) in zip(a, b) where x != y {
            guard asciiLower(x) == asciiLower(y) else { return false }
        }
        return true
    }

    @inline(__always)
    static func asciiLower(_ byte: UInt8) -> UInt8 {
        byte &- UInt8(ascii: "A") < 26 ? byte | 0x20 : byte
    }
}
