import CSQLite

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

    /// Applies, in order, each of `migrations` that the database at `path` has not applied
    /// yet, each in its own transaction with its `user_version` bump.
    static func apply(_ migrations: [Migration], to c: SQLiteConnection, path: String) throws(StoreError) {
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
