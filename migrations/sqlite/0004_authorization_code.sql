-- The authorization code flow (RFC 6749 §4.1 with PKCE, OAuth 2.1). Secrets handed to a browser
-- or a client (authorization codes, refresh tokens) are stored only as SHA-256 hashes.

-- Pending authorization requests: from GET /authorize through the IdP sign-in to the consent
-- decision. `id` is in the consent form; `rp_state` is the state sent to the IdP; the browser that
-- started the request holds a cookie whose SHA-256 is `browser_hash`.
CREATE TABLE authorization_requests (
    id TEXT PRIMARY KEY NOT NULL,
    rp_state TEXT NOT NULL UNIQUE,
    browser_hash TEXT NOT NULL,
    csrf_token TEXT NOT NULL,
    nonce TEXT NOT NULL,
    rp_pkce_verifier TEXT NOT NULL,
    client_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    state TEXT,
    code_challenge TEXT NOT NULL,
    resource TEXT NOT NULL,
    scopes TEXT NOT NULL,
    status TEXT NOT NULL,
    subject TEXT,
    subject_issuer TEXT,
    email TEXT,
    auth_time BIGINT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX authorization_requests_expiry ON authorization_requests (expires_at);

-- Issued authorization codes (single use: `used_at` is set atomically on redemption).
CREATE TABLE authorization_codes (
    code_hash TEXT PRIMARY KEY NOT NULL,
    family_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    subject TEXT NOT NULL,
    subject_issuer TEXT NOT NULL,
    resource TEXT NOT NULL,
    scopes TEXT NOT NULL,
    auth_time BIGINT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX authorization_codes_expiry ON authorization_codes (expires_at);

-- Refresh tokens, rotated on every use; all tokens from one code share a `family_id`.
CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    family_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    subject_issuer TEXT NOT NULL,
    resource TEXT NOT NULL,
    scopes TEXT NOT NULL,
    auth_time BIGINT,
    issued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    rotated_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expiry ON refresh_tokens (expires_at);

-- Access tokens (issued_tokens.jti) issued from one code family, so a reused code or refresh
-- token revokes everything that came from it.
CREATE TABLE grant_family_tokens (
    family_id TEXT NOT NULL,
    jti TEXT NOT NULL,
    PRIMARY KEY (family_id, jti)
);
