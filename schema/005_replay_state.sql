-- Switchboard schema, version 5: the replay log's own state.
-- Never edit a released migration: add 006_….sql instead.

-- One row per key. `running`: while a process has the log open, how many seqs of topics that
-- are not retained it may hand out past what topic_sequences holds (its note limit, the
-- replay_queue_limit it runs with); 0 after a clean close. Found above 0 at open, the last
-- process stopped uncleanly (kill -9, crash, power loss): every topic that is not retained
-- continues that many seqs further, so that no seq it handed out is given again; `floor`:
-- the sum of those jumps, after which a topic with no row in topic_sequences starts.
-- `epoch`: a random number made at the first open, naming the history this database's seqs
-- count in (a replaced or recreated database has another; docs/protocol.md, *sub*).
CREATE TABLE replay_state (
    key   TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
