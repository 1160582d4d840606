-- 009_sessions: console sessions (POST /api/v1/session). A session is a random 32-byte id in an
-- HttpOnly cookie; only its SHA-256 is stored. It belongs to the token it was opened with: its
-- scope is that token's, read on every use, and it ends with the token (revoked: the join finds
-- no active token; the revoke also deletes its sessions). Idle expiry is session_idle_timeout
-- measured from last_used_at, which is refreshed at most once a minute (a bounded write).
CREATE TABLE sessions (
    sha256 text PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    token_id bigint NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sessions_token ON sessions (token_id);
CREATE INDEX sessions_last_used ON sessions (last_used_at);
