-- Switchboard schema, version 1: access tokens.
-- Applied by Store's migration runner inside one transaction, after which
-- PRAGMA user_version = 1. Never edit a released migration: add 002_….sql instead.

-- Opaque access tokens. The secret itself is never stored: `hash` is SHA-256 of the
-- whole presented token string (`sb_…`), looked up on every connection.
CREATE TABLE tokens (
    id          TEXT    PRIMARY KEY,            -- public id, e.g. tok_3kTz9aQ1bC2d (safe to log)
    name        TEXT    NOT NULL,               -- operator's label
    hash        BLOB    NOT NULL UNIQUE,        -- SHA-256 of the token string, 32 bytes
    permissions TEXT    NOT NULL,               -- JSON: {"subscribe":[…],"publish":[…],"admin":bool}
    created_at  INTEGER NOT NULL,               -- unix milliseconds
    expires_at  INTEGER,                        -- unix milliseconds; NULL = never
    revoked_at  INTEGER                         -- unix milliseconds; NULL = active
) STRICT;
