#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import NIOConcurrencyHelpers

/// A stored opaque token, without its secret.
public struct TokenRecord: Sendable, Hashable {
    /// Public id (`tok_…`), safe to log and show.
    public let id: String
    public let name: String
    /// Permissions, `expiresAt` included.
    public let permissions: Permissions
    public let createdAt: Date
    /// Set once revoked; a revoked token never becomes valid again.
    public let revokedAt: Date?
    /// SHA-256 of the token string.
    let hash: [UInt8]

    public var isRevoked: Bool { revokedAt != nil }
}

/// Opaque tokens in SQLite (`tokens` table), with an in-memory cache so the handshake's
/// lookup never touches the database (nor blocks an event loop).
///
/// Invariants:
/// - The token string exists only in the return value of `create`; the table and the
///   cache hold its SHA-256. Lookups hash the presented string, find the record by hash
///   and compare the hashes in constant time.
/// - Writes go to SQLite first, then to the cache: the cache never holds a token the
///   database lacks, nor misses a revocation the database has.
/// - Revocation observers are called after the revocation is durable, outside the lock.
public final class TokenStore: Sendable {
    package let store: Store
    private let cache: NIOLockedValueBox<[[UInt8]: TokenRecord]>
    private let observers = NIOLockedValueBox<[@Sendable (TokenRecord) -> Void]>([])
    /// The last `token_changes.seq` the cache reflects.
    private let changesSeen = NIOLockedValueBox<Int64>(0)

    /// Loads every token into memory.
    public init(store: Store) throws(StoreError) {
        self.store = store
        self.cache = NIOLockedValueBox([:])
        try reload()
    }

    /// Rereads the table (e.g. after another process changed it).
    package func reload() throws(StoreError) {
        try store.withConnection { (c) throws(StoreError) in try reloadLocked(c) }
    }

    /// `reload` with the connection already held. The new cache is swapped in while the
    /// connection is held, so a create or revoke made through this store cannot land
    /// between the read and the swap and be lost.
    private func reloadLocked(_ c: SQLiteConnection) throws(StoreError) {
        // Read first: a change landing after it is applied again by `applyChanges`, harmlessly.
        let seen = try c.scalarInt("SELECT max(seq) FROM token_changes") ?? 0
        let statement = try c.prepare(
            "SELECT id, name, hash, permissions, created_at, expires_at, revoked_at FROM tokens"
        )
        var records: [TokenRecord] = []
        while try statement.step() {
            records.append(try Self.record(statement))
        }
        cache.withLockedValue { cache in
            cache = Dictionary(records.map { ($0.hash, $0) }, uniquingKeysWith: { a, _ in a })
        }
        changesSeen.withLockedValue { $0 = max($0, seen) }
    }

    /// Brings the cache up to date with what changed in the table since the last call, in
    /// this process or another (`switchboard token revoke`), and returns the ids of the
    /// changed tokens that are now revoked or deleted: their connections must close. When
    /// nothing changed, one indexed read (max of `token_changes`).
    /// Blocks on SQLite: call it off the event loops.
    package func applyChanges() throws(StoreError) -> [String] {
        try store.withConnection { (c) throws(StoreError) -> [String] in
            let seen = changesSeen.withLockedValue { $0 }
            guard let latest = try c.scalarInt("SELECT max(seq) FROM token_changes"), latest > seen else { return [] }
            let changed = try c.prepare("SELECT DISTINCT token_id FROM token_changes WHERE seq > ? AND seq <= ?")
            try changed.bind(seen, at: 1)
            try changed.bind(latest, at: 2)
            var ids: [String] = []
            while try changed.step() { ids.append(changed.text(0)) }
            let select = try c.prepare(
                "SELECT id, name, hash, permissions, created_at, expires_at, revoked_at FROM tokens WHERE id = ?")
            var records: [TokenRecord] = []
            var deleted: Set<String> = []
            for id in ids {
                try select.bind(id, at: 1)
                if try select.step() { records.append(try Self.record(select)) } else { deleted.insert(id) }
                select.reset()
            }
            cache.withLockedValue { cache in
                if !deleted.isEmpty { cache = cache.filter { !deleted.contains($0.value.id) } }
                for record in records { cache[record.hash] = record }
            }
            changesSeen.withLockedValue { $0 = max($0, latest) }
            return records.filter(\.isRevoked).map(\.id) + deleted
        }
    }

    /// Creates a token. Returns the token string (shown once, never stored) and its record.
    public func create(name: String, permissions: Permissions, now: Date = Date()) throws(StoreError) -> (token: String, record: TokenRecord) {
        let token = OpaqueToken.generate()
        let record = TokenRecord(
            id: OpaqueToken.generateID(), name: name, permissions: permissions,
            createdAt: now, revokedAt: nil, hash: OpaqueToken.hash(token)
        )
        let json = try Self.encodePermissions(permissions)
        try store.withConnection { (c) throws(StoreError) in
            let statement = try c.prepare(
                "INSERT INTO tokens (id, name, hash, permissions, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)"
            )
            try statement.bind(record.id, at: 1)
            try statement.bind(name, at: 2)
            try statement.bind(blob: record.hash, at: 3)
            try statement.bind(json, at: 4)
            try statement.bind(Self.milliseconds(now), at: 5)
            try statement.bind(permissions.expiresAt.map(Self.milliseconds), at: 6)
            _ = try statement.step()
            cache.withLockedValue { $0[record.hash] = record }
        }
        return (token, record)
    }

    /// Stores and caches a token another node of a cluster made (its record: the secret
    /// never leaves the node that made it). One this store already has is left as it is.
    /// Blocks on SQLite: call it off the event loops.
    package func adopt(_ record: TokenRecord) throws(StoreError) {
        let json = try Self.encodePermissions(record.permissions)
        try store.withConnection { (c) throws(StoreError) in
            let statement = try c.prepare(
                "INSERT OR IGNORE INTO tokens (id, name, hash, permissions, created_at, expires_at, revoked_at) "
                    + "VALUES (?, ?, ?, ?, ?, ?, ?)")
            try statement.bind(record.id, at: 1)
            try statement.bind(record.name, at: 2)
            try statement.bind(blob: record.hash, at: 3)
            try statement.bind(json, at: 4)
            try statement.bind(Self.milliseconds(record.createdAt), at: 5)
            try statement.bind(record.permissions.expiresAt.map(Self.milliseconds), at: 6)
            try statement.bind(record.revokedAt.map(Self.milliseconds), at: 7)
            _ = try statement.step()
            if c.changes > 0 { cache.withLockedValue { $0[record.hash] = record } }
        }
    }

    /// Every token, oldest first.
    public func list(includeRevoked: Bool = true) -> [TokenRecord] {
        cache.withLockedValue { Array($0.values) }
            .filter { includeRevoked || !$0.isRevoked }
            .sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }
    }

    public func record(id: String) -> TokenRecord? {
        cache.withLockedValue { cache in cache.values.first { $0.id == id } }
    }

    /// Revokes token `id`. Returns its record, nil when no such token. Revoking twice
    /// keeps the first revocation time. Observers hear of a new revocation.
    @discardableResult
    public func revoke(id: String, now: Date = Date()) throws(StoreError) -> TokenRecord? {
        let (changed, revoked) = try store.withConnection { (c) throws(StoreError) -> (Bool, TokenRecord?) in
            let statement = try c.prepare("UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
            try statement.bind(Self.milliseconds(now), at: 1)
            try statement.bind(id, at: 2)
            _ = try statement.step()
            guard c.changes > 0 else { return (false, record(id: id)) }
            // The token may have been created by another process since the last reload.
            guard let existing = record(id: id) else {
                try reloadLocked(c)
                return (true, record(id: id))
            }
            let revoked = TokenRecord(
                id: existing.id, name: existing.name, permissions: existing.permissions,
                createdAt: existing.createdAt, revokedAt: Date(timeIntervalSince1970: Double(Self.milliseconds(now)) / 1000),
                hash: existing.hash
            )
            cache.withLockedValue { $0[revoked.hash] = revoked }
            return (true, revoked)
        }
        if changed, let revoked {
            for observer in observers.withLockedValue({ $0 }) { observer(revoked) }
        }
        return revoked
    }

    /// Calls `observer` after each revocation (the hub closes that token's connections).
    public func onRevoke(_ observer: @escaping @Sendable (TokenRecord) -> Void) {
        observers.withLockedValue { $0.append(observer) }
    }

    /// The record for a presented token string, revoked or expired ones included (the
    /// caller tells those apart); nil when unknown. Memory only.
    package func lookup(token: String) -> TokenRecord? {
        let hash = OpaqueToken.hash(token)
        guard let record = cache.withLockedValue({ $0[hash] }) else { return nil }
        return TokenCrypto.constantTimeEquals(record.hash, hash) ? record : nil
    }

    /// Looks a presented token up in the database (not the cache) and caches what it finds:
    /// for a token another process (`switchboard token create`) made since the last
    /// `reload`. Blocks on SQLite: call it off the event loops.
    @discardableResult
    package func fetch(token: String) throws(StoreError) -> TokenRecord? {
        let hash = OpaqueToken.hash(token)
        return try store.withConnection { (c) throws(StoreError) -> TokenRecord? in
            let statement = try c.prepare(
                "SELECT id, name, hash, permissions, created_at, expires_at, revoked_at FROM tokens WHERE hash = ?"
            )
            try statement.bind(blob: hash, at: 1)
            guard try statement.step() else { return nil }
            let record = try Self.record(statement)
            cache.withLockedValue { $0[record.hash] = record }
            return TokenCrypto.constantTimeEquals(record.hash, hash) ? record : nil
        }
    }

    /// The record in the current row of a `SELECT id, name, hash, permissions, created_at,
    /// expires_at, revoked_at`.
    private static func record(_ statement: SQLiteStatement) throws(StoreError) -> TokenRecord {
        var permissions = try decodePermissions(statement.text(3), id: statement.text(0))
        permissions.expiresAt = statement.optionalInt(5).map(date)
        return TokenRecord(
            id: statement.text(0), name: statement.text(1), permissions: permissions,
            createdAt: date(statement.int(4)), revokedAt: statement.optionalInt(6).map(date),
            hash: statement.blob(2)
        )
    }

    // MARK: Encoding

    /// Unix milliseconds, clamped to what an Int64 holds (an expiry centuries away must not trap).
    static func milliseconds(_ date: Date) -> Int64 {
        let value = (date.timeIntervalSince1970 * 1000).rounded()
        guard value.isFinite else { return value < 0 ? .min : .max }
        // 2^63 and -2^63 are exact in a Double; Int64(value) traps from 2^63 up.
        if value >= Double(Int64.max) { return .max }
        if value <= Double(Int64.min) { return .min }
        return Int64(value)
    }
    static func date(_ milliseconds: Int64) -> Date { Date(timeIntervalSince1970: Double(milliseconds) / 1000) }

    static func encodePermissions(_ permissions: Permissions) throws(StoreError) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(permissions) else {
            throw StoreError(code: 0, message: "cannot encode permissions")
        }
        return String(decoding: data, as: UTF8.self)
    }

    static func decodePermissions(_ json: String, id: String) throws(StoreError) -> Permissions {
        do {
            return try JSONDecoder().decode(Permissions.self, from: Data(json.utf8))
        } catch {
            throw StoreError(code: 0, message: "token \(id) has invalid permissions JSON in the database")
        }
    }
}
