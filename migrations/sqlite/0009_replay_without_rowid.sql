-- Replay records keyed by (issuer, jti) in the table's own B-tree (WITHOUT ROWID). As a rowid
-- table with a primary-key index, every record was written twice — appended to the table and
-- inserted at a random place in the index — and under load each group commit rewrote a page of
-- both per request. Now it is one B-tree (docs/performance.md).
CREATE TABLE replay_records_keyed (
    issuer TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, jti)
) WITHOUT ROWID;
INSERT INTO replay_records_keyed (issuer, jti, expires_at)
    SELECT issuer, jti, expires_at FROM replay_records;
DROP TABLE replay_records;
ALTER TABLE replay_records_keyed RENAME TO replay_records;
CREATE INDEX replay_records_expiry ON replay_records (expires_at);
