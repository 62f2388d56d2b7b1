import CSQLite
import NIOConcurrencyHelpers

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
    public var isCorruption: Bool { ReplayError.isCorruption(code) }
}

/// One schema migration: `schema/NNN_name.sql` applied as version NNN.
package struct Migration: Sendable, Hashable {
    package let version: Int
    package let name: String
    package let sql: String

    package init(version: Int, name: String, sql: String) {
        self.version = version
        self.name = name
        self.sql = sql
    }

    /// The migrations shipped in `schema/` (embedded at build time by scripts/embed-schema.sh).
    package static let bundled: [Migration] = EmbeddedSchema.files.map { file in
        let digits = file.name.prefix { $0.isNumber }
        return Migration(version: Int(digits) ?? 0, name: file.name, sql: file.sql)
    }
}

/// The broker's SQLite database: one connection, opened with the C API, in WAL mode with
/// a busy timeout, its schema brought up to date by `schema/` migrations on open.
///
/// Invariants:
/// - `PRAGMA user_version` is the number of the last migration applied. Migrations are
///   applied in order, each in its own `BEGIN IMMEDIATE` transaction together with the
///   `user_version` bump, so a crash leaves the database at a whole version.
/// - A database with a newer `user_version` than this build knows is refused, never
///   touched.
/// - Every use of the connection goes through `withConnection`, which serializes callers:
///   a `Store` can be shared between threads. Calls block; keep them off event loops
///   (the token store caches, so lookups never come here).
public final class Store: @unchecked Sendable {
    public let path: String
    private let lock = NIOLock()
    private let db: OpaquePointer

    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    /// `":memory:"` opens a private in-memory database (WAL does not apply there).
    public convenience init(path: String, busyTimeoutMilliseconds: Int32 = 5000) throws(StoreError) {
        try self.init(path: path, migrations: Migration.bundled, busyTimeoutMilliseconds: busyTimeoutMilliseconds)
    }

    /// Opens the database at `path` and applies `migrations` that it has not applied yet.
    package init(path: String, migrations: [Migration], busyTimeoutMilliseconds: Int32 = 5000) throws(StoreError) {
        self.path = path
        let handle = try Self.open(path: path, busyTimeout: busyTimeoutMilliseconds)
        self.db = handle
        let connection = SQLiteConnection(db: handle)
        do throws(StoreError) {
            if path != ":memory:" && !path.isEmpty {
                let mode = try connection.scalarText("PRAGMA journal_mode=WAL")
                guard mode?.lowercased() == "wal" else {
                    throw StoreError(code: 0, message: "cannot switch \(path) to WAL mode (journal_mode is \(mode ?? "?"))")
                }
            }
            try connection.execute("PRAGMA foreign_keys=ON")
            try connection.execute("PRAGMA synchronous=NORMAL")
            try Self.migrate(connection, migrations: migrations, path: path)
        } catch {
            sqlite3_close_v2(handle)
            throw error
        }
    }

    deinit {
        sqlite3_close_v2(db)
    }

    /// Opens (creating if needed) a read-write connection for use by one thread at a time.
    /// The error keeps SQLite's result code, so a caller can tell corruption apart.
    static func open(path: String, busyTimeout: Int32) throws(StoreError) -> OpaquePointer {
        var handle: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &handle, flags, nil)
        guard rc == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close_v2(handle)
            throw StoreError(code: rc, message: "cannot open database \(path): \(message)")
        }
        sqlite3_busy_timeout(handle, busyTimeout)
        return handle
    }

    /// `PRAGMA user_version`: the last migration applied.
    package var schemaVersion: Int {
        let version = try? withConnection { (c) throws(StoreError) in try c.scalarInt("PRAGMA user_version") }
        return Int((version ?? nil) ?? 0)
    }

    /// Runs `body` with exclusive use of the connection.
    package func withConnection<R>(_ body: (SQLiteConnection) throws(StoreError) -> R) throws(StoreError) -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(SQLiteConnection(db: db))
    }

    /// Runs `body` inside `BEGIN IMMEDIATE … COMMIT`, rolling back if it throws.
    package func transaction<R>(_ body: (SQLiteConnection) throws(StoreError) -> R) throws(StoreError) -> R {
        try withConnection { (c) throws(StoreError) in try c.transaction { (c) throws(StoreError) in try body(c) } }
    }

    static func migrate(_ c: SQLiteConnection, migrations: [Migration], path: String) throws(StoreError) {
        let sorted = migrations.sorted { $0.version < $1.version }
        for (index, migration) in sorted.enumerated() where migration.version != index + 1 {
            throw StoreError(code: 0, message: "schema migrations must be numbered 1, 2, 3…; found \(migration.name) at position \(index + 1)")
        }
        let current = Int(try c.scalarInt("PRAGMA user_version") ?? 0)
        guard current <= sorted.count else {
            throw StoreError(code: 0, message: "database \(path) has schema version \(current), newer than this build knows (\(sorted.count)); upgrade switchboard")
        }
        for migration in sorted where migration.version > current {
            do throws(StoreError) {
                try c.transaction { (c) throws(StoreError) in
                    try c.execute(migration.sql)
                    try c.execute("PRAGMA user_version = \(migration.version)")
                }
            } catch {
                throw StoreError(code: error.code, message: "migration \(migration.name) failed on \(path): \(error.message)")
            }
        }
    }
}

/// The connection inside `Store.withConnection`. Not to be kept outside that call.
package struct SQLiteConnection {
    let db: OpaquePointer

    func error(_ rc: Int32, _ context: String) -> StoreError {
        StoreError(code: rc, message: "\(context): \(String(cString: sqlite3_errmsg(db)))")
    }

    /// Runs one or more statements with no parameters and no results.
    package func execute(_ sql: String) throws(StoreError) {
        var message: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(db, sql, nil, nil, &message)
        guard rc == SQLITE_OK else {
            let text = message.map { String(cString: $0) } ?? "unknown error"
            sqlite3_free(message)
            throw StoreError(code: rc, message: text)
        }
    }

    package func prepare(_ sql: String) throws(StoreError) -> SQLiteStatement {
        var statement: OpaquePointer?
        let rc = sqlite3_prepare_v2(db, sql, -1, &statement, nil)
        guard rc == SQLITE_OK, let statement else { throw error(rc, "cannot prepare statement") }
        return SQLiteStatement(db: db, statement: statement)
    }

    package func transaction<R>(_ body: (SQLiteConnection) throws(StoreError) -> R) throws(StoreError) -> R {
        try execute("BEGIN IMMEDIATE")
        do {
            let result = try body(self)
            try execute("COMMIT")
            return result
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }

    /// Rows changed by the last INSERT, UPDATE or DELETE.
    package var changes: Int { Int(sqlite3_changes(db)) }

    func scalarInt(_ sql: String) throws(StoreError) -> Int64? {
        let statement = try prepare(sql)
        return try statement.step() ? statement.int(0) : nil
    }

    func scalarText(_ sql: String) throws(StoreError) -> String? {
        let statement = try prepare(sql)
        return try statement.step() ? statement.text(0) : nil
    }
}

/// A prepared statement; finalized when released. Bind indices start at 1, column
/// indices at 0 (as in SQLite).
package final class SQLiteStatement {
    private let db: OpaquePointer
    private let statement: OpaquePointer
    /// SQLITE_TRANSIENT: SQLite copies bound text and blobs.
    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    init(db: OpaquePointer, statement: OpaquePointer) {
        self.db = db
        self.statement = statement
    }

    deinit { sqlite3_finalize(statement) }

    private func check(_ rc: Int32, _ what: String) throws(StoreError) {
        guard rc == SQLITE_OK else {
            throw StoreError(code: rc, message: "\(what): \(String(cString: sqlite3_errmsg(db)))")
        }
    }

    @discardableResult
    package func bind(_ value: Int64?, at index: Int32) throws(StoreError) -> SQLiteStatement {
        if let value {
            try check(sqlite3_bind_int64(statement, index, value), "bind")
        } else {
            try check(sqlite3_bind_null(statement, index), "bind")
        }
        return self
    }

    @discardableResult
    package func bind(_ value: String?, at index: Int32) throws(StoreError) -> SQLiteStatement {
        guard let value else { try check(sqlite3_bind_null(statement, index), "bind"); return self }
        try check(sqlite3_bind_text(statement, index, value, -1, Self.transient), "bind")
        return self
    }

    @discardableResult
    package func bind(blob value: [UInt8], at index: Int32) throws(StoreError) -> SQLiteStatement {
        let rc = value.withUnsafeBytes { raw in
            // A zero-length blob still needs a non-NULL pointer to be a blob, not NULL.
            sqlite3_bind_blob(statement, index, raw.baseAddress ?? UnsafeRawPointer(bitPattern: 1), Int32(raw.count), Self.transient)
        }
        try check(rc, "bind")
        return self
    }

    /// Advances: true when a row is available, false when done.
    package func step() throws(StoreError) -> Bool {
        let rc = sqlite3_step(statement)
        switch rc {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default: throw StoreError(code: rc, message: "step: \(String(cString: sqlite3_errmsg(db)))")
        }
    }

    /// Resets for another execution, clearing bindings.
    package func reset() {
        sqlite3_reset(statement)
        sqlite3_clear_bindings(statement)
    }

    package func isNull(_ column: Int32) -> Bool { sqlite3_column_type(statement, column) == SQLITE_NULL }

    package func int(_ column: Int32) -> Int64 { sqlite3_column_int64(statement, column) }

    package func optionalInt(_ column: Int32) -> Int64? { isNull(column) ? nil : int(column) }

    package func text(_ column: Int32) -> String {
        guard let pointer = sqlite3_column_text(statement, column) else { return "" }
        let count = Int(sqlite3_column_bytes(statement, column))
        return String(decoding: UnsafeBufferPointer(start: pointer, count: count), as: UTF8.self)
    }

    package func blob(_ column: Int32) -> [UInt8] {
        let count = Int(sqlite3_column_bytes(statement, column))
        guard count > 0, let pointer = sqlite3_column_blob(statement, column) else { return [] }
        return Array(UnsafeRawBufferPointer(start: pointer, count: count))
    }
}
