//! The audit log's retention (`audit.retention_days`; docs/decisions.md §36). The log keeps
//! every event unless the deployment sets a retention; then events older than it are deleted in
//! bounded chunks, and each purge that deleted anything is itself an audit event, so an auditor
//! reading the log sees where its history was cut, up to when, and by whom.

use std::time::Duration;

use crate::store::{AuditDetail, AuditEvent, AuditLog, Decision, Store, StoreError};

/// Seconds in a retention day.
const SECS_PER_DAY: i64 = 86_400;

/// Events one delete statement removes at most. About a millisecond or two of SQLite's write
/// lock, which the group commit shares, instead of one lock held for a whole backlog.
pub const PURGE_CHUNK: u32 = 1_000;

/// How often a server applies its retention (and once at start). A retention is counted in
/// days, so an event outlives it by at most this much.
pub const PURGE_INTERVAL: Duration = Duration::from_secs(900);

/// What one purge deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    /// Events deleted.
    pub deleted: u64,
    /// Events that occurred before this time (Unix seconds) were deleted.
    pub before: i64,
}

/// The `occurred_at` before which events go, for a retention of `days` at `now`.
pub fn cutoff(now: i64, days: u32) -> i64 {
    now.saturating_sub(i64::from(days).saturating_mul(SECS_PER_DAY))
}

/// Deletes every event that occurred before `before`, [`PURGE_CHUNK`] at a time, and, when any
/// went, records an `audit_events_purged` event naming the cutoff, the count and `actor` (the
/// server's retention task or the CLI). `stopping` is asked between chunks: a server shutting
/// down ends the purge after the chunk in hand and still records what it deleted, so no
/// deletion goes unaudited. Several instances purging at once is safe: a chunk another
/// instance already deleted counts for none here, and the loop ends.
pub async fn purge_before(
    store: &Store,
    before: i64,
    actor: &str,
    now: i64,
    stopping: impl Fn() -> bool,
) -> Result<Purged, StoreError> {
    let mut deleted = 0u64;
    // A failed chunk ends the purge, but what earlier chunks deleted is still recorded below.
    let outcome = loop {
        match store.delete_events_before(before, PURGE_CHUNK).await {
            Ok(chunk) => {
                deleted += chunk;
                if chunk < u64::from(PURGE_CHUNK) || stopping() {
                    break Ok(());
                }
            }
            Err(error) => break Err(error),
        }
        // Between chunks, the token endpoint's commits get their turn at the database.
        tokio::task::yield_now().await;
    };
    if deleted > 0 {
        let mut event = AuditEvent::new(now, "audit_events_purged", Decision::Changed);
        event.detail = Some(AuditDetail::of(&serde_json::json!({
            "actor": actor,
            "deleted": deleted,
            "before": before,
        })));
        store.record(&event).await?;
        metrics::counter!("frontdesk_audit_events_purged_total").increment(deleted);
    }
    outcome?;
    Ok(Purged { deleted, before })
}

/// Applies a retention of `days` at `now`: [`purge_before`] its [`cutoff`].
pub async fn apply(
    store: &Store,
    days: u32,
    actor: &str,
    now: i64,
    stopping: impl Fn() -> bool,
) -> Result<Purged, StoreError> {
    purge_before(store, cutoff(now, days), actor, now, stopping).await
}
