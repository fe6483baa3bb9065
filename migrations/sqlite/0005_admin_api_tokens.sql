-- Bearer tokens of the admin JSON API (/admin/api/v1). The token itself (`fd_` + 32 random
-- bytes, base64url) is shown once; only its SHA-256 is stored, so a database reader cannot use it.
CREATE TABLE admin_api_tokens (
    id_hash TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('admin', 'auditor')),
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    expires_at BIGINT
);
