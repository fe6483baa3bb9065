-- Replay records keyed by a 16-byte digest of (issuer, jti) instead of the two texts.
--
-- A jti is whatever the token's signer chose. As text in the primary key, one longer than a
-- B-tree entry holds (2,704 bytes, incompressible) made its insert fail, and with it the whole
-- group commit: every request in that batch was refused. A digest has a fixed size.
--
-- digest = the first 16 bytes of SHA-256(issuer's length in bytes as 8 bytes big-endian ||
-- issuer || jti), all text in UTF-8; the store computes the same in Rust
-- (src/store/replay.rs, `replay_digest`). A collision would refuse a token, never accept one,
-- and finding a jti that collides with another's is a second preimage of 128 bits.
--
-- Instances still running the previous version write (issuer, jti) rows and fail once this has
-- run: upgrade every instance together (docs/deployment.md).
CREATE TABLE replay_digests (
    digest BYTEA NOT NULL,
    expires_at BIGINT NOT NULL
);
INSERT INTO replay_digests (digest, expires_at)
    SELECT substring(
               sha256(int8send(octet_length(issuer)::BIGINT)
                      || convert_to(issuer, 'UTF8')
                      || convert_to(jti, 'UTF8'))
               FROM 1 FOR 16),
           max(expires_at)
    FROM replay_records
    GROUP BY 1;
DROP TABLE replay_records;
ALTER TABLE replay_digests RENAME TO replay_records;
ALTER TABLE replay_records ADD CONSTRAINT replay_records_pkey PRIMARY KEY (digest);
CREATE INDEX replay_records_expiry ON replay_records (expires_at);
