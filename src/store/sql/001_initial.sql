-- 001_initial: the tables of smtptlsd's desired state and its audit trail.

-- The configuration generation: bumped by every committed change of desired state.
CREATE TABLE config_state (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    generation bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO config_state DEFAULT VALUES;

CREATE TABLE certificates (
    id bigserial PRIMARY KEY,
    name text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
    type text NOT NULL CHECK (type IN ('imported', 'acme', 'system')),
    system boolean NOT NULL DEFAULT false,
    certificate_pem text,
    chain_pem text,
    private_key_pem text,
    sha256_fingerprint text,
    not_after timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- One row. `managed` is false until the first settings write: until then smtptlsd leaves the
-- administrator's TLS parameters in main.cf exactly as they are.
CREATE TABLE settings (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    managed boolean NOT NULL DEFAULT false,
    version bigint NOT NULL DEFAULT 0,
    mode text NOT NULL DEFAULT 'none' CHECK (mode IN ('none', 'may', 'encrypt')),
    inbound_mode text CHECK (inbound_mode IN ('none', 'may', 'encrypt')),
    outbound_mode text CHECK (outbound_mode IN ('none', 'may', 'encrypt')),
    certificate_id bigint REFERENCES certificates (id) ON DELETE RESTRICT,
    profile text NOT NULL DEFAULT 'intermediate'
        CHECK (profile IN ('modern', 'intermediate', 'legacy')),
    auth_only boolean NOT NULL DEFAULT true,
    received_header boolean NOT NULL DEFAULT false,
    loglevel integer NOT NULL DEFAULT 1 CHECK (loglevel BETWEEN 0 AND 4),
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO settings DEFAULT VALUES;

CREATE TABLE tls_policies (
    destination text PRIMARY KEY,
    level text NOT NULL CHECK (level IN ('none', 'may', 'encrypt', 'dane', 'dane-only',
                                         'fingerprint', 'verify', 'secure')),
    match text[] NOT NULL DEFAULT '{}',
    protocols text,
    ciphers text,
    exclude text[] NOT NULL DEFAULT '{}',
    note text NOT NULL DEFAULT '',
    enabled boolean NOT NULL DEFAULT true,
    managed_by text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tls_policies_managed_by ON tls_policies (managed_by) WHERE managed_by IS NOT NULL;

-- Every write is a job: the queue's durable half and the audit trail.
CREATE TABLE jobs (
    id bigserial PRIMARY KEY,
    node text NOT NULL,
    status text NOT NULL CHECK (status IN ('queued', 'running', 'applied', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    actor text NOT NULL,
    action text NOT NULL,
    target text NOT NULL,
    request jsonb,
    before jsonb,
    after jsonb,
    generation bigint,
    postmap boolean NOT NULL DEFAULT false,
    reload boolean NOT NULL DEFAULT false,
    error jsonb,
    output text NOT NULL DEFAULT '',
    verified boolean,
    warnings jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX jobs_queued ON jobs (node, id) WHERE status IN ('queued', 'running');

-- API tokens: only the SHA-256 of a token is stored.
CREATE TABLE tokens (
    id bigserial PRIMARY KEY,
    name text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
    scope text NOT NULL CHECK (scope IN ('read', 'write', 'admin')),
    sha256 text NOT NULL UNIQUE CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at timestamptz
);
CREATE UNIQUE INDEX tokens_active_name ON tokens (name) WHERE revoked_at IS NULL;

-- Fleet mode: one row per daemon (one per MTA) sharing this database.
CREATE TABLE nodes (
    name text PRIMARY KEY,
    applied_generation bigint NOT NULL DEFAULT 0,
    state text NOT NULL DEFAULT 'starting',
    detail text NOT NULL DEFAULT '',
    version text NOT NULL DEFAULT '',
    last_contact timestamptz NOT NULL DEFAULT now()
);
