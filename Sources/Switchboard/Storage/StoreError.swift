import CSQLite

/// A failure from SQLite or from the migration runner, with the database path.
public struct StoreError: Error, Sendable, Hashable, CustomStringConvertible {
    /// SQLite's result code (`SQLITE_…`), or 0 for errors of the runner itself.
    public let code: Int32
    public let message: String

    public init(code: Int32, message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { code == 0 ? message : "\(message) (sqlite error \(code))" }

    /// SQLite found the file damaged or not a database at all (`SQLITE_CORRUPT`,
    /// `SQLITE_NOTADB`): no retry helps, an operator has to act.
    public var isCorruption: Bool {
        let primary = code & 0xff
        return primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB
    }
}
