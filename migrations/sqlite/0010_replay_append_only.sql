-- Replay records as an append-only log. Their uniqueness is now checked in memory by the one
-- process that owns the SQLite database (src/store/live_jtis.rs, docs/decisions.md): a table
-- keyed by the token's random jti inserted every record at a random place in its B-tree, so
-- under load each record rewrote a page of its own in the WAL and the database. Appended in
-- time order, a batch of records fills the same page or two. The expiry index serves the purge
-- and grows at its end too (tokens' lifetimes are few and similar).
CREATE TABLE replay_records_log (
    issuer TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
INSERT INTO replay_records_log (issuer, jti, expires_at)
    SELECT issuer, jti, expires_at FROM replay_records;
DROP TABLE replay_records;
ALTER TABLE replay_records_log RENAME TO replay_records;
CREATE INDEX replay_records_expiry ON replay_records (expires_at);
