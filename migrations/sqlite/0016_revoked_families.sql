-- Families of authorization-code-flow grants revoked because a code or refresh token was used
-- again (or revoked at /revoke). A grant being issued when its family is revoked checks this
-- after storing its tokens and revokes them too (RFC 9700 §4.14.2): without it, a replay that
-- lands between the first use and the insert of the new tokens would leave them alive. Rows are
-- needed only for that moment and are purged with expired codes.
CREATE TABLE revoked_families (
    family_id TEXT PRIMARY KEY NOT NULL,
    revoked_at INTEGER NOT NULL
);
