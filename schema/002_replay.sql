-- Switchboard schema, version 2: the replay log (Sources/Switchboard/ReplayLog.swift).
-- Never edit a released migration: add 003_….sql instead.

-- Retained messages, one row per (topic, seq). WITHOUT ROWID: the table is the
-- (topic, seq) b-tree itself, so a topic's messages are stored together in seq order and
-- a replay is one range scan; an append writes one b-tree, not a table plus an index.
-- Only topics matched by a retention rule are stored here.
CREATE TABLE replay_messages (
    topic     TEXT    NOT NULL,                     -- concrete topic name
    seq       INTEGER NOT NULL,                     -- per-topic sequence number, 1, 2, 3…
    time      INTEGER NOT NULL,                     -- publish time, unix milliseconds (broker clock)
    format    INTEGER NOT NULL,                     -- 0 = JSON (text msg), 1 = binary
    payload   BLOB    NOT NULL,                     -- the publisher's bytes, verbatim
    publisher TEXT,                                 -- who published it (principal label); NULL = unknown
    PRIMARY KEY (topic, seq)
) STRICT, WITHOUT ROWID;

-- The last sequence number committed for every topic ever published to, retained or
-- not, so that after a restart each topic continues after its last stored seq and
-- never reuses one. Updated once per topic per group-commit batch.
-- pruned_seq / pruned_time: the newest message retention removed (0 = none), so a
-- replay from before it is told it has a gap.
CREATE TABLE topic_sequences (
    topic       TEXT    PRIMARY KEY,
    last_seq    INTEGER NOT NULL,
    pruned_seq  INTEGER NOT NULL DEFAULT 0,
    pruned_time INTEGER NOT NULL DEFAULT 0
) STRICT, WITHOUT ROWID;
