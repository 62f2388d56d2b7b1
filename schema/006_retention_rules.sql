-- Switchboard schema, version 6: retention rules set at run time (PUT /admin/v1/retention,
-- `switchboard retention set`).
-- Never edit a released migration: add 007_….sql instead.

-- The rules in force, first match wins, in `replay_retain` syntax, one per row in order.
-- Once set (replay_state `rules_stored` = 1, even to no rule at all) they are the log's
-- rules at every open, and the config file's `replay_retain` is not read.
-- replay_state `rules_changed` = 1: the rules were replaced while the process that has the
-- log open ran; if it stops uncleanly, every topic, retained or not, continues further on
-- (a topic may have been not retained, its seqs noted coalesced, for part of that run).
CREATE TABLE retention_rules (
    position INTEGER PRIMARY KEY,
    rule     TEXT    NOT NULL
) STRICT;
