import CSQLite

/// Copies of a live database (`switchboard backup`).
public enum Backup {
    /// Writes a consistent copy of the database at `source` to `destination` with `VACUUM
    /// INTO`: one read transaction, so the copy holds exactly what was committed when it began
    /// (every publish acked by then), while the broker goes on writing (WAL mode: the reader
    /// does not block the writer). The copy is compacted and has no -wal file: it is the
    /// whole database. `destination` must not exist. The source is opened read-only, so a
    /// missing file is an error, not a new empty database.
    public static func copy(_ source: String, to destination: String, busyTimeoutMilliseconds: Int32 = 5000)
        throws(StoreError)
    {
        var handle: OpaquePointer?
        let rc = sqlite3_open_v2(source, &handle, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nil)
        guard rc == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close_v2(handle)
            throw StoreError(code: rc, message: "cannot open \(source): \(message)")
        }
        defer { sqlite3_close_v2(handle) }
        sqlite3_busy_timeout(handle, busyTimeoutMilliseconds)
        let statement = try SQLiteConnection(db: handle).prepare("VACUUM INTO ?")
        try statement.bind(destination, at: 1)
        _ = try statement.step()
    }
}
