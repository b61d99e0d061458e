-- Users outlive Redis: one per phone, whatever happens to the codes and limits there.
CREATE TABLE users (
    id uuid PRIMARY KEY,
    phone text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_login_at timestamptz NOT NULL DEFAULT now()
);

-- A refresh session: one per login, for REFRESH_TTL_SECONDS, ended by logout or when a
-- refresh token already used is presented again.
CREATE TABLE refresh_sessions (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz
);
CREATE INDEX refresh_sessions_by_user ON refresh_sessions (user_id);

-- Each refresh token of a session, by its SHA-256; usable once.
CREATE TABLE refresh_tokens (
    token_hash bytea PRIMARY KEY,
    session_id uuid NOT NULL REFERENCES refresh_sessions (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    used_at timestamptz
);
CREATE INDEX refresh_tokens_by_session ON refresh_tokens (session_id);
