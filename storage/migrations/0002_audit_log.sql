-- Team mode: who did what. One row per change made through the services (a vote, a run started,
-- cancelled or deleted, an export, a settings change), under the acting person's name and role.
-- Never a password, key or session token: the services pass only ids, names and counts.
CREATE TABLE IF NOT EXISTS audit_log (
    id VARCHAR PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
    actor VARCHAR NOT NULL,
    role VARCHAR NOT NULL,
    via VARCHAR NOT NULL,          -- app (signed in), local (single-user mode), cli
    call VARCHAR NOT NULL,         -- service.function
    action VARCHAR NOT NULL,       -- what it did, in words
    target VARCHAR,                -- the id or name it made or touched
    details JSON,                  -- the call's simple arguments
    error VARCHAR                  -- set when the action failed
);
CREATE INDEX IF NOT EXISTS audit_log_created_at ON audit_log (created_at);
