-- Switchboard schema, version 3: a feed of token changes.
-- Never edit a released migration: add 004_….sql instead.

-- One row per change to the tokens table, written by triggers, so every writer (this
-- broker, `switchboard token revoke` in another process, a hand edit) is seen. The broker
-- polls max(seq) — one seek — and reads only the rows after the last it saw: a revocation
-- reaches the live connections of that one token without rereading every token.
CREATE TABLE token_changes (
    seq      INTEGER PRIMARY KEY,               -- increasing: rows are never deleted
    token_id TEXT    NOT NULL                   -- tokens.id of the token created, changed or deleted
) STRICT;

CREATE TRIGGER token_created AFTER INSERT ON tokens
BEGIN
    INSERT INTO token_changes (token_id) VALUES (NEW.id);
END;

CREATE TRIGGER token_updated AFTER UPDATE ON tokens
BEGIN
    INSERT INTO token_changes (token_id) VALUES (NEW.id);
END;

CREATE TRIGGER token_deleted AFTER DELETE ON tokens
BEGIN
    INSERT INTO token_changes (token_id) VALUES (OLD.id);
END;
