import CSQLite
import NIOConcurrencyHelpers

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
        let handle = try SQLiteConnection.open(path: path, busyTimeout: busyTimeoutMilliseconds)
        self.db = handle
        let connection = SQLiteConnection(db: handle)
        do throws(StoreError) {
            try connection.execute("PRAGMA foreign_keys=ON")
            try connection.setUp(path: path, migrations: migrations)
        } catch {
            sqlite3_close_v2(handle)
            throw error
        }
    }

    deinit {
        sqlite3_close_v2(db)
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
}
