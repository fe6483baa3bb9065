-- Single sign-on into the admin page. SSO users get a row in admin_users (so sessions and the
-- role join work as for local accounts) marked `auth_source = 'sso'`, with no password: the
-- role is decided again by the CEL conditions at every sign-in.
ALTER TABLE admin_users ADD COLUMN auth_source TEXT NOT NULL DEFAULT 'local'
    CHECK (auth_source IN ('local', 'sso'));

-- A pending SSO sign-in: the browser went to the IdP and has not come back yet. Only hashes of
-- the `state` and of the browser-binding cookie are stored; the row is taken (deleted) by the
-- callback, so a state is used once.
CREATE TABLE admin_sso_requests (
    state_hash TEXT PRIMARY KEY NOT NULL,
    binding_hash TEXT NOT NULL,
    nonce TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX admin_sso_requests_created ON admin_sso_requests (created_at);
