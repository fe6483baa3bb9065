-- Token Status List (draft-ietf-oauth-status-list): every access token frontdesk issues can
-- carry a `status` claim pointing at one bit of a published list, so resource servers that
-- verify tokens locally still learn of revocations. `status_index` is the token's position
-- across all lists (list = index / 2^20, idx = index mod 2^20); NULL for tokens issued without
-- one. The list is derived from `revoked_at`, so every way of revoking reaches it.
ALTER TABLE issued_tokens ADD COLUMN status_index BIGINT;
-- Only revoked tokens are looked up by index, and they are few.
CREATE INDEX issued_tokens_revoked_status ON issued_tokens (status_index)
    WHERE revoked_at IS NOT NULL AND status_index IS NOT NULL;

-- The next unreserved index. Instances reserve blocks of indexes at a time, so issuing a token
-- rarely writes here.
CREATE TABLE status_list_allocation (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    next_index BIGINT NOT NULL
);
INSERT INTO status_list_allocation (id, next_index) VALUES (1, 0);
