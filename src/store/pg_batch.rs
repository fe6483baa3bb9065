//! PostgreSQL's group-commit statements. A batch with replay records (a `private_key_jwt`
//! exchange's assertion `jti`, CAUTH-06) is one statement: the records' insert and the events'
//! insert are data-modifying `WITH` clauses of a single `INSERT`, atomic on its own, so the
//! batch costs one round trip instead of four (`BEGIN`, two inserts, `COMMIT`) and the database
//! runs one statement instead of four on the cores it shares with the server (docs/
//! performance.md, eleventh run).
//!
//! Nearly always every `jti` is new. When one is not, the records' plain insert violates their
//! primary key ([`REPLAY_KEY`]), the statement aborts so that nothing of it is written, and the
//! caller takes the careful path: a transaction in which `ON CONFLICT DO NOTHING RETURNING`
//! names the records that were new.
//!
//! A batch of events alone is one `INSERT`, or from [`COPY_FROM`] events on a binary `COPY`
//! ([`append_events`], `pg_copy`).
//!
//! Rows travel as multi-row `VALUES` lists. One array per column with `UNNEST` would give every
//! batch the same statement text, prepared once per connection; measured, the database spent
//! more CPU unpacking the arrays (19 against 16 µs per client_secret_basic exchange) than it
//! saved in parsing.

use std::borrow::Cow;
use std::collections::HashSet;

use sqlx::postgres::{PgConnection, Postgres};
use sqlx::{Executor, QueryBuilder, Row};

use super::audit::{EVENT_COLUMNS, join, storable};
use super::replay::ReplayDigest;
use super::{AuditDetail, AuditEvent, StoreError, pg_copy};

/// A record already recorded, or twice in the batch, is inserted once and not an error.
const SKIP_RECORDED: &str = " ON CONFLICT (digest) DO NOTHING";

/// SQLSTATE `unique_violation`, on [`REPLAY_KEY`]: how the statement of
/// [`insert_replays_and_events`] says that a record was not new.
const UNIQUE_VIOLATION: &str = "23505";

/// The replay records' primary key, their digest (migrations/postgres/0011_replay_digests.sql).
const REPLAY_KEY: &str = "replay_records_pkey";

/// Appends the multi-row insert of replay records, (digest, `expires_at`) each.
fn push_replays(builder: &mut QueryBuilder<Postgres>, records: &[(ReplayDigest, i64)]) {
    builder.push("INSERT INTO replay_records (digest, expires_at) ");
    builder.push_values(records, |mut row, (digest, expires_at)| {
        row.push_bind(digest).push_bind(*expires_at);
    });
}

/// An optional text column in its stored form.
fn text(value: &Option<String>) -> Option<Cow<'_, str>> {
    value.as_deref().map(storable)
}

/// Appends the multi-row insert of `events`. PostgreSQL's arguments are encoded as they are
/// bound, so binding borrowed fields costs no more than moving them, and the caller keeps the
/// events for its careful path. The values are those `pg_copy` writes for the same columns.
fn push_events(builder: &mut QueryBuilder<Postgres>, events: &[AuditEvent]) {
    builder.push(EVENT_COLUMNS);
    builder.push_values(events, |mut row, event| {
        row.push_bind(event.occurred_at)
            .push_bind(text(&event.request_id))
            .push_bind(storable(&event.event))
            .push_bind(event.decision.as_str())
            .push_bind(text(&event.reason))
            .push_bind(text(&event.error_code))
            .push_bind(text(&event.client_id))
            .push_bind(text(&event.grant_type))
            .push_bind(text(&event.subject_issuer))
            .push_bind(text(&event.subject))
            .push_bind(text(&event.audience))
            .push_bind(join(&event.resources))
            .push_bind(join(&event.scopes_requested))
            .push_bind(join(&event.scopes_granted))
            .push_bind(text(&event.issued_jti))
            .push_bind(event.issued_expires_at)
            .push_bind(event.detail.as_ref().map(AuditDetail::as_str));
    });
}

/// From how many events a batch of events alone travels as a binary `COPY` instead of an
/// `INSERT … VALUES`. `COPY` costs the database less per row (about 3.8 against 5.9 µs here) and
/// more per batch (a second round trip, the statement parsed each time: about 180 against 130
/// µs), so it pays from about 24 events on (`benches/pg_batch.rs`; docs/performance.md,
/// sixteenth run). 32 is what a busy group commit gathers (`audit_writer`).
pub(crate) const COPY_FROM: usize = 32;

/// Appends `events` as one statement (atomic on its own; inside a transaction, part of it).
/// Nothing for an empty batch.
pub(super) async fn append_events(
    connection: &mut PgConnection,
    events: &[AuditEvent],
) -> Result<(), StoreError> {
    if events.len() >= COPY_FROM {
        return pg_copy::copy_events(connection, events).await;
    }
    if events.is_empty() {
        return Ok(());
    }
    let mut builder = QueryBuilder::new("");
    push_events(&mut builder, events);
    builder
        .build()
        .execute(connection)
        .await
        .map(|_| ())
        .map_err(StoreError::classify)
}

/// Records `records` and appends `events` in one statement if every record is new: `true`.
/// `false` if any record was already recorded (or is twice in `records`): then nothing at all
/// was written, and the caller takes the careful path. `records` must not be empty.
pub(super) async fn insert_replays_and_events<'c, E>(
    executor: E,
    records: &[(ReplayDigest, i64)],
    events: &[AuditEvent],
) -> Result<bool, StoreError>
where
    E: Executor<'c, Database = Postgres>,
{
    // A plain insert, not `ON CONFLICT DO NOTHING`: a `jti` already recorded violates the
    // primary key and aborts the whole statement, which is the signal wanted here, and a plain
    // insert costs the database less than a speculative one (one index descent per row instead
    // of two, and no confirmation record in the WAL; docs/performance.md, twelfth run).
    let mut builder = QueryBuilder::new("WITH new AS (");
    push_replays(&mut builder, records);
    builder.push(") ");
    if events.is_empty() {
        builder.push("SELECT 1");
    } else {
        push_events(&mut builder, events);
    }
    match builder.build().execute(executor).await {
        Ok(_) => Ok(true),
        Err(sqlx::Error::Database(error))
            if error.code().as_deref() == Some(UNIQUE_VIOLATION)
                && error.constraint() == Some(REPLAY_KEY) =>
        {
            Ok(false)
        }
        Err(error) => Err(StoreError::classify(error)),
    }
}

/// Inserts the records that are not yet recorded and returns the digests of those that were
/// new (`RETURNING` names each one).
pub(super) async fn insert_new_replays<'c, E>(
    executor: E,
    records: &[(ReplayDigest, i64)],
) -> Result<HashSet<ReplayDigest>, StoreError>
where
    E: Executor<'c, Database = Postgres>,
{
    let mut builder = QueryBuilder::new("");
    push_replays(&mut builder, records);
    builder.push(SKIP_RECORDED);
    builder.push(" RETURNING digest");
    let rows = builder
        .build()
        .fetch_all(executor)
        .await
        .map_err(StoreError::classify)?;
    rows.iter()
        .map(|row| Ok(row.try_get::<ReplayDigest, _>("digest")?))
        .collect()
}
