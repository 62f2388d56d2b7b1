-- Switchboard schema, version 4: the publish time of each topic's last seq.
-- Never edit a released migration: add 005_….sql instead.

-- Publish times never decrease along a topic's seqs (a replay from `since_time` bisects
-- over them), also across a restart whose clock is behind the last one's: a topic
-- continues from the time of its last seq, as it continues from the seq. Written with
-- last_seq; 0 for the topics of a database from before this version (the time of their
-- last stored message, if any, is read at open).
ALTER TABLE topic_sequences ADD COLUMN last_time INTEGER NOT NULL DEFAULT 0;  -- unix milliseconds
