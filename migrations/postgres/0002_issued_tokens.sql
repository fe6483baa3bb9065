-- Access tokens frontdesk issued, for introspection (RFC 7662) and revocation (RFC 7009).
-- Holds identifiers and metadata only, never the token.
CREATE TABLE issued_tokens (
    jti TEXT PRIMARY KEY NOT NULL,
    client_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    token_type TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX issued_tokens_expiry ON issued_tokens (expires_at);

-- Leg 2 subject links: an external (issuer, subject) pre-linked to a local subject.
CREATE TABLE subject_links (
    issuer TEXT NOT NULL,
    external_subject TEXT NOT NULL,
    local_subject TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, external_subject)
);

-- Bumped in the same transaction as every trust change, so every instance notices any change
-- (even two edits within one second) by reading one row.
CREATE TABLE trust_generation (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    value BIGINT NOT NULL
);
INSERT INTO trust_generation (id, value) VALUES (1, 0);
