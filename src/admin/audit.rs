//! The audit log: filters (time range, client, subject, audience, decision, reason), keyset
//! pagination (`before_id`), and export of the filtered rows as JSON lines or CSV.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use http::header;

use super::auth::Session;
use super::views::{AdminError, Layout, format_time, parse_time, render};
use crate::audit_export;
use crate::http::AppState;
use crate::store::{AuditFilter, AuditLog, AuditRecord, Decision};

/// Rows per page.
const PAGE_SIZE: u32 = 50;
/// Most rows one export returns (keeps a single response bounded).
const EXPORT_MAX_ROWS: usize = 100_000;

/// The filter form, as query parameters (every field optional; empty means any).
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    audience: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    before_id: String,
    #[serde(default)]
    format: String,
    /// Page size (JSON API only; the page shows 50 rows).
    #[serde(default)]
    pub(super) limit: String,
}

fn nonempty(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

impl AuditQuery {
    pub(super) fn filter(&self) -> Result<AuditFilter, AdminError> {
        let time = |text: &str, name: &str| {
            nonempty(text)
                .map(|text| {
                    parse_time(&text).ok_or_else(|| {
                        AdminError::BadRequest(format!(
                            "`{text}` is not a time for {name}: use YYYY-MM-DD HH:MM (UTC) or unix seconds."
                        ))
                    })
                })
                .transpose()
        };
        let decision = match self.decision.trim() {
            "" => None,
            "issued" => Some(Decision::Issued),
            "denied" => Some(Decision::Denied),
            "changed" => Some(Decision::Changed),
            other => {
                return Err(AdminError::BadRequest(format!(
                    "`{other}` is not a decision: use issued, denied or changed."
                )));
            }
        };
        Ok(AuditFilter {
            since: time(&self.since, "from")?,
            until: time(&self.until, "to")?,
            client_id: nonempty(&self.client_id),
            subject: nonempty(&self.subject),
            audience: nonempty(&self.audience),
            decision,
            reason: nonempty(&self.reason),
            before_id: nonempty(&self.before_id).and_then(|id| id.parse().ok()),
            after_id: None,
            oldest_first: false,
            limit: None,
        })
    }

    /// The filter as a query string (without `before_id`), for pagination and export links.
    fn query_string(&self) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("since", &self.since),
            ("until", &self.until),
            ("client_id", &self.client_id),
            ("subject", &self.subject),
            ("audience", &self.audience),
            ("decision", &self.decision),
            ("reason", &self.reason),
        ] {
            if !value.trim().is_empty() {
                out.append_pair(name, value.trim());
            }
        }
        out.finish()
    }
}

struct AuditRow {
    id: i64,
    when: String,
    event: String,
    decision: &'static str,
    reason: String,
    client: String,
    subject: String,
    audience: String,
    scopes: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "admin/audit.html")]
struct AuditPage {
    layout: Layout,
    query: AuditQuery,
    rows: Vec<AuditRow>,
    next: Option<String>,
    export_query: String,
    /// `audit.retention_days`; 0 keeps every event. Shown so that an auditor knows how far
    /// back the log can reach and that older events were deleted, not lost.
    retention_days: u32,
}

/// `GET /admin/audit`.
pub async fn page(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<AuditQuery>,
) -> Result<Response, AdminError> {
    let mut filter = query.filter()?;
    filter.limit = Some(PAGE_SIZE);
    let records = state.store.audit_events(&filter).await?;
    let next = (records.len() == PAGE_SIZE as usize)
        .then(|| records.last().map(|record| record.id))
        .flatten()
        .map(|last| {
            let base = query.query_string();
            if base.is_empty() {
                format!("before_id={last}")
            } else {
                format!("{base}&before_id={last}")
            }
        });
    let rows = records
        .into_iter()
        .map(|record| AuditRow {
            id: record.id,
            when: format_time(record.event.occurred_at),
            decision: record.event.decision.as_str(),
            reason: record.event.reason.unwrap_or_default(),
            client: record.event.client_id.unwrap_or_default(),
            subject: record.event.subject.unwrap_or_default(),
            audience: record.event.audience.unwrap_or_default(),
            scopes: record.event.scopes_granted.join(" "),
            detail: record
                .event
                .detail
                .map(|detail| detail.to_string())
                .unwrap_or_default(),
            event: record.event.event,
        })
        .collect();
    Ok(render(&AuditPage {
        layout: Layout::new("Audit log", "audit", &session),
        export_query: query.query_string(),
        query,
        rows,
        next,
        retention_days: state.config.audit.retention_days,
    }))
}

/// `GET /admin/audit/export?format=jsonl|csv&…filters`: every filtered row, newest first.
pub async fn export(
    State(state): State<AppState>,
    _session: Session,
    Query(query): Query<AuditQuery>,
) -> Result<Response, AdminError> {
    let mut filter = query.filter()?;
    filter.limit = Some(1000);
    let mut rows: Vec<AuditRecord> = Vec::new();
    loop {
        let page = state.store.audit_events(&filter).await?;
        let done = page.len() < 1000;
        filter.before_id = page.last().map(|record| record.id);
        rows.extend(page);
        if done || rows.len() >= EXPORT_MAX_ROWS {
            break;
        }
    }
    rows.truncate(EXPORT_MAX_ROWS);
    let (content_type, extension, body) = match query.format.as_str() {
        "csv" => ("text/csv; charset=utf-8", "csv", to_csv(&rows)),
        "jsonl" | "" => ("application/x-ndjson", "jsonl", to_jsonl(&rows)),
        other => {
            return Err(AdminError::BadRequest(format!(
                "`{other}` is not an export format: use jsonl or csv."
            )));
        }
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"frontdesk-audit.{extension}\""),
            ),
        ],
        body,
    )
        .into_response())
}

/// The rows as JSON lines, one [`audit_export::json_line`] each: what `frontdesk audit export`
/// writes for the same rows.
fn to_jsonl(rows: &[AuditRecord]) -> String {
    let mut out = String::new();
    for row in rows {
        audit_export::json_line(row, &mut out);
    }
    out
}

/// The rows as CSV with its header line, as `frontdesk audit export --format csv` writes them.
fn to_csv(rows: &[AuditRecord]) -> String {
    let mut out = String::from(audit_export::CSV_HEADER);
    for row in rows {
        audit_export::csv_line(row, &mut out);
    }
    out
}
