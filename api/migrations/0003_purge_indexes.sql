-- The purge's lookups (ended or expired sessions, spent tokens) read indexes, not whole
-- tables, every ten minutes on every replica. Built inside the migration's transaction,
-- which holds writes to these two tables while it runs: a few seconds for millions of
-- rows, once. The api's two-second statement limit is lifted for it.
SET LOCAL statement_timeout = 0;
CREATE INDEX refresh_sessions_by_expiry ON refresh_sessions (expires_at);
CREATE INDEX refresh_sessions_by_revocation ON refresh_sessions (revoked_at)
    WHERE revoked_at IS NOT NULL;
CREATE INDEX refresh_tokens_by_use ON refresh_tokens (used_at) WHERE used_at IS NOT NULL;
