-- Signing keys: private parts only ever sealed under the key-encryption key.
CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY NOT NULL,
    algorithm TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('next', 'active', 'retired')),
    sealed_private_key BLOB NOT NULL,
    public_jwk TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    activate_at BIGINT,
    activated_at BIGINT,
    retired_at BIGINT,
    publish_until BIGINT
);
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (state) WHERE state = 'active';

-- One row per decision at the token endpoint and per administrative change. Never a token.
CREATE TABLE audit_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    occurred_at BIGINT NOT NULL,
    request_id TEXT,
    event TEXT NOT NULL,
    decision TEXT NOT NULL,
    reason TEXT,
    error_code TEXT,
    client_id TEXT,
    grant_type TEXT,
    subject_issuer TEXT,
    subject TEXT,
    audience TEXT,
    resources TEXT,
    scopes_requested TEXT,
    scopes_granted TEXT,
    issued_jti TEXT,
    issued_expires_at BIGINT,
    detail TEXT
);
CREATE INDEX audit_events_time ON audit_events (occurred_at);

-- Replay records for client assertions and accepted grants, shared by all instances.
CREATE TABLE replay_records (
    issuer TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, jti)
);
CREATE INDEX replay_records_expiry ON replay_records (expires_at);

-- Trust configuration as validated JSON documents, so the admin page and the config file share
-- one shape.
CREATE TABLE identity_providers (
    id TEXT PRIMARY KEY NOT NULL,
    document TEXT NOT NULL,
    managed_by_config BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at BIGINT NOT NULL
);
CREATE TABLE audiences (
    id TEXT PRIMARY KEY NOT NULL,
    document TEXT NOT NULL,
    managed_by_config BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at BIGINT NOT NULL
);
CREATE TABLE clients (
    client_id TEXT PRIMARY KEY NOT NULL,
    document TEXT NOT NULL,
    managed_by_config BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at BIGINT NOT NULL
);
