/// An option outside its allowed range: `perMessageDeflate.memLevel must be 1...9, got 12`.
/// Thrown where options are given (`WebSocketServer.listen()`, `upgradeHandler(routes:)`,
/// `WebSocket.connect`), so a bad value fails there with this message instead of trapping
/// later, on an event loop, when a connection first uses it.
public struct InvalidOption: Error, Sendable, Hashable, CustomStringConvertible {
    /// The option's path, e.g. `connection.fragmentSize`.
    public var option: String
    /// What it must be, e.g. `1...9` or `>= 1`.
    public var allowed: String
    /// The value given.
    public var value: String

    /// An error naming `option`, what it must be and the `value` given.
    public init(option: String, allowed: String, value: String) {
        self.option = option
        self.allowed = allowed
        self.value = value
    }

    /// One line, e.g. `perMessageDeflate.memLevel must be 1...9, got 12`.
    public var description: String { "\(option) must be \(allowed), got \(value)" }

    /// The same problem, with the option's path under `parent` (`connection` + `maxPayload`).
    public func under(_ parent: String) -> InvalidOption {
        InvalidOption(option: "\(parent).\(option)", allowed: allowed, value: value)
    }

    /// Throws unless `range` contains `value`.
    public static func check<T: Comparable>(_ option: String, _ value: T, in range: ClosedRange<T>) throws(InvalidOption) {
        guard range.contains(value) else {
            throw InvalidOption(option: option, allowed: "\(range.lowerBound)...\(range.upperBound)", value: "\(value)")
        }
    }

    /// Throws unless `value >= minimum`.
    public static func check<T: Comparable>(_ option: String, _ value: T, atLeast minimum: T) throws(InvalidOption) {
        guard value >= minimum else { throw InvalidOption(option: option, allowed: ">= \(minimum)", value: "\(value)") }
    }
}
