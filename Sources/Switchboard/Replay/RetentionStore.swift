/// The retention rules set at run time, in `retention_rules` (schema/006_retention_rules.sql),
/// and the `replay_state` marks that go with them.
enum RetentionStore {
    /// The stored rules in text form, in order; nil while none were ever stored (the
    /// configuration's rules are in force).
    static func load(_ c: SQLiteConnection) throws(StoreError) -> [String]? {
        guard try c.scalarInt("SELECT value FROM replay_state WHERE key = 'rules_stored'") ?? 0 != 0 else { return nil }
        let all = try c.prepare("SELECT rule FROM retention_rules ORDER BY position")
        var texts: [String] = []
        while try all.step() { texts.append(all.text(0)) }
        return texts
    }

    /// Replaces the stored rules with `texts` in one transaction, marking the rules as
    /// changed during this run (see `ReplayLog.markRunning`).
    static func save(_ texts: [String], _ c: SQLiteConnection) -> Result<Void, StoreError> {
        do throws(StoreError) {
            try c.transaction { (c) throws(StoreError) in
                try c.execute("DELETE FROM retention_rules")
                let insert = try c.prepare("INSERT INTO retention_rules (position, rule) VALUES (?1, ?2)")
                for (position, text) in texts.enumerated() {
                    try insert.bind(Int64(position), at: 1).bind(text, at: 2).run()
                }
                try c.execute(
                    "INSERT INTO replay_state (key, value) VALUES ('rules_stored', 1), ('rules_changed', 1) "
                        + "ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            }
            return .success(())
        } catch {
            return .failure(error)
        }
    }
}
