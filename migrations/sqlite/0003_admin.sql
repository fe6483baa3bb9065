-- Local admin accounts of the web admin page (bootstrap and break-glass; SSO comes later).
-- Only an argon2id hash of the password is stored.
CREATE TABLE admin_users (
    username TEXT PRIMARY KEY NOT NULL,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'auditor')),
    created_at BIGINT NOT NULL
);

-- Server-side admin sessions. The cookie holds a random id; only its SHA-256 is stored, so a
-- database reader cannot hijack a session.
CREATE TABLE admin_sessions (
    id_hash TEXT PRIMARY KEY NOT NULL,
    username TEXT NOT NULL REFERENCES admin_users (username) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);
CREATE INDEX admin_sessions_user ON admin_sessions (username);
