//! The audit log: one row per decision. Rows hold who, what and why — never a token or secret —
//! and are committed before the response that depends on them is sent.

use std::borrow::Cow;

use sqlx::Row;

use super::{Held, Store, StoreError, on_pool};

/// Outcome recorded for an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// A token was issued.
    Issued,
    /// The request was refused.
    Denied,
    /// An administrative change was made.
    Changed,
}

impl Decision {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Issued => "issued",
            Decision::Denied => "denied",
            Decision::Changed => "changed",
        }
    }

    fn parse(text: &str) -> Result<Decision, StoreError> {
        match text {
            "issued" => Ok(Decision::Issued),
            "denied" => Ok(Decision::Denied),
            "changed" => Ok(Decision::Changed),
            other => Err(StoreError::Corrupt(format!("unknown decision {other}"))),
        }
    }
}

/// One audit event. Every field is safe to show an auditor.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuditEvent {
    /// Unix seconds.
    pub occurred_at: i64,
    /// Request id (also in the logs and the `x-request-id` response header).
    pub request_id: Option<String>,
    /// What happened: `token_exchange`, `jwt_bearer`, `key_rotated`, `client_created`, …
    pub event: String,
    /// Issued, denied or changed.
    pub decision: Decision,
    /// Stable reason code (e.g. `subject_token_expired`, `audience_unknown`).
    pub reason: Option<String>,
    /// OAuth error code returned, if any.
    pub error_code: Option<String>,
    /// Authenticated (or claimed) client.
    pub client_id: Option<String>,
    /// Grant type of the request.
    pub grant_type: Option<String>,
    /// `iss` of the subject token or assertion.
    pub subject_issuer: Option<String>,
    /// `sub` of the subject token or assertion.
    pub subject: Option<String>,
    /// Requested or resolved audience.
    pub audience: Option<String>,
    /// Requested resources.
    pub resources: Vec<String>,
    /// Scopes asked for.
    pub scopes_requested: Vec<String>,
    /// Scopes granted.
    pub scopes_granted: Vec<String>,
    /// `jti` of the issued token.
    pub issued_jti: Option<String>,
    /// Expiry of the issued token.
    pub issued_expires_at: Option<i64>,
    /// Extra structured detail (lineage, before/after of a change). Never a token.
    pub detail: Option<AuditDetail>,
}

/// An event's structured detail, held as the JSON text the log stores. Serialised once, where
/// the event is made, from whatever typed value describes it: a token exchange's detail costs
/// one string, not a JSON map of owned keys and values built, serialised by the writer and
/// freed on another thread (docs/performance.md, sixteenth run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditDetail(String);

impl AuditDetail {
    /// The detail of `value` (a typed struct, or `serde_json::json!` where speed does not
    /// matter). A value that cannot be JSON (a map with non-string keys) becomes `null`, never
    /// a failed request: the detail is commentary, the event's columns are the record.
    pub fn of<T: serde::Serialize + ?Sized>(value: &T) -> AuditDetail {
        AuditDetail(serde_json::to_string(value).unwrap_or_else(|_| "null".into()))
    }

    /// Stored text read back; `None` unless it is JSON (a row tampered with loses its detail,
    /// not the rest of the event).
    fn from_stored(text: String) -> Option<AuditDetail> {
        serde_json::from_str::<serde::de::IgnoredAny>(&text)
            .is_ok()
            .then_some(AuditDetail(text))
    }

    /// The JSON text, as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The JSON text, as stored, without a copy (the group commit binds it).
    pub(crate) fn into_string(self) -> String {
        self.0
    }

    /// The detail as a JSON value (readers: the admin pages and API, tests).
    pub fn value(&self) -> serde_json::Value {
        serde_json::from_str(&self.0).unwrap_or(serde_json::Value::Null)
    }
}

impl std::fmt::Display for AuditDetail {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// As JSON, not as a string of JSON: the admin API shows the detail as the object it is.
impl serde::Serialize for AuditDetail {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value().serialize(serializer)
    }
}

impl AuditEvent {
    /// An event with only the required fields set.
    pub fn new(occurred_at: i64, event: &str, decision: Decision) -> AuditEvent {
        AuditEvent {
            occurred_at,
            request_id: None,
            event: event.to_string(),
            decision,
            reason: None,
            error_code: None,
            client_id: None,
            grant_type: None,
            subject_issuer: None,
            subject: None,
            audience: None,
            resources: Vec::new(),
            scopes_requested: Vec::new(),
            scopes_granted: Vec::new(),
            issued_jti: None,
            issued_expires_at: None,
            detail: None,
        }
    }
}

/// A stored event with its id (for pagination).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuditRecord {
    /// Monotonic id.
    pub id: i64,
    /// The event.
    #[serde(flatten)]
    pub event: AuditEvent,
}

/// Filters for reading the log; `None` means "any".
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Inclusive lower bound on `occurred_at`.
    pub since: Option<i64>,
    /// Exclusive upper bound on `occurred_at`.
    pub until: Option<i64>,
    /// Exact client id.
    pub client_id: Option<String>,
    /// Exact subject.
    pub subject: Option<String>,
    /// Exact audience.
    pub audience: Option<String>,
    /// Exact decision.
    pub decision: Option<Decision>,
    /// Exact reason code.
    pub reason: Option<String>,
    /// Only rows with an id below this (keyset pagination, newest first).
    pub before_id: Option<i64>,
    /// Only rows with an id above this (keyset pagination, oldest first: `audit export` pages
    /// forwards from the last id it wrote, so that a page costs the same however far in it is).
    pub after_id: Option<i64>,
    /// Oldest (lowest id) first instead of newest first: an export is read in the order the
    /// events were committed, which a SIEM expects and `--follow` continues.
    pub oldest_first: bool,
    /// Maximum rows (capped at 1000).
    pub limit: Option<u32>,
}

/// Audit persistence.
pub trait AuditLog {
    /// Appends one event durably.
    fn record(&self, event: &AuditEvent) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Appends several events in one transaction (group commit): all or none.
    fn record_batch(
        &self,
        events: &[AuditEvent],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Reads events, newest first (or oldest first with [`AuditFilter::oldest_first`]).
    fn audit_events(
        &self,
        filter: &AuditFilter,
    ) -> impl Future<Output = Result<Vec<AuditRecord>, StoreError>> + Send;
    /// The highest id any committed event has (`None` for an empty log), whatever the filter:
    /// the horizon `audit export` reads up to, so that a one-off export is one point in time
    /// and `--follow` knows which ids have had time to commit (`crate::audit_export`).
    fn latest_event_id(&self) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send;
    /// Deletes at most `limit` of the oldest events that occurred before `before` and returns
    /// how many went. Bounded so that one call holds SQLite's write lock, which the group
    /// commit needs, for milliseconds, not for as long as a whole backlog takes
    /// (`crate::retention` calls it until nothing is left).
    fn delete_events_before(
        &self,
        before: i64,
        limit: u32,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// Text as the audit log stores it. A NUL character — which a client can send (`%00` in a form
/// value) but PostgreSQL cannot hold in `TEXT` — becomes U+FFFD: unsanitised, one such value
/// failed its whole group-commit batch there, refusing every request committed with it and
/// losing their events. Both backends store the same row.
pub(crate) fn storable(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// [`storable`] for a value the caller owns: moved through unless it has to change.
pub(crate) fn storable_owned(text: String) -> String {
    if text.contains('\0') {
        storable(&text).into_owned()
    } else {
        text
    }
}

pub(crate) fn join(items: &[String]) -> Option<String> {
    (!items.is_empty()).then(|| serde_json::to_string(items).unwrap_or_default())
}

fn split(text: Option<String>) -> Vec<String> {
    text.and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default()
}

/// Inserts one event with any executor (a pool or a transaction): [`insert_event_rows!`] with a
/// batch of one, so the column list exists once.
macro_rules! insert_event {
    ($executor:expr, $event:expr) => {{
        let event: &AuditEvent = $event;
        $crate::store::audit::insert_event_rows!($executor, vec![event.clone()])
    }};
}
pub(crate) use insert_event;

/// The audit log's columns in the order every writer sends a row's values (a literal, so that
/// the `INSERT` here and PostgreSQL's `COPY` in `pg_copy` name them from one list).
macro_rules! event_column_list {
    () => {
        "occurred_at, request_id, event, decision, reason, error_code, client_id, grant_type, subject_issuer, subject, audience, resources, scopes_requested, scopes_granted, issued_jti, issued_expires_at, detail"
    };
}
pub(crate) use event_column_list;

/// The head of every insert into the audit log, in the order each row's values are bound.
pub(crate) const EVENT_COLUMNS: &str =
    concat!("INSERT INTO audit_events (", event_column_list!(), ") ");

/// Appends the multi-row `INSERT` of `events` to `$builder` (a `sqlx::QueryBuilder` of either
/// backend), so that it can run on its own ([`insert_event_rows!`]) or inside a larger
/// multi-statement transaction (the SQLite group commit, `replay.rs`; PostgreSQL's group
/// commit has its own statements, `pg_batch.rs`). It takes the events by value: their
/// one-off strings (request id, subject, jti, detail) move into the statement's arguments
/// instead of being copied (sqlx's SQLite arguments own their values), and the recurring ones
/// are bound as the shared copies of `$texts` (a `&mut TextPool`, `text_pool.rs`), which
/// matters on the group-commit path where every exchange's event passes.
macro_rules! push_event_rows {
    ($builder:expr, $events:expr, $texts:expr) => {{
        let events: Vec<AuditEvent> = $events;
        let texts: &mut $crate::store::text_pool::TextPool = $texts;
        let builder = $builder;
        builder.push($crate::store::audit::EVENT_COLUMNS);
        builder.push_values(events, |mut row, event| {
            let detail = event.detail.map($crate::store::AuditDetail::into_string);
            row.push_bind(event.occurred_at)
                .push_bind(event.request_id.map($crate::store::audit::storable_owned))
                .push_bind(texts.share(&event.event))
                .push_bind(texts.share(event.decision.as_str()))
                .push_bind(texts.share_option(event.reason.as_deref()))
                .push_bind(texts.share_option(event.error_code.as_deref()))
                .push_bind(texts.share_option(event.client_id.as_deref()))
                .push_bind(texts.share_option(event.grant_type.as_deref()))
                .push_bind(texts.share_option(event.subject_issuer.as_deref()))
                .push_bind(event.subject.map($crate::store::audit::storable_owned))
                .push_bind(texts.share_option(event.audience.as_deref()))
                .push_bind(texts.share_list(&event.resources))
                .push_bind(texts.share_list(&event.scopes_requested))
                .push_bind(texts.share_list(&event.scopes_granted))
                .push_bind(event.issued_jti.map($crate::store::audit::storable_owned))
                .push_bind(event.issued_expires_at)
                .push_bind(detail);
        });
    }};
}
pub(crate) use push_event_rows;

/// Inserts several events as one multi-row statement with any executor: one hand-off to the
/// database per batch (group commit, docs/performance.md).
macro_rules! insert_event_rows {
    ($executor:expr, $events:expr) => {{
        let mut builder = sqlx::QueryBuilder::new("");
        let mut texts = $crate::store::text_pool::TextPool::unshared();
        $crate::store::audit::push_event_rows!(&mut builder, $events, &mut texts);
        builder
            .build()
            .execute($executor)
            .await
            .map(|_| ())
            .map_err($crate::store::StoreError::classify)
    }};
}
pub(crate) use insert_event_rows;

impl Store {
    /// Appends `events` as one statement (atomic on its own; nothing for an empty batch) on a
    /// held writer connection (`held_connection`): on SQLite a multi-row `INSERT`, taking the
    /// events by value so that their strings move into the statement, sent as one command to
    /// SQLite's thread; on PostgreSQL an `INSERT` or, for a large batch, a binary `COPY`
    /// (`pg_batch::append_events`), with no ping of a connection returned to the pool.
    pub(crate) async fn insert_events(&self, events: Vec<AuditEvent>) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        match &self.held {
            Held::Sqlite(held) => {
                let mut builder = sqlx::QueryBuilder::new("");
                push_event_rows!(&mut builder, events, &mut held.texts());
                held.execute(builder.build()).await?;
            }
            Held::Postgres(held) => {
                let mut connection = held.take().await?;
                super::pg_batch::append_events(&mut connection, &events).await?;
                held.keep(connection);
            }
        }
        Ok(())
    }
}

impl AuditLog for Store {
    async fn record(&self, event: &AuditEvent) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            insert_event!(pool, event)?;
        });
        Ok(())
    }

    async fn record_batch(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        // One statement and one hand-off to the database per batch, atomic on its own. In a
        // task of its own, so that it runs to its end even if the caller stops waiting: on
        // PostgreSQL a large batch is a COPY, which must not be abandoned half-way (`pg_copy`).
        let (store, events) = (self.clone(), events.to_vec());
        tokio::spawn(async move { store.insert_events(events).await })
            .await
            .map_err(|error| StoreError::Unavailable(format!("audit batch task: {error}")))?
    }

    async fn delete_events_before(&self, before: i64, limit: u32) -> Result<u64, StoreError> {
        // Oldest first through the time index, so a call that stops at `limit` leaves the
        // newest of the expired events for the next one and never a gap in what remains.
        let result = on_pool!(self, pool => {
            sqlx::query(
                "DELETE FROM audit_events WHERE id IN \
                 (SELECT id FROM audit_events WHERE occurred_at < $1 ORDER BY occurred_at, id LIMIT $2)",
            )
            .bind(before)
            .bind(i64::from(limit))
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
        });
        result.map_err(StoreError::classify)
    }

    async fn latest_event_id(&self) -> Result<Option<i64>, StoreError> {
        // The primary key's last entry: one index probe on either database.
        let latest = on_pool!(self, pool => {
            sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(id) FROM audit_events")
                .fetch_one(pool)
                .await
        });
        latest.map_err(StoreError::classify)
    }

    async fn audit_events(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        // Two fixed statements, never text from the caller in the SQL.
        macro_rules! select_events {
            ($order:literal) => {
                concat!(
                    "SELECT id, occurred_at, request_id, event, decision, reason, error_code, client_id, grant_type, subject_issuer, subject, audience, resources, scopes_requested, scopes_granted, issued_jti, issued_expires_at, detail FROM audit_events \
                     WHERE ($1 IS NULL OR occurred_at >= $1) AND ($2 IS NULL OR occurred_at < $2) \
                     AND ($3 IS NULL OR client_id = $3) AND ($4 IS NULL OR subject = $4) \
                     AND ($5 IS NULL OR audience = $5) AND ($6 IS NULL OR decision = $6) \
                     AND ($7 IS NULL OR reason = $7) AND ($8 IS NULL OR id < $8) \
                     AND ($9 IS NULL OR id > $9) ORDER BY id ",
                    $order,
                    " LIMIT $10"
                )
            };
        }
        let sql = if filter.oldest_first {
            select_events!("ASC")
        } else {
            select_events!("DESC")
        };
        let limit = i64::from(filter.limit.unwrap_or(100).clamp(1, 1000));
        let decision = filter.decision.map(Decision::as_str);
        // The filter's values in the form rows are stored in: a value with NUL matches the rows
        // written from it (and is no error on PostgreSQL, which cannot bind a NUL).
        let stored =
            |value: &Option<String>| value.as_deref().map(|text| storable(text).into_owned());
        let (client_id, subject, audience, reason) = (
            stored(&filter.client_id),
            stored(&filter.subject),
            stored(&filter.audience),
            stored(&filter.reason),
        );
        on_pool!(self, pool => {
            let rows = sqlx::query(sql)
            .bind(filter.since)
            .bind(filter.until)
            .bind(&client_id)
            .bind(&subject)
            .bind(&audience)
            .bind(decision)
            .bind(&reason)
            .bind(filter.before_id)
            .bind(filter.after_id)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|row| {
                    Ok(AuditRecord {
                        id: row.try_get("id")?,
                        event: AuditEvent {
                            occurred_at: row.try_get("occurred_at")?,
                            request_id: row.try_get("request_id")?,
                            event: row.try_get("event")?,
                            decision: Decision::parse(row.try_get::<&str, _>("decision")?)?,
                            reason: row.try_get("reason")?,
                            error_code: row.try_get("error_code")?,
                            client_id: row.try_get("client_id")?,
                            grant_type: row.try_get("grant_type")?,
                            subject_issuer: row.try_get("subject_issuer")?,
                            subject: row.try_get("subject")?,
                            audience: row.try_get("audience")?,
                            resources: split(row.try_get("resources")?),
                            scopes_requested: split(row.try_get("scopes_requested")?),
                            scopes_granted: split(row.try_get("scopes_granted")?),
                            issued_jti: row.try_get("issued_jti")?,
                            issued_expires_at: row.try_get("issued_expires_at")?,
                            detail: row
                                .try_get::<Option<String>, _>("detail")?
                                .and_then(AuditDetail::from_stored),
                        },
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()
        })
    }
}
