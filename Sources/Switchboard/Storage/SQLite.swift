import CSQLite
import NIOCore

/// One SQLite connection through the C API, used by one thread at a time (the store's
/// lock, the replay log's writer thread, one reader queue). A value: whoever opened the
/// handle closes it.
package struct SQLiteConnection {
    let db: OpaquePointer

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

    /// What every read-write connection to a broker database does first: WAL mode (but for
    /// `":memory:"`), `synchronous=NORMAL`, and the schema brought up to date.
    func setUp(path: String, migrations: [Migration]) throws(StoreError) {
        if path != ":memory:" && !path.isEmpty {
            let mode = try scalarText("PRAGMA journal_mode=WAL")
            guard mode?.lowercased() == "wal" else {
                throw StoreError(code: 0, message: "cannot switch \(path) to WAL mode (journal_mode is \(mode ?? "?"))")
            }
        }
        try execute("PRAGMA synchronous=NORMAL")
        try Migration.apply(migrations, to: self, path: path)
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

    /// A statement for one use (not kept for the connection's life).
    package func prepare(_ sql: String) throws(StoreError) -> SQLiteStatement {
        try SQLiteStatement(db, sql, persistent: false)
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

/// A prepared statement, used by one thread at a time. Bind indices start at 1, column
/// indices at 0 (as in SQLite).
///
/// Two ways to bind: `bind(_:at:)` copies text and blobs (SQLITE_TRANSIENT) and checks the
/// result; `bind(_:_:)`, `bind(_:text:)` and `bind(_:blob:)`, for the replay log's hot
/// paths, lend them without a copy (SQLITE_STATIC): the bytes must stay valid until the
/// statement is stepped and reset, as inside `String.cString`. Finalized when released, or
/// at once with `finalize()`, so that its connection can close right away.
package final class SQLiteStatement {
    private let db: OpaquePointer
    private let statement: OpaquePointer
    private var isFinalized = false

    /// SQLITE_STATIC: SQLite reads the bound bytes where they are.
    private static let lent: sqlite3_destructor_type? = nil
    /// SQLITE_TRANSIENT: SQLite copies the bound bytes.
    private static let copied = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    /// `persistent`: kept for the connection's life and reused (SQLITE_PREPARE_PERSISTENT).
    init(_ db: OpaquePointer, _ sql: String, persistent: Bool = true) throws(StoreError) {
        var statement: OpaquePointer?
        let flags = persistent ? UInt32(SQLITE_PREPARE_PERSISTENT) : 0
        let rc = sqlite3_prepare_v3(db, sql, -1, flags, &statement, nil)
        guard rc == SQLITE_OK, let statement else {
            throw StoreError(code: rc, message: "cannot prepare \(sql): \(String(cString: sqlite3_errmsg(db)))")
        }
        self.db = db
        self.statement = statement
    }

    deinit { finalize() }

    /// Releases the statement now; not usable after.
    func finalize() {
        guard !isFinalized else { return }
        isFinalized = true
        sqlite3_finalize(statement)
    }

    private func failure() -> StoreError {
        StoreError(code: sqlite3_extended_errcode(db), message: String(cString: sqlite3_errmsg(db)))
    }

    private func check(_ rc: Int32) throws(StoreError) {
        guard rc == SQLITE_OK else { throw failure() }
    }

    // MARK: Binding copies

    @discardableResult
    package func bind(_ value: Int64?, at index: Int32) throws(StoreError) -> SQLiteStatement {
        try check(value.map { sqlite3_bind_int64(statement, index, $0) } ?? sqlite3_bind_null(statement, index))
        return self
    }

    @discardableResult
    package func bind(_ value: String?, at index: Int32) throws(StoreError) -> SQLiteStatement {
        try check(value.map { sqlite3_bind_text(statement, index, $0, -1, Self.copied) } ?? sqlite3_bind_null(statement, index))
        return self
    }

    @discardableResult
    package func bind(blob value: [UInt8], at index: Int32) throws(StoreError) -> SQLiteStatement {
        let rc = value.withUnsafeBytes { raw in
            sqlite3_bind_blob(statement, index, Self.nonNull(raw), Int32(raw.count), Self.copied)
        }
        try check(rc)
        return self
    }

    // MARK: Binding in place

    func bind(_ index: Int32, _ value: Int64) { sqlite3_bind_int64(statement, index, value) }

    func bind(_ index: Int32, text: UnsafePointer<CChar>) { sqlite3_bind_text(statement, index, text, -1, Self.lent) }

    func bindNull(_ index: Int32) { sqlite3_bind_null(statement, index) }

    func bind(_ index: Int32, blob: UnsafeRawBufferPointer) {
        sqlite3_bind_blob(statement, index, Self.nonNull(blob), Int32(blob.count), Self.lent)
    }

    /// A zero-length blob still needs a non-NULL pointer to be a blob, not NULL.
    private static func nonNull(_ bytes: UnsafeRawBufferPointer) -> UnsafeRawPointer? {
        bytes.baseAddress ?? UnsafeRawPointer(bitPattern: 1)
    }

    // MARK: Running

    /// Advances: true when a row is available, false when done. On an error the statement
    /// is reset, ready for another run.
    package func step() throws(StoreError) -> Bool {
        let rc = sqlite3_step(statement)
        if rc == SQLITE_ROW { return true }
        if rc == SQLITE_DONE { return false }
        let error = failure()
        sqlite3_reset(statement)
        throw error
    }

    /// Steps a statement that returns no rows, then resets it (its bindings stay).
    func run() throws(StoreError) {
        let rc = sqlite3_step(statement)
        defer { sqlite3_reset(statement) }
        guard rc == SQLITE_DONE || rc == SQLITE_ROW else { throw failure() }
    }

    /// Resets for another execution, clearing bindings.
    package func reset() {
        sqlite3_reset(statement)
        sqlite3_clear_bindings(statement)
    }

    // MARK: Columns

    package func isNull(_ column: Int32) -> Bool { sqlite3_column_type(statement, column) == SQLITE_NULL }

    package func int(_ column: Int32) -> Int64 { sqlite3_column_int64(statement, column) }

    package func optionalInt(_ column: Int32) -> Int64? { isNull(column) ? nil : int(column) }

    package func text(_ column: Int32) -> String {
        guard let pointer = sqlite3_column_text(statement, column) else { return "" }
        let count = Int(sqlite3_column_bytes(statement, column))
        return String(decoding: UnsafeBufferPointer(start: pointer, count: count), as: UTF8.self)
    }

    package func optionalText(_ column: Int32) -> String? { isNull(column) ? nil : text(column) }

    package func blob(_ column: Int32) -> [UInt8] { Array(blobBytes(column)) }

    /// The column's bytes where SQLite holds them: valid until the next step or reset.
    func blobBytes(_ column: Int32) -> UnsafeRawBufferPointer {
        let count = Int(sqlite3_column_bytes(statement, column))
        guard count > 0, let pointer = sqlite3_column_blob(statement, column) else {
            return UnsafeRawBufferPointer(start: nil, count: 0)
        }
        return UnsafeRawBufferPointer(start: pointer, count: count)
    }
}

/// `BEGIN IMMEDIATE`, `COMMIT` and `ROLLBACK`, prepared once, for a connection that writes
/// many short transactions (the replay log's writer and pruner).
struct SQLiteTransactions {
    private let db: OpaquePointer
    private let beginStatement: SQLiteStatement
    private let commitStatement: SQLiteStatement
    private let rollbackStatement: SQLiteStatement

    init(_ db: OpaquePointer) throws(StoreError) {
        self.db = db
        beginStatement = try SQLiteStatement(db, "BEGIN IMMEDIATE")
        commitStatement = try SQLiteStatement(db, "COMMIT")
        rollbackStatement = try SQLiteStatement(db, "ROLLBACK")
    }

    func begin() throws(StoreError) { try beginStatement.run() }

    func commit() throws(StoreError) { try commitStatement.run() }

    /// Rolls back the transaction a failed statement left open, if it is still open.
    func rollBackIfOpen() {
        if sqlite3_get_autocommit(db) == 0 { try? rollbackStatement.run() }
    }

    func finalize() {
        for statement in [beginStatement, commitStatement, rollbackStatement] { statement.finalize() }
    }
}

// Typed-throws wrappers for lending bytes to a statement (the standard library's
// `withCString` and NIO's `withUnsafeReadableBytes` rethrow `any Error`).
extension String {
    @inline(__always)
    func cString<R>(_ body: (UnsafePointer<CChar>) throws(StoreError) -> R) throws(StoreError) -> R {
        let result: Result<R, StoreError> = withCString { pointer in
            do throws(StoreError) { return .success(try body(pointer)) } catch { return .failure(error) }
        }
        return try result.get()
    }
}

extension ByteBuffer {
    @inline(__always)
    func withReadableBytes<R>(_ body: (UnsafeRawBufferPointer) throws(StoreError) -> R) throws(StoreError) -> R {
        let result: Result<R, StoreError> = withUnsafeReadableBytes { bytes in
            do throws(StoreError) { return .success(try body(bytes)) } catch { return .failure(error) }
        }
        return try result.get()
    }
}
