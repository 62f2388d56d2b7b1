import AsyncTestSupport
import CSQLite
import Foundation
import Testing

@_spi(Fuzzing) @testable import Switchboard

/// A fresh temporary directory, removed when the test is done with it.
final class TempDirectory {
    let url: URL

    init() {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("switchboard-tests-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func path(_ name: String) -> String { url.appendingPathComponent(name).path }

    deinit { try? FileManager.default.removeItem(at: url) }
}

@Suite struct StoreTests {
    /// The repository's schema/ directory, found from this file's path.
    static let schemaDirectory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("schema")

    @Test func embeddedSchemaMatchesSchemaDirectory() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.schemaDirectory.path)
            .filter { $0.hasSuffix(".sql") }.sorted()
        #expect(!files.isEmpty)
        #expect(files == EmbeddedSchema.files.map(\.name), "run scripts/embed-schema.sh")
        for (name, sql) in EmbeddedSchema.files {
            var text = try String(contentsOf: Self.schemaDirectory.appendingPathComponent(name), encoding: .utf8)
            if text.hasSuffix("\n") { text.removeLast() }
            #expect(sql == text, "\(name) differs from its embedded copy: run scripts/embed-schema.sh")
        }
        #expect(Migration.bundled.map(\.version) == Array(1...files.count))
    }

    @Test func opensInWALModeAndMigrates() throws {
        let dir = TempDirectory()
        let path = dir.path("switchboard.db")
        let store = try Store(path: path)
        #expect(store.schemaVersion == Migration.bundled.count)
        let mode = try store.withConnection { (c) throws(StoreError) in try c.scalarText("PRAGMA journal_mode") }
        #expect(mode == "wal")
        let tables = try store.withConnection { (c) throws(StoreError) -> [String] in
            let s = try c.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            var names: [String] = []
            while try s.step() { names.append(s.text(0)) }
            return names
        }
        #expect(tables.contains("tokens"))
        #expect(FileManager.default.fileExists(atPath: path + "-wal"))
    }

    @Test func reopeningAppliesOnlyNewMigrations() throws {
        let dir = TempDirectory()
        let path = dir.path("db.sqlite")
        let first = [Migration(version: 1, name: "001_a.sql", sql: "CREATE TABLE a (x INTEGER);")]
        do {
            let store = try Store(path: path, migrations: first)
            #expect(store.schemaVersion == 1)
            try store.withConnection { (c) throws(StoreError) in try c.execute("INSERT INTO a VALUES (1)") }
        }
        let second = first + [Migration(version: 2, name: "002_b.sql", sql: "CREATE TABLE b (y TEXT); INSERT INTO b SELECT x FROM a;")]
        let store = try Store(path: path, migrations: second)
        #expect(store.schemaVersion == 2)
        let count = try store.withConnection { (c) throws(StoreError) in try c.scalarInt("SELECT count(*) FROM b") }
        #expect(count == 1, "002 ran once, on top of 001's data")
    }

    @Test func failedMigrationRollsBackAndNamesTheFile() throws {
        let dir = TempDirectory()
        let path = dir.path("db.sqlite")
        let migrations = [
            Migration(version: 1, name: "001_ok.sql", sql: "CREATE TABLE a (x INTEGER);"),
            Migration(version: 2, name: "002_bad.sql", sql: "CREATE TABLE b (y TEXT); THIS IS NOT SQL;"),
        ]
        #expect {
            _ = try Store(path: path, migrations: migrations)
        } throws: { error in
            (error as? StoreError)?.message.contains("002_bad.sql") == true
        }
        let store = try Store(path: path, migrations: Array(migrations.prefix(1)))
        #expect(store.schemaVersion == 1)
        let hasB = try store.withConnection { (c) throws(StoreError) in
            try c.scalarInt("SELECT count(*) FROM sqlite_master WHERE name = 'b'")
        }
        #expect(hasB == 0, "the failed migration left nothing behind")
    }

    @Test func newerDatabaseIsRefused() throws {
        let dir = TempDirectory()
        let path = dir.path("db.sqlite")
        do {
            let store = try Store(path: path)
            try store.withConnection { (c) throws(StoreError) in try c.execute("PRAGMA user_version = 99") }
        }
        #expect {
            _ = try Store(path: path)
        } throws: { error in
            (error as? StoreError)?.message.contains("newer than this build") == true
        }
    }

    @Test func badMigrationNumberingIsRefused() {
        #expect(throws: StoreError.self) {
            _ = try Store(path: ":memory:", migrations: [Migration(version: 2, name: "002_x.sql", sql: "")])
        }
    }

    @Test func unopenableFileIsReported() {
        #expect {
            _ = try Store(path: "/nonexistent-dir-\(UUID().uuidString)/db.sqlite")
        } throws: { error in
            (error as? StoreError)?.message.contains("cannot open database") == true
        }
    }
}
